//! `ServerLayer` under axum 0.8 on loopback: the `Ctx` extractor and `Context::current()` agreeing
//! behind middleware, `#[cancellable]` handlers answering a context error (504, 503), deadlines
//! answered 504, malformed headers 400, a client hanging up cancelling the handler's context
//! before its future is dropped.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::get;
use ctxkit::axum::Ctx;
use ctxkit::propagation::Accept;
use ctxkit::tower::{ClientWentAway, ServerLayer};
use ctxkit::{Context, ContextKey, Error, Instant, cancellable};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(10);

#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id")]
struct RequestId;

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `req` on a fresh HTTP/1.1 connection; the connection task comes back too.
async fn send(
    addr: std::net::SocketAddr,
    req: http::Request<Empty<bytes::Bytes>>,
) -> (
    tokio::task::JoinHandle<Option<(StatusCode, String)>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = tokio::spawn(async move {
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    });
    (resp, conn)
}

async fn get_text(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = http::Request::get(format!("http://{addr}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, _conn) = send(addr, req.body(Empty::new()).unwrap()).await;
    tokio::time::timeout(PATIENCE, resp)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

async fn describe(Ctx(ctx): Ctx) -> String {
    let left = ctx
        .deadline()
        .map(|d| d.saturating_duration_since(Instant::now()));
    format!(
        "{} {:?} {:?}",
        ctx.ptr_eq(&Context::current()),
        left.map(|l| l.as_millis()),
        ctx.value::<RequestId>()
    )
}

fn layer(root: Context) -> ServerLayer {
    ServerLayer::new(root, Accept::new().key::<RequestId>())
}

#[tokio::test]
async fn ctx_is_the_request_context() {
    let app = Router::new()
        .route("/", get(describe))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    let sent = Instant::now();
    let (status, body) = get_text(addr, &[("grpc-timeout", "2S"), ("x-request-id", "r-1")]).await;
    let took = sent.elapsed().as_millis();
    assert_eq!(status, StatusCode::OK);
    let parts: Vec<&str> = body.splitn(3, ' ').collect();
    assert_eq!(parts[0], "true", "{body}");
    let left: u128 = parts[1]
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    // The 2 s counted from the request's arrival, less what the handler saw go by (at most the
    // round trip this test measured, and a millisecond of rounding down).
    assert!(
        (2_000u128.saturating_sub(took + 1)..=2_000).contains(&left),
        "{body} (took {took} ms)"
    );
    assert_eq!(parts[2], "Some(\"r-1\")");

    let (status, body) = get_text(addr, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "true None None");
}

#[tokio::test]
async fn without_the_layer_ctx_is_a_500_naming_it() {
    let app = Router::new().route("/", get(describe));
    let addr = serve(app).await;
    let (status, body) = get_text(addr, &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("ServerLayer"), "{body}");
}

async fn hang(Ctx(ctx): Ctx, tx: mpsc::UnboundedSender<ctxkit::Error>) -> String {
    let watched = ctx.clone();
    tokio::spawn(async move {
        watched.done().await;
        let _ = tx.send(watched.err().unwrap());
    });
    std::future::pending::<String>().await
}

fn hanging_app(root: Context, tx: mpsc::UnboundedSender<ctxkit::Error>) -> Router {
    Router::new()
        .route("/", get(move |ctx: Ctx| hang(ctx, tx.clone())))
        .layer(layer(root))
}

#[tokio::test]
async fn a_passed_deadline_is_504_and_ends_the_work() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(hanging_app(Context::background(), tx)).await;
    let (status, _) = get_text(addr, &[("grpc-timeout", "100m")]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let err = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap();
    assert_eq!(err, Some(ctxkit::Error::DeadlineExceeded));
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_400_and_serving_goes_on() {
    let app = Router::new()
        .route("/", get(describe))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    let (status, body) = get_text(addr, &[("grpc-timeout", "soon")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("grpc-timeout"), "{body}");
    let (status, _) = get_text(addr, &[("grpc-timeout", "1S")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_hanging_up_cancels_the_handler_context() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(hanging_app(Context::background(), tx)).await;
    let req = http::Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let (resp, conn) = send(addr, req).await;
    // Let the request reach the handler, then hang up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    resp.abort();
    conn.abort();
    let err = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap();
    assert_eq!(err, Some(ctxkit::Error::Canceled));
}

#[tokio::test]
async fn shutting_the_root_down_ends_requests_in_flight() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (root, shutdown) = Context::background().with_cancel();
    let addr = serve(hanging_app(root, tx)).await;
    let req = http::Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let (resp, _conn) = send(addr, req).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let err = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap();
    assert_eq!(err, Some(ctxkit::Error::Canceled));
    let (status, _) = tokio::time::timeout(PATIENCE, resp)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[cancellable(timeout = "50ms")]
async fn too_slow(Ctx(_ctx): Ctx) -> Result<String, Error> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok("done".to_owned())
}

#[cancellable]
async fn stopped_by_itself(Ctx(ctx): Ctx) -> Result<String, Error> {
    let (part, stop) = ctx.with_cancel();
    stop.cancel();
    part.run(async { "never" }).await?;
    Ok("done".to_owned())
}

#[tokio::test]
async fn a_cancellable_handler_answers_a_deadline_with_504_and_a_cancel_with_503() {
    let app = Router::new()
        .route("/", get(too_slow))
        .route("/stop", get(stopped_by_itself))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    // The handler's own 50 ms ran out while the request (no deadline) was still live: the
    // answer is the handler's `Err(DeadlineExceeded)`, not the layer's.
    let (status, body) = get_text(addr, &[]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body, "context deadline exceeded");

    let req = http::Request::get(format!("http://{addr}/stop"))
        .body(Empty::new())
        .unwrap();
    let (resp, _conn) = send(addr, req).await;
    let (status, body) = tokio::time::timeout(PATIENCE, resp)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "context canceled");
}

#[derive(ContextKey)]
#[context_key(value = String)]
struct Tenant;

/// A middleware deriving the context for the handlers behind it, as documented.
async fn tenant_in_scope(req: Request, next: Next) -> Response {
    let ctx = Context::current().with_value::<Tenant>("acme".to_owned());
    ctx.scope(next.run(req)).await
}

/// The mistake: the derived context only in the extensions, the rest not run under it.
async fn tenant_in_extensions_only(mut req: Request, next: Next) -> Response {
    let ctx = Context::current().with_value::<Tenant>("acme".to_owned());
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

async fn tenant(Ctx(ctx): Ctx) -> String {
    format!(
        "{} {:?} {}",
        ctx.ptr_eq(&Context::current()),
        ctx.value::<Tenant>(),
        ctx.deadline().is_some()
    )
}

#[tokio::test]
async fn ctx_and_current_agree_behind_a_middleware_that_derives_a_context() {
    let app = Router::new()
        .route("/", get(tenant))
        .layer(from_fn(tenant_in_scope))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    let (status, body) = get_text(addr, &[("grpc-timeout", "5S")]).await;
    assert_eq!(status, StatusCode::OK);
    // The derived context, which is the current one, and still the request's deadline.
    assert_eq!(body, "true Some(\"acme\") true");
}

#[tokio::test]
async fn a_derived_context_only_in_the_extensions_is_a_500_saying_what_to_do() {
    let app = Router::new()
        .route("/", get(tenant))
        .layer(from_fn(tenant_in_extensions_only))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    let (status, body) = get_text(addr, &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("ctx.scope(next.run(req))"), "{body}");
}

/// Reports what its handler's context says when the handler's future is dropped.
struct SeenAtDrop {
    ctx: Context,
    tx: mpsc::UnboundedSender<(Option<Error>, Option<String>, bool)>,
}

impl Drop for SeenAtDrop {
    fn drop(&mut self) {
        let cause = self.ctx.cause();
        let _ = self.tx.send((
            self.ctx.err(),
            cause.as_ref().map(|c| c.to_string()),
            cause.is_some_and(|c| c.downcast_ref::<ClientWentAway>().is_some()),
        ));
    }
}

#[tokio::test]
async fn after_a_hang_up_the_handlers_drop_guard_sees_the_client_went_away() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let handler = move |Ctx(ctx): Ctx| {
        let (started_tx, dropped_tx) = (started_tx.clone(), dropped_tx.clone());
        async move {
            let _guard = SeenAtDrop {
                ctx,
                tx: dropped_tx,
            };
            let _ = started_tx.send(());
            std::future::pending::<String>().await
        }
    };
    let app = Router::new()
        .route("/", get(handler))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    let req = http::Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let (resp, conn) = send(addr, req).await;
    tokio::time::timeout(PATIENCE, started.recv())
        .await
        .unwrap();
    resp.abort();
    conn.abort();
    let (err, cause, typed) = tokio::time::timeout(PATIENCE, dropped.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(err, Some(Error::Canceled));
    assert_eq!(cause.as_deref(), Some("the client went away"));
    assert!(typed, "the cause is a ClientWentAway");
}

#[tokio::test]
async fn a_request_that_ends_normally_ends_its_context_without_blaming_the_client() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |Ctx(ctx): Ctx| {
        let tx = tx.clone();
        async move {
            tokio::spawn(async move {
                ctx.done().await;
                let cause = ctx.cause().unwrap();
                let _ = tx.send((ctx.err(), cause.downcast_ref::<ClientWentAway>().is_some()));
            });
            "hello"
        }
    };
    let app = Router::new()
        .route("/", get(handler))
        .layer(layer(Context::background()));
    let addr = serve(app).await;
    let (status, body) = get_text(addr, &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    let (err, client_blamed) = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(err, Some(Error::Canceled));
    assert!(
        !client_blamed,
        "the request ended; the client did not go away"
    );
}
