//! A cancelled or dropped child leaves its parent's bookkeeping at once: live memory returns to
//! its starting level, however many children came and went under a long-lived parent.
//!
//! This binary counts allocations per thread with its own global allocator; each test runs on
//! one thread and only measures its own allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Waker};

use ctxkit::{Context, ContextKey};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + n));
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY-free: the workspace denies `unsafe`, but `GlobalAlloc` is an unsafe trait, so this
// test binary opts in locally for this one forwarding allocator.
#[allow(unsafe_code)]
mod imp {
    use super::*;
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            count_allocation();
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            count_allocation();
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Polls a `done()` future once with a waker that does nothing.
fn poll(done: &mut ctxkit::Done) -> std::task::Poll<()> {
    Pin::new(done).poll(&mut TaskContext::from_waker(Waker::noop()))
}

/// Sizes for loops: full natively, small under miri (which is thousands of times slower).
fn scale(n: usize) -> usize {
    if cfg!(miri) { (n / 1000).max(100) } else { n }
}

struct RequestId;
impl ContextKey for RequestId {
    type Value = u64;
}

/// Runs `churn` once to warm up (first-use allocations of the parent's registry), then `n`
/// times, and checks that live memory and the parent's registry are back where they started.
fn assert_no_growth(n: usize, mut churn: impl FnMut(&Context, usize)) {
    let (parent, _cancel) = Context::background().with_cancel();
    churn(&parent, 0);
    let base = live();
    for i in 0..n {
        churn(&parent, i);
    }
    assert_eq!(ctxkit::test_hooks::registered(&parent), 0);
    assert_eq!(live() - base, 0, "live bytes after {n} children");
}

#[test]
fn a_million_dropped_children_leave_no_trace() {
    assert_no_growth(scale(1_000_000), |parent, _| {
        let (child, handle) = parent.with_cancel();
        assert_eq!(ctxkit::test_hooks::registered(parent), 1);
        drop(child);
        drop(handle);
    });
}

#[test]
fn a_million_cancelled_children_leave_no_trace() {
    assert_no_growth(scale(1_000_000), |parent, _| {
        let (child, handle) = parent.with_cancel();
        handle.cancel();
        assert_eq!(ctxkit::test_hooks::registered(parent), 0);
        drop(child);
    });
}

#[test]
fn children_behind_value_nodes_with_waiters_and_callbacks_leave_no_trace() {
    assert_no_growth(scale(100_000), |parent, i| {
        let v = parent.with_value::<RequestId>(i as u64);
        let (child, handle) = v.with_cancel();
        let (grandchild, _h) = child.with_cancel();
        let mut done = grandchild.done();
        assert!(poll(&mut done).is_pending());
        let stopped = child.after_func(|| ());
        assert!(stopped.stop());
        drop(done);
        if i % 2 == 0 {
            handle.cancel_with(std::io::Error::other("x"));
        }
    });
}

#[test]
fn many_live_children_dropped_at_once_give_the_registry_back() {
    let (parent, _cancel) = Context::background().with_cancel();
    let base = live();
    let n = scale(100_000);
    let kids: Vec<_> = (0..n).map(|_| parent.with_cancel()).collect();
    assert_eq!(ctxkit::test_hooks::registered(&parent), n);
    drop(kids);
    assert_eq!(ctxkit::test_hooks::registered(&parent), 0);
    assert_eq!(live() - base, 0);
}

#[test]
fn cancelling_a_flat_fan_out_allocates_nothing() {
    // Wide and flat is how request handlers hang off a server's root: the walk needs no memory
    // for it, so it never competes for the allocator with the tasks it wakes.
    let (root, cancel) = Context::background().with_cancel();
    let n = scale(10_000);
    let mut waiting = Vec::with_capacity(n);
    for _ in 0..n {
        let (leaf, h) = root.with_cancel();
        let mut done = leaf.done();
        assert!(poll(&mut done).is_pending());
        waiting.push((leaf, h, done));
    }
    let before = allocations();
    cancel.cancel();
    assert_eq!(allocations() - before, 0, "the walk allocated");
    assert!(waiting.iter().all(|(leaf, ..)| leaf.is_done()));
}

#[test]
fn waiting_on_a_context_allocates_nothing() {
    // A `done()` waiter lives in the future and, registered, in the node itself.
    let (ctx, cancel) = Context::background().with_cancel();
    let before = allocations();
    let mut done = ctx.done();
    assert!(poll(&mut done).is_pending());
    assert_eq!(ctxkit::test_hooks::registered(&ctx), 1);
    cancel.cancel();
    assert!(poll(&mut done).is_ready());
    drop(done);
    assert_eq!(allocations() - before, 0);
}
