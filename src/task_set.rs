//! [`TaskSet`]: tokio's `JoinSet` under a context, for tasks that return values.

use std::fmt;
use std::future::Future;
use std::panic::resume_unwind;

use tokio::task::{AbortHandle, JoinError, JoinSet};

use crate::{CancelHandle, Context};

/// A set of tasks whose results you collect, under a context: tokio's `JoinSet` where every
/// task runs with its own child of the set's context current.
///
/// Use it where each task returns a value you want ([`TaskSet::join_next`], as they finish);
/// use [`Group`](crate::Group) (Go's errgroup) where tasks return `Result<(), E>` and the first
/// error should cancel the others.
///
/// - Each task's context is a child of [`TaskSet::context`], current in the task (so its
///   `#[cancellable]` fns, [`ctxkit::spawn`](crate::spawn)s and lookups see it). It is cancelled
///   when the task ends or is aborted, so whatever the task started under it stops too.
/// - With the `tracing` feature, each task runs in the span current where it was spawned.
/// - [`TaskSet::cancel`] cancels the set's context, and with it every task's; tasks end when
///   they look at it. Dropping the set cancels it and aborts every task.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, TaskSet, cancellable};
///
/// #[cancellable]
/// async fn fetch(id: u32) -> Result<u32, ctxkit::Error> {
///     tokio::time::sleep(Duration::from_millis(u64::from(10 * id))).await;
///     Ok(id * 100)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (request, _cancel) = Context::background().with_timeout(Duration::from_millis(25));
/// let mut set = TaskSet::new(&request);
/// for id in 1..=3 {
///     set.spawn(fetch(id));
/// }
/// let mut got = Vec::new();
/// while let Some(done) = set.join_next().await {
///     got.push(done.unwrap());
/// }
/// // The third fetch outlived the request's deadline.
/// assert_eq!(got, [Ok(100), Ok(200), Err(ctxkit::Error::DeadlineExceeded)]);
/// # }
/// ```
pub struct TaskSet<T> {
    ctx: Context,
    cancel: CancelHandle,
    set: JoinSet<T>,
}

impl<T: Send + 'static> TaskSet<T> {
    /// An empty set whose context is a child of `parent`.
    #[track_caller]
    pub fn new(parent: &Context) -> TaskSet<T> {
        let (ctx, cancel) = parent.with_cancel();
        TaskSet {
            ctx,
            cancel,
            set: JoinSet::new(),
        }
    }

    /// The set's context: the parent of every task's context. Cancelled by
    /// [`TaskSet::cancel`], by its parent, and when the set is dropped.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Starts `fut` as a task of the set, with a new child of the set's context current in it
    /// (cancelled when the task ends). Its output is returned by [`TaskSet::join_next`]; the
    /// handle aborts it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `JoinSet::spawn`.
    #[track_caller]
    pub fn spawn<F>(&mut self, fut: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (ctx, end) = self.ctx.with_cancel();
        #[cfg(feature = "tracing")]
        let fut = ::tracing::Instrument::in_current_span(fut);
        self.set.spawn(async move {
            // Declared first, dropped last: the task's context ends with the task.
            let _end = end;
            ctx.scope(fut).await
        })
    }

    /// Runs `f` on tokio's blocking pool as a task of the set, with a new child of the set's
    /// context current there. As with any blocking code, aborting or cancelling it cannot stop
    /// `f` once it has started: make it call [`Context::check`] between steps.
    ///
    /// ```
    /// use ctxkit::{Context, TaskSet};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut set = TaskSet::new(&Context::background());
    /// set.spawn_blocking(|| Context::current().check().is_ok());
    /// assert!(set.join_next().await.unwrap().unwrap());
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `JoinSet::spawn_blocking`.
    #[track_caller]
    pub fn spawn_blocking<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
    {
        let (ctx, end) = self.ctx.with_cancel();
        #[cfg(feature = "tracing")]
        let span = ::tracing::Span::current();
        self.set.spawn_blocking(move || {
            let _end = end;
            #[cfg(feature = "tracing")]
            let _span = span.enter();
            ctx.sync_scope(f)
        })
    }

    /// Waits for the next task to finish and returns its output, `Err` if it panicked or was
    /// aborted; `None` once the set is empty. Cancel safe, like `JoinSet::join_next`.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.set.join_next().await
    }

    /// The output of a task that has finished already, without waiting; `None` if none has.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.set.try_join_next()
    }

    /// Waits for every task and returns their outputs in the order they finished.
    ///
    /// # Panics
    ///
    /// If a task panicked, its panic resumes here (after the set is dropped: its context is
    /// cancelled and the other tasks are aborted), like `JoinSet::join_all`.
    ///
    /// ```
    /// use ctxkit::{Context, TaskSet};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut set = TaskSet::new(&Context::background());
    /// for n in [3, 1, 2] {
    ///     set.spawn(async move { n * 2 });
    /// }
    /// let mut all = set.join_all().await;
    /// all.sort();
    /// assert_eq!(all, [2, 4, 6]);
    /// # }
    /// ```
    pub async fn join_all(mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.set.len());
        while let Some(done) = self.set.join_next().await {
            match done {
                Ok(v) => out.push(v),
                Err(e) if e.is_panic() => {
                    drop(self);
                    resume_unwind(e.into_panic());
                }
                // Only `abort_all`/an `AbortHandle` aborts a task: it has no output to give.
                Err(_) => {}
            }
        }
        out
    }

    /// Cancels the set's context, and so every task's: they end when they next look at it
    /// (at an await of a `#[cancellable]` fn, a `check()`, a `ctx.run(..)`). Tasks spawned
    /// afterwards start with a cancelled context.
    #[track_caller]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Aborts every task (they end at their next await, and their contexts are cancelled).
    pub fn abort_all(&mut self) {
        self.set.abort_all();
    }

    /// Aborts every task and waits until all have ended.
    pub async fn shutdown(&mut self) {
        self.set.shutdown().await;
    }

    /// How many tasks are in the set (running, or finished and not yet joined).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl<T> Drop for TaskSet<T> {
    fn drop(&mut self) {
        // The tasks are aborted as the `JoinSet` drops.
        self.cancel.cancel();
    }
}

impl<T> fmt::Debug for TaskSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSet")
            .field("context", &self.ctx)
            .field("tasks", &self.set.len())
            .finish()
    }
}
