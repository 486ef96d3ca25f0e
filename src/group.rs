//! Task groups: [`Group`], Go's `errgroup.WithContext` with the leaks and the lost panics taken
//! out.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};

use pin_project::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

use crate::{CancelHandle, Context};

/// What a panicking task leaves behind, to be resumed in [`Group::wait`].
type Payload = Box<dyn Any + Send + 'static>;

/// A set of tasks that share one context and one fate (Go's `errgroup.WithContext`).
///
/// - [`Group::context`] is a child of the parent, current in every task of the group. It is
///   cancelled when a task fails (its cause is then a [`TaskFailed`] carrying the error's text),
///   when a task panics, when [`Group::wait`] returns, and when the group is dropped.
/// - [`Group::spawn`] starts a task; with [`Group::with_limit`] it first waits for a free slot,
///   and [`Group::try_spawn`] starts one only if a slot is free.
/// - [`Group::wait`] waits for every task, then returns the first error. A task's panic is not
///   swallowed: it cancels the other tasks at once, and once they have all finished `wait`
///   resumes it.
/// - Dropping a group without waiting (or dropping the `wait` future before it finishes)
///   cancels the context and aborts every task: no task outlives its group. Aborting is tokio's
///   [`JoinHandle::abort`](tokio::task::JoinHandle::abort): a task that is between polls never
///   runs again and is dropped by the runtime right after; one that is running on another
///   thread right now finishes that poll first. `wait` is the way to know they are all gone.
///
/// Tasks are not raced against the context: like goroutines, they stop early by noticing it
/// (`#[cancellable]`, [`Context::run`], [`Context::check`], [`checkpoint`](crate::checkpoint)).
/// Finished tasks are reaped as new ones are spawned, so a long-lived group holds memory for its
/// running tasks only. Tasks that a task spawns itself (`tokio::spawn`, [`spawn`](crate::spawn))
/// are not the group's: they see its context, but are neither waited for nor aborted.
///
/// The error type only needs `Display` (for the cause) and `Send + 'static`; it usually also
/// implements `From<ctxkit::Error>` so that tasks can use `?` on cancellation.
///
/// ```
/// use std::io;
/// use std::time::Duration;
/// use ctxkit::{Context, Group};
///
/// async fn fetch(id: u32) -> io::Result<()> {
///     if id == 3 {
///         return Err(io::Error::other("item 3 not found"));
///     }
///     // Every task runs with the group's context as current: the failure of item 3
///     // cancels this wait instead of letting it run for a minute.
///     let slow = tokio::time::sleep(Duration::from_secs(60));
///     Context::current().run(slow).await?;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (request, _cancel) = Context::background().with_cancel();
/// let group = Group::new(&request);
/// for id in 1..=5 {
///     group.spawn(fetch(id)).await;
/// }
/// let ctx = group.context().clone();
/// let err = group.wait().await.unwrap_err();
/// assert_eq!(err.to_string(), "item 3 not found"); // the first error, reported once
/// assert_eq!(ctx.cause().unwrap().to_string(), "item 3 not found");
/// assert!(request.err().is_none()); // the parent is untouched
/// # }
/// ```
pub struct Group<E> {
    ctx: Context,
    shared: Arc<Shared<E>>,
    tasks: Mutex<Tasks>,
    /// `None`: no limit.
    slots: Option<Arc<Semaphore>>,
    limit: Option<usize>,
}

/// What the tasks share with the group.
struct Shared<E> {
    cancel: CancelHandle,
    first: Mutex<Option<E>>,
}

struct Tasks {
    set: JoinSet<Option<Payload>>,
    /// The first panic collected, to resume in `wait`.
    panic: Option<Payload>,
}

impl<E> Group<E>
where
    E: fmt::Display + Send + 'static,
{
    /// A group without a limit on how many tasks run at once, whose context is a child of
    /// `parent`.
    #[track_caller]
    pub fn new(parent: &Context) -> Group<E> {
        Group::build(parent, None)
    }

    /// A group that runs at most `limit` tasks at once: [`Group::spawn`] waits for a running
    /// task to finish when `limit` are running, [`Group::try_spawn`] declines.
    ///
    /// A limit of 0 (which would admit no task ever, so every `spawn` would hang) means no limit,
    /// like a negative limit in Go's `errgroup.SetLimit`; so does a limit above tokio's
    /// [`Semaphore::MAX_PERMITS`].
    ///
    /// ```
    /// use std::io;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    /// use std::time::Duration;
    /// use ctxkit::{Context, Group};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> io::Result<()> {
    /// let group: Group<io::Error> = Group::with_limit(&Context::background(), 2);
    /// let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    /// for _ in 0..10 {
    ///     let (running, peak) = (running.clone(), peak.clone());
    ///     group
    ///         .spawn(async move {
    ///             peak.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
    ///             tokio::time::sleep(Duration::from_millis(10)).await;
    ///             running.fetch_sub(1, SeqCst);
    ///             Ok(())
    ///         })
    ///         .await;
    /// }
    /// group.wait().await?;
    /// assert_eq!(peak.load(SeqCst), 2);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn with_limit(parent: &Context, limit: usize) -> Group<E> {
        let limited = limit > 0 && limit <= Semaphore::MAX_PERMITS;
        Group::build(parent, limited.then_some(limit))
    }

    #[track_caller]
    fn build(parent: &Context, limit: Option<usize>) -> Group<E> {
        let (ctx, cancel) = parent.with_cancel();
        Group {
            ctx,
            shared: Arc::new(Shared {
                cancel,
                first: Mutex::new(None),
            }),
            tasks: Mutex::new(Tasks {
                set: JoinSet::new(),
                panic: None,
            }),
            slots: limit.map(|n| Arc::new(Semaphore::new(n))),
            limit,
        }
    }

    /// The group's context: a child of the parent, current in every task of the group, cancelled
    /// on the first failure or panic of a task, when [`Group::wait`] returns, or when the group
    /// is dropped.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Starts `fut` as a task of the group, with the group's context as current; on a limited
    /// group, first waits until fewer than `limit` tasks run.
    ///
    /// Spawning into a group whose context is already cancelled still starts the task (it sees
    /// the cancelled context); a producer loop that should stop feeding a failed group checks
    /// `group.context().is_done()`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub async fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let slot = match &self.slots {
            Some(slots) => match Arc::clone(slots).acquire_owned().await {
                Ok(permit) => Some(permit),
                // The group never closes its semaphore.
                Err(_) => unreachable!("a group's semaphore is never closed"),
            },
            None => None,
        };
        self.start(fut, slot);
    }

    /// Starts `fut` as a task of the group if a slot is free (always, on a group without limit)
    /// and returns `true`; otherwise drops `fut` without polling it and returns `false`.
    ///
    /// ```
    /// use std::io;
    /// use ctxkit::{Context, Group};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> io::Result<()> {
    /// let group: Group<io::Error> = Group::with_limit(&Context::background(), 1);
    /// let (release, released) = tokio::sync::oneshot::channel::<()>();
    /// assert!(group.try_spawn(async move {
    ///     let _ = released.await;
    ///     Ok(())
    /// }));
    /// assert!(!group.try_spawn(async { Ok(()) })); // the only slot is taken
    /// release.send(()).unwrap();
    /// group.wait().await
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn try_spawn<F>(&self, fut: F) -> bool
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let slot = match &self.slots {
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return false,
            },
            None => None,
        };
        self.start(fut, slot);
        true
    }

    fn start<F>(&self, fut: F, slot: Option<OwnedSemaphorePermit>)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        #[cfg(feature = "tracing")]
        let fut = ::tracing::Instrument::in_current_span(fut);
        let fut = CatchUnwind {
            fut: self.ctx.scope(fut),
        };
        let task = async move {
            // Declared first, dropped last: the slot frees once the task's future is gone.
            let _slot = slot;
            match fut.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    shared.fail(e);
                    None
                }
                Err(payload) => {
                    shared.panicked(&payload);
                    Some(payload)
                }
            }
        };
        let mut tasks = lock(&self.tasks);
        while let Some(done) = tasks.set.try_join_next() {
            tasks.collect(&self.shared, done);
        }
        tasks.set.spawn(task);
    }

    /// Waits for every task of the group to finish, cancels the group's context, and returns the
    /// first error a task returned (`Ok(())` if none did).
    ///
    /// If a task panicked, the panic resumes here (the first one, if several did), after every
    /// other task has finished: those saw the group's context cancelled the moment it happened.
    ///
    /// Dropping this future before it finishes drops the group: its context is cancelled and its
    /// remaining tasks are aborted.
    pub async fn wait(mut self) -> Result<(), E> {
        let shared = Arc::clone(&self.shared);
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        while let Some(done) = tasks.set.join_next().await {
            tasks.collect(&shared, done);
        }
        shared.cancel.cancel();
        if let Some(payload) = tasks.panic.take() {
            resume_unwind(payload);
        }
        let first = lock(&shared.first).take();
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<E: fmt::Display> Shared<E> {
    /// Records `e` if it is the group's first error, and cancels the group's context with its
    /// text as the cause.
    fn fail(&self, e: E) {
        let mut first = lock(&self.first);
        if first.is_none() {
            self.cancel.cancel_with(TaskFailed {
                message: e.to_string(),
                panicked: false,
            });
            *first = Some(e);
        }
    }
}

impl<E> Shared<E> {
    fn panicked(&self, payload: &Payload) {
        self.cancel.cancel_with(TaskFailed {
            message: panic_message(payload),
            panicked: true,
        });
    }
}

impl Tasks {
    fn collect<E>(&mut self, shared: &Shared<E>, done: Result<Option<Payload>, JoinError>) {
        let payload = match done {
            Ok(None) => return,
            Ok(Some(payload)) => payload,
            // Only a panic outside the task's own future gets here (in dropping it, or in the
            // error's `Display`): treat it as the task's panic.
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                shared.panicked(&payload);
                payload
            }
            // Aborted: only the group aborts its tasks, and only when it is dropped.
            Err(_) => return,
        };
        if self.panic.is_none() {
            self.panic = Some(payload);
        }
    }
}

impl<E> Drop for Group<E> {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        // Dropping the set would abort them too; say it.
        self.tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .set
            .abort_all();
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("context", &self.ctx)
            .field("limit", &self.limit)
            .field("tasks", &lock(&self.tasks).set.len())
            .finish()
    }
}

/// The cause of a [`Group`]'s context cancelled by one of its tasks: the text of the error it
/// returned, or the message of its panic.
///
/// ```
/// use ctxkit::{Context, Group, TaskFailed};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let group = Group::new(&Context::background());
/// group.spawn(async { Err(std::io::Error::other("disk full")) }).await;
/// let ctx = group.context().clone();
/// let _ = group.wait().await;
/// let cause = ctx.cause().unwrap();
/// let failed = cause.downcast_ref::<TaskFailed>().unwrap();
/// assert_eq!(failed.message(), "disk full");
/// assert!(!failed.panicked());
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailed {
    message: String,
    panicked: bool,
}

impl TaskFailed {
    /// The error's `Display` text, or the panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the task panicked (rather than returned an error).
    pub fn panicked(&self) -> bool {
        self.panicked
    }
}

impl fmt::Display for TaskFailed {
    /// The error's text as is; `task panicked: <message>` for a panic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.panicked {
            write!(f, "task panicked: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for TaskFailed {}

fn panic_message(payload: &Payload) -> String {
    let payload: &(dyn Any + Send) = &**payload;
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// A poisoned lock only means a task panicked in an error's `Display`; the data is still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `fut`, turning a panic into an `Err` with its payload (the future is not polled again).
#[pin_project]
struct CatchUnwind<F> {
    #[pin]
    fut: F,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Payload>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        // Unwind safety: after a panic the future is never polled again, only dropped.
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
