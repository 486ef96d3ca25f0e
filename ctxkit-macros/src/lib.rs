//! Procedural macros of [ctxkit](https://docs.rs/ctxkit): `#[cancellable]` and
//! `#[derive(ContextKey)]`.
//!
//! Use them through the `ctxkit` crate (`use ctxkit::{cancellable, ContextKey};`), whose docs
//! describe them; the generated code refers to `::ctxkit::__private` (or `<crate>::__private`
//! with a `crate = path` argument).

mod args;
mod cancellable;
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
/// `baggage`, `ctxkit-deadline`, `ctxkit-sent`) the impl also sets `ContextKey::HEADER` and
/// encodes/decodes the value with its `Display` and `FromStr`, or with `codec = path` naming a
/// `ctxkit::propagation::KeyCodec`. This needs ctxkit's `propagation` feature (or `http`, which
/// enables it; without it `header` is a compile error saying so). The propagation code then
/// sends the value, and a receiver decodes it if it accepts the key; two keys on one header are
/// refused on both sides.
///
/// ```
/// use ctxkit::{BoxError, ContextKey};
/// use ctxkit::propagation::KeyCodec;
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

/// Makes an `async fn` stop at its next `.await` once its context is done, returning the
/// context's error and dropping whatever it was waiting on.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Error, cancellable};
///
/// #[cancellable]
/// async fn fetch_all(ctx: &Context, ids: &[u32]) -> Vec<u32> {
///     let mut out = Vec::new();
///     for &id in ids {
///         tokio::time::sleep(Duration::from_millis(10)).await; // each await is raced
///         out.push(id * 2);
///     }
///     out
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(25));
/// assert_eq!(fetch_all(&ctx, &[1, 2]).await, Ok(vec![2, 4]));   // -> Result<Vec<u32>, Error>
/// assert_eq!(fetch_all(&ctx, &[1, 2, 3]).await, Err(Error::DeadlineExceeded));
/// # }
/// ```
///
/// # The context
/// A parameter typed `Context`, `&Context` (or `&mut Context`) is the call's context; without
/// one, `Context::current()` is read when the future is first polled (not when the fn is
/// called), so `ctx.scope(f())` works for a future made earlier. Two such parameters are an
/// error. The body runs with that context as the current one, so callees (and nested
/// `#[cancellable]` fns) see it.
///
/// # What is rewritten
/// - **Entry**: a context that is already done returns its error; the body never starts.
/// - **Every `.await` in the fn's own control flow** — including inside nested blocks, `if`,
///   `match`, loops and `let … else` — checks the context (one atomic load) before polling the
///   awaited future; once it is done the future is not polled again and the call ends. The
///   cancellation wins ties with a ready future.
/// - **While suspended**, the call watches the context (its waker is registered once per call):
///   a cancellation in the middle of an await ends the call at once, dropping the in-flight
///   future and the body's locals, and returns `Err(From::from(err))`.
/// - **`#[shield]` statements** (see below).
///
/// # What is not rewritten
/// - `.await`s inside **closures and async blocks** (they belong to another future, which cannot
///   return from this fn) and inside **macro invocations** such as `tokio::select!` or
///   `join!` (their tokens are not Rust syntax before they expand). Those futures are not checked
///   one by one, but the call still ends at its next suspension once the context is done: an
///   async block or `select!` that is pending when the cancellation comes is dropped then.
/// - **Nested items** (fns, impls) are left exactly as written.
/// - Synchronous code is never interrupted: between two awaits the body runs to the next one
///   (check `ctx.is_done()` in long CPU loops).
///
/// # Return type
/// A type whose last path segment is `Result` (`Result<T, E>`, `io::Result<T>`,
/// `anyhow::Result<T>`) is kept, and its error type must implement `From<ctxkit::Error>` (the
/// compiler says so, on `E`, when it does not). Any other `T` (or none) becomes
/// `Result<T, ctxkit::Error>`. `?` and `return` in the body keep their meaning. In a trait, put
/// `#[cancellable]` on the declaration too (a bodiless `async fn` declaration only gets its
/// return type rewritten) so that annotated impls match it.
///
/// # `#[shield]`
/// `#[shield]` on a statement (`let` or expression statement) of the body lets it finish even
/// if the context is cancelled meanwhile: its awaits are not checked, the call does not end
/// while it runs, and its directly visible awaits run with `ctx.without_cancel()` as the current
/// context (values kept; nested `#[cancellable]` callees are not cancelled). After it, the next
/// unshielded await returns the error. `#[shield(timeout = "1s")]` bounds the statement by its
/// own deadline instead (Trio's shielded `move_on_after`): its awaits see a context that is not
/// cancelled by the outer one but has that deadline, and when the deadline passes the statement
/// is dropped and the call returns `Err(DeadlineExceeded)` (converted with `From` like any
/// other error), whether or not the outer context was cancelled. `#[shield]` on a statement
/// without `.await`, or inside a closure or async block, is an error.
///
/// # Arguments
/// - `timeout = "250ms"`: each call runs under a child context with that timeout (units `ns`,
///   `us`, `ms`, `s`, `m`, `h`; a whole positive number; checked at compile time). A parent's
///   earlier deadline still wins.
/// - `crate = path::to::ctxkit`: where `ctxkit` is, when it is re-exported.
///
/// Works on free fns, methods (`self`, `&self`, `&mut self`), async fns in traits (default
/// bodies and declarations) and their impls, with generics, lifetimes, where-clauses and
/// `impl Trait` arguments. Attributes, docs and visibility are kept; the future is `Send`
/// whenever the unannotated one would be.
#[proc_macro_attribute]
pub fn cancellable(args: TokenStream, input: TokenStream) -> TokenStream {
    cancellable::cancellable(args.into(), input.into()).into()
}
