//! The tokio-util bridge leaks in neither direction: live memory returns to its starting level
//! however many links come and go under a long-lived context or token (a counting allocator,
//! per thread; each test drives a current-thread runtime on its own thread).
#![cfg(feature = "tokio-util")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ctxkit::Context;
use tokio_util::sync::CancellationToken;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + n));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// The workspace denies `unsafe`, but `GlobalAlloc` is an unsafe trait: this test binary opts in
// locally for this one forwarding allocator.
#[allow(unsafe_code)]
mod imp {
    use super::*;
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
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
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Lets the runtime run every task that is ready (link tasks, `after_func` callbacks).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Runs `churn` once to warm up, then `n` times, settling after each, and checks that live
/// memory and the parent's registry are back where they started.
fn assert_no_growth(n: usize, churn: impl AsyncFn(&Context, &CancellationToken)) {
    let rt = runtime();
    rt.block_on(async {
        let (parent, _cancel) = Context::background().with_cancel();
        let token = CancellationToken::new();
        churn(&parent, &token).await;
        settle().await;
        let base = live();
        let base_registered = ctxkit::test_hooks::registered(&parent);
        for _ in 0..n {
            churn(&parent, &token).await;
            settle().await;
        }
        assert_eq!(ctxkit::test_hooks::registered(&parent), base_registered);
        assert_eq!(live() - base, 0, "live bytes after {n} links");
    });
}

#[test]
fn a_token_of_a_context_that_is_dropped_leaves_no_trace() {
    assert_no_growth(1_000, async |parent, _| {
        let (ctx, cancel) = parent.with_cancel();
        let token = ctx.cancellation_token();
        drop(ctx);
        drop(cancel);
        drop(token);
    });
}

#[test]
fn a_token_of_a_context_that_is_cancelled_leaves_no_trace() {
    assert_no_growth(1_000, async |parent, _| {
        let (ctx, cancel) = parent.with_cancel();
        let token = ctx.cancellation_token();
        cancel.cancel();
        settle().await;
        assert!(token.is_cancelled());
        drop(ctx);
    });
}

#[test]
fn children_of_a_forever_live_token_that_are_dropped_leave_no_trace() {
    assert_no_growth(1_000, async |parent, token| {
        let ctx = parent.with_cancellation_token(token.clone());
        let (grandchild, _c) = ctx.with_cancel();
        drop(ctx);
        drop(grandchild);
    });
}

#[test]
fn children_of_a_token_that_are_done_leave_no_trace() {
    assert_no_growth(1_000, async |parent, token| {
        let ctx = parent.with_cancellation_token(token.clone());
        let (inner, cancel) = ctx.with_cancel();
        cancel.cancel();
        settle().await;
        drop(inner);
        drop(ctx);
    });
}

#[test]
fn children_of_tokens_that_are_cancelled_leave_no_trace() {
    assert_no_growth(1_000, async |parent, _| {
        let token = CancellationToken::new();
        let ctx = parent.with_cancellation_token(token.clone());
        token.cancel();
        settle().await;
        assert!(ctx.is_done());
    });
}

#[test]
fn tokens_taken_from_a_long_lived_context_and_dropped_leave_no_trace() {
    // The context links one token of its own (one callback), and each call hands out a child of
    // it: a dropped child leaves that token at once.
    assert_no_growth(1_000, async |parent, _| {
        let token = parent.cancellation_token();
        assert!(!token.is_cancelled());
        drop(token);
    });
}
