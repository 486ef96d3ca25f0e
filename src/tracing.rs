//! [`tracing`](https://docs.rs/tracing) integration (feature `tracing`).
//!
//! With the feature on, and nothing else to write at call sites:
//!
//! - **Spans follow the context.** [`ctxkit::spawn`](crate::spawn), [`TaskSet`](crate::TaskSet)
//!   and [`ctxkit::spawn_blocking`](crate::spawn_blocking) carry the current span into the task
//!   or closure along with the current context, so what it logs stays inside the request's span.
//! - **Each request has a span.** [`ServerLayer`](crate::tower::ServerLayer) (feature `tower`)
//!   runs every request in a span named `request` (target `ctxkit::tower`, level `INFO`), with
//!   the fields OpenTelemetry's conventions name (`otel.name`, `otel.kind`,
//!   `http.request.method`, `url.path`, `http.response.status_code`, and `rpc.*` for gRPC), the
//!   request's `trace_id`, and the value of every accepted travelling key marked `record`
//!   (`#[context_key(header = "x-request-id", record)]`, in a field named after the header, or
//!   `record = "request_id"`). Every event inside the request then shows them.
//!   [`ClientLayer`](crate::tower::ClientLayer) makes each outgoing call a span named `call`
//!   (`otel.kind = "client"`).
//! - **Each cancellation is an event** named [`CANCELLED`] (target `ctxkit::cancel`), in the span
//!   current where the cancellation happens, with the fields [`KIND`] (a [`CancelKind`]),
//!   [`CAUSE`] (the cause's text) and [`ORIGIN`] (the `file:line` the cancellation came from: the
//!   `cancel()` call, the dropped handle's creation, the deadline's setting). Level `INFO`, but
//!   `DEBUG` for the routine kinds, `explicit` and `parent`.
//! - **A lost context is a warning**: a lookup that finds no current context (see
//!   [`missing`](crate::missing)) is also a `WARN` event of target `ctxkit::missing`, in release
//!   builds too, when a subscriber listens.
//!
//! Recording a key is opt-in because its value then shows in every log line of the request:
//! leave out what must not be logged.
//!
//! ```
//! use ctxkit::{Context, ContextKey};
//!
//! /// The request id every log line of a request should show.
//! #[derive(ContextKey)]
//! #[context_key(value = String, header = "x-request-id", record = "request_id")]
//! struct RequestId;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Behind `ServerLayer::new(root, Accept::new().key::<RequestId>())`, each request's span
//! // carries `request_id`. And a task started with ctxkit::spawn logs inside the caller's span:
//! let span = tracing::info_span!("job", id = 7);
//! let (ctx, _cancel) = Context::background().with_cancel();
//! let inner = ctx
//!     .scope(async { ctxkit::spawn(async { tracing::Span::current() }).await.unwrap() })
//!     .instrument(span.clone())
//!     .await;
//! assert_eq!(inner.id(), span.id());
//! # }
//! # use tracing::Instrument;
//! ```

use std::fmt;
use std::panic::Location;
#[cfg(feature = "tower")]
use std::sync::atomic::{AtomicU8, Ordering};
#[cfg(feature = "tower")]
use std::sync::{Mutex, OnceLock, PoisonError};

use ::tracing::Level;
use ::tracing::field;
#[cfg(feature = "tower")]
use ::tracing::field::{FieldSet, Value};
#[cfg(feature = "tower")]
use ::tracing::{Metadata, Span};
#[cfg(feature = "tower")]
use tracing_core::callsite::{self, Callsite};
#[cfg(feature = "tower")]
use tracing_core::subscriber::Interest;

use crate::observe::Reached;
use crate::{Cause, Context, Error};

/// The name (and message) of the event each cancellation emits.
pub const CANCELLED: &str = "ctxkit.context.cancelled";
/// The event's field holding the [`CancelKind`], as [`CancelKind::as_str`] spells it.
pub const KIND: &str = "ctxkit.cancel.kind";
/// The event's field holding the cause's text (`ctx.cause()`'s `Display`).
pub const CAUSE: &str = "ctxkit.cancel.cause";
/// The event's field holding where the cancellation came from, as `file:line`.
pub const ORIGIN: &str = "ctxkit.cancel.origin";

/// Why a context was cancelled, in the few words a dashboard groups by: the [`KIND`] field of the
/// cancellation event and the attribute of the cancellation counter.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::Context;
/// use ctxkit::tracing::CancelKind;
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::ZERO);
/// assert_eq!(CancelKind::of(&ctx), Some(CancelKind::DeadlineExceeded));
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// assert_eq!(CancelKind::of(&ctx), None); // still live
/// cancel.cancel();
/// assert_eq!(CancelKind::of(&ctx).map(|k| k.as_str()), Some("explicit"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelKind {
    /// A deadline passed (`Error::DeadlineExceeded`, whatever the deadline's own cause).
    DeadlineExceeded,
    /// The client went away before its answer was sent
    /// ([`ClientWentAway`](crate::tower::ClientWentAway)).
    ClientWentAway,
    /// A task of a [`Group`](crate::Group) failed ([`TaskFailed`](crate::TaskFailed)).
    GroupTaskFailed,
    /// A signal arrived (`ctxkit::signal::SignalReceived`).
    Signal,
    /// A [`Shutdown`](crate::Shutdown) began or its grace period ran out
    /// ([`ShutdownRequested`](crate::ShutdownRequested), [`GraceExpired`](crate::GraceExpired)).
    Shutdown,
    /// A bridged `tokio_util` `CancellationToken` was cancelled (`ctxkit::TokenCancelled`).
    Token,
    /// A [`CancelHandle`](crate::CancelHandle) was used or dropped, with any other cause: the
    /// code decided.
    Explicit,
    /// An ancestor's cancellation reached the context: reported for a context whose own report
    /// matters, with the ancestor's cause and origin. [`CancelKind::of`] never says this: a
    /// context's cause is its ancestor's, so it is classified by it.
    Parent,
}

impl CancelKind {
    /// The kind of `ctx`'s cancellation, classified by its error and cause; `None` while it is
    /// live.
    pub fn of(ctx: &Context) -> Option<CancelKind> {
        let err = ctx.err()?;
        Some(match ctx.cause() {
            Some(cause) => CancelKind::classify(err, &cause),
            None => CancelKind::Explicit,
        })
    }

    pub(crate) fn classify(err: Error, cause: &Cause) -> CancelKind {
        if err == Error::DeadlineExceeded {
            return CancelKind::DeadlineExceeded;
        }
        #[cfg(feature = "tower")]
        if cause.is::<crate::tower::ClientWentAway>() {
            return CancelKind::ClientWentAway;
        }
        if cause.is::<crate::TaskFailed>() {
            return CancelKind::GroupTaskFailed;
        }
        #[cfg(all(feature = "signal", not(loom)))]
        if cause.is::<crate::signal::SignalReceived>() {
            return CancelKind::Signal;
        }
        #[cfg(not(loom))]
        if cause.is::<crate::ShutdownRequested>() || cause.is::<crate::GraceExpired>() {
            return CancelKind::Shutdown;
        }
        #[cfg(feature = "tokio-util")]
        if cause.is::<crate::TokenCancelled>() {
            return CancelKind::Token;
        }
        CancelKind::Explicit
    }

    /// The kind as the event and the counter spell it: `deadline_exceeded`, `client_went_away`,
    /// `group_task_failed`, `signal`, `shutdown`, `token`, `explicit`, `parent`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelKind::DeadlineExceeded => "deadline_exceeded",
            CancelKind::ClientWentAway => "client_went_away",
            CancelKind::GroupTaskFailed => "group_task_failed",
            CancelKind::Signal => "signal",
            CancelKind::Shutdown => "shutdown",
            CancelKind::Token => "token",
            CancelKind::Explicit => "explicit",
            CancelKind::Parent => "parent",
        }
    }

    /// Kinds that end most contexts in a healthy service (a handle dropped after use): logged
    /// at `DEBUG`, so that `INFO` shows what interrupted work.
    fn is_routine(self) -> bool {
        matches!(self, CancelKind::Explicit | CancelKind::Parent)
    }
}

impl fmt::Display for CancelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code location as `file:line`, formatted only if an event is recorded.
struct Site(&'static Location<'static>);

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.file(), self.0.line())
    }
}

/// The cancellation event (and, with `opentelemetry`, the counter): see [`crate::observe`].
pub(crate) fn cancelled(err: Error, cause: &Cause, reached: Reached) {
    let kind = match reached {
        Reached::Here => CancelKind::classify(err, cause),
        Reached::FromParent => CancelKind::Parent,
    };
    // One callsite per level: a callsite's level is fixed.
    macro_rules! event {
        ($level:expr) => {
            ::tracing::event!(
                name: "ctxkit.context.cancelled",
                target: "ctxkit::cancel",
                $level,
                ctxkit.cancel.kind = kind.as_str(),
                ctxkit.cancel.cause = %cause,
                ctxkit.cancel.origin = cause.origin_location().map(|l| field::display(Site(l))),
                ctxkit.cancel.error = %err,
                "ctxkit.context.cancelled"
            )
        };
    }
    if kind.is_routine() {
        event!(Level::DEBUG);
    } else {
        event!(Level::INFO);
    }
    #[cfg(feature = "opentelemetry")]
    if reached == Reached::Here {
        crate::opentelemetry::count_cancellation(kind);
    }
}

/// The `WARN` event of a lookup that found no current context; `false` when no subscriber
/// listens for it (the caller then falls back to standard error).
pub(crate) fn missing_context(missing: &crate::missing::MissingContext) -> bool {
    if !::tracing::enabled!(target: "ctxkit::missing", Level::WARN) {
        return false;
    }
    ::tracing::event!(
        target: "ctxkit::missing",
        Level::WARN,
        ctxkit.missing.location = %missing.location(),
        ctxkit.missing.function = missing.function(),
        "{missing}"
    );
    true
}

// ---------------------------------------------------------------------------------------------
// The request span of `ServerLayer`.

/// The request span's own fields, which a recorded key may not use (the derive refuses them).
pub const REQUEST_SPAN_FIELDS: [&str; 11] = [
    "otel.name",
    "otel.kind",
    "http.request.method",
    "url.path",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "trace_id",
    "http.response.status_code",
    "rpc.grpc.status_code",
    "otel.status_code",
];

/// Whether `field` is one of the request span's own fields (a recorded key may not use one).
#[cfg_attr(not(feature = "propagation"), allow(dead_code))]
pub(crate) const fn is_request_field(field: &str) -> bool {
    let mut i = 0;
    while i < REQUEST_SPAN_FIELDS.len() {
        if const_eq(REQUEST_SPAN_FIELDS[i].as_bytes(), field.as_bytes()) {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg_attr(not(feature = "propagation"), allow(dead_code))]
const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(feature = "tower")]
/// A span callsite whose fields are known only at run time: the request span's fields depend on
/// which keys the server records. `tracing`'s macros make one static callsite per place in the
/// code; this is one such callsite per set of fields, made once and kept (there are as many as
/// distinct sets of recorded keys, a handful per process).
struct Shape {
    meta: OnceLock<Metadata<'static>>,
    interest: AtomicU8,
}

#[cfg(feature = "tower")]
const INTEREST_NEVER: u8 = 0;
#[cfg(feature = "tower")]
const INTEREST_SOMETIMES: u8 = 1;
#[cfg(feature = "tower")]
const INTEREST_ALWAYS: u8 = 2;

#[cfg(feature = "tower")]
impl Callsite for Shape {
    fn set_interest(&self, interest: Interest) {
        let v = if interest.is_never() {
            INTEREST_NEVER
        } else if interest.is_always() {
            INTEREST_ALWAYS
        } else {
            INTEREST_SOMETIMES
        };
        self.interest.store(v, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        // Set before the callsite is registered, which is before anyone can ask.
        self.meta
            .get()
            .expect("a span shape's metadata is set at creation")
    }
}

#[cfg(feature = "tower")]
impl Shape {
    /// The shape with exactly `names` as fields, made on first use.
    fn get(names: Vec<&'static str>) -> &'static Shape {
        static SHAPES: Mutex<Vec<&'static Shape>> = Mutex::new(Vec::new());
        let mut shapes = SHAPES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = shapes.iter().find(|s| {
            s.metadata()
                .fields()
                .iter()
                .map(|f| f.name())
                .eq(names.iter().copied())
        }) {
            return found;
        }
        let names: &'static [&'static str] = Vec::leak(names);
        let shape: &'static Shape = Box::leak(Box::new(Shape {
            meta: OnceLock::new(),
            interest: AtomicU8::new(INTEREST_SOMETIMES),
        }));
        let fields = FieldSet::new(names, tracing_core::identify_callsite!(shape));
        let meta = Metadata::new(
            "request",
            "ctxkit::tower",
            Level::INFO,
            Some(file!()),
            Some(line!()),
            Some(module_path!()),
            fields,
            tracing_core::metadata::Kind::SPAN,
        );
        let _ = shape.meta.set(meta);
        callsite::register(shape);
        shapes.push(shape);
        shape
    }

    fn meta(&'static self) -> &'static Metadata<'static> {
        self.meta
            .get()
            .expect("a span shape's metadata is set at creation")
    }

    /// Whether a span of this shape would be recorded now (what `tracing`'s macros check).
    fn enabled(&'static self) -> bool {
        if ::tracing::level_filters::LevelFilter::current() < Level::INFO {
            return false;
        }
        match self.interest.load(Ordering::Relaxed) {
            INTEREST_NEVER => false,
            INTEREST_ALWAYS => true,
            _ => ::tracing::dispatcher::get_default(|d| d.enabled(self.meta())),
        }
    }
}

/// What [`ServerLayer`](crate::tower::ServerLayer) needs to make its request spans: their shape
/// and the keys recorded in them.
#[cfg(feature = "tower")]
pub(crate) struct RequestSpans {
    shape: &'static Shape,
    keys: Vec<crate::propagation::RecordedKey>,
}

#[cfg(feature = "tower")]
impl RequestSpans {
    pub(crate) fn new(accept: &crate::propagation::Accept) -> RequestSpans {
        let keys: Vec<_> = accept.recorded().collect();
        let names = REQUEST_SPAN_FIELDS
            .iter()
            .copied()
            .chain(keys.iter().map(|(field, _)| *field))
            .collect();
        RequestSpans {
            shape: Shape::get(names),
            keys,
        }
    }

    /// A new request span (not entered), or a disabled one when no subscriber wants it.
    pub(crate) fn start<B>(&self, req: &http::Request<B>, grpc: bool) -> Span {
        if !self.shape.enabled() {
            return Span::none();
        }
        let meta = self.shape.meta();
        let fields = meta.fields();
        let f = |name| {
            fields
                .field(name)
                .expect("one of the request span's own fields")
        };
        let method = req.method().as_str();
        let path = req.uri().path();
        let (otel_name, rpc) = match grpc.then(|| grpc_names(path)).flatten() {
            Some((service, rpc_method)) => (
                path.trim_start_matches('/').to_owned(),
                Some((service, rpc_method)),
            ),
            None => (method.to_owned(), None),
        };
        let (service, rpc_method) = rpc.unwrap_or_default();
        let (name, kind, http_method, url_path, system, svc, rpc_m) = (
            f("otel.name"),
            f("otel.kind"),
            f("http.request.method"),
            f("url.path"),
            f("rpc.system"),
            f("rpc.service"),
            f("rpc.method"),
        );
        let values: [(&field::Field, Option<&dyn Value>); 7] = [
            (&name, Some(&otel_name.as_str())),
            (&kind, Some(&"server")),
            (&http_method, Some(&method)),
            (&url_path, Some(&path)),
            (&system, rpc.map(|_| &"grpc" as &dyn Value)),
            (&svc, rpc.map(|_| &service as &dyn Value)),
            (&rpc_m, rpc.map(|_| &rpc_method as &dyn Value)),
        ];
        Span::new(meta, &fields.value_set(&values))
    }

    /// Records the request's trace id and recorded keys, read from its context.
    pub(crate) fn record(&self, span: &Span, ctx: &Context) {
        if span.is_disabled() {
            return;
        }
        if let Some(trace) = ctx.value::<crate::propagation::TraceContext>() {
            span.record("trace_id", trace.trace_id_hex());
        }
        for (field, text) in &self.keys {
            if let Some(text) = text(ctx) {
                span.record(*field, text);
            }
        }
    }
}

#[cfg(feature = "tower")]
impl fmt::Debug for RequestSpans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSpans")
            .field(
                "recorded",
                &self.keys.iter().map(|(f, _)| f).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A gRPC path's service and method: `/pkg.Service/Method`.
#[cfg(feature = "tower")]
fn grpc_names(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix('/')?.split_once('/')
}

/// The span of a call [`ClientLayer`](crate::tower::ClientLayer) makes (not entered).
#[cfg(feature = "tower")]
pub(crate) fn call_span<B>(req: &http::Request<B>, grpc: bool) -> Span {
    let method = req.method().as_str();
    let uri = req.uri();
    let span = ::tracing::info_span!(
        target: "ctxkit::tower",
        "call",
        otel.name = field::Empty,
        otel.kind = "client",
        http.request.method = method,
        url.full = %uri,
        server.address = uri.host(),
        server.port = uri.port_u16(),
        rpc.system = field::Empty,
        rpc.service = field::Empty,
        rpc.method = field::Empty,
        http.response.status_code = field::Empty,
        rpc.grpc.status_code = field::Empty,
        otel.status_code = field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    match grpc.then(|| grpc_names(uri.path())).flatten() {
        Some((service, rpc_method)) => {
            span.record("otel.name", uri.path().trim_start_matches('/'));
            span.record("rpc.system", "grpc");
            span.record("rpc.service", service);
            span.record("rpc.method", rpc_method);
        }
        None => {
            span.record("otel.name", method);
        }
    }
    span
}

/// Records a response's status on a request or call span: the HTTP status, a gRPC status in the
/// headers (a trailers-only answer), and an error status for 5xx or a failing gRPC code.
#[cfg(feature = "tower")]
pub(crate) fn record_response<B>(span: &Span, resp: &http::Response<B>, server: bool) {
    if span.is_disabled() {
        return;
    }
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    let grpc = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    if let Some(code) = grpc {
        span.record("rpc.grpc.status_code", code);
    }
    // OpenTelemetry's conventions: a server span fails on 5xx, a client span on 4xx too.
    let failed = if server {
        status.is_server_error()
    } else {
        status.is_client_error() || status.is_server_error()
    };
    if failed || grpc.is_some_and(|c| c != 0) {
        span.record("otel.status_code", "error");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    use super::*;
    use crate::observe::{self, Reached};

    /// One recorded event: its name, level, target, fields as text, and the span it was in.
    #[derive(Debug, Clone)]
    struct Seen {
        name: &'static str,
        level: Level,
        target: String,
        fields: BTreeMap<String, String>,
        span: Option<String>,
    }

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl field::Visit for Fields<'_> {
        fn record_str(&mut self, f: &field::Field, value: &str) {
            self.0.insert(f.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, f: &field::Field, value: &dyn fmt::Debug) {
            self.0.insert(f.name().to_owned(), format!("{value:?}"));
        }
    }

    /// A layer that keeps every event.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Seen>>>);

    impl<S: ::tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Collect {
        fn on_event(&self, event: &::tracing::Event<'_>, ctx: LayerContext<'_, S>) {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            let meta = event.metadata();
            self.0.lock().unwrap().push(Seen {
                name: meta.name(),
                level: *meta.level(),
                target: meta.target().to_owned(),
                fields,
                span: ctx.event_span(event).map(|s| s.name().to_owned()),
            });
        }
    }

    impl Collect {
        fn take(&self) -> Vec<Seen> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    /// Reports `ctx`'s cancellation as the walk does, under a collecting subscriber.
    fn report(ctx: &Context, reached: Reached) -> Vec<Seen> {
        let collect = Collect::default();
        let subscriber = tracing_subscriber::registry().with(collect.clone());
        ::tracing::subscriber::with_default(subscriber, || {
            observe::cancelled(ctx.err().unwrap(), &ctx.cause().unwrap(), reached);
        });
        collect.take()
    }

    fn here(line: u32) -> String {
        format!("{}:{line}", file!())
    }

    #[test]
    fn a_cancellation_is_one_event_with_its_kind_cause_and_origin() {
        let (ctx, cancel) = Context::background().with_cancel();
        let line = line!() + 1;
        cancel.cancel_with(std::io::Error::other("upstream closed"));
        let seen = report(&ctx, Reached::Here);
        assert_eq!(seen.len(), 1, "{seen:?}");
        let e = &seen[0];
        assert_eq!(e.name, CANCELLED);
        assert_eq!(e.target, "ctxkit::cancel");
        assert_eq!(e.fields[KIND], "explicit");
        assert_eq!(e.fields[CAUSE], "upstream closed");
        assert_eq!(e.fields[ORIGIN], here(line));
        assert_eq!(e.fields["ctxkit.cancel.error"], "context canceled");
        assert_eq!(e.fields["message"], CANCELLED);
    }

    #[test]
    fn a_deadline_is_reported_at_info_with_where_it_was_set() {
        let line = line!() + 1;
        let (ctx, _cancel) = Context::background().with_timeout(std::time::Duration::ZERO);
        let seen = report(&ctx, Reached::Here);
        assert_eq!(seen[0].fields[KIND], "deadline_exceeded");
        assert_eq!(seen[0].fields[ORIGIN], here(line));
        assert_eq!(seen[0].fields[CAUSE], "context deadline exceeded");
        assert_eq!(seen[0].level, Level::INFO);
    }

    #[test]
    fn a_dropped_handle_is_explicit_at_debug_with_where_the_handle_was_made() {
        let line = line!() + 1;
        let (ctx, cancel) = Context::background().with_cancel();
        let _watch = ctx.done(); // observed: the drop is a real cancellation
        drop(cancel);
        let seen = report(&ctx, Reached::Here);
        assert_eq!(seen[0].fields[KIND], "explicit");
        assert_eq!(seen[0].fields[ORIGIN], here(line));
        assert_eq!(seen[0].level, Level::DEBUG);
    }

    #[test]
    fn a_context_reached_by_its_parents_cancellation_is_reported_as_parent() {
        let (parent, cancel) = Context::background().with_cancel();
        let (child, _child_cancel) = parent.with_cancel();
        let line = line!() + 1;
        cancel.cancel();
        let seen = report(&child, Reached::FromParent);
        assert_eq!(seen[0].fields[KIND], "parent");
        assert_eq!(seen[0].fields[ORIGIN], here(line));
        assert_eq!(seen[0].level, Level::DEBUG);
    }

    #[test]
    fn every_kind_is_told_by_its_cause() {
        fn kind_of(cause: impl Into<Cause>) -> CancelKind {
            let (ctx, cancel) = Context::background().with_cancel();
            cancel.cancel_with(cause);
            CancelKind::of(&ctx).unwrap()
        }
        assert_eq!(
            kind_of(crate::tower::ClientWentAway),
            CancelKind::ClientWentAway
        );
        assert_eq!(
            kind_of(crate::signal::SignalReceived(
                crate::signal::Signal::Terminate
            )),
            CancelKind::Signal
        );
        assert_eq!(kind_of(crate::ShutdownRequested), CancelKind::Shutdown);
        assert_eq!(kind_of(crate::TokenCancelled), CancelKind::Token);
        assert_eq!(kind_of(std::io::Error::other("x")), CancelKind::Explicit);
        assert_eq!(kind_of(Error::Canceled), CancelKind::Explicit);

        // A deadline with a cause of its own is still a deadline.
        let (ctx, _cancel) = Context::background()
            .with_timeout_cause(std::time::Duration::ZERO, std::io::Error::other("slow"));
        assert_eq!(CancelKind::of(&ctx), Some(CancelKind::DeadlineExceeded));
        // A descendant is classified by the cause it inherited.
        let (parent, cancel) = Context::background().with_cancel();
        let (child, _c) = parent.with_cancel();
        cancel.cancel_with(crate::tower::ClientWentAway);
        assert_eq!(CancelKind::of(&child), Some(CancelKind::ClientWentAway));
    }

    #[tokio::test]
    async fn a_failed_group_task_is_group_task_failed() {
        let group: crate::Group<std::io::Error> = crate::Group::new(&Context::background());
        let ctx = group.context().clone();
        group
            .spawn(async { Err(std::io::Error::other("boom")) })
            .await;
        assert!(group.wait().await.is_err());
        assert_eq!(CancelKind::of(&ctx), Some(CancelKind::GroupTaskFailed));
        let seen = report(&ctx, Reached::Here);
        assert_eq!(seen[0].fields[KIND], "group_task_failed");
    }

    #[test]
    fn the_event_is_in_the_span_current_where_the_cancellation_happens() {
        let (ctx, cancel) = Context::background().with_cancel();
        cancel.cancel();
        let collect = Collect::default();
        let subscriber = tracing_subscriber::registry().with(collect.clone());
        ::tracing::subscriber::with_default(subscriber, || {
            let _request = ::tracing::info_span!("request").entered();
            observe::cancelled(ctx.err().unwrap(), &ctx.cause().unwrap(), Reached::Here);
        });
        assert_eq!(collect.take()[0].span.as_deref(), Some("request"));
    }

    #[test]
    fn nothing_is_formatted_when_no_subscriber_listens() {
        /// A cause whose text must not be asked for.
        #[derive(Debug)]
        struct Loud;
        impl fmt::Display for Loud {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                panic!("formatted although nobody listens")
            }
        }
        impl std::error::Error for Loud {}
        let (ctx, cancel) = Context::background().with_cancel();
        cancel.cancel_with(Loud);
        observe::cancelled(ctx.err().unwrap(), &ctx.cause().unwrap(), Reached::Here);
    }
}
