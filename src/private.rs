//! Support for the code that `ctxkit`'s macros generate. Not a public API: everything here may
//! change in any release; generated code reaches it only as `::ctxkit::__private::…`.
//!
//! A `#[cancellable]` call keeps one [`Frame`] on its stack (its context, the shield count) and
//! runs its body inside a [`Body`]; each `.await` of the body goes through [`Checked`], each
//! `.await` of a `#[shield]` statement through [`Shielded`]. The protocol between them:
//!
//! - `Checked` answers `Pending` *without polling* its future when the context is done, and
//!   registers nothing: one atomic load per await.
//! - `Body`, right after the body returns `Pending`, stops the call (drops the body, returns
//!   `Err`) when the context is done and no shield is active, or when a bounded shield expired;
//!   otherwise it registers the task's waker on the context (once per call, again only if the
//!   waker changes), so a cancellation wakes the task even if the awaited future never would.
//! - A `Shielded` await never stops on the call's cancellation; under `#[shield(timeout = ..)]`
//!   it stops on its own deadline by flagging the frame and answering `Pending`, which `Body`
//!   turns into `Err(DeadlineExceeded)` in the same poll.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project::pin_project;

use crate::CancelHandle;
use crate::done::Registration;
use crate::race::{self, Watch};
use crate::scope::Scoped;

#[cfg(feature = "propagation")]
pub use crate::propagation::{DisplayFromStr, KeyCodec};
pub use crate::{BoxError, Context, ContextKey, Error};
pub use ::core::clone::Clone;
pub use ::core::mem::drop;
pub use ::core::option::Option;
pub use ::core::result::Result;
pub use ::std::string::String;

/// Bound of `K::current()`: the value is cloned out of the context, so it must be `Clone`. Its
/// own trait so the error says what to do.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Clone`, so `current()` cannot copy it out of the context",
    label = "`K::current()` needs a `Clone` value",
    note = "derive or implement `Clone` for `{Self}`, store an `Arc<{Self}>`, or borrow it with `K::get(&Context::current())`"
)]
pub trait CurrentValue: Clone {}
impl<T: Clone> CurrentValue for T {}

/// The error type of a `#[cancellable]` fn returning `Result<T, E>` must absorb the context's
/// error. Its own trait so the error names `E` and says what to add.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` returns `Err(..)` when cancelled, but `{Self}` cannot hold a `ctxkit::Error`",
    label = "the trait `From<ctxkit::Error>` is not implemented for `{Self}`",
    note = "add `impl From<ctxkit::Error> for {Self}` (e.g. a `Cancelled(ctxkit::Error)` variant), or return `Result<T, ctxkit::Error>`"
)]
pub trait CancelError: From<Error> {}
impl<E: From<Error>> CancelError for E {}

/// The conversion of the context's error into the fn's error type.
#[inline]
pub fn convert<E: CancelError>(err: Error) -> E {
    E::from(err)
}

/// What a `#[cancellable]` fn accepts as its explicit context parameter.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` takes a parameter typed `Context` as the fn's context, but `{Self}` is not `ctxkit::Context`",
    label = "not a `ctxkit::Context`",
    note = "import this other type under another name (`use path::to::Context as AppContext;`) so that `#[cancellable]` does not take it for the fn's context"
)]
pub trait AsContext {
    /// The context, cloned.
    fn to_context(&self) -> Context;
}
impl AsContext for Context {
    #[inline]
    fn to_context(&self) -> Context {
        self.clone()
    }
}
impl<T: AsContext + ?Sized> AsContext for &T {
    #[inline]
    fn to_context(&self) -> Context {
        (**self).to_context()
    }
}
impl<T: AsContext + ?Sized> AsContext for &mut T {
    #[inline]
    fn to_context(&self) -> Context {
        (**self).to_context()
    }
}

/// The explicit context parameter, cloned.
#[inline]
pub fn context_of<C: AsContext + ?Sized>(ctx: &C) -> Context {
    ctx.to_context()
}

/// One call's state: the context it runs under (with its timeout child, if any) and how many
/// shields are active. Lives on the generated fn's stack; `Body`, `Checked` and `Shielded`
/// borrow it.
pub struct Frame {
    ctx: Context,
    shields: AtomicUsize,
    expired: AtomicBool,
    _timeout: Option<CancelHandle>,
}

impl Frame {
    /// The frame of a call under `ctx`, bounded by a `timeout_nanos` child when given.
    #[track_caller]
    #[inline]
    pub fn new(ctx: Context, timeout_nanos: Option<u64>) -> Frame {
        let (ctx, timeout) = match timeout_nanos {
            Some(n) => {
                let (child, handle) = ctx.with_timeout(Duration::from_nanos(n));
                (child, Some(handle))
            }
            None => (ctx, None),
        };
        Frame {
            ctx,
            shields: AtomicUsize::new(0),
            expired: AtomicBool::new(false),
            _timeout: timeout,
        }
    }

    /// Enters a `#[shield]` statement; the guard leaves it on drop. Its awaits run under
    /// `without_cancel()` of the call's context, bounded by `timeout_nanos` when given.
    #[track_caller]
    pub fn shield(&self, timeout_nanos: Option<u64>) -> ShieldGuard<'_> {
        let free = self.ctx.without_cancel();
        let (ctx, handle) = match timeout_nanos {
            Some(n) => {
                let (child, handle) = free.with_timeout(Duration::from_nanos(n));
                (child, Some(handle))
            }
            None => (free, None),
        };
        self.shields.fetch_add(1, Ordering::Relaxed);
        ShieldGuard {
            frame: self,
            ctx,
            _timeout: handle,
        }
    }

    /// The error the call ends with now, if it must end: a bounded shield expired, or the
    /// context is done outside every shield.
    #[inline]
    fn stop(&self) -> Option<Error> {
        if self.expired.load(Ordering::Relaxed) {
            return Some(Error::DeadlineExceeded);
        }
        if self.shields.load(Ordering::Relaxed) == 0 && self.ctx.is_done() {
            return Some(self.ctx.err().unwrap_or(Error::Canceled));
        }
        None
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("ctx", &self.ctx)
            .field("shields", &self.shields.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// An active `#[shield]` statement.
pub struct ShieldGuard<'a> {
    frame: &'a Frame,
    ctx: Context,
    _timeout: Option<CancelHandle>,
}

impl Drop for ShieldGuard<'_> {
    fn drop(&mut self) {
        self.frame.shields.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for ShieldGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShieldGuard")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// The body of a `#[cancellable]` call: runs it scoped to the call's context and ends it (drops
/// it, returns `Err`) at its first suspension where the frame says stop.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Body<'a, F: Future> {
    frame: &'a Frame,
    /// Made at the first `Pending`: a call that never suspends never touches the registry.
    reg: Option<Registration>,
    #[pin]
    fut: Option<Scoped<F>>,
}

impl<'a, F: Future> Body<'a, F> {
    /// The body `fut` of a call with frame `frame`.
    #[inline]
    pub fn new(frame: &'a Frame, fut: F) -> Self {
        Body {
            frame,
            reg: None,
            fut: Some(frame.ctx.scope(fut)),
        }
    }
}

impl<F: Future> Future for Body<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut watch = CallWatch {
            frame: this.frame,
            reg: this.reg,
        };
        race::poll_race(&mut watch, this.fut, cx)
    }
}

/// When a `#[cancellable]` call must stop: its frame says so (the context is done outside every
/// shield, or a bounded shield expired).
struct CallWatch<'a, 'f> {
    frame: &'a Frame,
    reg: &'f mut Option<Registration>,
}

impl Watch for CallWatch<'_, '_> {
    #[inline]
    fn stopped(&self) -> Option<Error> {
        self.frame.stop()
    }

    fn poll_stopped(&mut self, cx: &mut TaskContext<'_>) -> Poll<Error> {
        if let Some(err) = self.frame.stop() {
            return Poll::Ready(err);
        }
        if self.frame.shields.load(Ordering::Relaxed) != 0 {
            // A shield is running: only its own deadline ends it, which its await watches.
            return Poll::Pending;
        }
        // Registered at the first `Pending`: a call that never suspends never touches the
        // registry.
        let frame = self.frame;
        let reg = self
            .reg
            .get_or_insert_with(|| Registration::new(frame.ctx.source().cloned()));
        reg.poll_stopped(cx)
    }
}

impl<F: Future> fmt::Debug for Body<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("frame", self.frame)
            .finish_non_exhaustive()
    }
}

/// An `.await` of a `#[cancellable]` body: `Pending` without polling once the call's context is
/// done (the enclosing `Body` then ends the call in the same poll).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Checked<'a, F> {
    frame: &'a Frame,
    #[pin]
    fut: F,
}

impl<'a, F: Future> Checked<'a, F> {
    /// Wraps the awaited expression (anything `IntoFuture`, as `.await` accepts).
    #[inline]
    pub fn new<I: IntoFuture<IntoFuture = F>>(frame: &'a Frame, fut: I) -> Self {
        Checked {
            frame,
            fut: fut.into_future(),
        }
    }
}

/// `Checked::new` for the expansion. The opaque return type keeps a non-future to one error
/// ("`T` is not a future", on the user's expression) instead of a second one on `.await`.
#[inline]
pub fn checked<I: IntoFuture>(frame: &Frame, fut: I) -> impl Future<Output = I::Output> {
    Checked::new(frame, fut)
}

/// `Shielded::new` for the expansion (opaque for the same reason as [`checked`]).
#[inline]
pub fn shielded<'a, I: IntoFuture>(
    guard: &'a ShieldGuard<'a>,
    fut: I,
) -> impl Future<Output = I::Output> {
    Shielded::new(guard, fut)
}

impl<F: Future> Future for Checked<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.frame.ctx.is_done() {
            return Poll::Pending;
        }
        this.fut.poll(cx)
    }
}

impl<F> fmt::Debug for Checked<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checked").finish_non_exhaustive()
    }
}

/// An `.await` of a `#[shield]` statement: polled with the shield's context as the current one;
/// under a bounded shield, stops at the shield's deadline.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Shielded<'a, F> {
    guard: &'a ShieldGuard<'a>,
    reg: Registration,
    #[pin]
    fut: F,
}

impl<'a, F: Future> Shielded<'a, F> {
    /// Wraps the awaited expression of a shielded statement.
    #[inline]
    pub fn new<I: IntoFuture<IntoFuture = F>>(guard: &'a ShieldGuard<'a>, fut: I) -> Self {
        Shielded {
            guard,
            reg: Registration::new(guard.ctx.source().cloned()),
            fut: fut.into_future(),
        }
    }
}

impl<F: Future> Future for Shielded<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.reg.is_done() {
            this.guard.frame.expired.store(true, Ordering::Relaxed);
            return Poll::Pending;
        }
        let guard = *this.guard;
        let fut = this.fut;
        if let Poll::Ready(v) = guard.ctx.sync_scope(|| fut.poll(cx)) {
            return Poll::Ready(v);
        }
        // Only a bounded shield has something to wait for. Once expired, the enclosing `Body`
        // sees the flag as soon as this `Pending` reaches it, and ends the call.
        if this.reg.poll_done(cx).is_ready() {
            guard.frame.expired.store(true, Ordering::Relaxed);
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for Shielded<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shielded")
            .field("guard", self.guard)
            .finish_non_exhaustive()
    }
}
