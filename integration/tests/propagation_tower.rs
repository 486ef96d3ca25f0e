//! `ServerLayer` and `ClientLayer` on hyper 1 over loopback: per-request contexts, deadlines,
//! malformed headers, client disconnects, shutdown, and the client side's injection and aborts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ctxkit::propagation::Accept;
use ctxkit::tower::{ClientLayer, ServerLayer};
use ctxkit::{BoxError, Context, ContextKey, Error};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt};

/// Generous: nothing here waits this long unless it is broken.
const PATIENCE: Duration = Duration::from_secs(10);

struct RequestId;
impl ContextKey for RequestId {
    type Value = u64;
    const HEADER: Option<&'static str> = Some("x-request-id");
    fn encode(v: &u64) -> Option<String> {
        Some(v.to_string())
    }
    fn decode(s: &str) -> Result<u64, BoxError> {
        Ok(s.parse()?)
    }
}

type Handler =
    tower::util::BoxCloneSyncService<Request<Incoming>, Response<Full<Bytes>>, Infallible>;

/// Serves `handler` behind a `ServerLayer` on a loopback port.
async fn serve(root: Context, handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServerLayer::new(root, Accept::new().key::<RequestId>()).layer(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// One request on a fresh connection; the connection task is returned so a test can hang up.
async fn send(
    addr: SocketAddr,
    req: Request<Empty<Bytes>>,
) -> (
    impl std::future::Future<Output = Response<Incoming>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = async move { sender.send_request(req).await.unwrap() };
    (resp, conn)
}

async fn get(addr: SocketAddr, req: Request<Empty<Bytes>>) -> Response<Incoming> {
    let (resp, _conn) = send(addr, req).await;
    tokio::time::timeout(PATIENCE, resp)
        .await
        .expect("a response")
}

async fn text<B: http_body::Body>(resp: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn request() -> http::request::Builder {
    Request::builder().uri("/")
}

fn ok(body: String) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from(body)))
}

#[tokio::test]
async fn the_handler_runs_under_the_request_context() {
    let handler = Handler::new(tower::service_fn(|req: Request<Incoming>| async move {
        let ctx = req.extensions().get::<Context>().cloned().unwrap();
        let current = Context::current();
        let left = ctx.deadline().unwrap() - ctxkit::Instant::now();
        ok(format!(
            "{} {} {}",
            ctx.ptr_eq(&current),
            left.as_millis(),
            ctx.value::<RequestId>().unwrap()
        ))
    }));
    let addr = serve(Context::background(), handler).await;
    let req = request()
        .header("grpc-timeout", "5S")
        .header("x-request-id", "42")
        .body(Empty::new())
        .unwrap();
    let sent = std::time::Instant::now();
    let resp = get(addr, req).await;
    let took = sent.elapsed().as_millis() as u64;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = text(resp).await;
    let parts: Vec<&str> = body.split(' ').collect();
    assert_eq!(parts[0], "true", "{body}");
    let left: u64 = parts[1].parse().unwrap();
    // 5 s from arrival, less at most the round trip this test measured (and 1 ms of rounding).
    assert!(
        (5_000u64.saturating_sub(took + 1)..=5_000).contains(&left),
        "{body} (took {took} ms)"
    );
    assert_eq!(parts[2], "42");
}

/// A handler that reports its context's end on `tx` (from a spawned task, as real work would)
/// and then never answers.
fn hanging_handler(tx: mpsc::UnboundedSender<&'static str>) -> Handler {
    Handler::new(tower::service_fn(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let ctx = req.extensions().get::<Context>().cloned().unwrap();
            let work = tx.clone();
            tokio::spawn(async move {
                ctx.done().await;
                let _ = work.send(match ctx.err() {
                    Some(Error::DeadlineExceeded) => "deadline",
                    Some(Error::Canceled) => "canceled",
                    None => "live?",
                });
            });
            let _ = tx.send("started");
            std::future::pending::<()>().await;
            ok(String::new())
        }
    }))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("in time")
        .unwrap()
}

#[tokio::test]
async fn a_passed_deadline_answers_504_and_stops_the_work() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(Context::background(), hanging_handler(tx)).await;
    let req = request()
        .header("grpc-timeout", "200m")
        .body(Empty::new())
        .unwrap();
    let resp = get(addr, req).await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(next(&mut rx).await, "started");
    assert_eq!(next(&mut rx).await, "deadline");
}

#[tokio::test]
async fn grpc_deadlines_answer_status_4() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let addr = serve(Context::background(), hanging_handler(tx)).await;
    let req = request()
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "100m")
        .body(Empty::new())
        .unwrap();
    let resp = get(addr, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "4");
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_400_naming_it_and_serving_goes_on() {
    let handler = Handler::new(tower::service_fn(|_req: Request<Incoming>| async move {
        ok("fine".into())
    }));
    let addr = serve(Context::background(), handler).await;

    let bad = request()
        .header("grpc-timeout", "soon")
        .body(Empty::new())
        .unwrap();
    let resp = get(addr, bad).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = text(resp).await;
    assert!(
        body.contains("grpc-timeout") && body.contains("soon"),
        "{body}"
    );

    let bad_grpc = request()
        .header("content-type", "application/grpc+proto")
        .header("grpc-timeout", "1x")
        .body(Empty::new())
        .unwrap();
    let resp = get(addr, bad_grpc).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "13");
    let msg = resp.headers()["grpc-message"].to_str().unwrap().to_owned();
    assert!(msg.contains("grpc-timeout"), "{msg}");

    let resp = get(addr, request().body(Empty::new()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(text(resp).await, "fine");
}

#[tokio::test]
async fn a_client_hanging_up_cancels_the_request_context() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(Context::background(), hanging_handler(tx)).await;
    let (resp, conn) = send(addr, request().body(Empty::new()).unwrap()).await;
    let waiting = tokio::spawn(resp);
    assert_eq!(next(&mut rx).await, "started");
    // Hang up: drop the request and the connection.
    waiting.abort();
    conn.abort();
    assert_eq!(next(&mut rx).await, "canceled");
}

#[tokio::test]
async fn shutting_down_the_root_ends_requests_in_flight() {
    let (root, shutdown) = Context::background().with_cancel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(root, hanging_handler(tx)).await;
    let (resp, _conn) = send(addr, request().body(Empty::new()).unwrap()).await;
    let resp = tokio::spawn(resp);
    assert_eq!(next(&mut rx).await, "started");
    shutdown.cancel();
    assert_eq!(next(&mut rx).await, "canceled");
    let resp = tokio::time::timeout(PATIENCE, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_response_body_keeps_the_context_until_sent() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = Handler::new(tower::service_fn(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let ctx = req.extensions().get::<Context>().cloned().unwrap();
            tokio::spawn(async move {
                ctx.done().await;
                let _ = tx.send("request over");
            });
            ok("body".into())
        }
    }));
    let addr = serve(Context::background(), handler).await;
    let resp = get(addr, request().body(Empty::new()).unwrap()).await;
    assert_eq!(text(resp).await, "body");
    assert_eq!(next(&mut rx).await, "request over");
}

/// A transport that records the headers it was given and answers after `delay`, reporting when
/// it is dropped.
#[derive(Clone)]
struct Transport {
    calls: Arc<AtomicUsize>,
    delay: Duration,
    dropped: mpsc::UnboundedSender<&'static str>,
}

impl Service<Request<()>> for Transport {
    type Response = Response<http::HeaderMap>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<http::HeaderMap>, Infallible>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay;
        let guard = DropFlag(self.dropped.clone());
        Box::pin(async move {
            let _guard = guard;
            tokio::time::sleep(delay).await;
            Ok(Response::new(req.headers().clone()))
        })
    }
}

struct DropFlag(mpsc::UnboundedSender<&'static str>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

fn transport(
    delay: Duration,
) -> (
    Transport,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<&'static str>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Transport {
            calls: calls.clone(),
            delay,
            dropped: tx,
        },
        calls,
        rx,
    )
}

/// The headers a [`Transport`] was sent.
fn sent(
    resp: Result<Response<ctxkit::tower::ClientBody<http::HeaderMap>>, BoxError>,
) -> http::HeaderMap {
    resp.unwrap().into_body().into_inner().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_client_sends_the_current_context() {
    let (t, calls, _rx) = transport(Duration::ZERO);
    let client = ClientLayer::new().layer(t);
    let (ctx, _c) = Context::background()
        .with_value::<RequestId>(9)
        .with_timeout(Duration::from_millis(1500));
    let headers = sent(ctx.scope(client.oneshot(Request::new(()))).await);
    assert_eq!(headers["grpc-timeout"], "1500000u");
    assert_eq!(headers["x-request-id"], "9");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A context in the request's extensions wins over the current one.
    let (t, _calls, _rx) = transport(Duration::ZERO);
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(Context::background().with_value::<RequestId>(10));
    let headers = sent(ctx.scope(ClientLayer::new().layer(t).oneshot(req)).await);
    assert_eq!(headers["x-request-id"], "10");
    assert!(!headers.contains_key("grpc-timeout"));
}

#[tokio::test(start_paused = true)]
async fn an_expired_context_fails_locally_and_sends_nothing() {
    let (t, calls, _rx) = transport(Duration::ZERO);
    let client = ClientLayer::new().layer(t);
    let (ctx, _c) = Context::background().with_timeout(Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = ctx
        .scope(client.oneshot(Request::new(())))
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_mid_call_aborts_it() {
    let (t, calls, mut dropped) = transport(Duration::from_secs(3600));
    let client = ClientLayer::new().layer(t);
    let (ctx, cancel) = Context::background().with_cancel();
    let call = tokio::spawn(ctx.scope(client.oneshot(Request::new(()))));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert_eq!(dropped.recv().await, Some("dropped")); // the call was dropped, not left running
}

#[tokio::test]
async fn client_and_server_layers_end_to_end() {
    let handler = Handler::new(tower::service_fn(|req: Request<Incoming>| async move {
        let ctx = req.extensions().get::<Context>().cloned().unwrap();
        let left = ctx.deadline().unwrap() - ctxkit::Instant::now();
        ok(format!(
            "{} {}",
            left.as_millis(),
            ctx.value::<RequestId>().unwrap()
        ))
    }));
    let addr = serve(Context::background(), handler).await;
    let hyper_client = tower::service_fn(move |req: Request<Empty<Bytes>>| async move {
        let (resp, _conn) = send(addr, req).await;
        Ok::<_, Infallible>(resp.await)
    });
    let client = ClientLayer::new().layer(hyper_client);
    let made = std::time::Instant::now();
    let (ctx, _c) = Context::background()
        .with_value::<RequestId>(77)
        .with_timeout(Duration::from_secs(2));
    let resp = ctx
        .scope(client.oneshot(request().body(Empty::new()).unwrap()))
        .await
        .unwrap();
    let took = made.elapsed().as_millis() as u64;
    let body = text(resp).await;
    let (left, id) = body.split_once(' ').unwrap();
    let left: u64 = left.parse().unwrap();
    // The 2 s less at most what this test measured from making the context to the answer.
    assert!(
        (2_000u64.saturating_sub(took + 1)..=2_000).contains(&left),
        "{body} (took {took} ms)"
    );
    assert_eq!(id, "77");
}

#[tokio::test]
async fn an_http2_stream_reset_cancels_only_that_request() {
    use hyper_util::rt::TokioExecutor;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServerLayer::new(Context::background(), Accept::new()).layer(hanging_handler(tx));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
            .await;
    });

    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let call = |mut s: hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        tokio::spawn(async move { s.send_request(request().body(Empty::new()).unwrap()).await })
    };
    let first = call(sender.clone());
    assert_eq!(next(&mut rx).await, "started");
    let second = call(sender.clone());
    assert_eq!(next(&mut rx).await, "started");

    first.abort(); // RST_STREAM for the first request only; the connection stays up
    assert_eq!(next(&mut rx).await, "canceled");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.try_recv().is_err(),
        "the second request must still be running"
    );
    assert!(!second.is_finished());
    second.abort();
    assert_eq!(next(&mut rx).await, "canceled");
}

/// A transport that fails with its own error after `after`, as a transport timer set from the
/// request's `grpc-timeout` does.
fn failing_transport(
    after: Duration,
) -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<()>, BoxError>> + Send,
> + Clone {
    tower::service_fn(move |_req: Request<()>| async move {
        tokio::time::sleep(after).await;
        Err::<Response<()>, BoxError>("the transport's own timer expired".into())
    })
}

fn grpc_request() -> Request<()> {
    Request::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_transport_failure_at_the_deadline_is_the_deadline() {
    let budget = Duration::from_millis(100);
    let client = ClientLayer::new().layer(failing_transport(budget));
    let (ctx, _c) = Context::background().with_timeout(budget);
    let err = ctx
        .scope(client.clone().oneshot(Request::new(())))
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));

    // Over gRPC the failure is a status any gRPC client reads: 4, not the transport's account.
    let (ctx, _c) = Context::background().with_timeout(budget);
    let resp = ctx.scope(client.oneshot(grpc_request())).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "4");
    assert_eq!(resp.headers()["grpc-message"], "context deadline exceeded");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
}

#[tokio::test(start_paused = true)]
async fn a_transport_failure_before_the_deadline_stays_the_transports() {
    let client = ClientLayer::new().layer(failing_transport(Duration::from_millis(10)));
    let (ctx, _c) = Context::background().with_timeout(Duration::from_secs(1));
    let err = ctx
        .scope(client.clone().oneshot(grpc_request()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the transport's own timer expired");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_grpc_call_is_status_1_naming_the_cause() {
    let (t, _calls, mut dropped) = transport(Duration::from_secs(3600));
    let client = ClientLayer::new().layer(t);
    let (ctx, cancel) = Context::background().with_cancel();
    let mut req = Request::new(());
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let call = tokio::spawn(ctx.scope(client.oneshot(req)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel_with(std::io::Error::other("the user pressed stop"));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.headers()["grpc-status"], "1");
    assert_eq!(
        resp.headers()["grpc-message"],
        "context canceled: the user pressed stop"
    );
    assert_eq!(dropped.recv().await, Some("dropped"));
}

/// Another key on `x-request-id`.
struct OtherId;
impl ContextKey for OtherId {
    type Value = u64;
    const HEADER: Option<&'static str> = Some("x-request-id");
    fn encode(v: &u64) -> Option<String> {
        Some(v.to_string())
    }
    fn decode(s: &str) -> Result<u64, BoxError> {
        Ok(s.parse()?)
    }
}

#[tokio::test(start_paused = true)]
async fn a_context_that_cannot_be_sent_fails_the_call_before_anything_is_sent() {
    let (t, calls, _rx) = transport(Duration::ZERO);
    let client = ClientLayer::new().layer(t);
    let ctx = Context::background()
        .with_value::<RequestId>(1)
        .with_value::<OtherId>(2);
    let err = ctx
        .scope(client.clone().oneshot(Request::new(())))
        .await
        .unwrap_err();
    let err = err
        .downcast_ref::<ctxkit::propagation::PropagationError>()
        .expect("a PropagationError");
    assert!(
        matches!(
            err,
            ctxkit::propagation::PropagationError::KeyConflict {
                header: "x-request-id",
                ..
            }
        ),
        "{err:?}"
    );
    // Over gRPC: status 13 naming it.
    let resp = ctx.scope(client.oneshot(grpc_request())).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "13");
    let message = resp.headers()["grpc-message"].to_str().unwrap();
    assert!(message.contains("x-request-id"), "{message}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
