//! `after_func`: runs once, on its own task or thread, after the context is done; `stop()` is
//! truthful.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use ctxkit::{Context, ContextKey};

/// Bounds that only a hang can reach (miri runs thousands of times slower, on the real clock).
const GENEROUS: Duration = Duration::from_secs(if cfg!(miri) { 1200 } else { 30 });

struct Key;
impl ContextKey for Key {
    type Value = u8;
}

fn counter() -> (
    Arc<AtomicUsize>,
    impl FnOnce() + Send + 'static,
    mpsc::Receiver<()>,
) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let r = runs.clone();
    (
        runs,
        move || {
            r.fetch_add(1, Ordering::SeqCst);
            tx.send(()).unwrap();
        },
        rx,
    )
}

#[test]
fn after_func_runs_once_after_the_context_is_done() {
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel) = parent.with_cancel();
    let (runs, f, rx) = counter();
    let _after = ctx.after_func(f);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "not before the context is done"
    );
    cancel.cancel();
    cancel.cancel();
    cancel_parent.cancel();
    rx.recv_timeout(GENEROUS).unwrap();
    // A second run would have sent again.
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn after_func_runs_at_once_when_already_done() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let (runs, f, rx) = counter();
    let after = ctx.after_func(f);
    rx.recv_timeout(GENEROUS).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!after.stop(), "it already ran");
}

#[test]
fn after_func_on_a_value_child_fires_with_its_cancellable_ancestor() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (_runs, f, rx) = counter();
    let _after = ctx.with_value::<Key>(1).after_func(f);
    cancel.cancel();
    rx.recv_timeout(GENEROUS).unwrap();
}

#[test]
fn stop_before_cancellation_prevents_the_run_and_says_so() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (runs, f, rx) = counter();
    let after = ctx.after_func(f);
    assert!(after.stop());
    assert!(!after.stop());
    assert_eq!(
        ctxkit::test_hooks::registered(&ctx),
        0,
        "a stopped callback leaves the registry"
    );
    cancel.cancel();
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn stop_after_the_run_started_returns_false() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (_runs, f, rx) = counter();
    let after = ctx.after_func(f);
    cancel.cancel();
    rx.recv_timeout(GENEROUS).unwrap();
    assert!(!after.stop());
}

#[test]
fn stop_on_a_never_cancellable_context_is_true_then_false() {
    let bg = Context::background();
    for ctx in [
        bg.clone(),
        Context::todo(),
        bg.with_value::<Key>(1),
        bg.with_cancel().0.without_cancel(),
    ] {
        let after = ctx.after_func(|| panic!("never runs"));
        assert!(after.stop());
        assert!(!after.stop());
    }
}

#[test]
fn stop_drops_the_callback_and_its_captures_at_once() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let captured = Arc::new(());
    let c = captured.clone();
    let after = ctx.after_func(move || drop(c));
    assert_eq!(Arc::strong_count(&captured), 2);
    assert!(after.stop());
    assert_eq!(Arc::strong_count(&captured), 1);
}

#[test]
fn dropping_the_after_func_handle_does_not_stop_it() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (_runs, f, rx) = counter();
    drop(ctx.after_func(f));
    cancel.cancel();
    rx.recv_timeout(GENEROUS).unwrap();
}

#[test]
fn cancelling_never_waits_for_the_callback() {
    let (ctx, cancel) = Context::background().with_cancel();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let (tx, rx) = mpsc::channel();
    let _after = ctx.after_func(move || {
        g.wait(); // blocks until the canceller is past cancel()
        tx.send(()).unwrap();
    });
    cancel.cancel();
    gate.wait();
    rx.recv_timeout(GENEROUS).unwrap();
}

#[test]
fn panicking_after_func_neither_reaches_the_canceller_nor_stops_other_callbacks() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (child, _hc) = ctx.with_cancel();
    let _boom = ctx.after_func(|| panic!("callback failure (expected by this test)"));
    let (runs, f, rx) = counter();
    let _ok = child.after_func(f);
    cancel.cancel(); // does not unwind
    rx.recv_timeout(GENEROUS).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The tree is still usable.
    let (fresh, _h) = ctx.with_cancel();
    assert!(fresh.is_done());
    let (other, cancel_other) = Context::background().with_cancel();
    let (_runs2, f2, rx2) = counter();
    let _a = other.after_func(f2);
    cancel_other.cancel();
    rx2.recv_timeout(GENEROUS).unwrap();
}

#[test]
fn stop_racing_cancellation_either_stops_or_runs_never_both_never_neither() {
    for _ in 0..if cfg!(miri) { 5 } else { 500 } {
        let (ctx, cancel) = Context::background().with_cancel();
        let (runs, f, rx) = counter();
        let after = ctx.after_func(f);
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let canceller = thread::spawn(move || {
            g.wait();
            cancel.cancel();
        });
        gate.wait();
        let stopped = after.stop();
        canceller.join().unwrap();
        if stopped {
            assert!(rx.recv_timeout(Duration::from_millis(20)).is_err());
            assert_eq!(runs.load(Ordering::SeqCst), 0);
        } else {
            rx.recv_timeout(GENEROUS).unwrap();
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        }
    }
}

#[tokio::test]
async fn after_func_inside_a_runtime_runs_on_a_task() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _after = ctx.after_func(move || {
        tx.send(tokio::runtime::Handle::try_current().is_ok())
            .unwrap()
    });
    cancel.cancel();
    assert!(rx.await.unwrap(), "ran on the runtime");
}

#[test]
fn after_func_scheduled_as_the_runtime_shuts_down_still_runs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ctx, cancel) = Context::background().with_cancel();
    let (_runs, f, rx) = counter();
    let _after = ctx.after_func(f);
    let _guard = rt.enter();
    rt.shutdown_background();
    // Handle::try_current() still finds the (shut down) runtime: the task is dropped unpolled
    // and the callback moves to a thread.
    cancel.cancel();
    rx.recv_timeout(GENEROUS)
        .expect("the callback was not lost");
}
