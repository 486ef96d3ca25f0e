//! The callback pool: a few threads that run `after_func` callbacks started outside a runtime
//! that drives them.
//!
//! Threads start on demand, up to [`MAX_THREADS`], when a callback finds none idle, and leave
//! after a short idle linger. Submitting never waits for a callback or for a thread to start
//! running; a callback's panic stays on its thread, which goes on with the next one. If the OS
//! refuses a thread while none runs, the callbacks stay queued (the failure is reported once)
//! and the next submission tries again: none is ever dropped.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::after::Callback;

/// The most threads the pool runs callbacks on at once. A callback that blocks holds one: more
/// callbacks than this all blocking at once wait for one of them to return.
pub(crate) const MAX_THREADS: usize = 16;

/// How long an idle pool thread waits for more callbacks before it exits.
const LINGER: Duration = if cfg!(miri) {
    Duration::ZERO
} else {
    Duration::from_secs(1)
};

struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<(Callback, Option<Handle>)>,
    threads: usize,
    idle: usize,
    /// Whether a failure to start a thread was reported (once).
    reported: bool,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
        work: Condvar::new(),
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues `f` to run on a pool thread, inside `rt` if given.
pub(crate) fn submit(f: Callback, rt: Option<Handle>) {
    let pool = pool();
    let mut s = pool.lock();
    s.jobs.push_back((f, rt));
    if s.idle > 0 {
        pool.work.notify_one();
    }
    // Idle threads about to take a job each; start another if the rest would have to wait.
    if s.jobs.len() > s.idle && s.threads < MAX_THREADS {
        let spawned = std::thread::Builder::new()
            .name("ctxkit-after-func".into())
            .spawn(move || work(pool));
        match spawned {
            Ok(_) => s.threads += 1,
            Err(e) if !s.reported => {
                s.reported = true;
                eprintln!(
                    "ctxkit: could not start a thread for after_func callbacks (they wait for one): {e}"
                );
            }
            Err(_) => {}
        }
    }
}

fn work(pool: &'static Pool) {
    let mut s = pool.lock();
    loop {
        if let Some((f, rt)) = s.jobs.pop_front() {
            drop(s);
            run(f, rt);
            s = pool.lock();
            continue;
        }
        s.idle += 1;
        let (g, res) = pool
            .work
            .wait_timeout(s, LINGER)
            .unwrap_or_else(|p| p.into_inner());
        s = g;
        s.idle -= 1;
        if res.timed_out() && s.jobs.is_empty() {
            s.threads -= 1;
            return;
        }
    }
}

/// Runs one callback; its panic (reported by the panic hook) ends it, not the thread.
fn run(f: Callback, rt: Option<Handle>) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || {
        let _entered = rt.as_ref().map(Handle::enter);
        f();
    })) {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
    }
}
