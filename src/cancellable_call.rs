//! A `#[cancellable]` call at run time: the futures the macro's expansion awaits.
//!
//! A call keeps one [`CallFrame`] on its stack (its context, its shields) and runs its body as a
//! [`CallBody`]; each `.await` of the body goes through an [`AwaitPoint`](await_point::AwaitPoint), each `.await` of a
//! `#[shield]` statement through a [`ShieldedAwait`](shield::ShieldedAwait). The protocol between them:
//!
//! - An `AwaitPoint` answers `Pending` *without polling* its future once the context is done, and
//!   registers nothing: one atomic load per await.
//! - The `CallBody` races the body against the frame with [`race::poll_race`] (the crate's one
//!   race, with its one fairness rule): right after the body returns `Pending`, it stops the call
//!   (drops the body, returns `Err`) when the context is done and no shield is active, or when a
//!   bounded shield expired; otherwise it registers the task's waker on the context (once per
//!   call), so a cancellation wakes the task even if the awaited future never would.
//! - A `ShieldedAwait` never stops on the call's cancellation; under `#[shield(timeout = ..)]` it
//!   stops on its own deadline by flagging the frame and answering `Pending`, which the
//!   `CallBody` turns into `Err(DeadlineExceeded)` in the same poll.
//!
//! Every await knows its place in the user's code ([`AwaitSite`]) only when a feature needs it
//! (`testing`, `live`): then the await wrappers are `#[track_caller]` and the macro's call of them is
//! spanned on the user's `.await`, so `Location::caller()` is that await's `file:line:column`.
//! Without such a feature the site is a zero-sized value and the wrappers take no hidden
//! location argument: the expansion is the same and costs nothing more.

mod await_point;
mod shield;
mod signature;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project::pin_project;

use crate::race::{self, Watch};
use crate::scope::Scoped;
use crate::{CancelHandle, Context, Done, Error};

pub(crate) use await_point::AwaitSite;
pub use await_point::await_point;
pub use shield::{ShieldGuard, shielded};
pub use signature::{AsContext, CancelError, CancelResult, cancelled, context_of};

/// One call's state: the context it runs under (with its timeout child, if any) and its
/// shields. Lives on the generated fn's stack; the call's futures borrow it.
pub struct CallFrame {
    ctx: Context,
    /// Active `#[shield]` statements: while one runs, the call does not stop on cancellation.
    shields: AtomicUsize,
    /// A bounded shield's deadline passed: the call ends with `DeadlineExceeded`.
    expired: AtomicBool,
    _timeout: Option<CancelHandle>,
    /// Where a cancel-safety test wants to hear about this call's awaits.
    #[cfg(feature = "testing")]
    probe: Option<std::sync::Arc<crate::testing::Probe>>,
    /// The call as the live tree shows it.
    #[cfg(feature = "live")]
    live: crate::live::CallSlot,
}

impl CallFrame {
    /// The frame of a call of fn `name` (its path) under `ctx`, bounded by a `timeout_nanos`
    /// child when given (its origin is the caller's location: the macro spans this call on the
    /// fn's name).
    #[track_caller]
    #[inline]
    pub fn new(ctx: Context, timeout_nanos: Option<u64>, name: &'static str) -> CallFrame {
        #[cfg(not(feature = "live"))]
        let _ = name;
        let (ctx, timeout) = match timeout_nanos {
            Some(n) => {
                let (child, handle) = ctx.with_timeout(Duration::from_nanos(n));
                (child, Some(handle))
            }
            None => (ctx, None),
        };
        CallFrame {
            #[cfg(feature = "testing")]
            probe: crate::testing::Probe::of(&ctx),
            #[cfg(feature = "live")]
            live: crate::live::CallSlot::new(name, std::panic::Location::caller()),
            ctx,
            shields: AtomicUsize::new(0),
            expired: AtomicBool::new(false),
            _timeout: timeout,
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

impl fmt::Debug for CallFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFrame")
            .field("ctx", &self.ctx)
            .field("shields", &self.shields.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The body of a `#[cancellable]` call: runs it scoped to the call's context and ends it (drops
/// it, returns `Err`) at its first suspension where the frame says stop.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct CallBody<'a, F: Future> {
    frame: &'a CallFrame,
    /// Made at the first `Pending`: a call that never suspends never registers anything.
    done: Option<Done>,
    #[pin]
    fut: Option<Scoped<F>>,
}

impl<'a, F: Future> CallBody<'a, F> {
    /// The body `fut` of a call with frame `frame`.
    #[inline]
    pub fn new(frame: &'a CallFrame, fut: F) -> Self {
        CallBody {
            frame,
            done: None,
            fut: Some(frame.ctx.scope(fut)),
        }
    }
}

impl<F: Future> Future for CallBody<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The live tree: running, until an await suspends the call again.
        #[cfg(feature = "live")]
        this.frame.live.resumed();
        let mut watch = CallWatch {
            frame: this.frame,
            done: this.done,
        };
        race::poll_race(&mut watch, this.fut, cx)
    }
}

impl<F: Future> fmt::Debug for CallBody<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBody")
            .field("frame", self.frame)
            .finish_non_exhaustive()
    }
}

/// When a `#[cancellable]` call must stop: its frame says so (the context is done outside every
/// shield, or a bounded shield expired).
struct CallWatch<'a, 'f> {
    frame: &'a CallFrame,
    done: &'f mut Option<Done>,
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
        let frame = self.frame;
        let done = self.done.get_or_insert_with(|| frame.ctx.done());
        match Pin::new(done).poll(cx) {
            Poll::Ready(()) => Poll::Ready(frame.ctx.err().unwrap_or(Error::Canceled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

// Without a feature that reports awaits, an await carries what it did before there was one.
#[cfg(all(test, not(feature = "testing"), not(feature = "live")))]
mod tests {
    use super::await_point::AwaitPoint;
    use super::*;

    /// An await holds its frame and its future, nothing more.
    #[test]
    fn an_await_carries_nothing_more_without_the_testing_feature() {
        use std::future::Ready;
        assert_eq!(size_of::<AwaitSite>(), 0);
        assert_eq!(
            size_of::<AwaitPoint<'static, Ready<u64>>>(),
            size_of::<&CallFrame>() + size_of::<Ready<u64>>()
        );
    }
}
