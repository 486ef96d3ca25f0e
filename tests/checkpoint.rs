//! `Context::check` and `checkpoint()`: explicit cancellation points.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use ctxkit::{Context, Error, Group, checkpoint};

#[test]
fn check_is_ok_while_live_and_the_error_once_done() {
    let (ctx, cancel) = Context::background().with_cancel();
    assert_eq!(ctx.check(), Ok(()));
    cancel.cancel();
    assert_eq!(ctx.check(), Err(Error::Canceled));
    assert_eq!(Context::background().check(), Ok(()));
}

#[test]
fn check_sees_a_passed_deadline_outside_any_runtime() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(5));
    let start = std::time::Instant::now();
    let mut result = Ok(());
    while start.elapsed() < Duration::from_secs(30) {
        result = ctx.check();
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(Error::DeadlineExceeded));
}

/// A CPU-bound loop keeps a single-threaded runtime busy, so the deadline's timer cannot fire;
/// `check` must still stop the loop.
#[tokio::test(flavor = "current_thread")]
async fn check_stops_a_cpu_loop_that_starves_the_timer() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
    let start = std::time::Instant::now();
    let mut spins = 0u64;
    let stopped = loop {
        if let Err(e) = ctx.check() {
            break Some(e);
        }
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        spins = spins.wrapping_add(1);
        std::hint::black_box(spins);
    };
    assert_eq!(stopped, Some(Error::DeadlineExceeded));
}

#[tokio::test]
async fn checkpoint_outside_any_scope_is_ok() {
    assert_eq!(checkpoint().await, Ok(()));
}

#[tokio::test]
async fn checkpoint_returns_the_current_context_error() {
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(3600));
    assert_eq!(ctx.scope(checkpoint()).await, Ok(()));
    cancel.cancel();
    assert_eq!(ctx.scope(checkpoint()).await, Err(Error::Canceled));
}

#[tokio::test(start_paused = true)]
async fn checkpoint_reports_a_deadline() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(ctx.scope(checkpoint()).await, Err(Error::DeadlineExceeded));
}

#[tokio::test(flavor = "current_thread")]
async fn checkpoint_yields_to_other_tasks() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let other = tokio::spawn(async move { r.store(true, SeqCst) });
    // On a single thread, the spawned task only runs if we give the thread up.
    assert!(!ran.load(SeqCst));
    checkpoint().await.unwrap();
    assert!(ran.load(SeqCst));
    other.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancellation_during_the_yield_is_reported_at_once() {
    let (ctx, cancel) = Context::background().with_cancel();
    let canceller = tokio::spawn(async move { cancel.cancel() });
    assert_eq!(ctx.scope(checkpoint()).await, Err(Error::Canceled));
    canceller.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn checkpoint_makes_a_busy_task_of_a_group_stop_when_a_sibling_fails() {
    let group: Group<Error> = Group::new(&Context::background());
    let stopped = Arc::new(AtomicUsize::new(0));
    let s = stopped.clone();
    group
        .spawn(async move {
            // Awaits nothing but checkpoints: without them it would spin forever on this thread.
            let err = loop {
                if let Err(e) = checkpoint().await {
                    break e;
                }
            };
            s.fetch_add(1, SeqCst);
            Err(err)
        })
        .await;
    group
        .spawn(async {
            tokio::task::yield_now().await;
            Err(Error::DeadlineExceeded)
        })
        .await;
    let waited = tokio::time::timeout(Duration::from_secs(30), group.wait()).await;
    assert_eq!(waited, Ok(Err(Error::DeadlineExceeded)));
    assert_eq!(stopped.load(SeqCst), 1);
}
