//! `ctxkit::spawn_blocking`: blocking code under the caller's context, and a caller that hears
//! the cancellation at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use ctxkit::{Context, ContextKey, Error};

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

/// Generous: only a machine under heavy load takes more than milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_closure_sees_the_callers_context_values_and_cancellation() {
    let (ctx, _cancel) = Context::background()
        .with_value::<Tenant>("acme")
        .with_cancel();
    let seen = ctx
        .scope(ctxkit::spawn_blocking(|| {
            let current = Context::current();
            (current.value::<Tenant>().copied(), current.check())
        }))
        .await;
    assert_eq!(seen, Ok((Some("acme"), Ok(()))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_cancel_and_the_detached_closure_stops_at_its_next_check() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (started_tx, started) = mpsc::channel();
    let (stopped_tx, stopped) = mpsc::channel();
    let running = Arc::new(AtomicBool::new(true));
    let still_running = running.clone();
    let waiting = ctx.scope(ctxkit::spawn_blocking(move || {
        started_tx.send(()).unwrap();
        let ctx = Context::current();
        let since = std::time::Instant::now();
        let outcome = loop {
            if let Err(e) = ctx.check() {
                break Some(e);
            }
            if since.elapsed() > PATIENCE {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        still_running.store(false, SeqCst);
        stopped_tx.send(outcome).unwrap();
    }));
    let waiting = tokio::spawn(waiting);
    tokio::task::spawn_blocking(move || started.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .unwrap();

    cancel.cancel();
    let heard = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heard, Err(Error::Canceled));
    // The closure ends on its own, at its next check.
    let outcome = tokio::task::spawn_blocking(move || stopped.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Some(Error::Canceled));
    assert!(!running.load(SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_returns_before_a_closure_that_never_checks_finishes() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
    let (release_tx, release) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let heard = ctx
        .scope(ctxkit::spawn_blocking(move || {
            // Blocks until the test lets it go: it cannot see the deadline.
            let _ = release.recv_timeout(PATIENCE);
            f.store(true, SeqCst);
        }))
        .await;
    assert_eq!(heard, Err(Error::DeadlineExceeded));
    assert!(!finished.load(SeqCst), "the caller waited for the closure");
    release_tx.send(()).unwrap();
}

#[tokio::test]
async fn a_closure_under_a_done_context_never_starts() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let heard = ctx
        .scope(ctxkit::spawn_blocking(move || s.store(true, SeqCst)))
        .await;
    assert_eq!(heard, Err(Error::Canceled));
    // Give a wrongly started closure every chance to run before looking.
    tokio::task::spawn_blocking(|| ()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!started.load(SeqCst));
}

#[tokio::test]
async fn a_panic_in_the_closure_resumes_in_the_awaiting_task() {
    let awaited = tokio::spawn(ctxkit::spawn_blocking(|| -> u8 { panic!("disk on fire") }));
    let err = awaited.await.unwrap_err();
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"disk on fire"));
}

#[tokio::test]
async fn without_a_current_context_the_closure_just_runs() {
    assert_eq!(ctxkit::spawn_blocking(|| 7).await, Ok(7));
}
