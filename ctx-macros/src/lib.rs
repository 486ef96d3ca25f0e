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
/// Arguments of `#[context_key(..)]`: `value = Type`, `crate = path::to::ctxkit` (when ctxkit is
/// re-exported under another path).
///
/// A key must be `'static` (a lifetime parameter is an error) and its value `Send + Sync`.
/// Generic keys are fine: the impl gets `T: 'static` bounds and `Value: Send + Sync`.
#[proc_macro_derive(ContextKey, attributes(context_key))]
pub fn derive_context_key(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    key::derive(input).into()
}
