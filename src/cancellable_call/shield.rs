//! `#[shield]`: a statement of a `#[cancellable]` body that finishes even when the call is
//! cancelled meanwhile, optionally bounded by its own deadline.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project::pin_project;

use super::{AwaitSite, CallFrame};
use crate::{CancelHandle, Context, Done};

impl CallFrame {
    /// Enters a `#[shield]` statement; the guard leaves it on drop. Its awaits run under
    /// `without_cancel()` of the call's context, bounded by `timeout_nanos` when given.
    #[track_caller]
    pub fn shield(&self, timeout_nanos: Option<u64>) -> ShieldGuard<'_> {
        let free = self.ctx.without_cancel();
        let (ctx, timeout) = match timeout_nanos {
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
            _timeout: timeout,
        }
    }
}

/// An active `#[shield]` statement.
pub struct ShieldGuard<'a> {
    frame: &'a CallFrame,
    /// What the statement's awaits see as current: not cancelled by the call's context, with the
    /// shield's own deadline if it has one.
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

/// An `.await` of a `#[shield]` statement: polled with the shield's context as the current one;
/// under a bounded shield, stops at the shield's deadline.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub(crate) struct ShieldedAwait<'a, F> {
    guard: &'a ShieldGuard<'a>,
    /// The shield's deadline (never resolves for an unbounded shield).
    deadline: Done,
    site: AwaitSite,
    #[pin]
    fut: F,
}

/// Wraps the awaited expression of a shielded statement (opaque for the same reason as
/// `await_point`).
#[cfg_attr(any(feature = "testing", feature = "live"), track_caller)]
#[inline]
pub fn shielded<'a, I: IntoFuture>(
    guard: &'a ShieldGuard<'a>,
    fut: I,
) -> impl Future<Output = I::Output> {
    ShieldedAwait {
        guard,
        deadline: guard.ctx.done(),
        site: AwaitSite::of_caller(),
        fut: fut.into_future(),
    }
}

impl<F: Future> Future for ShieldedAwait<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let guard = *this.guard;
        if guard.ctx.is_done() {
            guard.frame.expired.store(true, Ordering::Relaxed);
            return Poll::Pending;
        }
        let fut = this.fut;
        let polled = guard.ctx.sync_scope(|| fut.poll(cx));
        this.site.polled(guard.frame, polled.is_pending());
        if polled.is_ready() {
            return polled;
        }
        // Only a bounded shield has something to wait for. Once expired, the enclosing
        // `CallBody` sees the flag as soon as this `Pending` reaches it, and ends the call.
        if Pin::new(this.deadline).poll(cx).is_ready() {
            guard.frame.expired.store(true, Ordering::Relaxed);
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for ShieldedAwait<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShieldedAwait")
            .field("guard", self.guard)
            .finish_non_exhaustive()
    }
}
