//! The cost of the live request tree (ctxkit's `live` feature): the same scenarios built with and
//! without it, and the snapshot of 10,000 live contexts (with it).
//!
//! ```text
//! cargo bench -p ctxkit-benches --bench live                    # off
//! cargo bench -p ctxkit-benches --bench live --features live    # on (criterion compares)
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ctxkit::Context;

/// Awaits per call of the per-await scenarios.
const AWAITS: u64 = 10_000;

fn create_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("live/create_drop");
    g.bench_function("background", |b| {
        let bg = Context::background();
        b.iter(|| {
            let (ctx, cancel) = bg.with_cancel();
            black_box(&ctx);
            drop(ctx);
            drop(cancel);
        })
    });
    g.bench_function("cancel_parent", |b| {
        let (parent, _cancel) = Context::background().with_cancel();
        b.iter(|| {
            let (ctx, cancel) = parent.with_cancel();
            black_box(&ctx);
            drop(ctx);
            drop(cancel);
        })
    });
    g.finish();
}

#[ctxkit::cancellable]
async fn ready_cancellable(ctx: &Context, n: u64) -> Result<u64, ctxkit::Error> {
    let mut sum = 0;
    for i in 0..n {
        sum += std::future::ready(black_box(i)).await;
    }
    Ok(sum)
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

/// Per await: 10,000 awaits in one `#[cancellable]` call, ready at once or pending once each.
fn awaits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (ctx, _cancel) = Context::background().with_cancel();
    let mut g = c.benchmark_group("live/await");
    g.bench_function("ready", |b| {
        b.iter(|| rt.block_on(ready_cancellable(&ctx, AWAITS)).unwrap())
    });
    g.bench_function("yield_now", |b| {
        b.iter(|| rt.block_on(yield_cancellable(&ctx, AWAITS)).unwrap())
    });
    g.finish();
}

#[cfg(feature = "live")]
mod snapshot {
    use std::hint::black_box;
    use std::sync::Arc;
    use std::time::Duration;

    use criterion::Criterion;
    use ctxkit::{CancelHandle, Context, ContextKey, cancellable};
    use tokio::sync::Notify;

    #[derive(ContextKey, Debug, Clone)]
    #[context_key(debug)]
    struct RequestId(#[allow(dead_code)] u64);

    /// Requests under the root; each has a value, a timeout and three cancellable children: with
    /// the root, 10,001 contexts.
    const REQUESTS: u64 = 2_500;
    /// Requests with a `#[cancellable]` call suspended in them.
    const CALLS: u64 = 1_000;

    #[cancellable]
    async fn wait(ctx: &Context, gate: Arc<Notify>) -> Result<(), ctxkit::Error> {
        gate.notified().await;
        Ok(())
    }

    /// 10,000 live contexts under one root, 1,000 calls suspended in them.
    pub(crate) fn bench(c: &mut Criterion) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let (root, _root_cancel) = Context::background().with_cancel();
        let mut handles: Vec<CancelHandle> = Vec::new();
        let gate = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for i in 0..REQUESTS {
            let (req, h) = root
                .with_value::<RequestId>(RequestId(i))
                .with_timeout(Duration::from_secs(3600));
            handles.push(h);
            for _ in 0..3 {
                let (child, h) = req.with_cancel();
                handles.push(h);
                if i < CALLS && tasks.len() < CALLS as usize {
                    let gate = gate.clone();
                    tasks.push(rt.spawn(async move { wait(&child, gate).await }));
                }
            }
        }
        // Every call suspended: poll the tree until it lists them all.
        while ctxkit::live::snapshot(&root).calls < CALLS as usize {
            std::thread::sleep(Duration::from_millis(1));
        }
        let tree = ctxkit::live::snapshot(&root);
        assert_eq!(tree.contexts, 10_001);
        eprintln!(
            "snapshot of {} contexts, {} calls: {:?} (one run)",
            tree.contexts, tree.calls, tree.took
        );
        let mut g = c.benchmark_group("live/snapshot_10k");
        g.sample_size(20);
        g.bench_function("snapshot", |b| {
            b.iter(|| black_box(ctxkit::live::snapshot(&root)))
        });
        g.bench_function("snapshot+text", |b| {
            b.iter(|| black_box(ctxkit::live::snapshot(&root).to_string()))
        });
        g.bench_function("snapshot+json", |b| {
            b.iter(|| black_box(ctxkit::live::snapshot(&root).to_json_string()))
        });
        g.finish();
        drop(handles);
        for t in tasks {
            let _ = rt.block_on(t);
        }
    }
}

#[cfg(feature = "live")]
fn snapshot(c: &mut Criterion) {
    snapshot::bench(c)
}

#[cfg(not(feature = "live"))]
fn snapshot(_: &mut Criterion) {}

criterion_group!(benches, create_drop, awaits, snapshot);
criterion_main!(benches);
