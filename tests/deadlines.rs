//! Deadlines inside a runtime follow tokio's (paused) clock and fire without anyone polling.

use std::time::Duration;

use ctxkit::{Context, Error, Instant};
use tokio::sync::oneshot;

#[derive(Debug)]
struct Budget;
impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("budget spent")
    }
}
impl std::error::Error for Budget {}

#[tokio::test(start_paused = true)]
async fn after_func_on_a_timeout_runs_at_the_deadline() {
    let start = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(5));
    let (tx, rx) = oneshot::channel();
    let _after = ctx.after_func(move || tx.send(Instant::now()).unwrap());
    let ran_at = rx.await.unwrap();
    assert!(ran_at >= start + Duration::from_secs(5));
    assert!(ran_at < start + Duration::from_secs(6));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn done_resolves_at_the_deadline() {
    let start = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(250));
    ctx.done().await;
    assert_eq!(Instant::now() - start, Duration::from_millis(250));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn deadline_fires_without_anyone_polling_the_context() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert!(!ctx.is_done());
    tokio::time::sleep(Duration::from_millis(2)).await;
    // `is_done` is a plain load: only the timer can have set it.
    assert!(ctx.is_done());
}

#[tokio::test(start_paused = true)]
async fn parents_deadline_cancels_children_with_a_later_one() {
    let (parent, _hp) = Context::background().with_timeout(Duration::from_secs(1));
    let (child, _hc) = parent.with_timeout(Duration::from_secs(10));
    child.done().await;
    assert_eq!(
        Instant::now() - (child.deadline().unwrap() - Duration::from_secs(1)),
        Duration::from_secs(1)
    );
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert!(format!("{:?}", child.cause().unwrap()).contains("deadline set at"));
}

#[tokio::test(start_paused = true)]
async fn earlier_child_deadline_fires_alone() {
    let (parent, _hp) = Context::background().with_timeout(Duration::from_secs(10));
    let (child, _hc) = parent.with_timeout(Duration::from_secs(1));
    child.done().await;
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert_eq!(parent.err(), None);
}

#[tokio::test(start_paused = true)]
async fn deadline_cause_argument_is_reported_when_the_timer_fires() {
    let (ctx, _h) = Context::background().with_timeout_cause(Duration::from_secs(1), Budget);
    let (child, _hc) = ctx.with_cancel();
    child.done().await;
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert!(child.cause().unwrap().is::<Budget>());
}

#[tokio::test(start_paused = true)]
async fn cancel_before_the_deadline_stays_canceled_after_it() {
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(1));
    cancel.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_is_done_at_once() {
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert!(ctx.is_done());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    ctx.done().await;
}

#[tokio::test(start_paused = true)]
async fn deadline_in_the_past_is_done_at_once() {
    let past = Instant::now();
    tokio::time::advance(Duration::from_secs(3600)).await;
    let (ctx, _h) = Context::background().with_deadline(past);
    assert!(ctx.is_done());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(ctx.deadline(), Some(past));
}

#[tokio::test(start_paused = true)]
async fn duration_max_timeout_means_no_deadline_of_its_own() {
    let (ctx, cancel) = Context::background().with_timeout(Duration::MAX);
    assert_eq!(ctx.deadline(), None);
    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
    assert_eq!(ctx.err(), None);
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));

    let (parent, _hp) = Context::background().with_timeout(Duration::from_secs(1));
    let (child, _hc) = parent.with_timeout_cause(Duration::MAX, Budget);
    assert_eq!(child.deadline(), parent.deadline());
    child.done().await;
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn far_future_deadline_does_not_fire() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(100 * 365 * 24 * 3600));
    tokio::time::sleep(Duration::from_secs(10 * 365 * 24 * 3600)).await;
    assert_eq!(ctx.err(), None);
}

#[tokio::test(start_paused = true)]
async fn run_ends_with_deadline_exceeded_and_drops_the_future() {
    struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Flag(dropped.clone());
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let slow = async move {
        let _flag = flag;
        tokio::time::sleep(Duration::from_secs(60)).await;
    };
    let start = Instant::now();
    assert_eq!(ctx.run(slow).await, Err(Error::DeadlineExceeded));
    assert_eq!(Instant::now() - start, Duration::from_millis(10));
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}
