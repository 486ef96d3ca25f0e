//! Cancel-safety testing (feature `testing`): cancel a `#[cancellable]` fn at each of its awaits
//! in turn and check your invariants after each run.
//!
//! Every `.await` of a `#[cancellable]` fn is a point where the call may end and the awaited
//! future be dropped half-way (see "Cancel safety" in the docs of
//! [`cancellable`](crate::cancellable)). Which of those points break an invariant is hard to see
//! and harder to hit by chance; [`cancel_at_every_await`] hits each of them once.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! ctxkit = { version = "0.1", features = ["testing"] }
//! ```
//!
//! Without the feature the expansion of `#[cancellable]` is the same and its awaits do no extra
//! work; with it, each call looks up once whether a test is watching it, and each await reports
//! its first poll.
//!
//! # Finding a cut message
//!
//! `write_all` is not cancel-safe: dropped while the peer is slow to read, it leaves part of the
//! message on the wire. A message protocol's invariant is "the peer sees whole messages or
//! nothing":
//!
//! ```
//! use ctxkit::testing::cancel_at_every_await;
//! use ctxkit::{Context, cancellable};
//! use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
//!
//! #[cancellable]
//! async fn send<W: AsyncWrite + Unpin>(out: &mut W, message: &[u8]) -> std::io::Result<()> {
//!     out.write_all(message).await?;
//!     out.flush().await
//! }
//!
//! /// Sends a 128-byte message through a 48-byte pipe; returns what the peer received.
//! async fn received(_ctx: Context) -> Vec<u8> {
//!     let (mut tx, mut rx) = tokio::io::duplex(48);
//!     let peer = tokio::spawn(async move {
//!         let mut received = Vec::new();
//!         rx.read_to_end(&mut received).await.map(|_| received)
//!     });
//!     let _ = send(&mut tx, &[7; 128]).await;
//!     drop(tx);
//!     peer.await.unwrap().unwrap()
//! }
//!
//! fn whole_or_nothing(received: Vec<u8>) {
//!     let n = received.len();
//!     assert!(n == 0 || n == 128, "the peer received {n} of 128 bytes");
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let test = tokio::spawn(cancel_at_every_await(received, whole_or_nothing));
//! let panic = test.await.unwrap_err().into_panic();
//! let report = panic.downcast_ref::<String>().unwrap();
//! // "cancel_at_every_await: cancelled at await 1 of 2, src/lib.rs:9:28 (the awaited future was
//! // in flight and was dropped): the peer received 48 of 128 bytes"
//! assert!(report.contains("cancelled at await 1 of 2"), "{report}");
//! assert!(report.contains("received 48 of 128 bytes"), "{report}");
//! # }
//! ```
//!
//! With the write shielded, `#[shield(timeout = "2s")] out.write_all(message).await?;`, the same
//! test passes: cancelled during the write, the call finishes it and stops at the flush.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use crate::{CancelHandle, Context, ContextKey};

/// Runs the future `make` builds once without cancellation, then once per await that run
/// reached, cancelling its context at the k-th await reached by a `#[cancellable]` fn, and
/// calls `check` with each run's output. A failed check (a panic) fails the test with the
/// await's `file:line:column` and what `check` said.
///
/// `make` gets each run's context; the future it returns also runs with that context as the
/// current one, so `#[cancellable]` fns without a context parameter are covered too. Every await
/// of every `#[cancellable]` fn running under that context counts, in the order they are first
/// polled (nested calls included; awaits inside closures, async blocks and macro invocations are
/// not the fn's own and do not count).
///
/// What "cancelling at an await" does: the awaited future is polled once, as it would be, and
/// then the context is cancelled. If it did not complete (it is in flight, like a half-done
/// `write_all`), the call ends there and drops it; if it did, the call ends at its next await.
/// Both are states a real cancellation can leave behind. An await inside a `#[shield]` statement
/// counts too: there the cancellation must be absorbed.
///
/// A fn whose run reaches N awaits costs N + 1 runs. The future must take the same path on every
/// run up to the cancellation (in-memory I/O, tokio's paused clock): a run that never reaches its
/// await fails the test and says so.
///
/// ```
/// use std::sync::Mutex;
/// use ctxkit::{Context, Error, cancellable};
///
/// /// Moves `amount` between two accounts, yielding between the two writes.
/// #[cancellable]
/// async fn transfer(accounts: &Mutex<[i64; 2]>, amount: i64) -> Result<(), Error> {
///     accounts.lock().unwrap()[0] -= amount;
///     #[shield] // without it, a cancellation here would lose the money
///     tokio::task::yield_now().await;
///     accounts.lock().unwrap()[1] += amount;
///     tokio::task::yield_now().await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let explored = ctxkit::testing::cancel_at_every_await(
///     |_ctx: Context| async {
///         let accounts = Mutex::new([100, 0]);
///         let _ = transfer(&accounts, 30).await;
///         accounts.into_inner().unwrap()
///     },
///     |accounts| assert_eq!(accounts[0] + accounts[1], 100, "money appeared or vanished"),
/// )
/// .await;
/// assert_eq!(explored.runs(), 3); // two awaits reached: three runs
/// # }
/// ```
///
/// # Panics
///
/// When `check` panics (with its message, the await's location and whether it was in flight),
/// when the future panics, and when a run does not reach the await it should be cancelled at.
pub async fn cancel_at_every_await<Make, Fut, Check>(mut make: Make, mut check: Check) -> Explored
where
    Make: FnMut(Context) -> Fut,
    Fut: Future,
    Check: FnMut(Fut::Output),
{
    let reference = Arc::new(Probe::new(None));
    let output = run(&mut make, &reference, "the run without cancellation").await;
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| check(output))) {
        panic!(
            "cancel_at_every_await: the check failed on the run without cancellation: {}",
            message(&*panic)
        );
    }
    let awaits = reference.take_reached();
    for (k, expected) in awaits.iter().enumerate() {
        let at = k + 1;
        let probe = Arc::new(Probe::new(Some(at)));
        let what = format!("the run cancelled at await {at} of {}", awaits.len());
        let output = run(&mut make, &probe, &what).await;
        let Some(hit) = probe.take_hit() else {
            panic!(
                "cancel_at_every_await: {what} ({}) never reached it: the future took another \
                 path than the run without cancellation; make it deterministic (in-memory I/O, \
                 tokio's paused clock)",
                expected.location
            );
        };
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| check(output))) {
            panic!(
                "cancel_at_every_await: cancelled at await {at} of {}, {} ({}): {}",
                awaits.len(),
                hit.location,
                if hit.in_flight {
                    "the awaited future was in flight and was dropped"
                } else {
                    "the awaited future had completed; the call ended at its next await"
                },
                message(&*panic)
            );
        }
    }
    Explored {
        runs: awaits.len() + 1,
        awaits,
    }
}

/// One run: a fresh context watched by `probe`, current for the future `make` builds.
async fn run<Make, Fut>(make: &mut Make, probe: &Arc<Probe>, what: &str) -> Fut::Output
where
    Make: FnMut(Context) -> Fut,
    Fut: Future,
{
    let (ctx, cancel) = Context::background().with_cancel();
    let ctx = ctx.with_value::<ProbeKey>(probe.clone());
    *probe.cancel.lock().unwrap_or_else(PoisonError::into_inner) = Some(cancel);
    let fut = ctx.scope(make(ctx.clone()));
    let output = CatchUnwind(Box::pin(fut)).await;
    // The handle lives in the probe, which lives in the context: break the loop.
    drop(
        probe
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(),
    );
    match output {
        Ok(output) => output,
        Err(panic) => panic!(
            "cancel_at_every_await: {what} panicked: {}",
            message(&*panic)
        ),
    }
}

/// What [`cancel_at_every_await`] explored.
#[derive(Debug, Clone)]
pub struct Explored {
    runs: usize,
    awaits: Vec<ReachedAwait>,
}

impl Explored {
    /// How many times the future ran: the awaits reached, plus the run without cancellation.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// The awaits the run without cancellation reached, in order: each was the cancellation
    /// point of one run.
    pub fn awaits(&self) -> &[ReachedAwait] {
        &self.awaits
    }
}

/// An await that a `#[cancellable]` fn reached.
#[derive(Debug, Clone, Copy)]
pub struct ReachedAwait {
    location: &'static Location<'static>,
    in_flight: bool,
}

impl ReachedAwait {
    /// Where the `.await` is.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// Whether its first poll left the awaited future in flight (it did not complete at once).
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }
}

/// Watches the awaits of the `#[cancellable]` calls under one run's context; it is a value of
/// that context, which each call looks up once.
pub(crate) struct Probe {
    /// Cancel at this await (1-based), or never (the run without cancellation).
    target: Option<usize>,
    reached: AtomicUsize,
    cancel: Mutex<Option<CancelHandle>>,
    /// Without a target, every await reached; with one, the await cancelled at.
    log: Mutex<Vec<ReachedAwait>>,
}

struct ProbeKey;

impl ContextKey for ProbeKey {
    type Value = Arc<Probe>;
}

impl Probe {
    fn new(target: Option<usize>) -> Probe {
        Probe {
            target,
            reached: AtomicUsize::new(0),
            cancel: Mutex::new(None),
            log: Mutex::new(Vec::new()),
        }
    }

    /// The probe watching calls under `ctx`, if a test is.
    pub(crate) fn of(ctx: &Context) -> Option<Arc<Probe>> {
        ctx.value::<ProbeKey>().cloned()
    }

    /// A call's await at `location` was polled for the first time.
    pub(crate) fn reached(&self, location: &'static Location<'static>, in_flight: bool) {
        let n = self.reached.fetch_add(1, Ordering::Relaxed) + 1;
        let reached = ReachedAwait {
            location,
            in_flight,
        };
        match self.target {
            None => self.log().push(reached),
            Some(target) if target == n => {
                self.log().push(reached);
                let cancel = self.cancel.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(cancel) = cancel.as_ref() {
                    cancel.cancel_with(CancelledAtAwait { n, location });
                }
            }
            Some(_) => {}
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<ReachedAwait>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_reached(&self) -> Vec<ReachedAwait> {
        std::mem::take(&mut *self.log())
    }

    fn take_hit(&self) -> Option<ReachedAwait> {
        self.log().pop()
    }
}

/// The cause of a run's cancellation: which await it was cancelled at.
#[derive(Debug)]
struct CancelledAtAwait {
    n: usize,
    location: &'static Location<'static>,
}

impl fmt::Display for CancelledAtAwait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cancel_at_every_await cancelled at await {} ({})",
            self.n, self.location
        )
    }
}

impl std::error::Error for CancelledAtAwait {}

/// Polls the run's future, catching a panic so that the report can say which run it was.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// A panic's message, when it has one.
fn message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(a panic without a message)"
    }
}
