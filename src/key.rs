//! Typed context keys.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;

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
/// [`ContextKey::HEADER`] and giving the value a text form ([`ContextKey::encode`] and
/// [`ContextKey::decode`]); the derive does this with `#[context_key(header = "x-request-id")]`,
/// using `Display` and `FromStr` (or `codec = path` for a [`KeyCodec`]). By hand, [`DisplayFromStr`]
/// does the same:
///
/// ```
/// use ctxkit::{BoxError, ContextKey, DisplayFromStr, KeyCodec};
///
/// struct RequestId;
/// impl ContextKey for RequestId {
///     type Value = u64;
///     const HEADER: Option<&'static str> = Some("x-request-id");
///     fn encode(value: &u64) -> Option<String> {
///         Some(DisplayFromStr::encode(value))
///     }
///     fn decode(text: &str) -> Result<u64, BoxError> {
///         DisplayFromStr::decode(text)
///     }
/// }
///
/// assert_eq!(RequestId::encode(&42).as_deref(), Some("42"));
/// assert_eq!(RequestId::decode("42").unwrap(), 42);
/// assert!(RequestId::decode("forty-two").is_err());
/// ```
///
/// Which travelling keys a server decodes is its own choice: see `propagation::Accept` (feature
/// `http`).
pub trait ContextKey: 'static {
    /// The type of the value stored under this key.
    type Value: Send + Sync + 'static;

    /// The header this key's value travels in between processes (lower case, e.g.
    /// `"x-request-id"`), or `None` (the default): the value never leaves the process.
    const HEADER: Option<&'static str> = None;

    /// The value's text form on the wire; `None` (the default) sends nothing.
    fn encode(value: &Self::Value) -> Option<String> {
        let _ = value;
        None
    }

    /// Reads a value from its text form. The default rejects everything (the key does not
    /// travel).
    fn decode(text: &str) -> Result<Self::Value, BoxError> {
        let _ = text;
        Err(format!("{} does not travel", std::any::type_name::<Self>()).into())
    }
}

/// The error type of [`ContextKey::decode`] and [`KeyCodec::decode`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A text codec for a travelling key's value, for values whose `Display`/`FromStr` are not the
/// wire form (`#[context_key(header = "…", codec = MyCodec)]`).
///
/// ```
/// use ctxkit::{BoxError, KeyCodec};
///
/// /// Hex on the wire.
/// struct Hex;
/// impl KeyCodec<u32> for Hex {
///     fn encode(v: &u32) -> String {
///         format!("{v:x}")
///     }
///     fn decode(text: &str) -> Result<u32, BoxError> {
///         Ok(u32::from_str_radix(text, 16)?)
///     }
/// }
///
/// assert_eq!(Hex::encode(&255), "ff");
/// assert_eq!(Hex::decode("ff").unwrap(), 255);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a text codec for `{T}`",
    label = "cannot encode/decode `{T}` for a header",
    note = "the default codec (`DisplayFromStr`) needs `{T}: Display + FromStr` whose `FromStr::Err` converts into `BoxError`; or name a type implementing `KeyCodec<{T}>` with `codec = path`"
)]
pub trait KeyCodec<T> {
    /// The text form of `value`.
    fn encode(value: &T) -> String;
    /// Reads a value back from [`KeyCodec::encode`]'s text.
    fn decode(text: &str) -> Result<T, BoxError>;
}

/// The default [`KeyCodec`]: `Display` to encode, `FromStr` to decode.
#[derive(Debug, Clone, Copy, Default)]
pub struct DisplayFromStr;

impl<T> KeyCodec<T> for DisplayFromStr
where
    T: fmt::Display + FromStr,
    T::Err: Into<BoxError>,
{
    fn encode(value: &T) -> String {
        value.to_string()
    }
    fn decode(text: &str) -> Result<T, BoxError> {
        text.parse::<T>().map_err(Into::into)
    }
}

/// The type-erased encoder a value node keeps, so the propagation code can walk a context chain
/// and write every travelling value without knowing the key types: `None` for a key that does not
/// travel, else its header and the value's text (`None` when its encoder declines).
pub(crate) type TravelFn = fn(&(dyn Any + Send + Sync)) -> Option<(&'static str, Option<String>)>;

/// [`TravelFn`] for key `K`.
pub(crate) fn travel<K: ContextKey>(
    value: &(dyn Any + Send + Sync),
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
