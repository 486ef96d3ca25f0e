//! `after_func`: a callback that runs once, on its own task or a pool thread, after a context is
//! done.

use std::fmt;

use crate::sync::{Arc, AtomicU8, Mutex, Ordering, lock};
use crate::tree::{CancelNode, CancelRef, Notify};

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const STOPPED: u8 = 2;

pub(crate) type Callback = Box<dyn FnOnce() + Send + 'static>;

pub(crate) struct AfterShared {
    state: AtomicU8,
    f: Mutex<Option<Callback>>,
    /// The runtime current where the callback was registered, if any.
    #[cfg(not(loom))]
    made_in: Option<tokio::runtime::Handle>,
    #[cfg(loom)]
    made_in: Option<()>,
}

impl AfterShared {
    /// Called when the context is done: starts the callback unless `stop()` won.
    pub(crate) fn fire(&self) {
        let won = self
            .state
            .compare_exchange(PENDING, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !won {
            return;
        }
        let f = lock(&self.f).take();
        if let Some(f) = f {
            run_detached(f, self.made_in.as_ref());
        }
    }
}

impl Notify for Arc<AfterShared> {
    fn notify(&self) {
        AfterShared::fire(self);
    }
}

/// Runs `f` after its context is done: on a task of a runtime that is being driven, else on
/// the callback pool (a few threads serving every callback), inside the runtime if there is
/// one (`tokio::spawn` works there). A multi-thread runtime's workers always drive it; a
/// current-thread runtime is driven only by the thread inside its `block_on`, so a callback
/// started on any other thread (under `rt.enter()`, between `block_on` calls, on the timer
/// thread) goes to the pool rather than wait for a `block_on` that may never come. The runtime
/// is the one current where the context was cancelled, else the one current where `after_func`
/// was called (a deadline fires on the timer thread, outside every runtime).
///
/// Never runs `f` on the caller's stack (cancelling never waits for a callback, and a panicking
/// callback never unwinds into `cancel()`), and never loses it: a task that is dropped unpolled
/// (the runtime is shutting down) hands `f` to the pool.
#[cfg(not(loom))]
fn run_detached(f: Callback, made_in: Option<&tokio::runtime::Handle>) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let driven = |rt: &Handle| {
        rt.runtime_flavor() == RuntimeFlavor::MultiThread
            || tokio::runtime::worker_index().is_some()
    };
    match Handle::try_current() {
        Ok(rt) if driven(&rt) => spawn_task(&rt, f),
        Ok(rt) => crate::pool::submit(f, Some(rt)),
        Err(_) => match made_in {
            Some(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => spawn_task(rt, f),
            Some(rt) => crate::pool::submit(f, Some(rt.clone())),
            None => crate::pool::submit(f, None),
        },
    }
}

#[cfg(not(loom))]
fn spawn_task(rt: &tokio::runtime::Handle, f: Callback) {
    let mut job = Job(Some(f));
    rt.spawn(async move { job.run() });
}

/// Under loom, callbacks run on a model thread, so their races with the tree are explored too.
#[cfg(loom)]
fn run_detached(f: Callback, _made_in: Option<&()>) {
    loom::thread::spawn(f);
}

#[cfg(not(loom))]
struct Job(Option<Callback>);

#[cfg(not(loom))]
impl Job {
    fn run(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

#[cfg(not(loom))]
impl Drop for Job {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            crate::pool::submit(f, None);
        }
    }
}

/// A callback registered with [`Context::after_func`](crate::Context::after_func).
///
/// Dropping it does **not** stop the callback (as in Go, where the stop function may be
/// ignored); call [`AfterFunc::stop`] to do that. Exactly one of two things happens: the callback
/// runs (once), or a `stop()` returns `true`.
///
/// ```
/// use std::sync::mpsc;
/// use ctxkit::Context;
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let (tx, rx) = mpsc::channel();
/// let after = ctx.after_func(move || tx.send(()).unwrap());
/// cancel.cancel();
/// rx.recv().unwrap(); // it ran, on a pool thread (or a task, inside a driven runtime)
/// assert!(!after.stop()); // too late to stop it
/// ```
pub struct AfterFunc {
    shared: Arc<AfterShared>,
    reg: Option<(CancelNode, usize)>,
}

impl AfterFunc {
    pub(crate) fn new(
        node: Option<CancelRef<'_>>,
        f: Box<dyn FnOnce() + Send + 'static>,
    ) -> AfterFunc {
        let shared = Arc::new(AfterShared {
            state: AtomicU8::new(PENDING),
            f: Mutex::new(Some(f)),
            #[cfg(not(loom))]
            made_in: tokio::runtime::Handle::try_current().ok(),
            #[cfg(loom)]
            made_in: None,
        });
        let mut reg = None;
        if let Some(node) = node {
            match node.register(crate::tree::Entry::After(Box::new(shared.clone()))) {
                Ok(key) => reg = Some((node.to_owned(), key)),
                Err(_) => shared.fire(),
            }
        }
        AfterFunc { shared, reg }
    }

    /// Stops the callback from running. Returns `true` iff this call prevented it: `false` when
    /// it has already been started (the context is done) or stopped before.
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let after = ctx.after_func(|| println!("never printed"));
    /// assert!(after.stop());
    /// assert!(!after.stop());
    /// cancel.cancel();
    /// ```
    pub fn stop(&self) -> bool {
        let stopped = self
            .shared
            .state
            .compare_exchange(PENDING, STOPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if stopped {
            // Drop the callback (and what it captured) now, and leave the node's registry.
            drop(lock(&self.shared.f).take());
            if let Some((node, key)) = &self.reg {
                drop(node.get().unregister(*key));
            }
        }
        stopped
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared.state.load(Ordering::Acquire) {
            PENDING => "pending",
            STARTED => "started",
            _ => "stopped",
        };
        f.debug_struct("AfterFunc").field("state", &state).finish()
    }
}
