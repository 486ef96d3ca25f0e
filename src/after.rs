//! `after_func`: a callback that runs once, on its own task or thread, after a context is done.

use std::fmt;

use crate::sync::{Arc, AtomicU8, Mutex, Ordering, lock};
use crate::tree::{Node, Notify};

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const STOPPED: u8 = 2;

type Callback = Box<dyn FnOnce() + Send + 'static>;

pub(crate) struct AfterShared {
    state: AtomicU8,
    f: Mutex<Option<Callback>>,
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
            run_detached(f);
        }
    }
}

impl Notify for Arc<AfterShared> {
    fn notify(&self) {
        AfterShared::fire(self);
    }
}

/// Runs `f` on a task of the current tokio runtime, or on a new thread outside one. Never runs
/// it on the caller's stack (cancelling never waits for a callback, and a panicking callback
/// never unwinds into `cancel()`), and never loses it: a task that is dropped unpolled (the
/// runtime is shutting down) hands `f` to a thread.
#[cfg(not(loom))]
fn run_detached(f: Callback) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let mut job = Job(Some(f));
            rt.spawn(async move { job.run() });
        }
        Err(_) => spawn_thread(f),
    }
}

/// Under loom, callbacks run on a model thread, so their races with the tree are explored too.
#[cfg(loom)]
fn run_detached(f: Callback) {
    loom::thread::spawn(f);
}

#[cfg(not(loom))]
fn spawn_thread(f: Callback) {
    let spawned = std::thread::Builder::new()
        .name("ctxkit-after-func".into())
        .spawn(f);
    if let Err(e) = spawned {
        // Nothing can run the callback now; say so rather than lose it silently.
        eprintln!("ctxkit: could not start a thread for an after_func callback: {e}");
    }
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
            spawn_thread(f);
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
/// rx.recv().unwrap(); // it ran, on its own thread (or task, inside a runtime)
/// assert!(!after.stop()); // too late to stop it
/// ```
pub struct AfterFunc {
    shared: Arc<AfterShared>,
    reg: Option<(Arc<Node>, usize)>,
}

impl AfterFunc {
    pub(crate) fn new(
        node: Option<&Arc<Node>>,
        f: Box<dyn FnOnce() + Send + 'static>,
    ) -> AfterFunc {
        let shared = Arc::new(AfterShared {
            state: AtomicU8::new(PENDING),
            f: Mutex::new(Some(f)),
        });
        let mut reg = None;
        if let Some(node) = node {
            match node
                .expect_core()
                .register(crate::tree::Entry::After(Box::new(shared.clone())))
            {
                Ok(key) => reg = Some((node.clone(), key)),
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
                drop(node.expect_core().unregister(*key));
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
