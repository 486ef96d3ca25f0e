//! Travelling keys' text forms: [`KeyCodec`] and the default, [`DisplayFromStr`].

use std::fmt;
use std::str::FromStr;

use crate::BoxError;

/// A text codec for a travelling key's value, for values whose `Display`/`FromStr` are not the
/// wire form (`#[context_key(header = "…", codec = MyCodec)]`).
///
/// ```
/// use ctxkit::BoxError;
/// use ctxkit::propagation::KeyCodec;
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
///
/// A hand-written travelling key uses it like the derive does:
///
/// ```
/// use ctxkit::{BoxError, ContextKey};
/// use ctxkit::propagation::{DisplayFromStr, KeyCodec};
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
