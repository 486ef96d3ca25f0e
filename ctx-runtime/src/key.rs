//! Typed context keys.

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
/// use ctx_runtime::{Context, ContextKey};
///
/// struct UserName;
/// impl ContextKey for UserName {
///     type Value = String;
/// }
///
/// let ctx = Context::background().with_value::<UserName>("gopher".to_string());
/// assert_eq!(ctx.value::<UserName>().map(String::as_str), Some("gopher"));
/// ```
pub trait ContextKey: 'static {
    /// The type of the value stored under this key.
    type Value: Send + Sync + 'static;
}
