//! Foreign code the cancel walk runs into: a value's `Drop` that panics, a waker whose `Drop`
//! touches its own context, and contexts kept inside context values.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context as TaskContext, Wake, Waker};
use std::time::Duration;

use ctxkit::{Context, ContextKey};

/// A value whose `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a value's drop panicked");
    }
}

struct BombKey;
impl ContextKey for BombKey {
    type Value = Bomb;
}

/// A waker that, when woken, drops what it keeps.
struct Stash(Mutex<Option<Box<dyn Any + Send>>>);

impl Wake for Stash {
    fn wake(self: Arc<Self>) {
        let kept = self.0.lock().unwrap().take();
        drop(kept);
    }
}

/// Counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A child under a value whose drop panics, and that the walk holds last: its waiter (woken by
/// the walk as soon as the child is marked) drops every other reference to it. Before the fix the
/// panic left the walk half-way: the next sibling stayed live and the root's waiter was never
/// woken, although the root read as done.
#[test]
fn a_panicking_value_drop_during_the_walk_neither_stops_the_walk_nor_is_lost() {
    let (root, cancel) = Context::background().with_cancel();
    let root_woken = Arc::new(Count(AtomicUsize::new(0)));
    let mut root_done = root.done();
    let waker = Waker::from(root_woken.clone());
    assert!(
        Pin::new(&mut root_done)
            .poll(&mut TaskContext::from_waker(&waker))
            .is_pending()
    );

    {
        let value = root.with_value::<BombKey>(Bomb);
        let (child, child_handle) = value.with_cancel();
        let stash = Arc::new(Stash(Mutex::new(None)));
        let mut child_done = child.done();
        let waker = Waker::from(stash.clone());
        assert!(
            Pin::new(&mut child_done)
                .poll(&mut TaskContext::from_waker(&waker))
                .is_pending()
        );
        // Everything that holds the child, but the root's registry, now lives in its waiter.
        *stash.0.lock().unwrap() = Some(Box::new((child_done, child, child_handle, value)));
    }
    let (sibling, _sibling_handle) = root.with_cancel();

    let panicked = catch_unwind(AssertUnwindSafe(|| cancel.cancel()));
    let payload = panicked.expect_err("the value's panic reaches the canceller");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"a value's drop panicked")
    );
    assert!(sibling.is_done(), "the walk went on to the next sibling");
    assert_eq!(
        root_woken.0.load(Ordering::SeqCst),
        1,
        "the cancelled context's waiter was woken"
    );
    assert!(
        Pin::new(&mut root_done)
            .poll(&mut TaskContext::from_waker(&waker))
            .is_ready()
    );
}

/// What a waker's `Drop` does: derive a child from the context it waits on (which takes that
/// context's lock).
struct Toucher(Context);

impl Drop for Toucher {
    fn drop(&mut self) {
        let (_child, _cancel) = self.0.with_cancel();
    }
}

struct TouchingWaker(#[allow(dead_code)] Toucher);

impl Wake for TouchingWaker {
    fn wake(self: Arc<Self>) {}
}

/// A `done()` polled again with another waker replaces the stored one. Before the fix the old
/// waker was dropped under the context's lock, so a waker whose `Drop` used the context
/// deadlocked.
#[test]
fn a_waker_whose_drop_uses_the_context_is_replaced_without_deadlock() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (ctx, cancel) = Context::background().with_cancel();
        let mut done = ctx.done();
        let first = Waker::from(Arc::new(TouchingWaker(Toucher(ctx.clone()))));
        assert!(
            Pin::new(&mut done)
                .poll(&mut TaskContext::from_waker(&first))
                .is_pending()
        );
        // The stored clone is now the last one: replacing it drops the `Toucher`.
        drop(first);
        let second = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        assert!(
            Pin::new(&mut done)
                .poll(&mut TaskContext::from_waker(&second))
                .is_pending()
        );
        cancel.cancel();
        assert!(
            Pin::new(&mut done)
                .poll(&mut TaskContext::from_waker(&second))
                .is_ready()
        );
        tx.send(()).unwrap();
    });
    // Done in microseconds; a minute is only the bound after which it surely hangs.
    rx.recv_timeout(Duration::from_secs(60))
        .expect("replacing a waker whose drop uses the context deadlocked");
}

struct Previous;
impl ContextKey for Previous {
    type Value = Context;
}

/// Each context keeps the one made before it as a value: dropping the last drops them all, one
/// inside the other. Before the fix that recursed once per context and overflowed a 2 MiB stack
/// (at 10k contexts in debug builds, 80k in release).
#[test]
fn contexts_kept_in_values_are_dropped_without_recursion() {
    const N: usize = 80_000;
    let dropped = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let mut ctx = Context::background();
            for i in 0..N {
                ctx = if i % 2 == 0 {
                    Context::background().with_value::<Previous>(ctx)
                } else {
                    // A cancellable one in between: its node is freed the same way.
                    let (inner, _cancel) = Context::background()
                        .with_value::<Previous>(ctx)
                        .with_cancel();
                    inner.without_cancel()
                };
            }
            drop(ctx);
        })
        .unwrap()
        .join();
    assert!(dropped.is_ok());
}
