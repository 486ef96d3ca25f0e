//! ctxkit side by side with tokio-util's `CancellationToken`, scenario by scenario.
//!
//! Every group is one scenario; its functions are the sides (`ctxkit`, `tokio-util`). The same
//! scenarios exist as Go benchmarks in `benches/go/`, and `benches/compare.sh` prints all three
//! in one table. See BENCHMARKS.md for the scenarios, the numbers and what they mean.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ctxkit::{CancelHandle, Context, ContextKey};
use tokio_util::sync::CancellationToken;

/// Chain depths of the cancel-tree scenario (Go's `BenchmarkCancelTree`).
const TREE_DEPTHS: [usize; 4] = [1, 10, 100, 1000];
/// Chain depths of the value-lookup scenario (Go's `BenchmarkDeepValue*`).
const VALUE_DEPTHS: [usize; 3] = [10, 100, 1000];
/// Numbers of tasks of the wake-up fan-out scenario.
const FAN_OUT: [usize; 2] = [1_000, 100_000];

/// Both sides of the multi-threaded scenarios run on this many threads (Go: GOMAXPROCS).
const THREADS: usize = 2;

fn create_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("create_drop/background");
    g.bench_function("ctxkit", |b| {
        let bg = Context::background();
        b.iter(|| {
            let (ctx, cancel) = bg.with_cancel();
            black_box(&ctx);
            drop(ctx);
            drop(cancel);
        })
    });
    g.bench_function("tokio-util", |b| {
        b.iter(|| {
            let token = CancellationToken::new();
            black_box(&token);
            drop(token);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("create_drop/cancel_parent");
    g.bench_function("ctxkit", |b| {
        let (parent, _cancel) = Context::background().with_cancel();
        b.iter(|| {
            let (ctx, cancel) = parent.with_cancel();
            black_box(&ctx);
            drop(ctx);
            drop(cancel);
        })
    });
    g.bench_function("tokio-util", |b| {
        let parent = CancellationToken::new();
        b.iter(|| {
            let token = parent.child_token();
            black_box(&token);
            drop(token);
        })
    });
    g.finish();
}

fn cancel_tree(c: &mut Criterion) {
    for depth in TREE_DEPTHS {
        let mut g = c.benchmark_group(format!("cancel_tree/depth={depth}"));
        g.bench_function("ctxkit", |b| {
            let mut chain: Vec<(Context, CancelHandle)> = Vec::with_capacity(depth);
            b.iter(|| {
                let (root, cancel) = Context::background().with_cancel();
                let mut cur = root;
                for _ in 0..depth {
                    let (child, h) = cur.with_cancel();
                    chain.push((cur, h));
                    cur = child;
                }
                cancel.cancel();
                assert!(cur.is_done());
                chain.clear();
            })
        });
        g.bench_function("tokio-util", |b| {
            let mut chain: Vec<CancellationToken> = Vec::with_capacity(depth);
            b.iter(|| {
                let root = CancellationToken::new();
                let mut cur = root.clone();
                for _ in 0..depth {
                    let child = cur.child_token();
                    chain.push(cur);
                    cur = child;
                }
                root.cancel();
                assert!(cur.is_cancelled());
                chain.clear();
            })
        });
        g.finish();
    }
}

struct Tag;
impl ContextKey for Tag {
    type Value = &'static str;
}

/// Runs `per_thread(iters / THREADS)` on `THREADS` threads at once; the wall time of the lot.
fn parallel(iters: u64, per_thread: impl Fn(u64) + Sync) -> Duration {
    let n = iters.div_ceil(THREADS as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| per_thread(n));
        }
    });
    start.elapsed()
}

fn common_parent(c: &mut Criterion) {
    let mut g = c.benchmark_group("common_parent_cancel");
    g.bench_function("ctxkit", |b| {
        let root = Context::background().with_value::<Tag>("value");
        let (shared, _cancel) = root.with_cancel();
        b.iter_custom(|iters| {
            parallel(iters, |n| {
                for _ in 0..n {
                    let (ctx, cancel) = shared.with_cancel();
                    assert_eq!(ctx.value::<Tag>(), Some(&"value"));
                    cancel.cancel();
                }
            })
        })
    });
    g.bench_function("tokio-util", |b| {
        let shared = CancellationToken::new();
        b.iter_custom(|iters| {
            parallel(iters, |n| {
                for _ in 0..n {
                    let token = shared.child_token();
                    black_box(&token);
                    token.cancel();
                }
            })
        })
    });
    g.finish();

    // Go's BenchmarkWithTimeout/concurrency=40: 40 long timers exist, each op makes 10 more
    // and cancels them. tokio-util's token has no deadlines.
    let mut g = c.benchmark_group("with_timeout");
    g.bench_function("ctxkit", |b| {
        let rt = multi_thread();
        let bg = Context::background();
        let _standing: Vec<_> = rt.block_on(async {
            (0..40)
                .map(|_| bg.with_timeout(Duration::from_secs(3600)))
                .collect()
        });
        b.iter_custom(|iters| {
            let n = iters.div_ceil(THREADS as u64);
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..THREADS)
                    .map(|_| {
                        tokio::spawn(async move {
                            let bg = Context::background();
                            let mut batch = Vec::with_capacity(10);
                            for _ in 0..n {
                                for _ in 0..10 {
                                    batch.push(bg.with_timeout(Duration::from_secs(3600)));
                                }
                                for (_, cancel) in batch.drain(..) {
                                    cancel.cancel();
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("check/is_done");
    g.bench_function("ctxkit", |b| {
        let (ctx, _cancel) = Context::background().with_cancel();
        b.iter(|| black_box(&ctx).is_done())
    });
    g.bench_function("tokio-util", |b| {
        let token = CancellationToken::new();
        b.iter(|| black_box(&token).is_cancelled())
    });
    g.finish();

    let mut g = c.benchmark_group("check/err");
    g.bench_function("ctxkit", |b| {
        let (ctx, _cancel) = Context::background().with_cancel();
        b.iter(|| black_box(&ctx).err())
    });
    g.finish();
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Spawns `n` tasks that each wait on their own child of one root (already registered when
/// this returns), then measures from the root's cancellation until the last task has woken.
fn fan_out_once<W, F>(
    rt: &tokio::runtime::Runtime,
    n: usize,
    waiter: W,
    cancel: impl FnOnce(),
) -> Duration
where
    W: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let started = Arc::new(AtomicUsize::new(0));
    let woke = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    for _ in 0..n {
        let wait = waiter();
        let (started, woke, tx) = (started.clone(), woke.clone(), tx.clone());
        rt.spawn(async move {
            let mut wait = std::pin::pin!(wait);
            // Register the waker before counting as started, so the cancellation finds it.
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(wait.as_mut().poll(cx))).await;
            started.fetch_add(1, Ordering::Release);
            if first.is_pending() {
                wait.await;
            }
            if woke.fetch_add(1, Ordering::AcqRel) + 1 == n {
                let _ = tx.send(());
            }
        });
    }
    drop(tx);
    while started.load(Ordering::Acquire) < n {
        std::thread::sleep(Duration::from_micros(200));
    }
    let start = Instant::now();
    cancel();
    rx.recv().expect("all woke");
    start.elapsed()
}

fn fan_out(c: &mut Criterion) {
    let rt = multi_thread();
    for n in FAN_OUT {
        let mut g = c.benchmark_group(format!("fan_out/waiters={n}"));
        g.sample_size(10);
        g.bench_function("ctxkit", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (root, cancel) = Context::background().with_cancel();
                    total += fan_out_once(
                        &rt,
                        n,
                        || {
                            let (child, handle) = root.with_cancel();
                            async move {
                                child.done().await;
                                drop(handle);
                            }
                        },
                        || cancel.cancel(),
                    );
                }
                total
            })
        });
        g.bench_function("tokio-util", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let root = CancellationToken::new();
                    total += fan_out_once(
                        &rt,
                        n,
                        || {
                            let child = root.child_token();
                            async move { child.cancelled().await }
                        },
                        || root.cancel(),
                    );
                }
                total
            })
        });
        g.finish();
    }
}

/// The key at the root of the value chains.
struct RootKey;
impl ContextKey for RootKey {
    type Value = u64;
}
/// Keys of the nodes in between (Go's benchmark uses a new key per level).
struct Other<const N: usize>;
impl<const N: usize> ContextKey for Other<N> {
    type Value = u64;
}
/// A key nobody sets.
struct Missing;
impl ContextKey for Missing {
    type Value = u64;
}

/// A chain of `depth` value nodes: `RootKey` at the root, other keys below, the leaf returned.
fn value_chain(depth: usize) -> Context {
    let mut ctx = Context::background().with_value::<RootKey>(1);
    for i in 1..depth {
        let v = i as u64;
        ctx = match i % 4 {
            0 => ctx.with_value::<Other<0>>(v),
            1 => ctx.with_value::<Other<1>>(v),
            2 => ctx.with_value::<Other<2>>(v),
            _ => ctx.with_value::<Other<3>>(v),
        };
    }
    ctx
}

fn value(c: &mut Criterion) {
    for depth in VALUE_DEPTHS {
        let leaf = value_chain(depth);
        let mut g = c.benchmark_group(format!("value_hit/depth={depth}"));
        g.bench_function("ctxkit", |b| {
            b.iter(|| black_box(&leaf).value::<RootKey>().copied())
        });
        g.finish();
        let mut g = c.benchmark_group(format!("value_miss/depth={depth}"));
        g.bench_function("ctxkit", |b| {
            b.iter(|| black_box(&leaf).value::<Missing>().copied())
        });
        g.finish();
    }
}

/// Awaits per call of the `#[cancellable]` overhead scenario.
const AWAITS: u64 = 10_000;

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

#[ctxkit::cancellable]
async fn yield_cancellable(ctx: &Context, n: u64) -> Result<u64, ctxkit::Error> {
    let mut sum = 0;
    for i in 0..n {
        tokio::task::yield_now().await;
        sum += black_box(i);
    }
    Ok(sum)
}

async fn yield_plain(_ctx: &Context, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        tokio::task::yield_now().await;
        sum += black_box(i);
    }
    sum
}

/// The cost `#[cancellable]` adds to each `.await`: the same fn with and without the attribute,
/// under a live cancellable context.
fn cancellable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (ctx, _cancel) = Context::background().with_cancel();
    let mut g = c.benchmark_group("cancellable/ready");
    g.bench_function("plain", |b| {
        b.iter(|| rt.block_on(ready_plain(&ctx, AWAITS)))
    });
    g.bench_function("cancellable", |b| {
        b.iter(|| rt.block_on(ready_cancellable(&ctx, AWAITS)).unwrap())
    });
    g.finish();
    let mut g = c.benchmark_group("cancellable/yield_now");
    g.bench_function("plain", |b| {
        b.iter(|| rt.block_on(yield_plain(&ctx, AWAITS)))
    });
    g.bench_function("cancellable", |b| {
        b.iter(|| rt.block_on(yield_cancellable(&ctx, AWAITS)).unwrap())
    });
    g.finish();
}

criterion_group!(
    benches,
    cancellable,
    create_drop,
    cancel_tree,
    common_parent,
    check,
    fan_out,
    value
);
criterion_main!(benches);
