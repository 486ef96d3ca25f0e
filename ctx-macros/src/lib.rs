//! Procedural macros of [ctxkit](https://docs.rs/ctxkit): `#[cancellable]` and
//! `#[derive(ContextKey)]`.
//!
//! Use them through the `ctxkit` crate (`use ctxkit::{cancellable, ContextKey};`), whose docs
//! describe them; the generated code refers to `::ctxkit::__private` (or `<crate>::__private`
//! with a `crate = path` argument).

mod args;
mod errors;
mod key;
mod krate;

use proc_macro::TokenStream;

/// Makes a type a context key: the type names a request-scoped value and is looked up by type,
/// so keys never collide.
///
/// ```
/// use ctxkit::{Context, ContextKey};
///
/// #[derive(Clone, Debug, PartialEq, ContextKey)]
/// struct RequestId(u64);                 // the type is its own value
///
/// #[derive(ContextKey)]
/// #[context_key(value = String)]          // a marker key carrying a `String`
/// struct UserName;
///
/// let ctx = RequestId::set(&Context::background(), RequestId(7));
/// let ctx = UserName::set(&ctx, "gopher".to_string());
/// assert_eq!(RequestId::get(&ctx), Some(&RequestId(7)));
/// assert_eq!(UserName::get(&ctx).map(String::as_str), Some("gopher"));
/// assert_eq!(ctx.sync_scope(RequestId::current), Some(RequestId(7)));
/// ```
///
/// Generates `impl ContextKey for K` (`type Value` = `K`, or the `value = T` argument) and the
/// inherent accessors, with `K`'s visibility:
/// - `K::get(&ctx) -> Option<&Value>`: the nearest value towards the root;
/// - `K::set(&ctx, value) -> Context`: a new child carrying `value` (`ctx` is unchanged);
/// - `K::current() -> Option<Value>`: a clone of the current context's value; only this one
///   needs `Value: Clone`, and only where it is called.
///
/// Arguments of `#[context_key(..)]`: `value = Type`, `header = "x-name"`, `codec = path`,
/// `crate = path::to::ctxkit` (when ctxkit is re-exported under another path).
///
/// A key's value never leaves the process unless the key names a header: with
/// `header = "x-request-id"` (lower case; not one of `grpc-timeout`, `traceparent`, `tracestate`,
/// `baggage`) the impl also sets `ContextKey::HEADER` and encodes/decodes the value with its
/// `Display` and `FromStr`, or with `codec = path` naming a `KeyCodec`. The propagation code
/// (feature `http`) then sends it, and a server decodes it if it accepts the key.
///
/// ```
/// use ctxkit::{BoxError, ContextKey, KeyCodec};
///
/// #[derive(ContextKey)]
/// #[context_key(value = u64, header = "x-request-id")]
/// struct RequestId;
///
/// struct Hex;
/// impl KeyCodec<u32> for Hex {
///     fn encode(v: &u32) -> String { format!("{v:x}") }
///     fn decode(s: &str) -> Result<u32, BoxError> { Ok(u32::from_str_radix(s, 16)?) }
/// }
///
/// #[derive(ContextKey)]
/// #[context_key(value = u32, header = "x-shard", codec = Hex)]
/// struct Shard;
///
/// assert_eq!(RequestId::HEADER, Some("x-request-id"));
/// assert_eq!(RequestId::encode(&42).as_deref(), Some("42"));
/// assert_eq!(Shard::encode(&255).as_deref(), Some("ff"));
/// assert_eq!(Shard::decode("ff").unwrap(), 255);
/// ```
///
/// A key must be `'static` (a lifetime parameter is an error) and its value `Send + Sync`.
/// Generic keys are fine: the impl gets `T: 'static` bounds and `Value: Send + Sync`.
#[proc_macro_derive(ContextKey, attributes(context_key))]
pub fn derive_context_key(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    key::derive(input).into()
}
