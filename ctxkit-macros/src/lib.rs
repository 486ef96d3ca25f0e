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
/// `record` (or `record = "field"`), `crate = path::to::ctxkit` (when ctxkit is re-exported under another path).
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
/// With ctxkit's `tracing` feature, `record` (with `header`) makes a received value a field of the
/// request's span that `ctxkit::tower::ServerLayer` makes, so every log line of the request shows
/// it: the field is named after the header, or `record = "request_id"` names it. It sets
/// `ContextKey::RECORD`; without the feature `record` is a compile error saying so.
///
/// ```
/// use ctxkit::ContextKey;
///
/// #[derive(ContextKey)]
/// #[context_key(value = String, header = "x-request-id", record = "request_id")]
/// struct RequestId;
///
/// assert_eq!(RequestId::RECORD, Some("request_id"));
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
/// async fn fetch_all(ctx: &Context, ids: &[u32]) -> Result<Vec<u32>, Error> {
///     let mut out = Vec::new();
///     for &id in ids {
///         tokio::time::sleep(Duration::from_millis(10)).await; // each await is raced
///         out.push(id * 2);
///     }
///     Ok(out)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(25));
/// assert_eq!(fetch_all(&ctx, &[1, 2]).await, Ok(vec![2, 4]));
/// assert_eq!(fetch_all(&ctx, &[1, 2, 3]).await, Err(Error::DeadlineExceeded));
/// # }
/// ```
///
/// # The context
/// A parameter typed `Context` or `&Context` is the call's context; without one,
/// `Context::current()` is read when the future is first polled (not when the fn is called), so
/// `ctx.scope(f())` works for a future made earlier. Two such parameters are an error. The body
/// runs with that context as the current one, so callees (and nested `#[cancellable]` fns) see
/// it.
///
/// The context is fixed when the call starts. Go code derives a shorter deadline by replacing
/// `ctx`; here that would change neither what the fn's awaits race against nor what its callees
/// see, so each way of doing it is a compile error that says what to write instead: rebinding the
/// parameter's name (`let (ctx, _cancel) = ctx.with_timeout(..)`), taking it as `&mut Context`,
/// or as `mut ctx`. What works:
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Error, cancellable};
///
/// // The whole call under a shorter deadline (the caller's earlier one still wins):
/// #[cancellable(timeout = "100ms")]
/// async fn lookup(ctx: &Context) -> Result<u32, Error> {
///     tokio::time::sleep(Duration::from_millis(10)).await;
///     Ok(7)
/// }
///
/// #[cancellable]
/// async fn handle(ctx: &Context) -> Result<u32, Error> {
///     // Part of the call under a derived context: a nested call that takes it...
///     let (child, _cancel) = ctx.with_timeout(Duration::from_millis(50));
///     let n = lookup(&child).await?;
///     // ...or one future raced against it.
///     child.run(tokio::time::sleep(Duration::from_millis(10))).await?;
///     Ok(n)
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// assert_eq!(handle(&Context::background()).await, Ok(7));
/// # }
/// ```
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
/// - **The signature**, which is kept exactly as written (see "Return type").
/// - **Synchronous code** is never interrupted: between two awaits the body runs to the next one.
///   In long CPU loops call `ctx.check()?` (or `Context::current().check()?`), which returns the
///   context's error once it is done.
///
/// # Return type
/// The fn returns `Err(E::from(err))` when its context is done first, so its return type must be
/// a `Result<T, E>` whose `E` implements `From<ctxkit::Error>`: `Result<T, ctxkit::Error>`,
/// `io::Result<T>` (a deadline becomes `TimedOut`, a cancellation `Interrupted`),
/// `anyhow::Result<T>`, or your own error type. The compiler checks this, so a type alias is
/// whatever it names (`type ApiResult<T> = Result<T, ApiError>` works like the `Result` it is),
/// and anything else is an error on the return type that says what to write
/// (`-> Result<Vec<Item>, ctxkit::Error>` for `-> Vec<Item>`). `?` and `return` in the body keep
/// their meaning; `impl Trait` inside the `Result` is fine.
///
/// ```
/// use ctxkit::{Context, cancellable};
///
/// #[derive(Debug, PartialEq)]
/// enum ApiError {
///     NotFound,
///     Stopped(ctxkit::Error),
/// }
/// impl From<ctxkit::Error> for ApiError {
///     fn from(e: ctxkit::Error) -> Self {
///         ApiError::Stopped(e)
///     }
/// }
/// type ApiResult<T> = Result<T, ApiError>;
///
/// #[cancellable]
/// async fn find(id: u32) -> ApiResult<&'static str> {
///     tokio::task::yield_now().await;
///     if id == 1 { Ok("one") } else { Err(ApiError::NotFound) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(find(1).await, Ok("one"));
/// assert_eq!(find(2).await, Err(ApiError::NotFound));
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// assert_eq!(ctx.scope(find(1)).await, Err(ApiError::Stopped(ctxkit::Error::Canceled)));
/// # }
/// ```
///
/// Why the signature is never rewritten (an earlier version turned `-> T` into
/// `-> Result<T, ctxkit::Error>`): the macro sees tokens, not types, so it could only guess from
/// the spelling which types are `Result`s, and an alias such as `ApiResult<()>` was wrapped a
/// second time, silently. Kept as written, the signature means what it says, in rustdoc, in the
/// IDE and to callers; an alias resolves to what it names; and a trait method's impl matches its
/// declaration without annotating the declaration (a bodiless declaration has nothing to rewrite,
/// so `#[cancellable]` there is an error).
///
/// # `#[shield]`
/// `#[shield]` on a statement (`let` or expression statement) of the body lets it finish even
/// if the context is cancelled meanwhile: its awaits are not checked, the call does not end
/// while it runs, and its directly visible awaits run with `ctx.without_cancel()` as the current
/// context (values kept; nested `#[cancellable]` callees that take the current context are not
/// cancelled — a callee given `ctx` itself still races it). After it, the next unshielded await
/// returns the error; with none left, the fn returns normally. `#[shield(timeout = "1s")]` bounds
/// the statement by its own deadline instead (Trio's shielded `move_on_after`): its awaits see a
/// context that is not cancelled by the outer one but has that deadline, and when the deadline
/// passes the statement is dropped and the call returns `Err(DeadlineExceeded)` (converted with
/// `From` like any other error), whether or not the outer context was cancelled. `#[shield]` on a
/// statement without `.await`, or inside a closure or async block, is an error.
///
/// # Cancel safety
/// Every `.await` of the fn is a point where the call may end. There the awaited future is
/// dropped wherever it was, then the body's locals are dropped in reverse order, exactly as if
/// `return Err(..)` stood at that `.await`; nothing after it runs. So at each await the question
/// is: *if this future is dropped now and nothing below runs, is every invariant still true?*
///
/// - **Cancel-safe awaits** lose nothing when dropped: `tokio::time::sleep`, `Context::done`,
///   `recv()` on a tokio `mpsc` or `broadcast` receiver (a message is either returned or still
///   queued), `AsyncReadExt::read` and `AsyncWriteExt::write` (dropped, they have read or
///   written nothing; done, they say how much), `TcpListener::accept`, acquiring a tokio `Mutex`
///   or `Semaphore` (you lose your place in the queue, nothing else).
/// - **Not cancel-safe**: `AsyncWriteExt::write_all` (part of the buffer may already be written:
///   the peer sees a cut message and the stream's framing is lost); `read_exact`, `read_to_end`
///   and `read_line` (bytes are consumed from the stream, and you cannot tell how many); and any
///   **state change that spans awaits**: a `Mutex` guard held across an await while the data it
///   protects is half-updated (the drop releases the lock and the next holder sees the
///   half-update), a transaction whose `commit().await` is in flight (did it commit?), two writes
///   that must both happen (the second never runs).
/// - **What the fn's locals see**: they are dropped as on an early return, so a `Drop` guard can
///   undo or finish what the body started (the talk's `cancelRequestAndCleanup` in the
///   `cancellable_request` example is one). While they drop, the call's context is still the
///   current one and already done: `Context::current().err()` tells a cancellation from an
///   ordinary early return. Data the fn borrowed (`&mut` parameters, shared state) keeps every
///   change made before the await.
/// - **When to use `#[shield]`**: for a statement that must run to its end once started — writing
///   a whole message, a commit, acknowledging what was stored, releasing a remote lease.
///   Prefer `#[shield(timeout = "..")]`, so a peer that stops reading cannot hold the call
///   forever. When the work can be made cancel-safe instead (prepare everything, then one
///   all-or-nothing await; or let a guard restore the invariant on drop), no shield is needed.
///
/// ```
/// use ctxkit::cancellable;
/// use tokio::io::{AsyncWrite, AsyncWriteExt};
///
/// /// Sends one length-prefixed frame. Once its first byte is out the frame must be completed,
/// /// or the peer loses the stream's framing: the write is shielded, with a deadline of its
/// /// own in case the peer stops reading.
/// #[cancellable]
/// async fn send_frame<W>(out: &mut W, payload: &[u8]) -> std::io::Result<()>
/// where
///     W: AsyncWrite + Unpin,
/// {
///     let mut frame = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes().to_vec();
///     frame.extend_from_slice(payload);
///     #[shield(timeout = "2s")]
///     out.write_all(&frame).await?;
///     out.flush().await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut wire = Vec::new();
/// send_frame(&mut wire, b"hello").await.unwrap();
/// assert_eq!(wire, b"\0\0\0\x05hello");
/// # }
/// ```
///
/// The macro knows every await of the fn, so cancel safety can be tested: with the `testing`
/// feature, `ctxkit::testing::cancel_at_every_await` runs a future once without cancellation,
/// then once per await its `#[cancellable]` fns reach, cancelling at that await, and checks your
/// invariants after each run; a failure names the await's `file:line`. Its documentation shows it
/// finding an unshielded `write_all` cut in the middle of a message.
///
/// # Arguments
/// - `timeout = "250ms"`: each call runs under a child context with that timeout (units `ns`,
///   `us`, `ms`, `s`, `m`, `h`; a whole positive number; checked at compile time). A parent's
///   earlier deadline still wins.
/// - `crate = path::to::ctxkit`: where `ctxkit` is, when it is re-exported.
///
/// Works on free fns, methods (`self`, `&self`, `&mut self`), async fns in traits (default
/// bodies) and their impls, with generics, lifetimes, where-clauses and `impl Trait` arguments.
/// Attributes, docs and visibility are kept; the future is `Send` whenever the unannotated one
/// would be. While a body does not parse (as while typing), the fn is emitted with its signature
/// and the body as written, so the only error is rustc's own.
#[proc_macro_attribute]
pub fn cancellable(args: TokenStream, input: TokenStream) -> TokenStream {
    cancellable::cancellable(args.into(), input.into()).into()
}
