//! Outside a runtime, `after_func` callbacks run on a small pool of threads: every callback runs
//! exactly once, the number of threads stays bounded however many callbacks start at once, and
//! `cancel()` never waits for them (nor for threads to start).
//!
//! Wall-clock bounds here only catch a hang; the test prints what it measured.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ctxkit::Context;

/// Only a hang reaches it (miri runs thousands of times slower, on the real clock).
const GENEROUS: Duration = Duration::from_secs(if cfg!(miri) { 1200 } else { 60 });

/// The most threads the pool may use: `ctxkit`'s documented bound.
const MAX_THREADS: usize = 16;

#[test]
fn many_callbacks_run_exactly_once_on_a_bounded_number_of_threads() {
    let n = if cfg!(miri) { 50 } else { 10_000 };
    let (ctx, cancel) = Context::background().with_cancel();
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let (tx, rx) = mpsc::channel();
    let _callbacks: Vec<_> = (0..n)
        .map(|i| {
            let (runs, threads, tx) = (runs.clone(), threads.clone(), tx.clone());
            ctx.after_func(move || {
                runs[i].fetch_add(1, Ordering::SeqCst);
                threads.lock().unwrap().insert(std::thread::current().id());
                tx.send(()).unwrap();
            })
        })
        .collect();
    let start = Instant::now();
    cancel.cancel();
    let cancel_took = start.elapsed();
    for _ in 0..n {
        rx.recv_timeout(GENEROUS).expect("a callback was lost");
    }
    let all_ran = start.elapsed();
    let used = threads.lock().unwrap().len();
    eprintln!(
        "{n} callbacks: cancel() took {cancel_took:?}, all ran after {all_ran:?}, on {used} threads"
    );
    assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    assert!(
        used <= MAX_THREADS,
        "{used} threads ran {n} callbacks (at most {MAX_THREADS} expected)"
    );
}

#[test]
fn cancel_returns_while_every_callback_is_still_blocked() {
    let n = if cfg!(miri) { 20 } else { 1000 };
    let (ctx, cancel) = Context::background().with_cancel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release = Arc::new(Mutex::new(release_rx));
    let (tx, rx) = mpsc::channel();
    let _callbacks: Vec<_> = (0..n)
        .map(|_| {
            let (release, tx) = (release.clone(), tx.clone());
            ctx.after_func(move || {
                // The first callback holds the pool's other threads up until cancel() returned.
                let _ = release.lock().unwrap().recv_timeout(GENEROUS);
                tx.send(()).unwrap();
            })
        })
        .collect();
    cancel.cancel();
    drop(release_tx);
    for _ in 0..n {
        rx.recv_timeout(GENEROUS).expect("a callback was lost");
    }
}
