//! Racing a future against cancellation: written once, with one rule for a tie.
//!
//! [`Context::run`](crate::Context::run), the `#[cancellable]` body, the tower layers and the
//! signal listener all step their race with [`poll_race`], so they agree on who wins.
//!
//! # Fairness
//!
//! Each poll of a race does three things, in this order:
//!
//! 1. If the cancellation is already visible, it wins: the future is dropped without being
//!    polled again, and the race ends with the context's error.
//! 2. Otherwise the future is polled. If it completes, its output wins, even if the context was
//!    cancelled while it ran: that poll did the work, and its result is not thrown away.
//! 3. Otherwise the race registers for the cancellation and, if it arrived meanwhile, ends with
//!    the error (dropping the future at once, not whenever the race itself is dropped).
//!
//! So when a response and a cancellation arrive in the same wake-up, the cancellation wins: the
//! next poll sees it first. A future that is ready on its first poll under a live context always
//! completes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::Error;

/// What a race watches besides its future: a context's cancellation, or a `#[cancellable]`
/// call's rule for when it must stop.
pub(crate) trait Watch {
    /// The error to end with now, if the race must end: one cheap check, no registration.
    fn stopped(&self) -> Option<Error>;

    /// Like [`Watch::stopped`], and otherwise makes sure `cx`'s waker is woken when that may
    /// change.
    fn poll_stopped(&mut self, cx: &mut TaskContext<'_>) -> Poll<Error>;
}

/// One poll of a race between `fut` and `watch`, under the [fairness rule](self). `fut` is
/// dropped (set to `None`) as soon as the race is decided.
///
/// # Panics
///
/// When polled again after it returned `Ready` (like any future polled after completion).
pub(crate) fn poll_race<F: Future>(
    watch: &mut impl Watch,
    mut fut: Pin<&mut Option<F>>,
    cx: &mut TaskContext<'_>,
) -> Poll<Result<F::Output, Error>> {
    let Some(running) = fut.as_mut().as_pin_mut() else {
        panic!("a future racing a context was polled after completion");
    };
    if let Some(err) = watch.stopped() {
        fut.set(None);
        return Poll::Ready(Err(err));
    }
    if let Poll::Ready(v) = running.poll(cx) {
        fut.set(None);
        return Poll::Ready(Ok(v));
    }
    match watch.poll_stopped(cx) {
        Poll::Ready(err) => {
            fut.set(None);
            Poll::Ready(Err(err))
        }
        Poll::Pending => Poll::Pending,
    }
}
