//! Deadline timers: fire a node's deadline without anyone polling it.
//!
//! Inside a tokio runtime (with its time driver) a small task sleeps until the deadline, so
//! deadlines follow tokio's clock and `tokio::time::pause()` works. Outside a runtime, or when the
//! runtime goes away (shut down, or built without timers) before the deadline, one lazily started
//! background thread holds the remaining deadlines; it exits shortly after it has none left.

#![cfg_attr(loom, allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant as StdInstant};

use crate::Instant;
use crate::error::Error;
use crate::sync::Arc;
use crate::tree::{self, DeadlineTimer, LIVE, Node};

/// A running deadline timer; stopping it releases the node it holds.
pub(crate) enum TimerHandle {
    Task(tokio::task::AbortHandle),
    Thread { at: StdInstant, id: u64 },
}

impl TimerHandle {
    pub(crate) fn is_task(&self) -> bool {
        matches!(self, TimerHandle::Task(_))
    }

    pub(crate) fn stop(self) {
        match self {
            TimerHandle::Task(h) => h.abort(),
            TimerHandle::Thread { at, id } => fallback().remove(at, id),
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
pub(crate) fn start(node: &Arc<Node>, at: Instant) {
    let handle = match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
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
        Err(_) => fallback().add(node.clone(), at),
    };
    node.expect_core().set_timer(Box::new(handle));
}

/// Loom models have no clock: deadlines there are only caught up by `err()`.
#[cfg(loom)]
pub(crate) fn start(_node: &Arc<Node>, _at: Instant) {}

fn fire(node: &Node, at: Instant) {
    let cause = node.expect_core().deadline_cause(at);
    tree::cancel(node, Error::DeadlineExceeded, cause);
}

/// The state of a timer task. If the task is dropped before it fired while the node is still
/// live (the runtime shut down, or had no time driver), the deadline moves to the fallback
/// thread, so a context may outlive the runtime that made it.
struct Armed {
    node: Option<Arc<Node>>,
    at: Instant,
}

impl Armed {
    fn fire(&mut self) {
        if let Some(node) = self.node.take() {
            fire(&node, self.at);
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let core = node.expect_core();
            if core.state() == LIVE {
                let handle = fallback().add(node.clone(), self.at);
                core.set_timer(Box::new(handle));
            }
        }
    }
}

/// How long the fallback thread waits for new deadlines once it has none before it exits.
const LINGER: Duration = if cfg!(miri) {
    Duration::ZERO
} else {
    Duration::from_secs(1)
};

struct Fallback {
    state: StdMutex<Timers>,
    wake: Condvar,
}

#[derive(Default)]
struct Timers {
    queue: BTreeMap<(StdInstant, u64), Arc<Node>>,
    next_id: u64,
    running: bool,
}

fn fallback() -> &'static Fallback {
    static FALLBACK: OnceLock<Fallback> = OnceLock::new();
    FALLBACK.get_or_init(|| Fallback {
        state: StdMutex::new(Timers::default()),
        wake: Condvar::new(),
    })
}

impl Fallback {
    fn add(&'static self, node: Arc<Node>, at: Instant) -> TimerHandle {
        let at = at.into_std();
        let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let id = t.next_id;
        t.next_id += 1;
        let earliest = t.queue.first_key_value().is_none_or(|(k, _)| at < k.0);
        t.queue.insert((at, id), node);
        if !t.running {
            let spawned = std::thread::Builder::new()
                .name("ctxkit-deadlines".into())
                .spawn(move || self.run());
            // Without a thread (the OS refused one) deadlines are still caught up by `err()`.
            t.running = spawned.is_ok();
        } else if earliest {
            self.wake.notify_one();
        }
        TimerHandle::Thread { at, id }
    }

    fn remove(&self, at: StdInstant, id: u64) {
        let removed = {
            let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let removed = t.queue.remove(&(at, id));
            if t.queue.is_empty() && t.running {
                // Let the thread see it has nothing left to wait for.
                self.wake.notify_one();
            }
            removed
        };
        drop(removed);
    }

    fn run(&self) {
        let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = StdInstant::now();
            match t.queue.first_key_value() {
                Some((&(at, _), _)) if at <= now => {
                    let ((at, _), node) = t.queue.pop_first().expect("non-empty");
                    drop(t);
                    fire(&node, Instant::from_std(at));
                    drop(node);
                    t = self.state.lock().unwrap_or_else(|p| p.into_inner());
                }
                Some((&(at, _), _)) => {
                    t = self
                        .wake
                        .wait_timeout(t, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    // Nothing to wait for: linger a little for the next deadline (a program
                    // making many timeouts must not pay a thread each), then go away, so no
                    // idle thread outlives the deadlines it was started for.
                    let (g, res) = self
                        .wake
                        .wait_timeout(t, LINGER)
                        .unwrap_or_else(|p| p.into_inner());
                    t = g;
                    if res.timed_out() && t.queue.is_empty() {
                        t.running = false;
                        return;
                    }
                }
            }
        }
    }
}
