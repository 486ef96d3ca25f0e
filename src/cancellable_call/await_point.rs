//! One `.await` of a `#[cancellable]` body, and where it is in the user's code.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project::pin_project;

use super::CallFrame;

/// What an await knows about itself for the features that report awaits (`testing`: which
/// await a cancel-safety test cancelled at; `live`: where a suspended call waits): its place in
/// the user's code and whether it was polled before. Zero-sized, and every method empty, without
/// them: the macro's expansion is the same either way.
pub(crate) struct AwaitSite {
    #[cfg(any(feature = "testing", feature = "live"))]
    location: &'static std::panic::Location<'static>,
    #[cfg(feature = "testing")]
    started: bool,
}

impl AwaitSite {
    /// The site of the caller's caller: the expansion's call of an await wrapper, which the
    /// macro spans on the user's `.await`.
    #[cfg_attr(any(feature = "testing", feature = "live"), track_caller)]
    #[inline(always)]
    pub(crate) fn of_caller() -> AwaitSite {
        AwaitSite {
            #[cfg(any(feature = "testing", feature = "live"))]
            location: std::panic::Location::caller(),
            #[cfg(feature = "testing")]
            started: false,
        }
    }

    /// The await's future was polled (`pending`: it did not complete); the first poll is when
    /// the call reaches this await.
    #[inline(always)]
    pub(crate) fn polled(&mut self, frame: &CallFrame, pending: bool) {
        #[cfg(feature = "testing")]
        if !self.started {
            self.started = true;
            if let Some(probe) = &frame.probe {
                probe.reached(self.location, pending);
            }
        }
        // The live tree: the call is suspended here until its next poll (`CallBody::poll`
        // clears it); an await that completes at once costs nothing.
        #[cfg(feature = "live")]
        if pending {
            frame.live.suspended(self.location, &frame.ctx);
        }
        let _ = (frame, pending);
    }
}

/// An `.await` of a `#[cancellable]` body: `Pending` without polling once the call's context is
/// done (the enclosing [`CallBody`](super::CallBody) then ends the call in the same poll).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub(crate) struct AwaitPoint<'a, F> {
    frame: &'a CallFrame,
    site: AwaitSite,
    #[pin]
    fut: F,
}

/// Wraps the awaited expression (anything `IntoFuture`, as `.await` accepts). The return type is
/// opaque so that awaiting a non-future is reported as rustc's "`T` is not a future" on the
/// user's expression, not as a missing impl on a type of ours.
#[cfg_attr(any(feature = "testing", feature = "live"), track_caller)]
#[inline]
pub fn await_point<I: IntoFuture>(frame: &CallFrame, fut: I) -> impl Future<Output = I::Output> {
    AwaitPoint {
        frame,
        site: AwaitSite::of_caller(),
        fut: fut.into_future(),
    }
}

impl<F: Future> Future for AwaitPoint<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.frame.ctx.is_done() {
            return Poll::Pending;
        }
        let polled = this.fut.poll(cx);
        this.site.polled(this.frame, polled.is_pending());
        polled
    }
}

impl<F> fmt::Debug for AwaitPoint<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitPoint").finish_non_exhaustive()
    }
}
