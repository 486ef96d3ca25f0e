//! The implicit current context: a task-local that [`Context::scope`] sets for a future, plus
//! [`Context::run`] and [`spawn`], which carry it along.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project::pin_project;
use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;

use crate::done::Registration;
use crate::race;
use crate::{Context, Error};

tokio::task_local! {
    static CURRENT: Context;
}

impl Context {
    /// The implicit context of the running code: the one set by the nearest enclosing
    /// [`Context::scope`] / [`Context::sync_scope`] (or `#[cancellable]` fn), else
    /// [`Context::background`].
    pub fn current() -> Context {
        Context::try_current().unwrap_or_default()
    }

    /// The implicit context, or `None` outside every scope.
    pub fn try_current() -> Option<Context> {
        CURRENT.try_with(Context::clone).ok()
    }

    /// Makes `self` the current context while `fut` runs (on every poll, on whatever thread).
    /// The returned future owns a clone of `self`: it is `'static` and `Send` whenever `fut` is.
    ///
    /// ```
    /// use ctxkit::{Context, ContextKey};
    ///
    /// struct Tenant;
    /// impl ContextKey for Tenant {
    ///     type Value = &'static str;
    /// }
    ///
    /// async fn handler() -> Option<&'static str> {
    ///     Context::current().value::<Tenant>().copied()
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_value::<Tenant>("acme");
    /// assert_eq!(ctx.scope(handler()).await, Some("acme"));
    /// assert_eq!(handler().await, None);
    /// # }
    /// ```
    pub fn scope<F: Future>(&self, fut: F) -> Scoped<F> {
        Scoped {
            inner: CURRENT.scope(self.clone(), fut),
        }
    }

    /// Makes `self` the current context while `f` runs (synchronous code, any thread).
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (ctx, _cancel) = Context::background().with_cancel();
    /// let seen = ctx.sync_scope(Context::current);
    /// assert!(seen.same(&ctx));
    /// assert!(Context::try_current().is_none());
    /// ```
    pub fn sync_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    /// Runs `fut` scoped to `self` and races it against cancellation: `Err` as soon as this
    /// context is done (dropping `fut` at once), `Ok` with its output otherwise.
    ///
    /// # Fairness
    ///
    /// The cancellation is checked before every poll of `fut` and wins if it is visible then; a
    /// poll of `fut` that completes wins over a cancellation that arrives during it. So when the
    /// output and the cancellation arrive in the same wake-up, the cancellation wins. The same
    /// rule holds for `#[cancellable]` fns, for the tower layers and everywhere else ctxkit races
    /// a future against a context.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// assert_eq!(ctx.run(async { 1 + 1 }).await, Ok(2));
    /// cancel.cancel();
    /// assert_eq!(ctx.run(async { 1 + 1 }).await, Err(Error::Canceled));
    /// # }
    /// ```
    pub fn run<F: Future>(&self, fut: F) -> Run<F> {
        Run {
            reg: Registration::new(self.source().cloned()),
            ctx: self.clone(),
            fut: Some(self.scope(fut)),
        }
    }
}

/// The future returned by [`Context::scope`].
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F: Future> {
    #[pin]
    inner: TaskLocalFuture<Context, F>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F: Future> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}

/// The future returned by [`Context::run`].
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Run<F: Future> {
    reg: Registration,
    ctx: Context,
    #[pin]
    fut: Option<Scoped<F>>,
}

impl<F: Future> Future for Run<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        race::poll_race(this.reg, this.fut, cx)
    }
}

impl<F: Future> fmt::Debug for Run<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// `tokio::spawn` that carries the current context into the new task, so it stays current there
/// (and the task's `#[cancellable]` fns are cancelled with it).
///
/// ```
/// use ctxkit::{Context, spawn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, _cancel) = Context::background().with_cancel();
/// let seen = ctx
///     .scope(async { spawn(async { Context::current() }).await.unwrap() })
///     .await;
/// assert!(seen.same(&ctx));
/// # }
/// ```
///
/// # Panics
///
/// Like `tokio::spawn`, outside a tokio runtime.
#[track_caller]
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Context::current().scope(fut))
}
