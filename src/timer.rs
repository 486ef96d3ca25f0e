//! Deadline timers: fire a node's deadline without anyone polling it.
//!
//! Deadlines on the real clock (outside a runtime, or inside one whose clock was never paused)
//! are all kept by one process-wide driver: an ordered map of deadlines and one thread that
//! waits for the earliest. No task per deadline, and no runtime needs to be driven (or to have
//! timers) for a deadline to fire; a cancelled or dropped deadline leaves the map at once,
//! giving its memory back. The thread starts with the first deadline and goes away shortly
//! after it has none left. Nothing it runs for others (wakers, callbacks, the drop of values)
//! can stop it: their panics are caught there.
//!
//! Inside a runtime whose clock is not the real one (tokio's test clock, paused or advanced) a
//! small task sleeps on tokio's clock instead, so `tokio::time::pause()` and `advance()` drive
//! deadlines. If that task is dropped before it fired (its runtime shut down), the deadline
//! moves to the driver, so a context may outlive the runtime that made it.

#![cfg_attr(loom, allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex as StdMutex, MutexGuard as StdMutexGuard, OnceLock};
use std::time::{Duration, Instant as StdInstant};

use crate::Instant;
use crate::error::Error;
use crate::tree::{self, CancelNode, DeadlineTimer};

/// A running deadline timer; stopping it releases the node it holds.
pub(crate) enum TimerHandle {
    /// A task sleeping on tokio's (test) clock.
    Task(tokio::task::AbortHandle),
    /// An entry of the driver's map.
    Thread { at: StdInstant, id: u64 },
}

impl TimerHandle {
    pub(crate) fn is_task(&self) -> bool {
        matches!(self, TimerHandle::Task(_))
    }

    pub(crate) fn stop(self) {
        match self {
            TimerHandle::Task(h) => h.abort(),
            TimerHandle::Thread { at, id } => driver().remove(at, id),
        }
    }
}

impl DeadlineTimer for TimerHandle {
    fn is_task(&self) -> bool {
        TimerHandle::is_task(self)
    }

    fn stop(self: Box<Self>) {
        TimerHandle::stop(*self);
    }
}

/// Starts the timer for `node`'s own deadline `at` and stores its handle in the node.
#[cfg(not(loom))]
pub(crate) fn start(node: &CancelNode, at: Instant) {
    let handle = if on_real_clock() {
        driver().add(node.clone(), at)
    } else {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                TASK_TIMERS.fetch_add(1, Ordering::AcqRel);
                let mut arm = Armed {
                    node: Some(node.clone()),
                    at,
                };
                let task = rt.spawn(async move {
                    tokio::time::sleep_until(at).await;
                    arm.fire();
                });
                TimerHandle::Task(task.abort_handle())
            }
            Err(_) => driver().add(node.clone(), at),
        }
    };
    node.get().set_timer(Box::new(handle));
}

/// Loom models have no clock: deadlines there are only caught up by `err()`.
#[cfg(loom)]
pub(crate) fn start(_node: &CancelNode, _at: Instant) {}

/// No later than every deadline in the driver's map, as nanoseconds since [`epoch`] (`u64::MAX`:
/// none), written under the driver's lock: lowered by an `add`, raised only by the driver thread
/// when it goes to sleep, after it has fired every deadline that passed. A deadline stopped
/// before it fired leaves it too low until the thread next wakes: that only costs a slow check.
static EARLIEST: AtomicU64 = AtomicU64::new(u64::MAX);

/// Deadlines kept by tasks on tokio's test clock, which `EARLIEST` knows nothing of.
static TASK_TIMERS: AtomicUsize = AtomicUsize::new(0);

fn epoch() -> StdInstant {
    static EPOCH: OnceLock<StdInstant> = OnceLock::new();
    *EPOCH.get_or_init(StdInstant::now)
}

fn nanos(at: StdInstant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// Whether no deadline at all can have passed yet: every deadline is in the driver's map and
/// the clock (tokio's, as the deadlines' own check reads it) is before the earliest one. Then a
/// context's deadline needs no catching up, and checking it takes no lock and no walk: one clock
/// read and two loads of values that change only when deadlines come and go.
///
/// It never answers `true` while a deadline that passed waits to be fired: the thread raises
/// `EARLIEST` only after firing, so whoever sees it raised also sees those nodes done.
#[inline]
pub(crate) fn none_passed() -> bool {
    if cfg!(loom) || TASK_TIMERS.load(Ordering::Acquire) != 0 {
        return false;
    }
    let earliest = EARLIEST.load(Ordering::Acquire);
    if earliest == u64::MAX {
        return true;
    }
    // The instant of `earliest`, kept per thread: it changes only when deadlines come and go.
    let at = SEEN.with(|seen| match seen.get() {
        (n, at) if n == earliest => at,
        _ => {
            let at = epoch().checked_add(Duration::from_nanos(earliest));
            seen.set((earliest, at));
            at
        }
    });
    at.is_none_or(|at| Instant::now().into_std() < at)
}

thread_local! {
    /// The last `EARLIEST` this thread saw, and its instant (`None`: beyond what an `Instant`
    /// can hold).
    static SEEN: Cell<(u64, Option<StdInstant>)> = const { Cell::new((u64::MAX, None)) };
}

/// Whether tokio's clock here is the real one: outside a runtime, or inside one whose clock was
/// never paused (always, without tokio's `test-util`). A clock that is or was paused reads a
/// frozen or shifted instant, which falls outside the two real readings around it.
fn on_real_clock() -> bool {
    let before = StdInstant::now();
    let now = Instant::now().into_std();
    let after = StdInstant::now();
    before <= now && now <= after
}

fn fire(node: &CancelNode, at: Instant) {
    let node = node.get();
    let cause = node.deadline_cause(at);
    tree::cancel(node, Error::DeadlineExceeded, cause);
}

/// The state of a timer task. If the task is dropped before it fired while the node is still
/// live (its runtime shut down), the deadline moves to the driver.
struct Armed {
    node: Option<CancelNode>,
    at: Instant,
}

impl Armed {
    fn fire(&mut self) {
        if let Some(node) = self.node.take() {
            fire(&node, self.at);
            TASK_TIMERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let core = node.get();
            if !core.is_done() {
                let handle = driver().add(node.clone(), self.at);
                core.set_timer(Box::new(handle));
            }
            // Only now: the deadline is in the driver's map (and `EARLIEST`) if it still counts.
            TASK_TIMERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How long the driver thread waits for new deadlines once it has none before it exits.
const LINGER: Duration = if cfg!(miri) {
    Duration::ZERO
} else {
    Duration::from_secs(1)
};

struct Driver {
    state: StdMutex<Timers>,
    wake: Condvar,
}

#[derive(Default)]
struct Timers {
    queue: BTreeMap<(StdInstant, u64), CancelNode>,
    next_id: u64,
    /// Whether the thread exists.
    running: bool,
    /// Until when the thread sleeps, if it does: an earlier deadline must wake it, a later one
    /// need not (it looks at the map again when it wakes).
    sleeping_until: Option<StdInstant>,
    /// Whether a failure to start the thread was reported (once).
    reported: bool,
    /// What `EARLIEST` holds, as an instant; written with it, under this lock.
    published: Option<StdInstant>,
}

fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| Driver {
        state: StdMutex::new(Timers::default()),
        wake: Condvar::new(),
    })
}

impl Driver {
    fn lock(&self) -> StdMutexGuard<'_, Timers> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&'static self, node: CancelNode, at: Instant) -> TimerHandle {
        let at = at.into_std();
        let mut t = self.lock();
        let id = t.next_id;
        t.next_id += 1;
        t.queue.insert((at, id), node);
        let earliest = t.published.is_none_or(|earliest| at < earliest);
        if earliest {
            t.published = Some(at);
            EARLIEST.store(nanos(at), Ordering::Release);
        }
        self.arrange(&mut t, at, earliest);
        TimerHandle::Thread { at, id }
    }

    /// Wakes the thread if it sleeps past `at`, or starts it if there is none. Only an
    /// `earliest` deadline (before `published`) can come before the one the thread sleeps until:
    /// it never sleeps past `published`.
    fn arrange(&'static self, t: &mut Timers, at: StdInstant, earliest: bool) {
        if !t.running {
            let spawned = std::thread::Builder::new()
                .name("ctxkit-deadlines".into())
                .spawn(move || self.run());
            match spawned {
                Ok(_) => t.running = true,
                // Tried again with the next deadline; meanwhile `err()` still catches deadlines up.
                Err(e) if !t.reported => {
                    t.reported = true;
                    eprintln!("ctxkit: could not start the deadline thread (retried later): {e}");
                }
                Err(_) => {}
            }
        } else if earliest && t.sleeping_until.is_some_and(|until| at < until) {
            t.sleeping_until = None;
            self.wake.notify_one();
        }
    }

    fn remove(&self, at: StdInstant, id: u64) {
        let removed = {
            let mut t = self.lock();
            let removed = t.queue.remove(&(at, id));
            // With nothing left, the thread should linger and go, not sleep until a deadline
            // that is gone.
            if t.queue.is_empty()
                && t.sleeping_until
                    .is_some_and(|until| until > StdInstant::now() + LINGER)
            {
                t.sleeping_until = None;
                self.wake.notify_one();
            }
            removed
        };
        // Outside the lock: it may be the node's last reference.
        drop(removed);
    }

    fn run(&self) {
        // Should this thread ever unwind anyway, the next deadline starts another one.
        struct Exit<'a>(&'a Driver);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                let mut t = self.0.lock();
                t.running = false;
                t.sleeping_until = None;
            }
        }
        let exit = Exit(self);
        let mut t = self.lock();
        loop {
            let now = StdInstant::now();
            let first = t.queue.first_key_value().map(|(k, _)| k.0);
            if first.is_some_and(|at| at <= now) {
                let ((at, _), node) = t.queue.pop_first().expect("non-empty");
                drop(t);
                fire_caught(node, Instant::from_std(at));
                t = self.lock();
                continue;
            }
            // Every deadline that passed has been fired (its node marked done) by now.
            t.published = first;
            EARLIEST.store(first.map_or(u64::MAX, nanos), Ordering::Release);
            match first {
                Some(at) => {
                    t.sleeping_until = Some(at);
                    t = self
                        .wake
                        .wait_timeout(t, at.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    t.sleeping_until = None;
                }
                None => {
                    // Nothing to wait for: linger a little for the next deadline (a program
                    // making many timeouts must not pay a thread each), then go away, so no
                    // idle thread outlives the deadlines it was started for.
                    t.sleeping_until = Some(now + LINGER);
                    let (g, res) = self
                        .wake
                        .wait_timeout(t, LINGER)
                        .unwrap_or_else(|p| p.into_inner());
                    t = g;
                    t.sleeping_until = None;
                    if res.timed_out() && t.queue.is_empty() {
                        // Cleared under this lock, not by `exit` after it: an `add` in between
                        // may have started the next thread already.
                        t.running = false;
                        drop(t);
                        std::mem::forget(exit);
                        return;
                    }
                }
            }
        }
    }
}

/// Fires a deadline on the driver thread. Wakers, callbacks and the drop of the node (and of
/// the values it may be the last to hold) are foreign code: a panic there is the panicking
/// code's own (the panic hook reports it) and must not stop the thread every later deadline
/// depends on.
fn fire_caught(node: CancelNode, at: Instant) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| fire(&node, at))) {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
    }
    let _ = catch_unwind(AssertUnwindSafe(move || drop(node)));
}
