//! Bytes per node of each kind: how much heap a live context (or token) holds, and how many
//! allocations making it costs. Counted by dhat's heap profiler in testing mode (a counting global
//! allocator); run with `cargo bench --bench memory`. One line per measurement:
//!
//! `memory side=ctxkit kind=with_cancel/background live_bytes=N allocs=M`
//! `churn side=ctxkit kind=with_timeout_cancelled bytes=N allocs=M`
//!
//! `live_bytes` is the heap the node keeps while alive (its share of a parent's registry
//! included, averaged over many siblings); `allocs` is allocations per node made, transient
//! ones included.

use std::time::Duration;

use ctxkit::{Context, ContextKey};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Nodes made per measurement: a parent's registry grows in steps, so average over many.
const N: usize = 4096;

struct Key;
impl ContextKey for Key {
    type Value = u64;
}

/// Makes `N` nodes with `make`, keeps them alive, and prints their average heap footprint.
fn measure<T>(side: &str, kind: &str, mut make: impl FnMut() -> T) {
    let mut keep: Vec<T> = Vec::with_capacity(N);
    let before = dhat::HeapStats::get();
    for _ in 0..N {
        keep.push(make());
    }
    let after = dhat::HeapStats::get();
    let live = after.curr_bytes as f64 - before.curr_bytes as f64;
    let allocs = after.total_blocks as f64 - before.total_blocks as f64;
    println!(
        "memory side={side} kind={kind} live_bytes={:.1} allocs={:.2}",
        live / N as f64,
        allocs / N as f64
    );
    drop(keep);
}

/// Runs `op` `N` times and prints the heap it allocated per run (freed or not) and its
/// allocations per run: what an operation that makes and drops a node churns through.
fn churn(side: &str, kind: &str, mut op: impl FnMut()) {
    let before = dhat::HeapStats::get();
    for _ in 0..N {
        op();
    }
    let after = dhat::HeapStats::get();
    let bytes = after.total_bytes as f64 - before.total_bytes as f64;
    let allocs = after.total_blocks as f64 - before.total_blocks as f64;
    println!(
        "churn side={side} kind={kind} bytes={:.1} allocs={:.2}",
        bytes / N as f64,
        allocs / N as f64
    );
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let bg = Context::background();

    measure("ctxkit", "with_cancel/background", || bg.with_cancel());
    let (parent, _p) = bg.with_cancel();
    measure("ctxkit", "with_cancel/cancel_parent", || {
        parent.with_cancel()
    });
    measure("ctxkit", "with_value", || bg.with_value::<Key>(7));
    measure("ctxkit", "without_cancel", || bg.without_cancel());
    measure("ctxkit", "todo", Context::todo);
    // Outside a runtime a deadline goes to the fallback timer thread.
    measure("ctxkit", "with_timeout/no_runtime", || {
        bg.with_timeout(Duration::from_secs(3600))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    {
        let _in = rt.enter();
        measure("ctxkit", "with_timeout/runtime", || {
            bg.with_timeout(Duration::from_secs(3600))
        });
        // As Go's `-benchmem` counts `WithTimeout` + `cancel()`: everything allocated.
        churn("ctxkit", "with_timeout_cancelled", || {
            let (ctx, cancel) = bg.with_timeout(Duration::from_secs(3600));
            cancel.cancel();
            drop(ctx);
        });
    }
    // A `done()` future that has been polled once holds a registry slot.
    measure("ctxkit", "done_waiter", || {
        let mut done = Box::pin(parent.done());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(done.as_mut().poll(&mut cx).is_pending());
        done
    });

    measure(
        "tokio-util",
        "with_cancel/background",
        CancellationToken::new,
    );
    let root = CancellationToken::new();
    measure("tokio-util", "with_cancel/cancel_parent", || {
        root.child_token()
    });
    measure("tokio-util", "done_waiter", || {
        let mut done = Box::pin(root.clone().cancelled_owned());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(done.as_mut().poll(&mut cx).is_pending());
        done
    });
}
