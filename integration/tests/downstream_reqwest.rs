//! `ctxkit::reqwest` against a real axum server on loopback (with `ServerLayer`): the context's
//! headers arrive, nothing is sent once the context is done, a cancellation or deadline during
//! the call drops the connection (the server sees the client hang up), and the errors tell a
//! deadline from a cancellation from a failure of the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use ctxkit::axum::Ctx;
use ctxkit::propagation::{Accept, Baggage, TraceContext};
use ctxkit::reqwest::{Error as CallError, RequestBuilderExt};
use ctxkit::tower::{ClientWentAway, ServerLayer};
use ctxkit::{Context, ContextKey, Error, Instant};
use futures_util::StreamExt;
use http::HeaderMap;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(20);

#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id")]
struct RequestId;

/// What the server saw: connections accepted, requests received, and how each hanging
/// request's context ended (kind, and whether the cause is the client going away).
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    /// A message when a `/hang` request has reached its handler.
    started: mpsc::UnboundedReceiver<()>,
    /// How each `/hang` request's context ended: (kind, the client went away).
    ended: mpsc::UnboundedReceiver<(Option<Error>, bool)>,
}

async fn echo(Ctx(ctx): Ctx, headers: HeaderMap) -> String {
    let field = |name: &str| {
        headers
            .get(name)
            .map_or("-", |v| v.to_str().unwrap())
            .to_owned()
    };
    let left = ctx
        .deadline()
        .map(|d| d.saturating_duration_since(Instant::now()).as_millis());
    format!(
        "{}|{}|{}|{}|{:?}|{:?}",
        field("grpc-timeout"),
        field("traceparent"),
        field("baggage"),
        field("x-request-id"),
        left,
        ctx.value::<RequestId>()
    )
}

async fn serve() -> Server {
    let seen = Arc::new(Seen::default());
    let (started_tx, started) = mpsc::unbounded_channel();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let hang = move |Ctx(ctx): Ctx| {
        let (started_tx, ended_tx) = (started_tx.clone(), ended_tx.clone());
        async move {
            let watched = ctx.clone();
            tokio::spawn(async move {
                watched.done().await;
                let went_away = watched
                    .cause()
                    .is_some_and(|c| c.downcast_ref::<ClientWentAway>().is_some());
                let _ = ended_tx.send((watched.err(), went_away));
            });
            let _ = started_tx.send(());
            std::future::pending::<String>().await
        }
    };
    let counted = seen.clone();
    let app = Router::new()
        .route("/echo", get(echo))
        .route("/hang", get(hang))
        .route(
            "/stall",
            get(|| async {
                // The head and a first chunk, then a body that never ends.
                let chunks = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"start"))
                })
                .chain(futures_util::stream::pending());
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/fail",
            get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counted.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ))
        .layer(ServerLayer::new(
            Context::background(),
            Accept::new().key::<RequestId>(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = seen.clone();
    let listener = listener.tap_io(move |_| {
        counted.connections.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        seen,
        started,
        ended,
    }
}

#[tokio::test]
async fn the_budget_trace_baggage_and_travelling_keys_arrive() {
    let server = serve().await;
    let trace = TraceContext::new_root();
    let baggage: Baggage = "tenant=acme".parse().unwrap();
    let (ctx, _cancel) = Context::background()
        .with_value::<TraceContext>(trace.clone())
        .with_value::<Baggage>(baggage)
        .with_value::<RequestId>("r-7".to_owned())
        .with_timeout(Duration::from_secs(30));
    let resp = reqwest::Client::new()
        .get(format!("http://{}/echo", server.addr))
        .send_with(&ctx)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let parts: Vec<&str> = body.split('|').collect();
    let budget: u64 = parts[0].trim_end_matches('u').parse().unwrap();
    assert!(
        budget > 0 && budget <= 30_000_000,
        "grpc-timeout in µs: {body}"
    );
    assert!(
        parts[1].contains(&trace.trace_id_hex()),
        "traceparent: {body}"
    );
    assert_eq!(parts[2], "tenant=acme");
    assert_eq!(parts[3], "r-7");
    // The server's context has the budget that was sent, and the travelling key.
    let left: u128 = parts[4]
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(left > 0 && left <= 30_000, "{body}");
    assert_eq!(parts[5], "Some(\"r-7\")");
}

#[tokio::test]
async fn without_a_deadline_no_budget_is_sent() {
    let server = serve().await;
    let body = reqwest::Client::new()
        .get(format!("http://{}/echo", server.addr))
        .send_with(&Context::background())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("-|-|-|-|None|None"), "{body}");
}

#[tokio::test]
async fn a_context_already_done_sends_nothing() {
    let server = serve().await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/echo", server.addr);

    let (cancelled, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let err = client.get(&url).send_with(&cancelled).await.unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Context {
                kind: Error::Canceled,
                sent: false,
                ..
            }
        ),
        "{err:?}"
    );

    let (expired, _cancel) = Context::background().with_deadline(Instant::now());
    let err = client.get(&url).send_with(&expired).await.unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(matches!(err, CallError::Context { sent: false, .. }));

    // The server never heard of either: no connection, no request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 0);
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 0);
    // And the same client still works.
    assert_eq!(
        client
            .get(&url)
            .send_with(&Context::background())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_cancellation_during_the_call_drops_the_connection() {
    let mut server = serve().await;
    let (ctx, cancel) = Context::background().with_cancel();
    let call = tokio::spawn({
        let url = format!("http://{}/hang", server.addr);
        async move { reqwest::Client::new().get(url).send_with(&ctx).await }
    });
    tokio::time::timeout(PATIENCE, server.started.recv())
        .await
        .unwrap()
        .unwrap();
    let cancelled_at = Instant::now();
    cancel.cancel();
    let err = tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Context {
                kind: Error::Canceled,
                sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    // The server saw the client hang up: the request's context ended with `ClientWentAway`.
    let (kind, went_away) = tokio::time::timeout(PATIENCE, server.ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kind, Some(Error::Canceled));
    assert!(went_away, "the server's context ended for another reason");
    eprintln!(
        "cancel → server saw the hang-up: {:?}",
        cancelled_at.elapsed()
    );
}

#[tokio::test]
async fn a_deadline_during_the_call_drops_the_connection() {
    let mut server = serve().await;
    let start = Instant::now();
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let err = reqwest::Client::new()
        .get(format!("http://{}/hang", server.addr))
        .send_with(&ctx)
        .await
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(matches!(err, CallError::Context { sent: true, .. }));
    server.started.recv().await.unwrap();
    // The server's request context ended too: by the budget it received or by the hang-up,
    // whichever it saw first; either way a deadline-or-hang-up, never left running.
    let (kind, went_away) = tokio::time::timeout(PATIENCE, server.ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        kind == Some(Error::DeadlineExceeded) || (kind == Some(Error::Canceled) && went_away),
        "{kind:?} {went_away}"
    );
}

#[tokio::test]
async fn the_budget_is_reqwests_timeout_and_bounds_the_body_too() {
    let server = serve().await;
    let start = Instant::now();
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let resp = reqwest::Client::new()
        .get(format!("http://{}/stall", server.addr))
        .send_with(&ctx)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Read outside the context: reqwest's own timer, set from the budget, ends the body.
    let err = tokio::time::timeout(PATIENCE, resp.bytes())
        .await
        .expect("the body was not bounded by the budget")
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_shorter_timeout_on_the_request_is_kept_and_is_reqwests_own_error() {
    let server = serve().await;
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(60));
    let err = reqwest::Client::new()
        .get(format!("http://{}/hang", server.addr))
        .timeout(Duration::from_millis(200))
        .send_with(&ctx)
        .await
        .unwrap_err();
    // The context still had time: the failure is reqwest's, not the context's.
    assert_eq!(err.kind(), None, "{err:?}");
    let CallError::Reqwest(e) = err else {
        panic!("{err:?}")
    };
    assert!(e.is_timeout(), "{e:?}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_reqwests_error_and_no_context_kind() {
    // A port nobody listens on: bind one and drop it.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(30));
    let err = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .send_with(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), None);
    assert!(
        matches!(&err, CallError::Reqwest(e) if e.is_connect()),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
}
