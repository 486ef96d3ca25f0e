//! Carriers: where [`inject`](super::inject) writes a context and [`extract`](super::extract)
//! reads it. Any set of named text fields will do: HTTP headers, a broker message's headers, a
//! map, a user's own struct.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// A carrier [`inject`](super::inject) writes a context into: HTTP headers, a broker message's
/// headers, a map, a struct of your own (OpenTelemetry's `Injector`, with a `remove`).
///
/// Field names are lower case (`grpc-timeout`, `traceparent`, a key's header). Values are what
/// [`inject`](super::inject) makes them: visible ASCII, bounded in size.
///
/// The talk's Thrift `ContextValue { requestID, GUID }`: two fields of a struct carry a request's
/// travelling keys.
///
/// ```
/// use std::collections::HashMap;
/// use ctxkit::{Context, ContextKey, Instant};
/// use ctxkit::propagation::{self, Accept, Extractor, Injector};
///
/// /// The talk's Thrift struct, as a Thrift compiler would generate it.
/// #[derive(Default)]
/// struct ContextValue {
///     request_id: Option<String>,
///     guid: Option<String>,
/// }
///
/// impl Injector for ContextValue {
///     fn set(&mut self, name: &str, value: String) {
///         match name {
///             "x-request-id" => self.request_id = Some(value),
///             "x-guid" => self.guid = Some(value),
///             _ => {} // the struct has no field for it: the deadline and trace do not travel
///         }
///     }
/// }
///
/// impl Extractor for ContextValue {
///     fn get(&self, name: &str) -> Option<&str> {
///         match name {
///             "x-request-id" => self.request_id.as_deref(),
///             "x-guid" => self.guid.as_deref(),
///             _ => None,
///         }
///     }
/// }
///
/// #[derive(ContextKey)]
/// #[context_key(value = u64, header = "x-request-id")]
/// struct RequestId;
///
/// #[derive(ContextKey)]
/// #[context_key(value = String, header = "x-guid")]
/// struct Guid;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let caller = Context::background()
///     .with_value::<RequestId>(7)
///     .with_value::<Guid>("5f0c-9a".into());
/// let mut wire = ContextValue::default();
/// propagation::inject(&caller, &mut wire).unwrap();
/// assert_eq!(wire.request_id.as_deref(), Some("7"));
///
/// let accept = Accept::new().key::<RequestId>().key::<Guid>();
/// let (callee, _done) =
///     propagation::extract(&wire, &Context::background(), &accept, Instant::now()).unwrap();
/// assert_eq!(callee.value::<RequestId>(), Some(&7));
/// assert_eq!(callee.value::<Guid>().map(String::as_str), Some("5f0c-9a"));
/// # }
/// ```
pub trait Injector {
    /// Sets field `name` to `value`, replacing what it held.
    fn set(&mut self, name: &str, value: String);

    /// Removes field `name`. [`inject`](super::inject) calls it for a `tracestate` the context
    /// no longer has, so that a carrier used twice (a reused header map) cannot send one trace's
    /// state with another trace. A carrier that starts empty each time can keep the default,
    /// which does nothing.
    fn remove(&mut self, name: &str) {
        let _ = name;
    }
}

/// A carrier [`extract`](super::extract) reads a context from (OpenTelemetry's `Extractor`,
/// with every value of a field as bytes).
///
/// Implement [`Extractor::get`]; a carrier that can hold a field more than once, or values that
/// are not text, also implements [`Extractor::get_all`].
///
/// There is no `keys()` listing every field: [`extract`](super::extract) only ever asks for the
/// fields it knows and the keys its [`Accept`](super::Accept) names, so a carrier never has to
/// enumerate, and nothing in it is read unless trusted.
pub trait Extractor {
    /// The value of field `name`, if present.
    fn get(&self, name: &str) -> Option<&str>;

    /// Every value of field `name`, in order, as bytes: none when absent.
    ///
    /// The default is [`Extractor::get`]'s one value. Carriers that may repeat a field (HTTP
    /// repeats `tracestate` and `baggage` headers and any other) return every value: a repeated
    /// `grpc-timeout` or key header is then an error, and repeated `tracestate` or `baggage`
    /// values are one list, as the W3C specifications ask. Bytes rather than text, so that a
    /// value that is not text is rejected by the strict parsers and named in the error instead
    /// of being taken for absent.
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.get(name).map(str::as_bytes).into_iter().collect()
    }
}

/// A map of field names (lower case) to values, e.g. the headers of a broker message.
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use ctxkit::{Context, Instant};
/// use ctxkit::propagation::{self, Accept};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(2));
/// let mut fields = HashMap::new();
/// propagation::inject(&ctx, &mut fields).unwrap();
/// assert_eq!(fields["grpc-timeout"], "2000000u");
///
/// let arrived = Instant::now();
/// let (got, _done) =
///     propagation::extract(&fields, &Context::background(), &Accept::new(), arrived).unwrap();
/// assert_eq!(got.deadline(), Some(arrived + Duration::from_secs(2)));
/// # }
/// ```
impl<S: BuildHasher> Injector for HashMap<String, String, S> {
    fn set(&mut self, name: &str, value: String) {
        self.insert(name.to_owned(), value);
    }
    fn remove(&mut self, name: &str) {
        HashMap::remove(self, name);
    }
}

impl<S: BuildHasher> Extractor for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

/// Like the `HashMap` carrier, ordered.
impl Injector for BTreeMap<String, String> {
    fn set(&mut self, name: &str, value: String) {
        self.insert(name.to_owned(), value);
    }
    fn remove(&mut self, name: &str) {
        BTreeMap::remove(self, name);
    }
}

impl Extractor for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// HTTP headers (feature `http`). Field names are header names, matched case-insensitively as
/// HTTP does; every value of a repeated header is read.
///
/// `set` leaves out a name or value HTTP cannot carry (a name that is not a token, a value with
/// control characters); [`inject`](super::inject) never writes one, as it checks keys' headers
/// and values first and fails naming them.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Injector for http::HeaderMap {
    fn set(&mut self, name: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::try_from(value),
        ) {
            self.insert(name, value);
        }
    }
    fn remove(&mut self, name: &str) {
        http::HeaderMap::remove(self, name);
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Extractor for http::HeaderMap {
    /// The header's one value as text: `None` when absent or not visible ASCII.
    fn get(&self, name: &str) -> Option<&str> {
        http::HeaderMap::get(self, name)?.to_str().ok()
    }

    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        http::HeaderMap::get_all(self, name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect()
    }
}
