//! The Go talk's first example for real: a request id and a deadline flowing through a gateway
//! and two services, each a separate OS process talking HTTP on loopback.
//!
//! `cargo run --example distributed_tracing --features tower` starts `search` and `storage` and
//! a `gateway` (this program again, with a role argument), then plays the user:
//!
//! 1. a request with id `req-1` and a 2 s deadline: every hop logs the id, its remaining budget
//!    and the trace id it received, and the answer comes back through all three;
//! 2. a request (`req-2`) for slow work, from a user who hangs up after 300 ms: the cancellation
//!    travels gateway -> search -> storage (each hop's request context is cancelled when its
//!    caller goes away, and its outgoing call is dropped with it), and `storage` reports how long
//!    after the hang-up its work was stopped.
//!
//! Finally the services get SIGTERM; each serves until `ctxkit::signal::notify` cancels its root
//! context, then exits cleanly.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use ctxkit::propagation::{Accept, TraceContext};
use ctxkit::signal::{self, Signal};
use ctxkit::tower::{Client, ClientLayer, ServerLayer};
use ctxkit::{BoxError, Context, ContextKey, Instant};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// The talk's request id, travelling as `x-request-id`.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id")]
struct RequestId;

type HttpClient = Client<HyperClient<HttpConnector, Empty<Bytes>>>;

/// CLOCK_MONOTONIC in nanoseconds: comparable across the processes of this machine.
fn mono_ns() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

fn http_client() -> HttpClient {
    ClientLayer::new().layer(HyperClient::builder(TokioExecutor::new()).build_http())
}

/// GET `url` under the current context; the status and body text.
async fn get(client: &HttpClient, url: String) -> Result<(StatusCode, String), BoxError> {
    let resp = client
        .clone()
        .oneshot(Request::get(url).body(Empty::new())?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What every hop logs about the request it received.
fn log_arrival(role: &str, path: &str) {
    let ctx = Context::current();
    let budget = ctx
        .deadline()
        .map(|d| d.saturating_duration_since(Instant::now()));
    eprintln!(
        "[{role:>7} pid {}] {path} request-id={} budget={} trace={}",
        std::process::id(),
        ctx.value::<RequestId>().map_or("-", |s| s.as_str()),
        budget.map_or("none".to_owned(), |b| format!("{} ms", b.as_millis())),
        ctx.value::<TraceContext>()
            .map_or("-".to_owned(), |t| t.trace_id_hex()),
    );
}

/// Handles one request of `role`; `next` is the downstream hop, if any.
async fn handle(
    role: &'static str,
    next: Option<SocketAddr>,
    client: HttpClient,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    log_arrival(role, &path);
    let text = match next {
        // gateway and search: pass the request on, under the request's context.
        Some(next) => match get(&client, format!("http://{next}{path}")).await {
            Ok((StatusCode::OK, body)) => format!("{role} <- {body}"),
            Ok((status, body)) => return Ok(reply(status, format!("{role} <- {body}"))),
            Err(e) => {
                eprintln!("[{role:>7}] downstream call ended: {e}");
                return Ok(reply(StatusCode::BAD_GATEWAY, e.to_string()));
            }
        },
        // storage: the work itself, in a task of its own under the request's context;
        // `/slow` takes far longer than anyone waits.
        None => {
            let work = if path == "/slow" { 60_000 } else { 100 };
            let task = ctxkit::spawn(async move {
                let ctx = Context::current();
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(work)) => Some("storage: 42 rows".to_owned()),
                    () = ctx.done() => {
                        // Tell the parent process when the cancellation arrived here.
                        println!("STOPPED {} {}", mono_ns(), ctx.err().unwrap());
                        eprintln!("[{role:>7}] work stopped: {}", ctx.err().unwrap());
                        None
                    }
                }
            });
            match task.await {
                Ok(Some(rows)) => rows,
                _ => return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "stopped".into())),
            }
        }
    };
    Ok(reply(StatusCode::OK, text))
}

fn reply(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::from(text));
    *resp.status_mut() = status;
    resp
}

/// A service process: serves on an ephemeral loopback port (printed as `LISTEN <addr>`) until
/// SIGTERM or SIGINT.
async fn serve(role: &'static str, next: Option<SocketAddr>) {
    let (root, _stop) = signal::notify(
        &Context::background(),
        &[Signal::Terminate, Signal::Interrupt],
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("LISTEN {}", listener.local_addr().unwrap());
    let client = http_client();
    let svc = ServerLayer::new(root.clone(), Accept::new().key::<RequestId>()).layer(
        tower::service_fn(move |req| handle(role, next, client.clone(), req)),
    );
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { break };
                let svc = TowerToHyperService::new(svc.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = root.done() => break,
        }
    }
    eprintln!("[{role:>7}] {}: shutting down", root.cause().unwrap());
    connections.shutdown().await;
}

/// A child process running `role`; its stdout lines and its address.
struct Child {
    role: &'static str,
    process: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    addr: SocketAddr,
}

impl Child {
    async fn start(role: &'static str, next: Option<SocketAddr>) -> Child {
        let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
        cmd.arg(role).stdout(Stdio::piped()).kill_on_drop(true);
        if let Some(next) = next {
            cmd.arg(next.to_string());
        }
        let mut process = cmd.spawn().unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a child that starts")
            .unwrap()
            .unwrap();
        let addr = line.strip_prefix("LISTEN ").unwrap().parse().unwrap();
        Child {
            role,
            process,
            lines,
            addr,
        }
    }

    /// SIGTERM, then the exit status.
    async fn stop(mut self) {
        let pid = self.process.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.process.wait())
            .await
            .expect("a child that exits")
            .unwrap();
        println!("{} exited: {status}", self.role);
        assert!(status.success());
    }
}

async fn demo() {
    let storage = Child::start("storage", None).await;
    let search = Child::start("search", Some(storage.addr)).await;
    let gateway = Child::start("gateway", Some(search.addr)).await;
    let mut storage = storage;
    let client = http_client();

    println!("== 1. a request with an id and a 2 s deadline");
    let (ctx, _cancel) = Context::background()
        .with_value::<RequestId>("req-1".to_owned())
        .with_value::<TraceContext>(TraceContext::new_root())
        .with_timeout(Duration::from_secs(2));
    let (status, body) = ctx
        .scope(get(
            &client,
            format!("http://{}/search?q=gophers", gateway.addr),
        ))
        .await
        .unwrap();
    println!("user: {status} {body}");
    assert_eq!(status, StatusCode::OK);

    println!("== 2. a user who hangs up after 300 ms");
    let (ctx, hang_up) = Context::background()
        .with_value::<RequestId>("req-2".to_owned())
        .with_timeout(Duration::from_secs(10));
    let call = ctx.scope(get(&client, format!("http://{}/slow", gateway.addr)));
    let mut call = std::pin::pin!(call);
    tokio::select! {
        r = &mut call => panic!("the slow request answered: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    let hung_up_at = mono_ns();
    hang_up.cancel(); // the client layer drops the call: the connection to the gateway goes away
    let ended = tokio::time::timeout(Duration::from_secs(10), call).await;
    println!(
        "user: the call ended with {:?}",
        ended.expect("a prompt end").unwrap_err()
    );
    let line = tokio::time::timeout(Duration::from_secs(10), storage.lines.next_line())
        .await
        .expect("storage to stop its work")
        .unwrap()
        .unwrap();
    let mut words = line.split(' ');
    assert_eq!(words.next(), Some("STOPPED"));
    let stopped_at: i64 = words.next().unwrap().parse().unwrap();
    let delay = Duration::from_nanos((stopped_at - hung_up_at).max(0) as u64);
    println!(
        "user hung up; storage, two hops away, stopped its work {:.2} ms later",
        delay.as_secs_f64() * 1e3
    );

    println!("== 3. shutting down");
    gateway.stop().await;
    search.stop().await;
    storage.stop().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let next = args.get(1).map(|a| a.parse().unwrap());
    match args.first().map(String::as_str) {
        None => demo().await,
        Some("gateway") => serve("gateway", next).await,
        Some("search") => serve("search", next).await,
        Some("storage") => serve("storage", None).await,
        Some(other) => {
            eprintln!("unknown role {other:?}; run without arguments");
            std::process::exit(2);
        }
    }
}
