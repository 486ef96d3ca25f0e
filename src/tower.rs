//! Tower middleware carrying contexts across HTTP and gRPC calls (feature `tower`).
//!
//! - [`ServerLayer`]: every request runs under its own context, a child of the server's root
//!   context built by [`extract`](crate::propagation::extract) from the request's headers
//!   (deadline, trace, baggage, accepted travelling keys). The context is current while the
//!   handler's future runs and is in the request's extensions. It is cancelled when the request
//!   ends, when the client goes away (the server drops the future or the response body: the
//!   cause is then [`ClientWentAway`], already set when the handler's future is dropped), and
//!   when the root is cancelled (shutdown). A passed deadline is answered with HTTP 504 (gRPC
//!   status 4, `DEADLINE_EXCEEDED`), a shutdown with HTTP 503 (gRPC 14, `UNAVAILABLE`), a
//!   malformed header with HTTP 400 (gRPC 13, `INTERNAL`) naming it.
//! - [`ClientLayer`]: writes the current context into each request
//!   ([`inject`](crate::propagation::inject)), fails at once when the context is already done
//!   (sending nothing), and drops the call (so the connection resets the stream) when the
//!   context is done before the response arrives. A call that fails because its context ended
//!   fails with the context's error: for gRPC as a status a gRPC client reads like any server's
//!   (4 `DEADLINE_EXCEEDED`, 1 `CANCELLED`), for HTTP as a boxed [`Error`].
//!
//! With the `tracing` feature, each request runs in a `request` span and each call in a `call`
//! span (see `ctxkit::tracing`); with `opentelemetry`, the request span continues the caller's
//! trace and a call sends its own span as the next hop's parent (see `ctxkit::opentelemetry`).
//!
//! Both races (the handler against the request's context, the call against the caller's) follow
//! the crate's one fairness rule (see [`Context::run`]): a cancellation visible before a poll
//! wins, a poll that completes the future wins, otherwise both wait.
//!
//! # Who reports a passed deadline
//!
//! A call fails because its context ended whenever the context is done when the failure is seen,
//! even if something else noticed first: a transport's own timer set from the same
//! `grpc-timeout`, or the reset of a stream the layer dropped. The failure then carries the
//! context's error, never the transport's account of it (gRPC-Go does the same). So a handler
//! that passes a downstream failure on with `?` answers its own caller with status 4 once its
//! deadline has passed, and the status survives any number of hops.
//!
//! # With tonic
//!
//! tonic runs timers of its own, set from the same `grpc-timeout` header:
//!
//! - **`tonic::transport::Channel`** (client side) reads the `grpc-timeout` that
//!   [`ClientLayer`] writes and fails the call with its own `TimeoutExpired` when it passes, which
//!   tonic reports as `CANCELLED` "Timeout expired". The header holds the budget left when it was
//!   written, rounded up, and the channel's timer starts later, so it never fires before the
//!   context's deadline; `ClientLayer` sees the context done by then and reports
//!   `DEADLINE_EXCEEDED` instead. An `Endpoint::timeout` shorter than the context's budget is the
//!   channel's own limit: when it fires first, the call fails with tonic's `CANCELLED`, as it
//!   should (the context had time left).
//! - **`tonic::transport::Server`** runs its timer outside every layer, started when the request
//!   arrives, a moment before [`ServerLayer`] starts its own: when both are due in the same clock
//!   tick, tonic's may answer first, with `CANCELLED` "Timeout expired". To answer every passed
//!   deadline with `DEADLINE_EXCEEDED`, serve `tonic::service::Routes` behind `ServerLayer` with
//!   hyper (as `ctxkit`'s `grpc_deadline` and `grpc_client` examples do), where no other timer
//!   runs.
//!
//! Under axum, `ctxkit::axum::Ctx` (feature `axum`) extracts the request's context.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::SizeHint;
use pin_project::{pin_project, pinned_drop};
use tower_layer::Layer;
use tower_service::Service;

use crate::key::BoxError;
use crate::propagation::{self, Accept, PropagationError};
use crate::{CancelHandle, Context, Error, Instant, Run};

/// The `tracing` span of a request or a call (feature `tracing`); without the feature, a
/// stand-in that does nothing and takes no room.
#[cfg(feature = "tracing")]
use ::tracing::Span;

#[cfg(not(feature = "tracing"))]
#[derive(Clone, Debug)]
struct Span;

#[cfg(not(feature = "tracing"))]
impl Span {
    fn enter(&self) -> Entered {
        Entered
    }
    fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        f()
    }
}

#[cfg(not(feature = "tracing"))]
struct Entered;

fn no_span() -> Span {
    #[cfg(feature = "tracing")]
    return Span::none();
    #[cfg(not(feature = "tracing"))]
    Span
}

/// What `grpc-message` percent-encodes: everything but printable ASCII, and `%`.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// The gRPC status codes these layers answer with (gRPC's `statuscodes.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum GrpcCode {
    Cancelled = 1,
    DeadlineExceeded = 4,
    Internal = 13,
    Unavailable = 14,
}

impl GrpcCode {
    fn header_value(self) -> HeaderValue {
        HeaderValue::from(u16::from(self as u8))
    }
}

/// The cause of a request's context when the client went away before its answer was sent: the
/// server dropped the handler's future or the response body.
///
/// ```
/// use ctxkit::tower::ClientWentAway;
///
/// assert_eq!(ClientWentAway.to_string(), "the client went away");
/// // A handler's clean-up can tell it from other cancellations:
/// # let ctx = ctxkit::Context::background();
/// let client_left = ctx
///     .cause()
///     .is_some_and(|c| c.downcast_ref::<ClientWentAway>().is_some());
/// # assert!(!client_left);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientWentAway;

impl fmt::Display for ClientWentAway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client went away")
    }
}

impl std::error::Error for ClientWentAway {}

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
///     assert!(ctx.ptr_eq(&Context::current()));
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
    #[cfg(feature = "tracing")]
    spans: Arc<crate::tracing::RequestSpans>,
}

impl ServerLayer {
    /// Requests become children of `root` (cancel it to cancel every request in flight) and
    /// decode the travelling keys `accept` names.
    pub fn new(root: Context, accept: Accept) -> ServerLayer {
        ServerLayer {
            root,
            #[cfg(feature = "tracing")]
            spans: Arc::new(crate::tracing::RequestSpans::new(&accept)),
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
            #[cfg(feature = "tracing")]
            spans: self.spans.clone(),
        }
    }
}

/// The service [`ServerLayer`] makes.
#[derive(Clone, Debug)]
pub struct Server<S> {
    inner: S,
    root: Context,
    accept: Arc<Accept>,
    #[cfg(feature = "tracing")]
    spans: Arc<crate::tracing::RequestSpans>,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A gRPC trailers-only answer: HTTP 200 with the status in the headers and no body.
fn grpc_status<B>(code: GrpcCode, message: &str, body: B) -> Response<B> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", code.header_value());
    let encoded: String = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).collect();
    if let Ok(v) = HeaderValue::try_from(encoded) {
        h.insert("grpc-message", v);
    }
    resp
}

/// An answer of the server layer's own: HTTP `status` with `message` as text, or for gRPC a
/// trailers-only response with `code`.
fn answer<B>(
    grpc: bool,
    status: StatusCode,
    code: GrpcCode,
    message: String,
) -> Response<ServerBody<B>> {
    if grpc {
        return grpc_status(code, &message, ServerBody::message(Bytes::new()));
    }
    let mut resp = Response::new(ServerBody::message(Bytes::from(message)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn answer_done<B>(grpc: bool, err: Error) -> Response<ServerBody<B>> {
    match err {
        Error::DeadlineExceeded => answer(
            grpc,
            StatusCode::GATEWAY_TIMEOUT,
            GrpcCode::DeadlineExceeded,
            "deadline exceeded".to_owned(),
        ),
        Error::Canceled => answer(
            grpc,
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unavailable,
            "the server is shutting down".to_owned(),
        ),
    }
}

/// A response on its way out: its status recorded in `span` (a request's when `server`), which
/// its body then holds, so that the span ends when the answer is sent.
fn respond<B>(
    mut resp: Response<ServerBody<B>>,
    span: &Span,
    server: bool,
) -> Response<ServerBody<B>> {
    #[cfg(feature = "tracing")]
    crate::tracing::record_response(span, &resp, server);
    #[cfg(not(feature = "tracing"))]
    let _ = server;
    resp.body_mut().span = span.clone();
    resp
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Server<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ServerBody<ResBody>>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let arrived = Instant::now();
        let grpc = is_grpc(&req);
        #[cfg(feature = "tracing")]
        let span = self.spans.start(&req, grpc);
        #[cfg(not(feature = "tracing"))]
        let span = Span;
        // The live tree shows which request each context serves.
        #[cfg(feature = "live")]
        let root = &self
            .root
            .with_value::<crate::live::Request>(crate::live::RequestLine(format!(
                "{} {}",
                req.method(),
                req.uri().path()
            )));
        #[cfg(not(feature = "live"))]
        let root = &self.root;
        let (ctx, handle) = match propagation::extract(req.headers(), root, &self.accept, arrived) {
            Ok(pair) => pair,
            Err(e) => {
                let resp = answer(
                    grpc,
                    StatusCode::BAD_REQUEST,
                    GrpcCode::Internal,
                    e.to_string(),
                );
                return ServerFuture::answered(resp, grpc, span);
            }
        };
        // Before anything starts the span: its parent is the caller's span.
        #[cfg(feature = "opentelemetry")]
        let ctx = crate::opentelemetry::continue_trace(&span, req.headers(), ctx);
        #[cfg(feature = "tracing")]
        self.spans.record(&span, &ctx);
        if let Some(err) = ctx.err() {
            // Already expired on arrival (a zero budget), or the server is shutting down.
            return ServerFuture::answered(answer_done(grpc, err), grpc, span);
        }
        req.extensions_mut().insert(ctx.clone());
        // What the service does before its future is first polled is part of the request too.
        let handler = span.in_scope(|| self.inner.call(req));
        // The handler runs with the request's context current, raced against it.
        ServerFuture {
            run: Some(ctx.run(handler)),
            answer: None,
            handle: Some(handle),
            grpc,
            span,
        }
    }
}

/// The future of [`Server`]: the handler's, raced against the request's context.
///
/// Dropped before it is done (the client went away), it cancels the request's context with
/// [`ClientWentAway`] *before* it drops the handler's future, so the handler's `Drop` guards see
/// their context cancelled and why.
#[pin_project(PinnedDrop)]
#[must_use = "futures do nothing unless polled"]
pub struct ServerFuture<F: Future, B> {
    #[pin]
    run: Option<Run<F>>,
    answer: Option<Response<ServerBody<B>>>,
    handle: Option<CancelHandle>,
    grpc: bool,
    /// The request's span: entered while the handler is polled, then held by the body.
    span: Span,
}

impl<F: Future, B> ServerFuture<F, B> {
    fn answered(resp: Response<ServerBody<B>>, grpc: bool, span: Span) -> Self {
        ServerFuture {
            run: None,
            answer: Some(resp),
            handle: None,
            grpc,
            span,
        }
    }
}

impl<F, B, E> Future for ServerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ServerBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        if let Some(resp) = this.answer.take() {
            return Poll::Ready(Ok(respond(resp, this.span, true)));
        }
        let Some(run) = this.run.as_mut().as_pin_mut() else {
            panic!("a ServerFuture was polled after completion");
        };
        let out = ready!(run.poll(cx));
        this.run.set(None);
        let handle = this.handle.take();
        Poll::Ready(match out {
            // The body keeps the request's context alive until it is sent or dropped.
            Ok(Ok(resp)) => Ok(respond(
                resp.map(|b| ServerBody::inner(b, handle)),
                this.span,
                true,
            )),
            // The request is over: dropping the handle cancels its context.
            Ok(Err(e)) => {
                #[cfg(feature = "tracing")]
                this.span.record("otel.status_code", "error");
                Err(e)
            }
            Err(err) => Ok(respond(answer_done(*this.grpc, err), this.span, true)),
        })
    }
}

#[pinned_drop]
impl<F: Future, B> PinnedDrop for ServerFuture<F, B> {
    fn drop(self: Pin<&mut Self>) {
        // Still holding the handle: the answer was never produced, the server gave up on it.
        // Cancel first, so the handler's future (dropped after this) sees why; in the request's
        // span, where the cancellation is reported.
        let this = self.project();
        if let Some(handle) = this.handle.take() {
            let _entered = this.span.enter();
            handle.cancel_with(ClientWentAway);
        }
    }
}

impl<F: Future, B> fmt::Debug for ServerFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFuture")
            .field("running", &self.run.is_some())
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

/// The response body of [`Server`]: the handler's, or a message of the layer's own. It holds the
/// request's [`CancelHandle`], so the request's context lives until the body is fully sent, and
/// is cancelled with [`ClientWentAway`] if the body is dropped before.
#[pin_project(PinnedDrop)]
pub struct ServerBody<B> {
    #[pin]
    kind: BodyKind<B>,
    handle: Option<CancelHandle>,
    /// The request's span, which ends when the body does.
    span: Span,
}

#[pin_project(project = BodyKindProj, project_ref = BodyKindRef)]
enum BodyKind<B> {
    Inner(#[pin] B),
    Message(Option<Bytes>),
}

impl<B> ServerBody<B> {
    fn inner(body: B, handle: Option<CancelHandle>) -> ServerBody<B> {
        ServerBody {
            kind: BodyKind::Inner(body),
            handle,
            span: no_span(),
        }
    }

    fn message(bytes: Bytes) -> ServerBody<B> {
        ServerBody {
            kind: BodyKind::Message(Some(bytes).filter(|b| !b.is_empty())),
            handle: None,
            span: no_span(),
        }
    }
}

#[pinned_drop]
impl<B> PinnedDrop for ServerBody<B> {
    fn drop(self: Pin<&mut Self>) {
        // Still holding the handle: the body was dropped before its end was sent.
        let this = self.project();
        if let Some(handle) = this.handle.take() {
            let _entered = this.span.enter();
            handle.cancel_with(ClientWentAway);
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

impl<B> http_body::Body for ServerBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = match this.kind.as_mut().project() {
            BodyKindProj::Inner(b) => b.poll_frame(cx),
            BodyKindProj::Message(m) => {
                Poll::Ready(m.take().map(|b| Ok(http_body::Frame::data(b))))
            }
        };
        // Its last frame sent (a server need not poll again to see `None`), or failed: the
        // request is over; cancel its context (and what runs under it).
        let over = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => match this.kind.as_ref().project_ref() {
                BodyKindRef::Inner(b) => b.is_end_stream(),
                BodyKindRef::Message(m) => m.is_none(),
            },
            Poll::Pending => false,
        };
        if over && let Some(h) = this.handle.take() {
            let _entered = this.span.enter();
            h.cancel();
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
/// When the call fails because its context ended, an HTTP call fails with the context's
/// [`Error`] (`err.downcast_ref::<ctxkit::Error>()`), and a gRPC call (`content-type:
/// application/grpc`) is answered with a gRPC status any gRPC client reads like a server's: 4
/// `DEADLINE_EXCEEDED` or 1 `CANCELLED`. A context that cannot be written (see
/// [`inject`](crate::propagation::inject)) fails the call before anything is sent: HTTP with the
/// [`PropagationError`], gRPC with status 13 `INTERNAL` naming it.
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
/// // A transport that answers with the deadline it was sent.
/// let transport = tower::service_fn(|req: Request<()>| async move {
///     let sent = req.headers()["grpc-timeout"].clone();
///     Ok::<_, Infallible>(Response::builder().header("sent", sent).body(()).unwrap())
/// });
/// let mut client = ClientLayer::new().layer(transport);
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(3));
/// let resp = ctx.scope(async { client.call(Request::new(())).await }).await.unwrap();
/// assert_eq!(resp.headers()["sent"], "3000000u");
///
/// tokio::time::advance(Duration::from_secs(4)).await;
/// let err = ctx.scope(async { client.call(Request::new(())).await }).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
///
/// // The same over gRPC: a status, as a server would send it.
/// let grpc = Request::builder().header("content-type", "application/grpc").body(()).unwrap();
/// let resp = ctx.scope(async { client.call(grpc).await }).await.unwrap();
/// assert_eq!(resp.headers()["grpc-status"], "4");
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

/// The service [`ClientLayer`] makes. Its errors are boxed: the transport's own, the context's
/// [`Error`] (`err.downcast_ref::<ctxkit::Error>()`) or a [`PropagationError`].
#[derive(Clone, Debug)]
pub struct Client<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Client<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ClientBody<ResBody>>;
    type Error = BoxError;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let ctx = req
            .extensions()
            .get::<Context>()
            .cloned()
            .unwrap_or_else(Context::current);
        let grpc = is_grpc(&req);
        #[cfg(feature = "tracing")]
        let span = crate::tracing::call_span(&req, grpc);
        #[cfg(not(feature = "tracing"))]
        let span = Span;
        if let Some(err) = ctx.err() {
            return ClientFuture::failed(Failure::Ended(err, ctx), grpc, span);
        }
        // In the call's span: the next hop's parent is the call (with `opentelemetry`).
        if let Err(e) = span.in_scope(|| propagation::inject(&ctx, req.headers_mut())) {
            return ClientFuture::failed(Failure::Propagation(e), grpc, span);
        }
        let call = span.in_scope(|| self.inner.call(req));
        // Dropping the call when the context is done aborts it (hyper resets the stream).
        ClientFuture {
            run: Some(ctx.run(call)),
            ctx,
            failed: None,
            grpc,
            span,
        }
    }
}

/// Why a [`Client`] call failed on its own.
enum Failure {
    /// The call's context ended (before, during, or as the transport failed).
    Ended(Error, Context),
    /// The context could not be written into the request.
    Propagation(PropagationError),
}

impl Failure {
    fn into_result<B>(self, grpc: bool) -> Result<Response<ClientBody<B>>, BoxError> {
        match (self, grpc) {
            (Failure::Ended(err, ctx), true) => {
                let code = match err {
                    Error::DeadlineExceeded => GrpcCode::DeadlineExceeded,
                    Error::Canceled => GrpcCode::Cancelled,
                };
                Ok(grpc_status(
                    code,
                    &ended_message(err, &ctx),
                    ClientBody::empty(),
                ))
            }
            (Failure::Ended(err, _), false) => Err(Box::new(err)),
            (Failure::Propagation(e), true) => Ok(grpc_status(
                GrpcCode::Internal,
                &e.to_string(),
                ClientBody::empty(),
            )),
            (Failure::Propagation(e), false) => Err(Box::new(e)),
        }
    }
}

/// The context's error, and its cause when that says more ("context canceled: the client went
/// away").
fn ended_message(err: Error, ctx: &Context) -> String {
    let text = err.to_string();
    match ctx.cause().map(|c| c.to_string()) {
        Some(cause) if cause != text => format!("{text}: {cause}"),
        _ => text,
    }
}

/// The future of [`Client`]: the transport's call, raced against the call's context.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ClientFuture<F: Future> {
    #[pin]
    run: Option<Run<F>>,
    ctx: Context,
    failed: Option<Failure>,
    grpc: bool,
    /// The call's span, entered while the transport's future is polled.
    span: Span,
}

impl<F: Future> ClientFuture<F> {
    fn failed(failure: Failure, grpc: bool, span: Span) -> Self {
        ClientFuture {
            run: None,
            ctx: Context::background(),
            failed: Some(failure),
            grpc,
            span,
        }
    }
}

impl<F, B, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ClientBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        if let Some(failure) = this.failed.take() {
            return Poll::Ready(called(failure.into_result(*this.grpc), this.span));
        }
        let Some(run) = this.run.as_mut().as_pin_mut() else {
            panic!("a ClientFuture was polled after completion");
        };
        let out = ready!(run.poll(cx));
        this.run.set(None);
        let failure = match out {
            Ok(Ok(resp)) => return Poll::Ready(called(Ok(resp.map(ClientBody::inner)), this.span)),
            // A failure seen once the context has ended is the context's, whoever noticed
            // first (a transport timer set from our own `grpc-timeout`, a reset stream).
            // `err()` also reads a deadline whose timer has not run yet.
            Ok(Err(e)) => match this.ctx.err() {
                Some(err) => Failure::Ended(err, this.ctx.clone()),
                None => return Poll::Ready(called(Err(e.into()), this.span)),
            },
            Err(err) => Failure::Ended(err, this.ctx.clone()),
        };
        Poll::Ready(called(failure.into_result(*this.grpc), this.span))
    }
}

impl<F: Future> fmt::Debug for ClientFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFuture")
            .field("ctx", &self.ctx)
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

/// A call's outcome, recorded in its span.
fn called<B>(
    out: Result<Response<ClientBody<B>>, BoxError>,
    span: &Span,
) -> Result<Response<ClientBody<B>>, BoxError> {
    #[cfg(feature = "tracing")]
    match &out {
        Ok(resp) => crate::tracing::record_response(span, resp, false),
        Err(_) => {
            span.record("otel.status_code", "error");
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = span;
    out
}

/// The response body of [`Client`]: the transport's, or none for a gRPC status of the layer's
/// own (a trailers-only response).
#[pin_project]
pub struct ClientBody<B> {
    #[pin]
    inner: Option<B>,
}

impl<B> ClientBody<B> {
    fn inner(body: B) -> ClientBody<B> {
        ClientBody { inner: Some(body) }
    }

    fn empty() -> ClientBody<B> {
        ClientBody { inner: None }
    }

    /// The transport's body; `None` for a status of the layer's own.
    pub fn into_inner(self) -> Option<B> {
        self.inner
    }
}

impl<B> fmt::Debug for ClientBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBody")
            .field("transport", &self.inner.is_some())
            .finish()
    }
}

impl<B: http_body::Body> http_body::Body for ClientBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        match self.project().inner.as_pin_mut() {
            Some(b) => b.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}
