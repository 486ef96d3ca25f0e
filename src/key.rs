//! Typed context keys.

use std::error::Error as StdError;

/// A type that names a request-scoped value: the key is the type, so two keys can never collide
/// and a value can never be read as the wrong type.
///
/// Derive it with `#[derive(ContextKey)]` (from `ctxkit`): the type is then its own value, or with
/// `#[context_key(value = T)]` a marker type names a value of type `T`. The derive also generates
/// the accessors `K::get(&ctx)`, `K::set(&ctx, v)` and `K::current()`.
///
/// By hand:
///
/// ```
/// use ctxkit::{Context, ContextKey};
///
/// struct UserName;
/// impl ContextKey for UserName {
///     type Value = String;
/// }
///
/// let ctx = Context::background().with_value::<UserName>("gopher".to_string());
/// assert_eq!(ctx.value::<UserName>().map(String::as_str), Some("gopher"));
/// ```
///
/// # Travelling keys
///
/// A value never leaves the process unless its key opts in by naming a header in
/// `ContextKey::HEADER` and giving the value a text form (`encode`, `decode`): with the
/// `propagation` feature (which `http` enables), the derive does this with
/// `#[context_key(header = "x-request-id")]`. See `ctxkit::propagation` for how values travel,
/// and `propagation::Accept` for which ones a receiver decodes. Without the feature these items
/// do not exist: the core knows no wire format.
pub trait ContextKey: 'static {
    /// The type of the value stored under this key.
    type Value: Send + Sync + 'static;

    /// The header this key's value travels in between processes (lower case, e.g.
    /// `"x-request-id"`), or `None` (the default): the value never leaves the process.
    #[cfg(feature = "propagation")]
    #[cfg_attr(docsrs, doc(cfg(feature = "propagation")))]
    const HEADER: Option<&'static str> = None;

    /// The field of the request's `tracing` span that a received value is recorded in (`None`,
    /// the default: not recorded). Set by the derive's `record` argument; see
    /// `ctxkit::tracing`.
    #[cfg(all(feature = "tracing", feature = "propagation"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    const RECORD: Option<&'static str> = None;

    /// How the live request tree ([`ctxkit::live`](crate::live)) shows a value: `None` (the
    /// default) shows `..`. The derive's `#[context_key(debug)]` gives the value's own `Debug`;
    /// by hand:
    ///
    /// ```
    /// use std::fmt::Debug;
    /// use ctxkit::ContextKey;
    ///
    /// struct Tenant;
    /// impl ContextKey for Tenant {
    ///     type Value = String;
    ///     fn debug(value: &String) -> Option<&dyn Debug> {
    ///         Some(value)
    ///     }
    /// }
    /// ```
    #[cfg(feature = "live")]
    #[cfg_attr(docsrs, doc(cfg(feature = "live")))]
    fn debug(value: &Self::Value) -> Option<&dyn std::fmt::Debug> {
        let _ = value;
        None
    }

    /// The value's text form on the wire; `None` (the default) sends nothing.
    #[cfg(feature = "propagation")]
    #[cfg_attr(docsrs, doc(cfg(feature = "propagation")))]
    fn encode(value: &Self::Value) -> Option<String> {
        let _ = value;
        None
    }

    /// Reads a value from its text form. The default rejects everything (the key does not
    /// travel).
    #[cfg(feature = "propagation")]
    #[cfg_attr(docsrs, doc(cfg(feature = "propagation")))]
    fn decode(text: &str) -> Result<Self::Value, BoxError> {
        let _ = text;
        Err(format!("{} does not travel", std::any::type_name::<Self>()).into())
    }
}

/// A boxed error: what a travelling key's decoder and the tower layers fail with.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The type-erased encoder a value node keeps, so the propagation code can walk a context chain
/// and write every travelling value without knowing the key types: `None` for a key that does not
/// travel, else its header and the value's text (`None` when its encoder declines).
#[cfg(feature = "propagation")]
pub(crate) type TravelFn =
    fn(&(dyn std::any::Any + Send + Sync)) -> Option<(&'static str, Option<String>)>;

/// [`TravelFn`] for key `K`.
#[cfg(feature = "propagation")]
pub(crate) fn travel<K: ContextKey>(
    value: &(dyn std::any::Any + Send + Sync),
) -> Option<(&'static str, Option<String>)> {
    let header = K::HEADER?;
    Some((header, value.downcast_ref::<K::Value>().and_then(K::encode)))
}

/// Bound of `K::current()` in the derive's expansion: the value is cloned out of the context, so
/// it must be `Clone`. Its own trait so the error says what to do.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Clone`, so `current()` cannot copy it out of the context",
    label = "`K::current()` needs a `Clone` value",
    note = "derive or implement `Clone` for `{Self}`, store an `Arc<{Self}>`, or borrow it with `K::get(&Context::current())`"
)]
pub trait CurrentValue: Clone {}
impl<T: Clone> CurrentValue for T {}
