//! Contexts across processes: the wire formats of deadlines, trace context, baggage and
//! travelling keys on the [`http`] crate's headers, with no I/O of their own (feature `http`).
//!
//! A client calls [`inject`] to write its context into a request's headers; a server calls
//! [`extract`] to build the request's context from them:
//!
//! | what | header | format |
//! | --- | --- | --- |
//! | deadline | `grpc-timeout` | the budget left at send time ([`GrpcTimeout`]) |
//! | trace | `traceparent`, `tracestate` | W3C Trace Context ([`TraceParent`], [`TraceState`], stored as [`TraceContext`]) |
//! | baggage | `baggage` | W3C Baggage ([`Baggage`]) |
//! | travelling keys | the key's [`ContextKey::HEADER`] | the key's text codec; decoded only if [`Accept`]ed |
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderMap;
//! use ctxkit::{BoxError, Context, ContextKey, DisplayFromStr, Instant, KeyCodec};
//! use ctxkit::propagation::{self, Accept, TraceContext};
//!
//! struct RequestId;
//! impl ContextKey for RequestId {
//!     type Value = u64;
//!     const HEADER: Option<&'static str> = Some("x-request-id");
//!     fn encode(v: &u64) -> Option<String> { Some(DisplayFromStr::encode(v)) }
//!     fn decode(s: &str) -> Result<u64, BoxError> { DisplayFromStr::decode(s) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // The client: a request with a 2 s budget, a trace and a request id.
//! let (client, _cancel) = Context::background()
//!     .with_value::<TraceContext>(TraceContext::new_root())
//!     .with_value::<RequestId>(42)
//!     .with_timeout(Duration::from_secs(2));
//! let mut headers = HeaderMap::new();
//! propagation::inject(&client, &mut headers);
//! assert_eq!(headers["grpc-timeout"], "2000000u");
//! assert_eq!(headers["x-request-id"], "42");
//!
//! // The server: the request's context is a child of the server's root.
//! let server_root = Context::background();
//! let accept = Accept::new().key::<RequestId>();
//! let arrived = Instant::now();
//! let (request, _done) = propagation::extract(&headers, &server_root, &accept, arrived).unwrap();
//! assert_eq!(request.deadline(), Some(arrived + Duration::from_secs(2)));
//! assert_eq!(request.value::<RequestId>(), Some(&42));
//! let trace = request.value::<TraceContext>().unwrap();
//! assert_eq!(trace.trace_id(), client.value::<TraceContext>().unwrap().trace_id());
//! # }
//! ```

mod baggage;
mod grpc_timeout;
mod traceparent;
mod tracestate;

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use baggage::{Baggage, BaggageMember, BaggageProperty};
pub use grpc_timeout::GrpcTimeout;
pub use traceparent::{TraceContext, TraceParent};
pub use tracestate::TraceState;

use crate::key::BoxError;
use crate::node::Kind;
use crate::{CancelHandle, Context, ContextKey, Instant};

/// The header of a deadline: gRPC's `grpc-timeout`.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The W3C Trace Context `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C Trace Context `tracestate` header.
pub const TRACESTATE: &str = "tracestate";
/// The W3C Baggage `baggage` header.
pub const BAGGAGE: &str = "baggage";

/// The longest value of a travelling key read or written.
pub const MAX_KEY_VALUE_BYTES: usize = 4096;

/// Headers with a meaning of their own, which no travelling key may use.
const RESERVED: [&str; 4] = [GRPC_TIMEOUT, TRACEPARENT, TRACESTATE, BAGGAGE];

/// The most characters of an offending value kept in an error.
const MAX_SHOWN: usize = 1024;

/// A header that could not be read. Each variant names its header and carries the offending value
/// (lossily as text, cut after 1024 bytes) and why it was rejected.
///
/// ```
/// use ctxkit::propagation::{GrpcTimeout, PropagationError};
///
/// let err = GrpcTimeout::decode_bytes(b"10s").unwrap_err();
/// assert!(matches!(&err, PropagationError::GrpcTimeout { value, .. } if value == "10s"));
/// assert_eq!(err.header(), "grpc-timeout");
/// assert_eq!(
///     err.to_string(),
///     r#"invalid grpc-timeout header "10s": unknown unit (expected one of H, M, S, m, u, n)"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropagationError {
    /// `grpc-timeout` is not 1-8 digits and a unit, or the header is repeated.
    GrpcTimeout {
        /// The value received.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `traceparent` is malformed (a receiver starts a new trace).
    TraceParent {
        /// The value received.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `tracestate` is malformed (a receiver drops it whole).
    TraceState {
        /// The (combined) value received.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `baggage` is malformed (a receiver drops it whole).
    Baggage {
        /// The offending member, or the whole value when it is too long.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An accepted travelling key's header could not be decoded.
    Key {
        /// The key's header.
        header: &'static str,
        /// The value received.
        value: String,
        /// What is wrong with it (the key's decoder's error).
        reason: String,
    },
}

fn shown(value: &[u8]) -> String {
    if value.len() <= MAX_SHOWN {
        return String::from_utf8_lossy(value).into_owned();
    }
    let mut s = String::from_utf8_lossy(&value[..MAX_SHOWN]).into_owned();
    s.push('…');
    s
}

impl PropagationError {
    pub(crate) fn grpc_timeout(value: &[u8], reason: &'static str) -> Self {
        PropagationError::GrpcTimeout {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn traceparent(value: &[u8], reason: &'static str) -> Self {
        PropagationError::TraceParent {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn tracestate(value: &[u8], reason: &'static str) -> Self {
        PropagationError::TraceState {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn baggage(value: &[u8], reason: &'static str) -> Self {
        PropagationError::Baggage {
            value: shown(value),
            reason,
        }
    }

    /// The name of the header at fault.
    pub fn header(&self) -> &'static str {
        match self {
            PropagationError::GrpcTimeout { .. } => GRPC_TIMEOUT,
            PropagationError::TraceParent { .. } => TRACEPARENT,
            PropagationError::TraceState { .. } => TRACESTATE,
            PropagationError::Baggage { .. } => BAGGAGE,
            PropagationError::Key { header, .. } => header,
        }
    }

    /// The offending value, as text.
    pub fn value(&self) -> &str {
        match self {
            PropagationError::GrpcTimeout { value, .. }
            | PropagationError::TraceParent { value, .. }
            | PropagationError::TraceState { value, .. }
            | PropagationError::Baggage { value, .. }
            | PropagationError::Key { value, .. } => value,
        }
    }
}

impl fmt::Display for PropagationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason: &str = match self {
            PropagationError::GrpcTimeout { reason, .. }
            | PropagationError::TraceParent { reason, .. }
            | PropagationError::TraceState { reason, .. }
            | PropagationError::Baggage { reason, .. } => reason,
            PropagationError::Key { reason, .. } => reason,
        };
        write!(
            f,
            "invalid {} header {:?}: {reason}",
            self.header(),
            self.value()
        )
    }
}

impl std::error::Error for PropagationError {}

/// Which travelling keys a server decodes from requests, and the most time it gives one.
///
/// Trust is explicit: [`extract`] decodes only the keys named here; any other header, travelling
/// key or not, is ignored.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::propagation::Accept;
/// # use ctxkit::{BoxError, ContextKey};
/// # struct RequestId;
/// # impl ContextKey for RequestId {
/// #     type Value = String;
/// #     const HEADER: Option<&'static str> = Some("x-request-id");
/// #     fn encode(v: &String) -> Option<String> { Some(v.clone()) }
/// #     fn decode(s: &str) -> Result<String, BoxError> { Ok(s.to_owned()) }
/// # }
///
/// let accept = Accept::new().key::<RequestId>().max_timeout(Duration::from_secs(30));
/// assert_eq!(accept.headers().collect::<Vec<_>>(), ["x-request-id"]);
/// ```
#[derive(Clone, Default)]
pub struct Accept {
    keys: Vec<AcceptedKey>,
    max_timeout: Option<Duration>,
}

#[derive(Clone)]
struct AcceptedKey {
    header: &'static str,
    name: HeaderName,
    attach: fn(&Context, &str) -> Result<Context, BoxError>,
}

fn attach<K: ContextKey>(ctx: &Context, text: &str) -> Result<Context, BoxError> {
    Ok(ctx.with_value::<K>(K::decode(text)?))
}

impl Accept {
    /// Accepts no travelling keys and sets no maximum.
    pub fn new() -> Accept {
        Accept::default()
    }

    /// Also decodes key `K` from its header. `K` must travel: a key without
    /// [`ContextKey::HEADER`], or with a header name that is not a valid lower-case HTTP header
    /// name, does not compile. Accepting a key twice is accepting it once.
    pub fn key<K: ContextKey>(mut self) -> Accept {
        let name = const {
            match K::HEADER {
                Some(h) => HeaderName::from_static(h),
                None => panic!("Accept::key: this key has no HEADER, so it never travels"),
            }
        };
        let header = match K::HEADER {
            Some(h) => h,
            None => return self,
        };
        if !RESERVED.contains(&header) && !self.keys.iter().any(|k| k.header == header) {
            self.keys.push(AcceptedKey {
                header,
                name,
                attach: attach::<K>,
            });
        }
        self
    }

    /// The most time any request gets, from its arrival: a received `grpc-timeout` can shorten it
    /// but never extend it, and a request without one gets this much.
    pub fn max_timeout(mut self, max: Duration) -> Accept {
        self.max_timeout = Some(max);
        self
    }

    /// The headers of the accepted keys.
    pub fn headers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().map(|k| k.header)
    }
}

impl fmt::Debug for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accept")
            .field(
                "keys",
                &self.keys.iter().map(|k| k.header).collect::<Vec<_>>(),
            )
            .field("max_timeout", &self.max_timeout)
            .finish()
    }
}

/// Writes `ctx` into a request's headers:
///
/// - its deadline as `grpc-timeout`, the budget left now (`0n` once passed);
/// - its [`TraceContext`] as `traceparent` (this hop's span as the parent) and `tracestate`;
/// - its [`Baggage`] as `baggage`, within the size limits;
/// - every travelling key's value (a key with a [`ContextKey::HEADER`]) found walking from `ctx`
///   to the root; the nearest value of a key wins. A value whose text is not a valid header value
///   or is longer than [`MAX_KEY_VALUE_BYTES`] is not sent.
///
/// Headers already present are replaced; nothing else is touched. Values of keys that do not
/// travel never leave the process. See the [module documentation](self) for an example.
pub fn inject(ctx: &Context, headers: &mut HeaderMap) -> Result<(), PropagationError> {
    if let Some(at) = ctx.deadline() {
        let budget = at.saturating_duration_since(Instant::now());
        headers.insert(
            HeaderName::from_static(GRPC_TIMEOUT),
            GrpcTimeout::encode(budget),
        );
    }
    if let Some(trace) = ctx.value::<TraceContext>() {
        headers.insert(
            HeaderName::from_static(TRACEPARENT),
            trace.traceparent().to_header_value(),
        );
        let state = HeaderName::from_static(TRACESTATE);
        match trace.state().to_header_value() {
            Some(v) => {
                headers.insert(state, v);
            }
            None => {
                headers.remove(state);
            }
        }
    }
    if let Some(v) = ctx.value::<Baggage>().and_then(Baggage::to_header_value) {
        headers.insert(HeaderName::from_static(BAGGAGE), v);
    }
    let mut seen: Vec<&'static str> = Vec::new();
    let mut cur = ctx.node.as_deref();
    while let Some(n) = cur {
        if let Kind::Value(slot) = &n.kind
            && let Some((header, text)) = (slot.meta.travel)(&*slot.value)
            && !seen.contains(&header)
        {
            seen.push(header);
            if let Some(text) = text
                && text.len() <= MAX_KEY_VALUE_BYTES
                && !RESERVED.contains(&header)
                && let Ok(name) = HeaderName::from_bytes(header.as_bytes())
                && let Ok(value) = HeaderValue::try_from(text)
            {
                headers.insert(name, value);
            }
        }
        cur = n.parent.as_deref();
    }
    Ok(())
}

/// Builds a request's context from its headers: a cancellable child of `parent` (a server's root
/// context) carrying
///
/// - the deadline `arrived + grpc-timeout`, never later than `parent`'s deadline nor than
///   `arrived +` [`Accept::max_timeout`];
/// - a [`TraceContext`]: the received trace continued with a new span id for this hop, or a new
///   trace when `traceparent` is missing or invalid (`tracestate` is then not read; an invalid
///   `tracestate` is dropped);
/// - the received [`Baggage`], if any (dropped whole when invalid);
/// - the value of every key `accept` names whose header is present.
///
/// `arrived` is when the request arrived: a budget counts from then, not from when this runs.
///
/// A malformed or repeated `grpc-timeout`, or an accepted key's header that is repeated, longer
/// than [`MAX_KEY_VALUE_BYTES`], not visible ASCII or rejected by the key's decoder, is an error
/// naming the header and the value (a server answers it with 400, or gRPC status 13).
///
/// The handle cancels the request's context; dropping it does too, so keep it for as long as the
/// request runs. See the [module documentation](self) for an example.
pub fn extract(
    headers: &HeaderMap,
    parent: &Context,
    accept: &Accept,
    arrived: Instant,
) -> Result<(Context, CancelHandle), PropagationError> {
    let mut deadline = match single(headers, GRPC_TIMEOUT) {
        Ok(None) => None,
        Ok(Some(v)) => arrived.checked_add(GrpcTimeout::decode(v)?),
        Err(joined) => {
            return Err(PropagationError::grpc_timeout(&joined, "header repeated"));
        }
    };
    if let Some(max) = accept.max_timeout.and_then(|m| arrived.checked_add(m)) {
        deadline = Some(deadline.map_or(max, |d| d.min(max)));
    }

    // Decode every accepted key before making anything.
    let mut texts: Vec<(&AcceptedKey, &str)> = Vec::new();
    for key in &accept.keys {
        let bad = |value: &[u8], reason: &str| PropagationError::Key {
            header: key.header,
            value: shown(value),
            reason: reason.to_owned(),
        };
        let value = match single(headers, key.name.as_str()) {
            Ok(None) => continue,
            Ok(Some(v)) => v,
            Err(joined) => return Err(bad(&joined, "header repeated")),
        };
        if value.len() > MAX_KEY_VALUE_BYTES {
            return Err(bad(value.as_bytes(), "longer than 4096 bytes"));
        }
        let Ok(text) = value.to_str() else {
            return Err(bad(value.as_bytes(), "not visible ASCII"));
        };
        texts.push((key, text));
    }

    let (mut ctx, handle) = match deadline {
        Some(at) => parent.with_deadline(at),
        None => parent.with_cancel(),
    };
    for (key, text) in texts {
        ctx = (key.attach)(&ctx, text).map_err(|e| PropagationError::Key {
            header: key.header,
            value: shown(text.as_bytes()),
            reason: e.to_string(),
        })?;
    }

    let trace = match single(headers, TRACEPARENT) {
        Ok(Some(v)) => TraceParent::decode(v).ok().map(|tp| {
            let state = TraceState::decode_all(headers.get_all(TRACESTATE)).unwrap_or_default();
            TraceContext::child_of(&tp, state)
        }),
        // None, or repeated: invalid.
        _ => None,
    };
    ctx = ctx.with_value::<TraceContext>(trace.unwrap_or_else(TraceContext::new_root));

    if let Ok(baggage) = Baggage::decode_all(headers.get_all(BAGGAGE))
        && !baggage.is_empty()
    {
        ctx = ctx.with_value::<Baggage>(baggage);
    }
    Ok((ctx, handle))
}

/// The one value of header `name`: `Ok(None)` when absent, `Err(all values joined)` when repeated.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h HeaderValue>, Vec<u8>> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_none() {
        return Ok(Some(first));
    }
    let joined = headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b","[..]);
    Err(joined)
}
