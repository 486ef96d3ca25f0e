//! The rows of the performance targets, each side by side with its peer in one process.
//!
//! One run is one round: for every row, the two sides (ctxkit and tokio-util, or ctxkit alone
//! when the peer is Go, which `benches/go` measures) take turns, `SAMPLES` samples each, and the
//! median sample of each side is printed:
//!
//! `row=create_cancel_live_parent side=ctxkit ns=61.2`
//!
//! `benches/compare.sh` runs several rounds, alternating with Go's, and prints the medians and
//! ratios. Without arguments every row runs; an argument keeps the rows whose name contains it.
//! Environment: `SAMPLES` (default 7), `SAMPLE_MS` (time per sample, default 40).

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use ctxkit::{CancelHandle, Context, ContextKey};
use tokio_util::sync::CancellationToken;

/// A side of a row: runs `iters` operations and returns how long they took.
type Side<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

struct Settings {
    samples: usize,
    sample: Duration,
    filter: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Iterations making one sample last about `settings.sample`.
fn calibrate(side: &mut Side<'_>, settings: &Settings) -> u64 {
    let mut iters = 1u64;
    loop {
        let took = side(iters);
        if took >= settings.sample / 8 || iters >= 1 << 40 {
            let per = took.as_secs_f64() / iters as f64;
            return ((settings.sample.as_secs_f64() / per) as u64).max(1);
        }
        iters *= 4;
    }
}

/// Runs the sides of one row in turns and prints each side's median time per operation.
fn row(settings: &Settings, name: &str, sides: Vec<(&str, Side<'_>)>) {
    row_per(settings, name, 1, sides)
}

/// As [`row`], for sides whose operation is `per` of the row's: the time printed is divided by it.
fn row_per(settings: &Settings, name: &str, per: u64, mut sides: Vec<(&str, Side<'_>)>) {
    if !name.contains(&settings.filter) {
        return;
    }
    let iters: Vec<u64> = sides
        .iter_mut()
        .map(|(_, side)| calibrate(side, settings))
        .collect();
    let mut times = vec![Vec::new(); sides.len()];
    for _ in 0..settings.samples {
        for (i, (_, side)) in sides.iter_mut().enumerate() {
            let took = side(iters[i]);
            times[i].push(took.as_secs_f64() * 1e9 / (iters[i] * per) as f64);
        }
    }
    for ((label, _), t) in sides.iter().zip(times) {
        println!("row={name} side={label} ns={:.3}", median(t));
    }
}

/// Times `iters` runs of `op`.
fn timed(iters: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed()
}

/// Runs `op` `iters` times on each of `threads` threads at once; the time per thread (the wall
/// time of the lot), so that a perfectly scalable operation takes as long as on one thread.
fn on_threads(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let go = Barrier::new(threads + 1);
    let op = &op;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let go = &go;
                s.spawn(move || {
                    go.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    start.elapsed()
                })
            })
            .collect();
        go.wait();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker"))
            .max()
            .expect("threads")
    })
}

fn multi_thread(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Spawns `n` tasks that each wait on their own child of one root (all registered when this
/// returns), then times from the root's cancellation until the last task has woken.
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

/// The key at the root of the value chain.
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

/// Awaits per call of the `#[cancellable]` row.
const AWAITS: u64 = 1_000;

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
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let settings = Settings {
        samples: env("SAMPLES", 7) as usize,
        sample: Duration::from_millis(env("SAMPLE_MS", 40)),
        // `cargo bench` passes `--bench`: not a filter.
        filter: std::env::args()
            .skip(1)
            .find(|a| !a.starts_with("--"))
            .unwrap_or_default(),
    };
    let s = &settings;
    let bg = Context::background();
    // Deadlines are made where requests make them: inside a runtime, whose 2 workers also run
    // the fan-outs.
    let workers = multi_thread(2);
    let _in_runtime = workers.enter();

    // What a request scope does: `let (ctx, h) = parent.with_cancel();`, the handle dropped
    // first, under a live cancellable parent.
    let (parent, _parent_handle) = bg.with_cancel();
    let token = CancellationToken::new();
    row(
        s,
        "create_cancel_live_parent",
        vec![
            (
                "ctxkit",
                Box::new(|n| {
                    timed(n, || {
                        let (ctx, h) = parent.with_cancel();
                        black_box(&ctx);
                        drop(h);
                        drop(ctx);
                    })
                }),
            ),
            (
                "tokio-util",
                Box::new(|n| {
                    timed(n, || {
                        let t = token.child_token();
                        black_box(&t);
                        drop(t);
                    })
                }),
            ),
        ],
    );

    row(
        s,
        "timeout_made_cancelled",
        vec![(
            "ctxkit",
            Box::new(|n| {
                workers.block_on(async {
                    timed(n, || {
                        let (ctx, h) = bg.with_timeout(Duration::from_secs(3600));
                        black_box(&ctx);
                        h.cancel();
                        drop(ctx);
                    })
                })
            }),
        )],
    );

    let (deadline_ctx, _deadline_handle) = bg.with_timeout(Duration::from_secs(3600));
    let under = &deadline_ctx;
    for threads in [1, 2] {
        row(
            s,
            &format!("err_deadline_{threads}t"),
            vec![(
                "ctxkit",
                Box::new(move |n| {
                    on_threads(threads, n, || {
                        black_box(black_box(under).err());
                    })
                }),
            )],
        );
        row(
            s,
            &format!("check_deadline_{threads}t"),
            vec![(
                "ctxkit",
                Box::new(move |n| {
                    on_threads(threads, n, || {
                        let _ = black_box(black_box(under).check());
                    })
                }),
            )],
        );
    }

    // The floor of a check that reads the clock: one `Instant::now()`.
    row(
        s,
        "clock_read",
        vec![(
            "ctxkit",
            Box::new(|n| {
                timed(n, || {
                    black_box(ctxkit::Instant::now());
                })
            }),
        )],
    );

    row(
        s,
        "is_done",
        vec![
            (
                "ctxkit",
                Box::new(|n| {
                    timed(n, || {
                        black_box(black_box(&parent).is_done());
                    })
                }),
            ),
            (
                "tokio-util",
                Box::new(|n| {
                    timed(n, || {
                        black_box(black_box(&token).is_cancelled());
                    })
                }),
            ),
        ],
    );

    for depth in [1usize, 10, 100, 1000] {
        let mut chain: Vec<(Context, CancelHandle)> = Vec::with_capacity(depth);
        let mut tokens: Vec<CancellationToken> = Vec::with_capacity(depth);
        row(
            s,
            &format!("cancel_tree_depth_{depth}"),
            vec![
                (
                    "ctxkit",
                    Box::new(|n| {
                        timed(n, || {
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
                    }),
                ),
                (
                    "tokio-util",
                    Box::new(|n| {
                        timed(n, || {
                            let root = CancellationToken::new();
                            let mut cur = root.clone();
                            for _ in 0..depth {
                                let child = cur.child_token();
                                tokens.push(cur);
                                cur = child;
                            }
                            root.cancel();
                            assert!(cur.is_cancelled());
                            tokens.clear();
                        })
                    }),
                ),
            ],
        );
    }

    let leaf = value_chain(1000);
    row(
        s,
        "value_hit_depth_1000",
        vec![(
            "ctxkit",
            Box::new(|n| {
                timed(n, || {
                    black_box(black_box(&leaf).value::<RootKey>());
                })
            }),
        )],
    );
    row(
        s,
        "value_miss_depth_1000",
        vec![(
            "ctxkit",
            Box::new(|n| {
                timed(n, || {
                    black_box(black_box(&leaf).value::<Missing>());
                })
            }),
        )],
    );

    // Per await: one call awaiting AWAITS ready futures, divided by AWAITS.
    row_per(
        s,
        "cancellable_per_ready_await",
        AWAITS,
        vec![
            (
                "cancellable",
                Box::new(|n| {
                    timed(n, || {
                        black_box(run_ready(ready_cancellable(&parent, AWAITS)).ok());
                    })
                }),
            ),
            (
                "plain",
                Box::new(|n| {
                    timed(n, || {
                        black_box(run_ready(ready_plain(&parent, AWAITS)));
                    })
                }),
            ),
        ],
    );

    // Fan-out: from the root's cancel until every waiter ran, on 2 worker threads (setting the
    // waiters up is not timed). A sample of 100k is one fan-out.
    for n in [10_000usize, 100_000] {
        row(
            s,
            &format!("fan_out_{}k", n / 1000),
            vec![
                (
                    "ctxkit",
                    Box::new(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let (root, cancel) = Context::background().with_cancel();
                            total += fan_out_once(
                                &workers,
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
                    }),
                ),
                (
                    "tokio-util",
                    Box::new(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let root = CancellationToken::new();
                            total += fan_out_once(
                                &workers,
                                n,
                                || {
                                    let child = root.child_token();
                                    async move { child.cancelled().await }
                                },
                                || root.cancel(),
                            );
                        }
                        total
                    }),
                ),
            ],
        );
    }
}
