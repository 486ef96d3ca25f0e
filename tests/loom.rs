//! Loom models of the concurrent core: every interleaving (up to loom's preemption bound) of the
//! node state, the children's bookkeeping, waiter registration and `after_func`.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release -p ctxkit --test loom` (bound the
//! search with `LOOM_MAX_PREEMPTIONS=2` for a run of minutes).
#![cfg(loom)]

use std::sync::Arc as StdArc;

use ctxkit::{Context, Error};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::thread;

fn causes(ctxs: &[&Context]) -> Vec<String> {
    ctxs.iter()
        .map(|c| c.cause().unwrap().to_string())
        .collect()
}

/// A `done()` waiter registering while another thread cancels is always woken: `block_on`
/// parks the model thread until woken, so a lost wake-up is a deadlock loom reports.
#[test]
fn cancel_racing_a_done_registration_never_loses_the_wakeup() {
    loom::model(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let canceller = thread::spawn(move || cancel.cancel());
        loom::future::block_on(ctx.done());
        assert_eq!(ctx.err(), Some(Error::Canceled));
        canceller.join().unwrap();
    });
}

/// The same race, one level down: the waiter waits on a value child of a child of the node
/// being cancelled.
#[test]
fn cancel_racing_a_descendants_waiter_never_loses_the_wakeup() {
    loom::model(|| {
        let (root, cancel) = Context::background().with_cancel();
        let (child, _h) = root.with_cancel();
        let canceller = thread::spawn(move || cancel.cancel());
        loom::future::block_on(child.done());
        assert!(child.is_done());
        canceller.join().unwrap();
    });
}

/// A child attached while its parent is being cancelled ends up cancelled (born cancelled or
/// reached by the cascade), and the parent's bookkeeping is empty afterwards.
#[test]
fn child_attached_while_the_parent_is_cancelled_ends_up_cancelled() {
    loom::model(|| {
        let (root, cancel) = Context::background().with_cancel();
        let r = root.clone();
        let maker = thread::spawn(move || r.with_cancel());
        cancel.cancel();
        let (child, handle) = maker.join().unwrap();
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(ctxkit::test_hooks::registered(&root), 0);
        drop(handle);
    });
}

/// Two threads cancelling the same node with different causes: exactly one cause wins, and
/// every node of the subtree reports it.
#[test]
fn two_cancels_with_different_causes_agree_on_one_winner_everywhere() {
    loom::model(|| {
        let (root, cancel) = Context::background().with_cancel();
        let (child, _h) = root.with_cancel();
        let cancel = loom::sync::Arc::new(cancel);
        let c2 = cancel.clone();
        let other = thread::spawn(move || c2.cancel_with(std::io::Error::other("b")));
        cancel.cancel_with(std::io::Error::other("a"));
        other.join().unwrap();
        let seen = causes(&[&root, &child]);
        assert!(seen[0] == "a" || seen[0] == "b");
        assert_eq!(seen[0], seen[1]);
    });
}

/// A parent's and a child's cancellation racing: the child (and its own child) report one
/// cause, whichever reached them first.
#[test]
fn nested_cancels_racing_give_each_subtree_one_cause() {
    loom::model(|| {
        let (root, cancel_root) = Context::background().with_cancel();
        let (child, cancel_child) = root.with_cancel();
        let (grandchild, _h) = child.with_cancel();
        let t = thread::spawn(move || cancel_child.cancel_with(std::io::Error::other("child")));
        cancel_root.cancel_with(std::io::Error::other("root"));
        t.join().unwrap();
        assert_eq!(causes(&[&root]), ["root"]);
        let seen = causes(&[&child, &grandchild]);
        assert_eq!(seen[0], seen[1]);
    });
}

/// A child dropped (handle and context) while its parent cancels leaves no entry behind and
/// no leaked node (loom checks that every `Arc` it tracks is freed).
#[test]
fn child_dropped_while_the_parent_cancels_leaves_no_trace() {
    loom::model(|| {
        let (root, cancel) = Context::background().with_cancel();
        let (child, handle) = root.with_cancel();
        let dropper = thread::spawn(move || {
            drop(child);
            drop(handle);
        });
        cancel.cancel();
        dropper.join().unwrap();
        assert_eq!(ctxkit::test_hooks::registered(&root), 0);
    });
}

/// A child's context and handle dropped on two threads while its parent cancels: whichever
/// drop comes last finds the node unobserved or cancels it; either way nothing is left behind.
#[test]
fn child_context_and_handle_dropped_apart_while_the_parent_cancels_leave_no_trace() {
    loom::model(|| {
        let (root, cancel) = Context::background().with_cancel();
        let (child, handle) = root.with_cancel();
        let a = thread::spawn(move || drop(child));
        let b = thread::spawn(move || drop(handle));
        cancel.cancel();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(ctxkit::test_hooks::registered(&root), 0);
    });
}

/// A handle dropped while another thread still waits on its context: the waiter sees the
/// cancellation (the drop never skips a node someone can observe), racing the parent's.
#[test]
fn a_dropped_handle_still_cancels_a_context_someone_waits_on() {
    loom::model(|| {
        let (root, cancel) = Context::background().with_cancel();
        let (child, handle) = root.with_cancel();
        let waiter = thread::spawn(move || {
            loom::future::block_on(child.done());
            child.err()
        });
        let dropper = thread::spawn(move || drop(handle));
        cancel.cancel();
        dropper.join().unwrap();
        assert_eq!(waiter.join().unwrap(), Some(Error::Canceled));
        assert_eq!(ctxkit::test_hooks::registered(&root), 0);
    });
}

/// A child dropped while its parent stays live leaves the bookkeeping too, racing a sibling's
/// attachment.
#[test]
fn child_dropped_while_a_sibling_attaches_leaves_only_the_sibling() {
    loom::model(|| {
        let (root, _cancel) = Context::background().with_cancel();
        let (child, handle) = root.with_cancel();
        let r = root.clone();
        let maker = thread::spawn(move || r.with_cancel());
        drop(handle);
        drop(child);
        let (sibling, h) = maker.join().unwrap();
        assert_eq!(ctxkit::test_hooks::registered(&root), 1);
        drop(h);
        assert!(sibling.is_done());
        assert_eq!(ctxkit::test_hooks::registered(&root), 0);
    });
}

/// `after_func`'s `stop()` racing the cancellation: the callback runs exactly once, or `stop()`
/// returns `true` and it never runs; never both, never neither.
#[test]
fn after_func_stop_racing_cancellation_either_stops_or_runs() {
    loom::model(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let ran = StdArc::new(AtomicUsize::new(0));
        let stopped = StdArc::new(AtomicBool::new(false));
        let (r, s) = (ran.clone(), stopped.clone());
        let after = ctx.after_func(move || {
            r.fetch_add(1, SeqCst);
            assert!(!s.load(SeqCst), "ran although stop() returned true");
        });
        let canceller = thread::spawn(move || cancel.cancel());
        let did_stop = after.stop();
        if did_stop {
            stopped.store(true, SeqCst);
            assert_eq!(ran.load(SeqCst), 0, "stop() returned true although it ran");
        }
        canceller.join().unwrap();
        if !did_stop {
            // It must run: wait for it (a callback that never comes ends the model in a
            // reported livelock).
            while ran.load(SeqCst) == 0 {
                thread::yield_now();
            }
            assert_eq!(ran.load(SeqCst), 1);
        }
    });
}

/// Dropping a `done()` future that registered a waiter, while the context is cancelled, leaves
/// no entry and no waker behind.
#[test]
fn done_dropped_while_cancelled_leaves_no_waiter() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Waker};
    loom::model(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let mut done = ctx.done();
        let _ = Pin::new(&mut done).poll(&mut TaskContext::from_waker(Waker::noop()));
        let canceller = thread::spawn(move || cancel.cancel());
        drop(done);
        canceller.join().unwrap();
        assert_eq!(ctxkit::test_hooks::registered(&ctx), 0);
    });
}

/// A `done()` polled with a second waker while another thread cancels: the first waker (whose
/// `Drop` derives from the context, taking its lock) is dropped outside the lock, and the second
/// is woken, or the poll sees the cancellation. A lost wake-up parks `block_on` forever, a drop
/// under the lock deadlocks: loom reports either.
#[test]
fn a_waker_replaced_while_the_context_is_cancelled_is_dropped_outside_the_lock() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Wake, Waker};

    struct Touching(Context);
    impl Wake for Touching {
        fn wake(self: StdArc<Self>) {}
    }
    impl Drop for Touching {
        fn drop(&mut self) {
            let (_child, _cancel) = self.0.with_cancel();
        }
    }

    loom::model(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        let mut done = ctx.done();
        let first = Waker::from(StdArc::new(Touching(ctx.clone())));
        let _ = Pin::new(&mut done).poll(&mut TaskContext::from_waker(&first));
        drop(first);
        let canceller = thread::spawn(move || cancel.cancel());
        // Polls with its own waker, which replaces the first one.
        loom::future::block_on(done);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        canceller.join().unwrap();
    });
}
