//! [`Accept`]: what a receiver trusts of what arrives.

use std::any::TypeId;
use std::fmt;
use std::time::Duration;

use super::DeadlineFormat;
use super::header_name::header_problem;
use crate::{BoxError, Context, ContextKey};

/// Which travelling keys a receiver decodes, the most time it gives a request, and how deadlines
/// arrive.
///
/// Trust is explicit: [`extract`](super::extract) decodes only the keys named here; any other
/// field, travelling key or not, is ignored.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::ContextKey;
/// use ctxkit::propagation::Accept;
///
/// #[derive(ContextKey)]
/// #[context_key(value = String, header = "x-request-id")]
/// struct RequestId;
///
/// let accept = Accept::new().key::<RequestId>().max_timeout(Duration::from_secs(30));
/// assert_eq!(accept.headers().collect::<Vec<_>>(), ["x-request-id"]);
/// ```
#[derive(Clone, Default)]
pub struct Accept {
    keys: Vec<AcceptedKey>,
    pub(super) max_timeout: Option<Duration>,
    pub(super) deadlines: DeadlineFormat,
}

#[derive(Clone)]
pub(super) struct AcceptedKey {
    key: TypeId,
    key_name: &'static str,
    pub(super) header: &'static str,
    pub(super) attach: fn(&Context, &str) -> Result<Context, BoxError>,
    /// For a key marked `record`: its span field, and its value's text in a context.
    #[cfg(feature = "tracing")]
    record: Option<RecordedKey>,
}

/// A key marked `record`: the span field its value goes in, and that value's text in a context.
#[cfg(feature = "tracing")]
pub(crate) type RecordedKey = (&'static str, fn(&Context) -> Option<String>);

#[cfg(feature = "tracing")]
fn recorded_text<K: ContextKey>(ctx: &Context) -> Option<String> {
    ctx.value::<K>().and_then(K::encode)
}

/// `K`'s span field, checked when the program is compiled.
#[cfg(feature = "tracing")]
const fn recorded_field<K: ContextKey>() -> Option<&'static str> {
    let Some(field) = K::RECORD else {
        return None;
    };
    if crate::tracing::is_request_field(field) {
        panic!(
            "Accept::key: this key is recorded in a field the request span has of its own \
             (otel.*, http.*, url.path, rpc.*, trace_id): name another one with \
             `record = \"…\"`"
        );
    }
    Some(field)
}

fn attach<K: ContextKey>(ctx: &Context, text: &str) -> Result<Context, BoxError> {
    Ok(ctx.with_value::<K>(K::decode(text)?))
}

/// `K`'s header, checked when `Accept::key::<K>` is compiled.
const fn travelling_header<K: ContextKey>() -> &'static str {
    let Some(header) = K::HEADER else {
        panic!("Accept::key: this key has no HEADER, so it never travels");
    };
    if header_problem(header).is_some() {
        panic!(
            "Accept::key: this key's HEADER cannot travel: it must be a lower-case header name, \
             and not one of grpc-timeout, traceparent, tracestate, baggage, ctxkit-deadline, \
             ctxkit-sent"
        );
    }
    header
}

impl Accept {
    /// Accepts no travelling keys, sets no maximum, and reads deadlines as budgets
    /// ([`DeadlineFormat::Budget`]).
    pub fn new() -> Accept {
        Accept::default()
    }

    /// Also decodes key `K` from its header. Accepting a key twice is accepting it once.
    ///
    /// `K` must travel: a key without `ContextKey::HEADER`, or whose header is not a lower-case
    /// header name or is one of the [reserved](super::RESERVED_HEADERS) ones, does not compile.
    ///
    /// # Panics
    ///
    /// When another key already accepted travels in the same header (`#[context_key(header =
    /// "x-tenant")]` on both `TenantName` and `TenantId`): each would read the other's values. The
    /// message names both keys. Likewise (feature `tracing`) when two keys are recorded in the
    /// same span field. (A key recorded in one of the request span's own fields, such as
    /// `trace_id`, does not compile.) This is a mistake in the program, not in its input, so it stops
    /// the server while it is being built, on every start, before any request is served (as
    /// axum's router does for two handlers on one route); a `Result` would only move the same
    /// `expect` into every caller.
    ///
    /// ```should_panic
    /// use ctxkit::ContextKey;
    /// use ctxkit::propagation::Accept;
    ///
    /// #[derive(ContextKey)]
    /// #[context_key(value = String, header = "x-tenant")]
    /// struct TenantName;
    ///
    /// #[derive(ContextKey)]
    /// #[context_key(value = u64, header = "x-tenant")]
    /// struct TenantId;
    ///
    /// // panics: "… `TenantId` travels in header "x-tenant", already accepted for `TenantName` …"
    /// let accept = Accept::new().key::<TenantName>().key::<TenantId>();
    /// ```
    #[track_caller]
    pub fn key<K: ContextKey>(mut self) -> Accept {
        let header = const { travelling_header::<K>() };
        let key = TypeId::of::<K>();
        if let Some(taken) = self.keys.iter().find(|k| k.header == header) {
            if taken.key == key {
                return self;
            }
            panic!(
                "Accept::key: key `{}` travels in header {header:?}, already accepted for key \
                 `{}`: each would read the other's values; give each key its own header",
                std::any::type_name::<K>(),
                taken.key_name,
            );
        }
        #[cfg(feature = "tracing")]
        let record = const { recorded_field::<K>() };
        #[cfg(feature = "tracing")]
        if let Some(field) = record
            && let Some(taken) = self
                .keys
                .iter()
                .find(|k| k.record.is_some_and(|(f, _)| f == field))
        {
            panic!(
                "Accept::key: key `{}` is recorded in the span field {field:?}, as key `{}` is \
                 already: one would hide the other; name another field with `record = \"…\"`",
                std::any::type_name::<K>(),
                taken.key_name,
            );
        }
        self.keys.push(AcceptedKey {
            key,
            key_name: std::any::type_name::<K>(),
            header,
            attach: attach::<K>,
            #[cfg(feature = "tracing")]
            record: record.map(|field| (field, recorded_text::<K> as fn(&Context) -> _)),
        });
        self
    }

    /// The most time any request gets, from its arrival: a received deadline can shorten it but
    /// never extend it, and a request without one gets this much.
    pub fn max_timeout(mut self, max: Duration) -> Accept {
        self.max_timeout = Some(max);
        self
    }

    /// How deadlines arrive: as a budget ([`DeadlineFormat::Budget`], the default, for HTTP and
    /// gRPC) or as an absolute time with the budget and the send time
    /// ([`DeadlineFormat::Absolute`], for broker messages).
    pub fn deadline_format(mut self, format: DeadlineFormat) -> Accept {
        self.deadlines = format;
        self
    }

    /// The headers of the accepted keys.
    pub fn headers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().map(|k| k.header)
    }

    pub(super) fn keys(&self) -> &[AcceptedKey] {
        &self.keys
    }

    /// The accepted keys marked `record`, in the order they were accepted.
    #[cfg(all(feature = "tracing", feature = "tower"))]
    pub(crate) fn recorded(&self) -> impl Iterator<Item = RecordedKey> + '_ {
        self.keys.iter().filter_map(|k| k.record)
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
            .field("deadlines", &self.deadlines)
            .finish()
    }
}
