//! Tower middleware carrying contexts across HTTP and gRPC calls (feature `tower`).
//!
//! - [`ServerLayer`]: every request runs under its own context, a child of the server's root
//!   context built by [`extract`](crate::propagation::extract) from the request's headers
//!   (deadline, trace, baggage, accepted travelling keys). The context is current while the
//!   handler's future runs and is in the request's extensions. It is cancelled when the request
//!   ends, when the client goes away (the server drops the future or the response body), and when
//!   the root is cancelled (shutdown). A passed deadline is answered with HTTP 504 (gRPC status 4,
//!   `DEADLINE_EXCEEDED`), a malformed header with HTTP 400 (gRPC status 13, `INTERNAL`) naming
//!   it.
//! - [`ClientLayer`]: writes the current context into each request
//!   ([`inject`](crate::propagation::inject)), fails at once with the context's [`Error`] when it
//!   is already done (sending nothing), and drops the call (so the connection resets the stream)
//!   when the context is done before the response arrives.
//!
//! Under axum, `ctxkit::axum::Ctx` (feature `axum`) extracts the request's context. Under
//! tonic, put `ServerLayer` in front of `tonic::service::Routes` and serve them with hyper:
//! `tonic::transport::Server` runs its own `grpc-timeout` timer outside every layer, racing this
//! layer's, and when it wins answers a passed deadline with `CANCELLED`, not `DEADLINE_EXCEEDED`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::key::BoxError;
use crate::propagation::{self, Accept};
use crate::{CancelHandle, Context, Error, Instant};

/// What `grpc-message` percent-encodes: everything but printable ASCII, and `%`.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The server side: runs each request under its own context. See the [module docs](self).
///
/// ```
/// use std::convert::Infallible;
/// use ctxkit::Context;
/// use ctxkit::propagation::Accept;
/// use ctxkit::tower::ServerLayer;
/// use http::{Request, Response};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handler = tower::service_fn(|req: Request<String>| async move {
///     let ctx = req.extensions().get::<Context>().cloned().unwrap();
///     assert!(ctx.same(&Context::current()));
///     let body = format!("deadline: {:?}", ctx.deadline().is_some());
///     Ok::<_, Infallible>(Response::new(http_body_util::Full::<bytes::Bytes>::from(body)))
/// });
/// let (root, _shutdown) = Context::background().with_cancel();
/// let mut svc = ServerLayer::new(root, Accept::new()).layer(handler);
/// let req = Request::builder().header("grpc-timeout", "1S").body(String::new()).unwrap();
/// let resp = svc.call(req).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct ServerLayer {
    root: Context,
    accept: Arc<Accept>,
}

impl ServerLayer {
    /// Requests become children of `root` (cancel it to cancel every request in flight) and
    /// decode the travelling keys `accept` names.
    pub fn new(root: Context, accept: Accept) -> ServerLayer {
        ServerLayer {
            root,
            accept: Arc::new(accept),
        }
    }
}

impl fmt::Debug for ServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerLayer")
            .field("root", &self.root)
            .field("accept", &self.accept)
            .finish()
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = Server<S>;
    fn layer(&self, inner: S) -> Server<S> {
        Server {
            inner,
            root: self.root.clone(),
            accept: self.accept.clone(),
        }
    }
}

/// The service [`ServerLayer`] makes.
#[derive(Clone, Debug)]
pub struct Server<S> {
    inner: S,
    root: Context,
    accept: Arc<Accept>,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// An answer of our own: HTTP `status`, or for gRPC a trailers-only response with `grpc_status`.
fn answer<B>(
    grpc: bool,
    status: StatusCode,
    grpc_status: u8,
    message: String,
) -> Response<ServerBody<B>> {
    if grpc {
        let mut resp = Response::new(ServerBody::message(Bytes::new(), None));
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from(u16::from(grpc_status)));
        let encoded: String =
            percent_encoding::utf8_percent_encode(&message, GRPC_MESSAGE).collect();
        if let Ok(v) = HeaderValue::try_from(encoded) {
            h.insert("grpc-message", v);
        }
        resp
    } else {
        let mut resp = Response::new(ServerBody::message(Bytes::from(message), None));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

fn answer_done<B>(grpc: bool, err: Error) -> Response<ServerBody<B>> {
    match err {
        Error::DeadlineExceeded => answer(
            grpc,
            StatusCode::GATEWAY_TIMEOUT,
            4,
            "deadline exceeded".to_owned(),
        ),
        Error::Canceled => answer(
            grpc,
            StatusCode::SERVICE_UNAVAILABLE,
            14,
            "the server is shutting down".to_owned(),
        ),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Server<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ServerBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let arrived = Instant::now();
        let grpc = is_grpc(&req);
        let (ctx, handle) =
            match propagation::extract(req.headers(), &self.root, &self.accept, arrived) {
                Ok(pair) => pair,
                Err(e) => {
                    let resp = answer(grpc, StatusCode::BAD_REQUEST, 13, e.to_string());
                    return Box::pin(async move { Ok(resp) });
                }
            };
        if let Some(err) = ctx.err() {
            // Already expired on arrival (a zero budget), or the server is shutting down.
            return Box::pin(async move { Ok(answer_done(grpc, err)) });
        }
        req.extensions_mut().insert(ctx.clone());
        // The handler runs with the request's context current; the race follows the crate's one
        // fairness rule (`Context::run`).
        let call = ctx.run(self.inner.call(req));
        Box::pin(async move {
            match call.await {
                // The body keeps the request's context alive until it is sent or dropped.
                Ok(r) => r.map(|resp| resp.map(|b| ServerBody::inner(b, handle))),
                Err(err) => Ok(answer_done(grpc, err)),
            }
        })
    }
}

/// The response body of [`Server`]: the handler's, or a message of the layer's own. It holds the
/// request's [`CancelHandle`], so the request's context lives until the body is fully sent and is
/// cancelled if the body is dropped before (the client went away).
#[pin_project]
pub struct ServerBody<B> {
    #[pin]
    kind: BodyKind<B>,
    handle: Option<CancelHandle>,
}

#[pin_project(project = BodyKindProj)]
enum BodyKind<B> {
    Inner(#[pin] B),
    Message(Option<Bytes>),
}

impl<B> ServerBody<B> {
    fn inner(body: B, handle: CancelHandle) -> ServerBody<B> {
        ServerBody {
            kind: BodyKind::Inner(body),
            handle: Some(handle),
        }
    }

    fn message(bytes: Bytes, handle: Option<CancelHandle>) -> ServerBody<B> {
        ServerBody {
            kind: BodyKind::Message(Some(bytes).filter(|b| !b.is_empty())),
            handle,
        }
    }
}

impl<B> fmt::Debug for ServerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            BodyKind::Inner(_) => "Inner",
            BodyKind::Message(_) => "Message",
        };
        f.debug_struct("ServerBody").field("kind", &kind).finish()
    }
}

impl<B> Body for ServerBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = match this.kind.project() {
            BodyKindProj::Inner(b) => b.poll_frame(cx),
            BodyKindProj::Message(m) => Poll::Ready(m.take().map(|b| Ok(Frame::data(b)))),
        };
        if let Poll::Ready(None) = polled {
            // Fully sent: the request is over, cancel its context (and what runs under it).
            if let Some(h) = this.handle.take() {
                h.cancel();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner(b) => b.is_end_stream(),
            BodyKind::Message(m) => m.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner(b) => b.size_hint(),
            BodyKind::Message(m) => SizeHint::with_exact(m.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// The client side: sends the current context with each request. See the [module docs](self).
///
/// The context is the one in the request's extensions if there is one, else the context current
/// when `call` is made ([`Context::current`]): call it inside the request's scope, e.g.
/// `ctx.scope(async { client.call(req).await })` or `ctx.scope(client.oneshot(req))`.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use ctxkit::{Context, Error};
/// use ctxkit::tower::ClientLayer;
/// use http::{Request, Response};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let transport = tower::service_fn(|req: Request<()>| async move {
///     Ok::<_, Infallible>(Response::new(req.headers()["grpc-timeout"].clone()))
/// });
/// let mut client = ClientLayer::new().layer(transport);
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(3));
/// let resp = ctx.scope(async { client.call(Request::new(())).await }).await.unwrap();
/// assert_eq!(resp.body(), "3000000u");
///
/// tokio::time::advance(Duration::from_secs(4)).await;
/// let err = ctx.scope(async { client.call(Request::new(())).await }).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientLayer {
    _private: (),
}

impl ClientLayer {
    /// The layer.
    pub fn new() -> ClientLayer {
        ClientLayer { _private: () }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = Client<S>;
    fn layer(&self, inner: S) -> Client<S> {
        Client { inner }
    }
}

/// The service [`ClientLayer`] makes. Its errors are boxed: the transport's own, or the context's
/// [`Error`] (`err.downcast_ref::<ctxkit::Error>()`).
#[derive(Clone, Debug)]
pub struct Client<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Client<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = req
            .extensions()
            .get::<Context>()
            .cloned()
            .unwrap_or_else(Context::current);
        if let Some(err) = ctx.err() {
            return Box::pin(async move { Err(err.into()) });
        }
        propagation::inject(&ctx, req.headers_mut());
        // Dropping the call when the context is done aborts it (hyper resets the stream).
        let call = ctx.run(self.inner.call(req));
        Box::pin(async move {
            match call.await {
                Ok(r) => r.map_err(Into::into),
                Err(err) => Err(err.into()),
            }
        })
    }
}
