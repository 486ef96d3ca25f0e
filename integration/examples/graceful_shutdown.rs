//! Graceful two-phase shutdown of an axum server with `ctxkit::Shutdown`: at the first Ctrl-C
//! (here: a `shutdown()` call, so the demo runs by itself) the server stops accepting and lets
//! the requests in flight finish; one grace period later, whatever still runs is cancelled, with
//! a cause that says so.
//!
//! The demo holds one streaming response open (a line every 50 ms, for as long as its request's
//! context lives), begins the shutdown, and measures how long the server takes to exit.
//!
//! `cargo run -p ctxkit-integration --example graceful_shutdown`

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use ctxkit::axum::Ctx;
use ctxkit::propagation::Accept;
use ctxkit::tower::ServerLayer;
use ctxkit::{Context, GraceExpired, Shutdown};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long requests in flight may run on once draining begins.
pub const GRACE: Duration = Duration::from_millis(500);

/// `GET /stream`: `tick N` every 50 ms for as long as the request's context lives, then one
/// last line that says why it stopped.
async fn stream(Ctx(ctx): Ctx) -> Body {
    let ticks = futures_util::stream::unfold(0u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((n, n + 1))
    });
    let request = ctx.clone();
    // hyper polls the body outside the handler: `until_done` ends it with the request's
    // context (and makes that context current while it is polled).
    let lines = ctx.until_done(ticks).map(move |item| {
        let line = match item {
            Ok(n) => format!("tick {n}\n"),
            Err(err) => {
                let cause = request.cause().expect("done");
                let hard = cause.is::<GraceExpired>();
                format!("stopped: {err}: {cause} (hard cancel: {hard})\n")
            }
        };
        Ok::<_, Infallible>(Bytes::from(line))
    });
    Body::from_stream(lines)
}

/// The service: every request runs under `requests`, the shutdown's hard phase.
pub fn app(requests: Context) -> Router {
    Router::new()
        .route("/stream", get(stream))
        .layer(ServerLayer::new(requests, Accept::new()))
}

/// Serves until draining begins, then until every connection is closed: the streams are cut
/// by the hard phase, so that happens at most one grace period later.
pub async fn serve(listener: TcpListener, shutdown: &Shutdown) -> io::Result<()> {
    let draining = shutdown.draining().clone();
    axum::serve(listener, app(shutdown.hard().clone()))
        .with_graceful_shutdown(async move { draining.done().await })
        .await
}

/// [`serve`] as a task of its own.
pub fn spawn_server(
    listener: TcpListener,
    shutdown: &Arc<Shutdown>,
) -> tokio::task::JoinHandle<io::Result<()>> {
    let shutdown = Arc::clone(shutdown);
    tokio::spawn(async move { serve(listener, &shutdown).await })
}

/// Opens `GET /stream` and returns the connection once the first line has arrived.
pub async fn open_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(b"GET /stream HTTP/1.1\r\nhost: demo\r\n\r\n")
        .await?;
    let mut seen = Vec::new();
    let mut buf = [0; 1024];
    while !String::from_utf8_lossy(&seen).contains("tick 0") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::other("the stream ended before its first line"));
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(conn)
}

/// Reads the rest of the response until the server closes the connection, and returns the
/// last line of the body (chunk framing removed).
pub async fn last_line(mut conn: TcpStream) -> io::Result<String> {
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await?;
    let text = String::from_utf8_lossy(&rest);
    Ok(text
        .lines()
        .rfind(|l| l.starts_with("tick") || l.starts_with("stopped"))
        .unwrap_or_default()
        .to_owned())
}

#[tokio::main]
async fn main() -> io::Result<()> {
    // In a real server: Shutdown::on_signals(&root, &[Signal::Interrupt, Signal::Terminate], GRACE)
    let shutdown = Arc::new(Shutdown::new(&Context::background(), GRACE));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving http://{addr}/stream, grace period {GRACE:?}");

    let server = spawn_server(listener, &shutdown);
    let conn = open_stream(addr).await?;
    println!("one stream open; shutting down");

    let began = Instant::now();
    shutdown.shutdown();
    let last = tokio::spawn(last_line(conn));
    server.await.expect("the server task")?;
    let took = began.elapsed();
    println!(
        "the stream's last line: {}",
        last.await.expect("the reader")?
    );
    println!(
        "server exited {took:?} after the shutdown began: {} the grace period + 10 ms ({:?})",
        if took <= GRACE + Duration::from_millis(10) {
            "within"
        } else {
            "NOT within"
        },
        GRACE + Duration::from_millis(10),
    );
    Ok(())
}
