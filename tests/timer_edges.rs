//! Deadlines and `after_func` callbacks at the edges of tokio: a runtime built without timers, a
//! runtime that is alive but not driven, and a waker that panics on the deadline thread. In
//! every case the deadline fires by itself (no `err()` catches it up: these tests only read
//! `is_done()`) and callbacks run.
//!
//! Wall-clock bounds here only catch a hang (a saturated machine stays far below them); each
//! test prints the latency it measured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::task::{Context as TaskContext, Wake, Waker};
use std::time::{Duration, Instant};

use ctxkit::{Context, Error};

/// Only a hang reaches it (miri runs thousands of times slower, on the real clock).
const GENEROUS: Duration = Duration::from_secs(if cfg!(miri) { 1200 } else { 20 });
const TIMEOUT: Duration = Duration::from_millis(30);

/// Waits (without `err()`, which would fire a passed deadline itself) until `ctx` is done;
/// returns how long after `start + TIMEOUT` that was, or panics after [`GENEROUS`].
fn late_by(ctx: &Context, start: Instant, what: &str) -> Duration {
    while !ctx.is_done() {
        assert!(
            start.elapsed() < GENEROUS,
            "{what}: the deadline never fired by itself"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let late = start.elapsed().saturating_sub(TIMEOUT);
    eprintln!("{what}: fired {late:?} after the deadline");
    late
}

/// Panics whose message mentions tokio's disabled timers, on any thread.
static TIMER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_timer_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if msg.contains("timers are disabled") {
                TIMER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

#[test]
fn a_runtime_without_timers_fires_deadlines_without_panicking() {
    count_timer_panics();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()
        .unwrap();
    for (name, rt) in [("current-thread", &current), ("multi-thread", &multi)] {
        let start = Instant::now();
        let (ctx, _h) = rt.block_on(async {
            let (ctx, h) = Context::background().with_timeout(TIMEOUT);
            ctx.done().await;
            (ctx, h)
        });
        late_by(&ctx, start, name);
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        // Also while the runtime is not being driven.
        let _g = rt.enter();
        let start = Instant::now();
        let (ctx, _h) = Context::background().with_timeout(TIMEOUT);
        late_by(&ctx, start, name);
    }
    assert_eq!(
        TIMER_PANICS.load(Ordering::SeqCst),
        0,
        "no deadline may panic in a runtime without timers"
    );
}

#[test]
fn deadlines_fire_under_a_runtime_that_is_entered_but_not_driven() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let start = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(TIMEOUT);
    late_by(&ctx, start, "under rt.enter()");
}

#[test]
fn deadlines_made_in_block_on_fire_after_it_returns() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let (ctx, _h) = rt.block_on(async { Context::background().with_timeout(TIMEOUT) });
    late_by(&ctx, start, "after block_on returned");
    drop(rt);
}

#[test]
fn after_func_runs_under_a_runtime_that_is_entered_but_not_driven() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let _a = ctx.after_func(move || tx.send(Instant::now()).unwrap());
    let start = Instant::now();
    cancel.cancel();
    let ran = rx
        .recv_timeout(GENEROUS)
        .expect("the callback never ran while nobody drove the runtime");
    eprintln!("after_func started {:?} after cancel()", ran - start);
    // And one started by a deadline.
    let (ctx, _h) = Context::background().with_timeout(TIMEOUT);
    let (tx, rx) = mpsc::channel();
    let _a = ctx.after_func(move || tx.send(()).unwrap());
    rx.recv_timeout(GENEROUS)
        .expect("a deadline's callback never ran while nobody drove the runtime");
}

struct PanickingWaker;
impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics (on purpose)");
    }
}

#[test]
fn a_panicking_waker_does_not_stop_later_deadlines_outside_a_runtime() {
    for round in 0..3 {
        let start = Instant::now();
        let (ctx, _h) = Context::background().with_timeout(TIMEOUT);
        let waker = Waker::from(Arc::new(PanickingWaker));
        let mut done = Box::pin(ctx.done());
        assert!(
            done.as_mut()
                .poll(&mut TaskContext::from_waker(&waker))
                .is_pending()
        );
        late_by(&ctx, start, &format!("round {round}, panicking waker"));
        // A deadline made after the panic still fires by itself.
        let start = Instant::now();
        let (later, _h) = Context::background().with_timeout(TIMEOUT);
        late_by(&later, start, &format!("round {round}, the next deadline"));
    }
}

use std::future::Future;
