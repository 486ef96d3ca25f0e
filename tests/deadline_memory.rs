//! A cancelled or dropped deadline gives its memory back at once: no timer task lingers until a
//! runtime gets round to it. A burst of timeout children made and dropped inside a runtime
//! leaves live memory where it was, measured right after the burst and again a little later.
//!
//! This binary counts every thread's allocations with its own global allocator, so it holds
//! this one test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use ctxkit::Context;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// The workspace denies `unsafe`, but `GlobalAlloc` is an unsafe trait, so this test binary opts
// in locally for this one forwarding allocator.
#[allow(unsafe_code)]
mod imp {
    use super::*;
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Makes `n` timeout children of `parent` and drops them (context first, then the handle, as
/// a request scope does), half of them cancelled explicitly.
fn burst(parent: &Context, n: usize) {
    for i in 0..n {
        let (ctx, handle) = parent.with_timeout(Duration::from_secs(3600));
        drop(ctx);
        if i % 2 == 0 {
            handle.cancel();
        }
        drop(handle);
    }
}

#[test]
fn dropped_deadlines_give_their_memory_back_at_once() {
    let n = if cfg!(miri) { 200 } else { 200_000 };
    // A current-thread runtime (`#[tokio::test]`'s) does nothing else during the burst: what a
    // dropped deadline leaves for the runtime to clean up is all still there right after it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (parent, _cancel) = Context::background().with_cancel();
        // Phase one: first-use allocations (the timer's own structures, threads, the
        // runtime's queues) happen here and are not counted.
        burst(&parent, n);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = live();
        // Phase two: the same burst again must leave nothing behind.
        burst(&parent, n);
        let right_after = live() - base;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let later = live() - base;
        eprintln!(
            "{n} timeout children made and dropped: {right_after} bytes live right after the burst, {later} bytes 200 ms later"
        );
        // A little slack for whatever the runtime itself allocates meanwhile.
        let slack = 64 * 1024;
        assert!(
            right_after < slack && later < slack,
            "{n} dropped deadlines still hold {right_after} bytes, {later} bytes 200 ms later"
        );
    });
}
