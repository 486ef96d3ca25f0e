//! The Go talk's first example for real: a request id and a deadline flowing through a gateway
//! and two services, each a separate OS process talking HTTP on loopback, traced with
//! OpenTelemetry.
//!
//! `cargo run -p ctxkit-integration --example distributed_tracing` starts `search` and
//! `storage` and a `gateway` (this program again, with a role argument), then plays the user:
//!
//! 1. a request with id `req-1` and a 2 s deadline: every hop logs the id, its remaining budget
//!    and the trace id it received, and the answer comes back through all three. Every process
//!    exports its spans over OTLP/gRPC to a receiver in this one (opentelemetry-proto's tonic
//!    service), which then prints the trace as a tree: one line per span, under its parent,
//!    with the process that made it. The services have no tracing code beyond installing the
//!    subscriber and ctxkit's layers (and one span of storage's own, in a task it spawns);
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// The talk's request id, travelling as `x-request-id`, and a field of every request's span.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id", record = "request_id")]
struct RequestId;

/// Where the processes send their spans: the receiver in the demo process.
const OTLP_ENV: &str = "DISTRIBUTED_TRACING_OTLP";

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
            // The task carries the context and the request's span: its span is the request's child.
            let task = ctxkit::spawn(async move {
                let _query = tracing::info_span!("storage.query");
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
    let tracing = install_tracing(role, &std::env::var(OTLP_ENV).expect("the demo's receiver"));
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
    // What is still buffered goes out now (blocking: off the runtime's threads).
    let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
}

/// This process's `tracing` subscriber: OpenTelemetry's layer, exporting over OTLP/gRPC to the
/// demo's receiver as service `service`. The whole setup a service needs besides ctxkit's layers.
fn install_tracing(service: &'static str, endpoint: &str) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    // Batches every 100 ms, so the demo need not wait long for the last spans.
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(100))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build())
        .with_span_processor(batches)
        .build();
    // ctxkit's spans and this program's; not those of the exporter's own transport.
    let ours = Targets::new()
        .with_target("ctxkit", tracing::Level::INFO)
        .with_target("distributed_tracing", tracing::Level::INFO);
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("distributed_tracing"))
            .with_filter(ours),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();
    provider
}

/// A child process running `role`; its stdout lines and its address.
struct Child {
    role: &'static str,
    process: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    addr: SocketAddr,
}

impl Child {
    async fn start(role: &'static str, next: Option<SocketAddr>, otlp: &str) -> Child {
        let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
        cmd.arg(role).stdout(Stdio::piped()).kill_on_drop(true);
        cmd.env(OTLP_ENV, otlp);
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
    let (receiver, otlp) = Receiver::start().await;
    let tracing = install_tracing("user", &otlp);
    let storage = Child::start("storage", None, &otlp).await;
    let search = Child::start("search", Some(storage.addr), &otlp).await;
    let gateway = Child::start("gateway", Some(search.addr), &otlp).await;
    let mut storage = storage;
    let client = http_client();

    println!("== 1. a request with an id and a 2 s deadline");
    let (ctx, _cancel) = Context::background()
        .with_value::<RequestId>("req-1".to_owned())
        .with_timeout(Duration::from_secs(2));
    let user = tracing::info_span!("user.request", request_id = "req-1");
    let trace_id = user.context().span().span_context().trace_id().to_string();
    let (status, body) = ctx
        .scope(get(
            &client,
            format!("http://{}/search?q=gophers", gateway.addr),
        ))
        .instrument(user)
        .await
        .unwrap();
    println!("user: {status} {body}");
    assert_eq!(status, StatusCode::OK);
    let _ = tokio::task::spawn_blocking({
        let tracing = tracing.clone();
        move || tracing.force_flush()
    })
    .await;
    // Two spans in each process: the user's and three services'.
    let spans = receiver.trace(&trace_id, 8).await;
    println!("the trace, as the OTLP receiver got it from the four processes:");
    print_tree(&spans);

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
    let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
}

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    start_ns: u64,
    end_ns: u64,
    attributes: HashMap<String, String>,
}

/// An OTLP/gRPC receiver (opentelemetry-proto's tonic service) keeping every span it gets.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
            .as_ref()
            .and_then(|v| v.value.as_ref())
        {
            Some(AnyValue::StringValue(s)) => s.clone(),
            Some(AnyValue::IntValue(i)) => i.to_string(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let mut kept = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(&kv.value))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                kept.push(Received {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    /// Listens on a loopback port; the receiver and its endpoint.
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let endpoint = format!("http://{}", incoming.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .serve_with_incoming(incoming),
        );
        (receiver, endpoint)
    }

    /// The spans of trace `trace_id`, once `count` have arrived (or 10 s have passed).
    async fn trace(&self, trace_id: &str, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Received> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if spans.len() >= count || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Prints `spans` as a tree: one line per span, indented under its parent.
fn print_tree(spans: &[Received]) {
    fn line(span: &Received, depth: usize, spans: &[Received]) {
        let kind = match span.kind {
            2 => "server",
            3 => "client",
            _ => "internal",
        };
        let what = ["url.path", "url.full", "request_id"]
            .iter()
            .filter_map(|k| span.attributes.get(*k).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        let took = span.end_ns.saturating_sub(span.start_ns) as f64 / 1e6;
        println!(
            "  {:indent$}{:<width$} {:<8} {kind:<8} {took:>7.2} ms  {what}",
            "",
            span.name,
            span.service,
            indent = depth * 2,
            width = 28 - depth * 2,
        );
        let mut children: Vec<&Received> = spans
            .iter()
            .filter(|s| s.parent_span_id == span.span_id)
            .collect();
        children.sort_by_key(|s| s.start_ns);
        for child in children {
            line(child, depth + 1, spans);
        }
    }
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    println!(
        "  trace {}",
        spans.first().map_or("-", |s| s.trace_id.as_str())
    );
    for root in spans
        .iter()
        .filter(|s| !ids.contains(&s.parent_span_id.as_str()))
    {
        line(root, 0, spans);
    }
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
