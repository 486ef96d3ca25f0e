//! Cancellation under concurrency and re-entrancy: many cancellers at once, and cancelling,
//! deriving or dropping from inside callbacks, wakers and value destructors.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::task::{Context as TaskContext, Wake, Waker};
use std::thread;
use std::time::Duration;

use ctxkit::{CancelHandle, Context, ContextKey, Done, Error};

/// Bounds that only a deadlock can reach (miri runs thousands of times slower, on the real clock).
const GENEROUS: Duration = Duration::from_secs(if cfg!(miri) { 1200 } else { 60 });

/// Sizes for loops: full natively, small under miri (which is thousands of times slower).
fn scale(n: usize) -> usize {
    if cfg!(miri) { (n / 50).max(2) } else { n }
}

/// Runs `f` on a thread and fails the test if it does not finish in time (a deadlock).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(GENEROUS)
        .expect("finished without deadlock")
}

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn register(done: &mut Done, waker: &Waker) {
    assert!(
        Pin::new(done)
            .poll(&mut TaskContext::from_waker(waker))
            .is_pending()
    );
}

#[test]
fn many_threads_cancelling_one_tree_wake_every_waiter_exactly_once() {
    bounded(|| {
        for _round in 0..scale(20) {
            let (root, cancel_root) = Context::background().with_cancel();
            let mut handles: Vec<CancelHandle> = Vec::new();
            let mut waiters = Vec::new();
            for _ in 0..20 {
                let (mid, h) = root.with_cancel();
                handles.push(h);
                for _ in 0..10 {
                    let (leaf, h) = mid.with_cancel();
                    handles.push(h);
                    let count = Arc::new(Count(AtomicUsize::new(0)));
                    let waker = Waker::from(count.clone());
                    let mut done = leaf.done();
                    register(&mut done, &waker);
                    waiters.push((leaf, done, count));
                }
            }
            let handles = Arc::new(handles);
            let cancel_root = Arc::new(cancel_root);
            let threads = 8;
            let gate = Arc::new(Barrier::new(threads));
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (gate, handles, root) =
                        (gate.clone(), handles.clone(), cancel_root.clone());
                    thread::spawn(move || {
                        gate.wait();
                        for (i, h) in handles.iter().enumerate() {
                            if i % threads == t {
                                h.cancel();
                            }
                        }
                        root.cancel();
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            for (leaf, _done, count) in &waiters {
                assert!(leaf.is_done());
                assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken exactly once");
            }
            assert_eq!(ctxkit::test_hooks::registered(&root), 0);
        }
    });
}

#[test]
fn concurrent_cancels_with_different_causes_agree_on_one_cause_everywhere() {
    bounded(|| {
        for _ in 0..scale(300) {
            let (root, cancel) = Context::background().with_cancel();
            let mut kids = Vec::new();
            for _ in 0..8 {
                kids.push(root.with_cancel());
            }
            let cancel = Arc::new(cancel);
            let gate = Arc::new(Barrier::new(2));
            let ts: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|name| {
                    let (cancel, gate) = (cancel.clone(), gate.clone());
                    thread::spawn(move || {
                        gate.wait();
                        cancel.cancel_with(std::io::Error::other(name));
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            let winner = root.cause().unwrap().to_string();
            assert!(winner == "a" || winner == "b");
            for (k, _h) in &kids {
                assert_eq!(k.cause().unwrap().to_string(), winner);
            }
        }
    });
}

#[test]
fn children_attached_while_the_parent_is_cancelled_end_up_cancelled() {
    bounded(|| {
        for _ in 0..scale(100) {
            let (root, cancel) = Context::background().with_cancel();
            let gate = Arc::new(Barrier::new(3));
            let makers: Vec<_> = (0..2)
                .map(|_| {
                    let (root, gate) = (root.clone(), gate.clone());
                    thread::spawn(move || {
                        gate.wait();
                        (0..scale(200))
                            .map(|_| root.with_cancel())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            gate.wait();
            cancel.cancel();
            for m in makers {
                for (child, _h) in m.join().unwrap() {
                    assert_eq!(child.err(), Some(Error::Canceled));
                }
            }
            assert_eq!(ctxkit::test_hooks::registered(&root), 0);
        }
    });
}

#[test]
fn children_dropped_while_the_parent_is_cancelled_leave_no_trace() {
    bounded(|| {
        for _ in 0..scale(100) {
            let (root, cancel) = Context::background().with_cancel();
            let kids: Vec<_> = (0..scale(200)).map(|_| root.with_cancel()).collect();
            let gate = Arc::new(Barrier::new(2));
            let g = gate.clone();
            let dropper = thread::spawn(move || {
                g.wait();
                drop(kids);
            });
            gate.wait();
            cancel.cancel();
            dropper.join().unwrap();
            assert_eq!(ctxkit::test_hooks::registered(&root), 0);
        }
    });
}

#[test]
fn cancelling_deriving_and_dropping_inside_an_after_func_works() {
    let (a, cancel_a) = Context::background().with_cancel();
    let (b, cancel_b) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let b2 = b.clone();
    let a2 = a.clone();
    let _after = a.after_func(move || {
        let (child, h) = b2.with_cancel();
        let (of_a, _h) = a2.with_cancel(); // a child of the context being cancelled
        drop(h);
        cancel_b.cancel();
        drop(cancel_b);
        tx.send((child.err(), of_a.err())).unwrap();
    });
    cancel_a.cancel();
    let (child_err, of_a_err) = rx.recv_timeout(GENEROUS).unwrap();
    assert_eq!(child_err, Some(Error::Canceled));
    assert_eq!(of_a_err, Some(Error::Canceled));
    assert!(b.is_done());
}

/// A waker whose `wake` reaches back into the tree that is waking it.
struct Reentrant {
    tree: Context,
    to_cancel: Mutex<Option<CancelHandle>>,
    to_drop: Mutex<Option<CancelHandle>>,
    seen: Mutex<Vec<Option<Error>>>,
    wakes: AtomicUsize,
}

impl Wake for Reentrant {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        // Derive from the tree being cancelled: born cancelled.
        let (child, _h) = self.tree.with_cancel();
        self.seen.lock().unwrap().push(child.err());
        if let Some(h) = self.to_cancel.lock().unwrap().take() {
            h.cancel();
        }
        drop(self.to_drop.lock().unwrap().take());
        // Wait on the tree again: ready at once when it is the tree being cancelled.
        let mut done = self.tree.done();
        let w = Waker::noop();
        let ready = Pin::new(&mut done)
            .poll(&mut TaskContext::from_waker(w))
            .is_ready();
        assert_eq!(ready, self.tree.is_done());
    }
}

#[test]
fn cancelling_deriving_and_dropping_inside_a_done_waker_works() {
    bounded(|| {
        let (root, cancel_root) = Context::background().with_cancel();
        let (sibling_a, cancel_a) = root.with_cancel();
        let (sibling_b, drop_b) = root.with_cancel();
        let (elsewhere, cancel_elsewhere) = Context::background().with_cancel();
        let w = Arc::new(Reentrant {
            tree: root.clone(),
            to_cancel: Mutex::new(Some(cancel_elsewhere)),
            to_drop: Mutex::new(Some(drop_b)),
            seen: Mutex::new(Vec::new()),
            wakes: AtomicUsize::new(0),
        });
        let waker = Waker::from(w.clone());
        let mut done = root.done();
        register(&mut done, &waker);
        let mut done_a = sibling_a.done();
        register(&mut done_a, &waker);
        drop(cancel_a);
        assert_eq!(w.wakes.load(Ordering::SeqCst), 1, "sibling a's waiter");
        cancel_root.cancel();
        assert_eq!(w.wakes.load(Ordering::SeqCst), 2);
        assert!(elsewhere.is_done());
        assert!(sibling_b.is_done());
        assert_eq!(*w.seen.lock().unwrap(), vec![None, Some(Error::Canceled)]);
    });
}

#[test]
fn every_waiter_sees_the_whole_subtree_done_when_woken() {
    struct Check {
        leaves: Vec<Context>,
        ok: AtomicUsize,
    }
    impl Wake for Check {
        fn wake(self: Arc<Self>) {
            if self.leaves.iter().all(Context::is_done) {
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let (root, cancel) = Context::background().with_cancel();
    let mut handles = Vec::new();
    let mut leaves = Vec::new();
    let mut cur = root.clone();
    for _ in 0..100 {
        let (c, h) = cur.with_cancel();
        handles.push(h);
        let (leaf, h) = c.with_cancel();
        handles.push(h);
        leaves.push(leaf);
        cur = c;
    }
    let check = Arc::new(Check {
        leaves,
        ok: AtomicUsize::new(0),
    });
    let waker = Waker::from(check.clone());
    let mut done = root.done();
    register(&mut done, &waker);
    cancel.cancel();
    assert_eq!(check.ok.load(Ordering::SeqCst), 1);
}

#[test]
fn every_woken_waiter_sees_the_subtree_of_its_node_done() {
    /// At its wake-up, checks that every context of the subtree it waits on is done.
    struct Check {
        subtree: Vec<Context>,
        woken: AtomicUsize,
        saw_all_done: AtomicUsize,
    }
    impl Wake for Check {
        fn wake(self: Arc<Self>) {
            self.woken.fetch_add(1, Ordering::SeqCst);
            if self.subtree.iter().all(Context::is_done) {
                self.saw_all_done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    // root -> a -> (a1, a2 -> a21), root -> b, root -> c -> c1: leaves woken during the walk,
    // interior nodes after it.
    let (root, cancel) = Context::background().with_cancel();
    let (a, _ha) = root.with_cancel();
    let (a1, _ha1) = a.with_cancel();
    let (a2, _ha2) = a.with_cancel();
    let (a21, _ha21) = a2.with_cancel();
    let (b, _hb) = root.with_cancel();
    let (c, _hc) = root.with_cancel();
    let (c1, _hc1) = c.with_cancel();
    let all = vec![
        root.clone(),
        a.clone(),
        a1.clone(),
        a2.clone(),
        a21.clone(),
        b.clone(),
        c.clone(),
        c1.clone(),
    ];
    let waits = [
        (root.clone(), all.clone()),
        (
            a.clone(),
            vec![a.clone(), a1.clone(), a2.clone(), a21.clone()],
        ),
        (a1.clone(), vec![a1.clone()]),
        (a2.clone(), vec![a2.clone(), a21.clone()]),
        (a21.clone(), vec![a21.clone()]),
        (b.clone(), vec![b.clone()]),
        (c.clone(), vec![c.clone(), c1.clone()]),
        (c1.clone(), vec![c1.clone()]),
    ];
    let mut checks = Vec::new();
    let mut dones = Vec::new();
    for (ctx, subtree) in waits {
        let check = Arc::new(Check {
            subtree,
            woken: AtomicUsize::new(0),
            saw_all_done: AtomicUsize::new(0),
        });
        let mut done = ctx.done();
        register(&mut done, &Waker::from(check.clone()));
        dones.push(done);
        checks.push(check);
    }
    cancel.cancel();
    for (i, check) in checks.iter().enumerate() {
        assert_eq!(
            check.woken.load(Ordering::SeqCst),
            1,
            "waiter {i} woken once"
        );
        assert_eq!(
            check.saw_all_done.load(Ordering::SeqCst),
            1,
            "waiter {i} saw its whole subtree done"
        );
    }
    assert!(all.iter().all(|c| c.err() == Some(Error::Canceled)));
}

#[test]
fn a_panicking_leaf_waker_does_not_stop_the_rest_of_the_walk() {
    // Leaf waiters are woken while the walk is still marking their siblings.
    let (root, cancel) = Context::background().with_cancel();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let good = Waker::from(count.clone());
    let bad = Waker::from(Arc::new(Panics));
    let mut leaves = Vec::new();
    let mut dones = Vec::new();
    for i in 0..10 {
        let (leaf, h) = root.with_cancel();
        let mut done = leaf.done();
        register(&mut done, if i == 3 { &bad } else { &good });
        leaves.push((leaf, h));
        dones.push(done);
    }
    let mut on_root = root.done();
    register(&mut on_root, &good);
    cancel_resuming_a_wakers_panic(&cancel);
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        10,
        "the 9 other leaves and the root were woken"
    );
    assert!(leaves.iter().all(|(l, _)| l.err() == Some(Error::Canceled)));
    assert_eq!(ctxkit::test_hooks::registered(&root), 0);
}

#[test]
fn a_done_polled_again_with_another_waker_wakes_only_the_latest() {
    let (ctx, cancel) = Context::background().with_cancel();
    let first = Arc::new(Count(AtomicUsize::new(0)));
    let second = Arc::new(Count(AtomicUsize::new(0)));
    let (w1, w2) = (Waker::from(first.clone()), Waker::from(second.clone()));
    let mut done = ctx.done();
    register(&mut done, &w1);
    register(&mut done, &w1);
    register(&mut done, &w2);
    register(&mut done, &w2.clone());
    assert_eq!(
        ctxkit::test_hooks::registered(&ctx),
        1,
        "one registration, whatever the polls"
    );
    drop(w2);
    cancel.cancel();
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
}

struct Token;
impl ContextKey for Token {
    type Value = Reacts;
}

/// A context value whose destructor reaches back into the tree.
struct Reacts {
    tree: Context,
    cancel: Mutex<Option<CancelHandle>>,
    result: mpsc::Sender<Option<Error>>,
}
impl Drop for Reacts {
    fn drop(&mut self) {
        if let Some(h) = self.cancel.lock().unwrap().take() {
            h.cancel();
        }
        let (child, h) = self.tree.with_cancel();
        drop(h);
        let _ = self.result.send(child.err());
    }
}

#[test]
fn cancelling_deriving_and_dropping_from_a_context_values_drop_works() {
    bounded(|| {
        let (root, cancel_root) = Context::background().with_cancel();
        let (other, cancel_other) = Context::background().with_cancel();
        let (tx, rx) = mpsc::channel();
        let valued = root.with_value::<Token>(Reacts {
            tree: root.clone(),
            cancel: Mutex::new(Some(cancel_other)),
            result: tx,
        });
        let (leaf, leaf_handle) = valued.with_cancel();
        drop(valued);
        drop(leaf);
        // The leaf's node holds the last reference to the value node: dropping its handle
        // cancels it, unlinks it from `root` and drops the value, whose destructor derives
        // from and cancels into the trees.
        drop(leaf_handle);
        assert_eq!(rx.recv_timeout(GENEROUS).unwrap(), Some(Error::Canceled));
        assert!(other.is_done());
        assert!(!root.is_done());
        assert_eq!(ctxkit::test_hooks::registered(&root), 0);
        drop(cancel_root);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_awaiting_done_all_finish_when_cancelled_from_threads() {
    let (root, cancel) = Context::background().with_cancel();
    let mut tasks = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..scale(100) {
        let (c, h) = root.with_value::<Token2>(1).with_cancel();
        handles.push(h);
        for _ in 0..scale(10) {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.done().await }));
        }
    }
    let canceller = thread::spawn(move || cancel.cancel());
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(GENEROUS, all)
        .await
        .expect("no waiter hangs");
    canceller.join().unwrap();
}

struct Token2;
impl ContextKey for Token2 {
    type Value = u8;
}

struct Panics;
impl Wake for Panics {
    fn wake(self: Arc<Self>) {
        panic!("waker failure (expected by this test)");
    }
}

/// Cancels with `cancel` and checks that a waker's panic resumed in the canceller.
fn cancel_resuming_a_wakers_panic(cancel: &CancelHandle) {
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cancel.cancel()));
    assert!(
        unwound.is_err(),
        "the waker's panic resumes in the canceller"
    );
}

#[test]
fn a_panicking_waker_neither_stops_other_wakeups_nor_breaks_the_tree() {
    let (root, cancel) = Context::background().with_cancel();
    let (child, _h) = root.with_cancel();
    let bad = Waker::from(Arc::new(Panics));
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let good = Waker::from(count.clone());
    let mut on_root = root.done();
    register(&mut on_root, &bad);
    let mut on_child = child.done();
    register(&mut on_child, &good);
    let mut also_root = root.done();
    register(&mut also_root, &good);

    cancel_resuming_a_wakers_panic(&cancel);
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        2,
        "the other waiters were woken"
    );
    assert!(root.is_done() && child.is_done());
    assert_eq!(ctxkit::test_hooks::registered(&root), 0);
    // Nothing is poisoned: the tree keeps working.
    let (late, _h) = root.with_cancel();
    assert_eq!(late.err(), Some(Error::Canceled));
    assert!(format!("{:?}", child.cause().unwrap()).contains("cancel() called at"));
}
