//! One operation of a scenario, repeated: for instruction counts under callgrind, which are
//! repeatable where wall-clock times on a busy machine are not.
//!
//! `valgrind --tool=callgrind $(ls target/release/deps/ops-* | grep -v '\.d$') create_drop 100000`
//! then divide the total instruction count (minus an `empty` run's) by the repetitions.
//! Without arguments (as `cargo bench` runs it) it does nothing.

use std::hint::black_box;

use ctxkit::{Context, ContextKey};
use tokio_util::sync::CancellationToken;

struct RootKey;
impl ContextKey for RootKey {
    type Value = u64;
}
struct Other;
impl ContextKey for Other {
    type Value = u64;
}
struct Missing;
impl ContextKey for Missing {
    type Value = u64;
}

/// Awaits per call of the `awaits_*` ops.
const AWAITS: u64 = 1000;

#[ctxkit::cancellable]
async fn ready_cancellable(ctx: &Context, n: u64) -> Result<u64, ctxkit::Error> {
    let mut sum = 0;
    for i in 0..n {
        sum += std::future::ready(black_box(i)).await;
    }
    Ok(sum)
}

async fn ready_plain(_ctx: &Context, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        sum += std::future::ready(black_box(i)).await;
    }
    sum
}

/// A future that is ready at once but, as far as the compiler knows, might not be.
fn maybe_pending(i: u64) -> impl Future<Output = u64> {
    std::future::poll_fn(move |_| {
        if black_box(false) {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(i)
        }
    })
}

async fn maybe_plain(_ctx: &Context, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        sum += maybe_pending(i).await;
    }
    sum
}

#[ctxkit::cancellable]
async fn maybe_cancellable(ctx: &Context, n: u64) -> Result<u64, ctxkit::Error> {
    let mut sum = 0;
    for i in 0..n {
        sum += maybe_pending(i).await;
    }
    Ok(sum)
}

/// A future that suspends once: pending at its first poll (waking itself), ready at the next.
fn pending_once(i: u64) -> impl Future<Output = u64> {
    let mut polled = false;
    std::future::poll_fn(move |cx| {
        if polled {
            std::task::Poll::Ready(i)
        } else {
            polled = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
}

async fn pending_plain(_ctx: &Context, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        sum += pending_once(i).await;
    }
    sum
}

#[ctxkit::cancellable]
async fn pending_cancellable(ctx: &Context, n: u64) -> Result<u64, ctxkit::Error> {
    let mut sum = 0;
    for i in 0..n {
        sum += pending_once(i).await;
    }
    Ok(sum)
}

/// Polls a future to completion, again and again while it is pending (its futures wake
/// themselves at once).
fn run_to_end<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Polls a future that never suspends to completion.
fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("ready futures only"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(op) = args.next() else { return };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let bg = Context::background();
    // Deadlines are made inside a runtime, as requests make them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _in_runtime = rt.enter();
    let (parent, _p) = bg.with_cancel();
    let (under_deadline, _d) = bg.with_timeout(std::time::Duration::from_secs(3600));
    let token = CancellationToken::new();
    let mut chain = bg.with_value::<RootKey>(1);
    for i in 1..100 {
        chain = chain.with_value::<Other>(i);
    }
    // n waiters, each on its own child of one root, registered, then the root cancelled.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    if op == "fan_out" {
        let (root, cancel) = bg.with_cancel();
        let mut waiting = Vec::with_capacity(n);
        for _ in 0..n {
            let (child, h) = root.with_cancel();
            let mut done = Box::pin(child.done());
            assert!(done.as_mut().poll(&mut cx).is_pending());
            waiting.push((child, h, done));
        }
        cancel.cancel();
        for (_, _, done) in &mut waiting {
            assert!(done.as_mut().poll(&mut cx).is_ready());
        }
        return;
    }
    if op == "tokio_fan_out" {
        let root = CancellationToken::new();
        let mut waiting = Vec::with_capacity(n);
        for _ in 0..n {
            let child = root.child_token();
            let mut done = Box::pin(child.clone().cancelled_owned());
            assert!(done.as_mut().poll(&mut cx).is_pending());
            waiting.push((child, done));
        }
        root.cancel();
        for (_, done) in &mut waiting {
            assert!(done.as_mut().poll(&mut cx).is_ready());
        }
        return;
    }
    for _ in 0..n {
        match op.as_str() {
            "empty" => {}
            "create_drop" => drop(black_box(bg.with_cancel())),
            "create_drop_parent" => drop(black_box(parent.with_cancel())),
            // A request scope: `let (ctx, h) = parent.with_cancel();`, the handle dropped first.
            "create_cancel_parent_scope" => {
                let (ctx, h) = parent.with_cancel();
                black_box(&ctx);
                drop(h);
                drop(ctx);
            }
            "timeout_cancel" => {
                let (ctx, h) = bg.with_timeout(std::time::Duration::from_secs(3600));
                black_box(&ctx);
                h.cancel();
                drop(ctx);
            }
            "err_deadline" => {
                black_box(black_box(&under_deadline).err());
            }
            "check_deadline" => {
                let _ = black_box(black_box(&under_deadline).check());
            }
            "create_drop_value" => drop(black_box(bg.with_value::<RootKey>(1))),
            "tokio_create_drop" => drop(black_box(CancellationToken::new())),
            "tokio_create_drop_parent" => drop(black_box(token.child_token())),
            // One call awaiting AWAITS ready futures (divide by AWAITS for one await).
            "awaits_plain" => {
                black_box(run_ready(ready_plain(&parent, AWAITS)));
            }
            "awaits_cancellable" => {
                black_box(run_ready(ready_cancellable(&parent, AWAITS)).ok());
            }
            "awaits_maybe_plain" => {
                black_box(run_ready(maybe_plain(&parent, AWAITS)));
            }
            "awaits_maybe_cancellable" => {
                black_box(run_ready(maybe_cancellable(&parent, AWAITS)).ok());
            }
            // The same with futures that suspend once each: one poll of the call per await.
            "awaits_pending_plain" => {
                black_box(run_to_end(pending_plain(&parent, AWAITS)));
            }
            "awaits_pending_cancellable" => {
                black_box(run_to_end(pending_cancellable(&parent, AWAITS)).ok());
            }
            "is_done" => {
                black_box(black_box(&parent).is_done());
            }
            "err" => {
                black_box(black_box(&parent).err());
            }
            "value_hit_100" => {
                black_box(black_box(&chain).value::<RootKey>());
            }
            "value_miss_100" => {
                black_box(black_box(&chain).value::<Missing>());
            }
            other => {
                eprintln!("unknown op {other}");
                std::process::exit(2);
            }
        }
    }
}
