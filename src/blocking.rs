//! Blocking code under the caller's context: [`spawn_blocking`].

use std::fmt;
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project::pin_project;
use tokio::task::{JoinError, JoinHandle};

use crate::scope::Run;
use crate::{Context, Error};

/// Runs `f` on tokio's blocking pool with the caller's current context current there, and
/// returns a future of its result that ends with the context: Go's `go f(ctx)` for blocking
/// code, with the caller waiting.
///
/// - Inside `f`, [`Context::current`], `K::current()` and `ctx.check()` see the caller's context
///   (and, with the `tracing` feature, the caller's span is current).
/// - The awaiting caller gets `Err(Error::Canceled)` or `Err(Error::DeadlineExceeded)` as soon
///   as the context is done, not when `f` returns. **`f` itself cannot be stopped**: it keeps
///   running, detached, until it returns; make it call [`Context::check`] on
///   `Context::current()` between steps, so that it stops soon after. Its result is then
///   dropped.
/// - If the context is done already, `f` is not started at all.
/// - A panic in `f` resumes in the task that awaits the returned future.
/// - Like any future (and unlike `tokio::task::spawn_blocking`), nothing happens until it is
///   first polled: the context is read then, so `ctx.scope(ctxkit::spawn_blocking(f))` runs `f`
///   under `ctx`, and `f` is started then. If the runtime shuts down before `f` could start,
///   the future returns `Err(Error::Canceled)`.
///
/// Ties follow the crate's [fairness rule](Context::run): when `f` returns while the context is
/// being cancelled, the cancellation wins and `f`'s result is dropped.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Error};
///
/// fn crunch(steps: u32) -> Result<u32, Error> {
///     let ctx = Context::current(); // the caller's context, on the blocking thread
///     for _ in 0..steps {
///         ctx.check()?; // stops soon after the caller gave up
///         std::thread::sleep(Duration::from_millis(1));
///     }
///     Ok(steps)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, cancel) = Context::background().with_cancel();
/// let done = ctx.scope(ctxkit::spawn_blocking(|| crunch(3))).await;
/// assert_eq!(done, Ok(Ok(3)));
///
/// let slow = tokio::spawn(ctx.scope(ctxkit::spawn_blocking(|| crunch(1_000_000))));
/// tokio::task::yield_now().await; // `crunch` starts
/// cancel.cancel();
/// assert_eq!(slow.await.unwrap(), Err(Error::Canceled)); // at once; `crunch` stops at its next check
/// # }
/// ```
///
/// # Panics
///
/// When first polled outside a tokio runtime, like `tokio::task::spawn_blocking`.
pub fn spawn_blocking<F, T>(f: F) -> SpawnBlocking<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    SpawnBlocking {
        start: Some(Box::new(f)),
        run: None,
    }
}

/// Starts `f` with the current context current, unless that context is done already; the race
/// against that context.
fn start<T: Send + 'static>(f: Box<dyn FnOnce() -> T + Send>) -> Run<Join<T>> {
    let current = Context::try_current();
    let ctx = current.clone().unwrap_or_default();
    #[cfg(feature = "tracing")]
    let span = ::tracing::Span::current();
    let handle = (!ctx.is_done()).then(|| {
        tokio::task::spawn_blocking(move || {
            #[cfg(feature = "tracing")]
            let _span = span.enter();
            match current {
                Some(ctx) => ctx.sync_scope(f),
                None => f(),
            }
        })
    });
    ctx.run(Join(handle))
}

/// The future returned by [`spawn_blocking`]: the closure's result, or the context's error as
/// soon as the context is done.
#[pin_project]
#[must_use = "futures do nothing unless polled: the closure starts at the first poll"]
pub struct SpawnBlocking<T> {
    /// The closure, until the first poll starts it.
    start: Option<Box<dyn FnOnce() -> T + Send>>,
    #[pin]
    run: Option<Run<Join<T>>>,
}

impl<T: Send + 'static> Future for SpawnBlocking<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<T, Error>> {
        let mut this = self.project();
        if let Some(f) = this.start.take() {
            this.run.set(Some(start(f)));
        }
        let Some(run) = this.run.as_pin_mut() else {
            panic!("SpawnBlocking polled after completion");
        };
        let joined = match run.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        Poll::Ready(match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_panic() => resume_unwind(e.into_panic()),
            // The runtime shut down before the closure ran.
            Ok(Err(_)) => Err(Error::Canceled),
            Err(e) => Err(e),
        })
    }
}

impl<T> fmt::Debug for SpawnBlocking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnBlocking").finish_non_exhaustive()
    }
}

/// The blocking task's handle; `None` when it was never started (the context was done), which
/// the race never polls.
struct Join<T>(Option<JoinHandle<T>>);

impl<T> Future for Join<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Some(handle) => Pin::new(handle).poll(cx),
            None => Poll::Pending,
        }
    }
}
