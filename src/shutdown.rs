//! Graceful two-phase shutdown: [`Shutdown`], a draining phase and a hard deadline.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{CancelHandle, Context};

/// A server's shutdown in two phases: first stop taking new work and let the work in flight
/// finish ([`Shutdown::draining`] is cancelled), then, a grace period later, cancel what is
/// still running ([`Shutdown::hard`] is cancelled, with [`GraceExpired`] as its cause).
///
/// [`signal::notify`](crate::signal::notify) is the one-phase version: it cancels everything at
/// the first signal. Real servers drain first:
/// - run every request under [`Shutdown::hard`] (e.g. `ServerLayer::new(shutdown.hard().clone(), …)`),
///   so requests are cancelled only when the grace period is over;
/// - stop accepting when [`Shutdown::draining`] is done (e.g. axum's
///   `with_graceful_shutdown(shutdown.draining().done())`).
///
/// Draining begins at the first signal ([`Shutdown::on_signals`]) or [`Shutdown::shutdown`]
/// call; the grace period counts from then, on tokio's clock. Cancelling the parent cancels both
/// phases at once, and so does dropping the `Shutdown`.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, GraceExpired, Shutdown, ShutdownRequested};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Shutdown::new(&Context::background(), Duration::from_secs(5));
/// let (request, _done) = shutdown.hard().with_cancel(); // one request in flight
///
/// shutdown.shutdown();
/// shutdown.draining().done().await; // stop accepting new requests here
/// assert!(shutdown.draining().cause().unwrap().is::<ShutdownRequested>());
/// assert!(!request.is_done()); // the request in flight goes on...
///
/// let began = tokio::time::Instant::now();
/// request.done().await; // ...until the grace period is over
/// assert_eq!(began.elapsed(), Duration::from_secs(5));
/// let cause = request.cause().unwrap();
/// assert_eq!(cause.downcast_ref::<GraceExpired>().unwrap().grace(), Duration::from_secs(5));
/// assert_eq!(
///     cause.to_string(),
///     "shutdown: the grace period of 5s is over (draining began: shutdown requested)"
/// );
/// # }
/// ```
pub struct Shutdown {
    draining: Context,
    hard: Context,
    grace: Duration,
    drain: CancelHandle,
    cut: Arc<CancelHandle>,
}

impl Shutdown {
    /// A shutdown whose draining begins when [`Shutdown::shutdown`] is called; both phases are
    /// children of `parent`.
    #[track_caller]
    pub fn new(parent: &Context, grace: Duration) -> Shutdown {
        let (draining, drain) = parent.with_cancel();
        Shutdown::build(parent, draining, drain, grace)
    }

    /// A shutdown whose draining begins at the first of `signals` (its cause is then the
    /// [`SignalReceived`](crate::signal::SignalReceived)), or at [`Shutdown::shutdown`].
    ///
    /// As with [`signal::notify`](crate::signal::notify), a signal that arrives once draining
    /// has begun gets the default action: a second Ctrl-C ends a process whose drain hangs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Shutdown};
    /// use ctxkit::signal::Signal;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::on_signals(
    ///     &Context::background(),
    ///     &[Signal::Interrupt, Signal::Terminate],
    ///     Duration::from_secs(10),
    /// );
    /// // serve under `shutdown.hard()`, stop accepting once `shutdown.draining()` is done
    /// # shutdown.shutdown();
    /// shutdown.draining().done().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, like [`signal::notify`](crate::signal::notify).
    #[cfg(feature = "signal")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
    #[track_caller]
    pub fn on_signals(
        parent: &Context,
        signals: &[crate::signal::Signal],
        grace: Duration,
    ) -> Shutdown {
        let (draining, drain) = crate::signal::notify(parent, signals);
        Shutdown::build(parent, draining, drain, grace)
    }

    #[track_caller]
    fn build(
        parent: &Context,
        draining: Context,
        drain: CancelHandle,
        grace: Duration,
    ) -> Shutdown {
        let (hard, cut) = parent.with_cancel();
        let cut = Arc::new(cut);
        let (watched, link, hard_ctx) = (draining.clone(), Arc::clone(&cut), hard.clone());
        // The callback lives in `draining`'s registry until draining begins (or the `Shutdown`
        // is dropped, which cancels it): no task waits meanwhile.
        drop(draining.after_func(move || start_grace(&watched, &hard_ctx, link, grace)));
        Shutdown {
            draining,
            hard,
            grace,
            drain,
            cut,
        }
    }

    /// Cancelled when draining begins: stop accepting new work.
    pub fn draining(&self) -> &Context {
        &self.draining
    }

    /// Cancelled when the grace period after the start of draining is over (cause:
    /// [`GraceExpired`]), or at once with the parent: the context to run requests under.
    pub fn hard(&self) -> &Context {
        &self.hard
    }

    /// The grace period between draining and the hard cancellation.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Begins draining now (cause: [`ShutdownRequested`]); no-op once draining has begun.
    #[track_caller]
    pub fn shutdown(&self) {
        self.drain.cancel_with(ShutdownRequested);
    }
}

/// Draining has begun: cancel `hard` after the grace period, with a cause that says why.
fn start_grace(draining: &Context, hard: &Context, cut: Arc<CancelHandle>, grace: Duration) {
    if hard.is_done() {
        return;
    }
    let began = draining
        .cause()
        .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
    let cause = GraceExpired { grace, began };
    // A deadline under `hard`: it fires on tokio's clock without anyone polling, and goes away
    // with `hard` if that is cancelled first.
    let (timer, timer_cancel) = hard.with_timeout(grace);
    drop(timer.after_func(move || {
        drop(timer_cancel);
        cut.cancel_with(cause);
    }));
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.drain.cancel();
        self.cut.cancel();
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("draining", &self.draining)
            .field("hard", &self.hard)
            .field("grace", &self.grace)
            .finish()
    }
}

/// The cause of [`Shutdown::draining`] when [`Shutdown::shutdown`] began it. Its text is
/// `shutdown requested`.
///
/// ```
/// assert_eq!(ctxkit::ShutdownRequested.to_string(), "shutdown requested");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShutdownRequested;

impl fmt::Display for ShutdownRequested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shutdown requested")
    }
}

impl std::error::Error for ShutdownRequested {}

/// The cause of [`Shutdown::hard`] (and of every request under it): the grace period after the
/// start of draining is over. Its text names the grace period and why draining began, e.g.
/// `shutdown: the grace period of 10s is over (draining began: received SIGTERM)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraceExpired {
    grace: Duration,
    began: String,
}

impl GraceExpired {
    /// The grace period that is over.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Why draining began: the text of [`Shutdown::draining`]'s cause (`received SIGINT`,
    /// `shutdown requested`, …).
    pub fn draining_began(&self) -> &str {
        &self.began
    }
}

impl fmt::Display for GraceExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown: the grace period of {:?} is over (draining began: {})",
            self.grace, self.began
        )
    }
}

impl std::error::Error for GraceExpired {}
