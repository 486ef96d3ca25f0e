//! `#[cancellable]`: what a cancellation does to a running fn.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use ctxkit::ContextKey;
use ctxkit::{Context, Error, cancellable};
use tokio::time::{Instant, sleep};

/// Sets its flag when dropped: shows that an in-flight future was dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[cancellable]
async fn two_steps(ctx: &Context, steps: &AtomicUsize) -> Result<usize, Error> {
    sleep(Duration::from_millis(10)).await;
    steps.fetch_add(1, Ordering::SeqCst);
    sleep(Duration::from_millis(10)).await;
    steps.fetch_add(1, Ordering::SeqCst);
    let _ = ctx;
    Ok(steps.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn runs_to_completion_when_not_cancelled() {
    let steps = AtomicUsize::new(0);
    let (ctx, _cancel) = Context::background().with_cancel();
    assert_eq!(two_steps(&ctx, &steps).await, Ok(2));
}

#[tokio::test(start_paused = true)]
async fn cancellation_between_awaits_stops_at_the_next_await() {
    #[cancellable]
    async fn steps(
        cancel_after_first: &ctxkit::CancelHandle,
        steps: &AtomicUsize,
    ) -> Result<(), Error> {
        sleep(Duration::from_millis(10)).await;
        steps.fetch_add(1, Ordering::SeqCst);
        cancel_after_first.cancel(); // cancelled between two awaits
        steps.fetch_add(1, Ordering::SeqCst); // no await in between: still runs
        sleep(Duration::from_millis(10)).await;
        steps.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    let n = AtomicUsize::new(0);
    let (ctx, cancel) = Context::background().with_cancel();
    let result = ctx.scope(steps(&cancel, &n)).await;
    assert_eq!(result, Err(Error::Canceled));
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn mid_await_cancellation_drops_the_in_flight_future_at_once() {
    #[cancellable]
    async fn hold(flag: Arc<AtomicBool>) -> Result<(), Error> {
        let guard = DropFlag(flag);
        std::future::pending::<()>().await;
        drop(guard);
        Ok(())
    }
    let flag = Arc::new(AtomicBool::new(false));
    let (ctx, cancel) = Context::background().with_cancel();
    let mut fut = pin!(ctx.scope(hold(flag.clone())));
    // Poll once: it is now pending inside the await.
    assert!(futures_poll(fut.as_mut()).is_pending());
    cancel.cancel();
    // The very next poll (one scheduler tick) returns the error, and the future is gone.
    assert_eq!(
        futures_poll(fut.as_mut()),
        Poll::Ready(Err(Error::Canceled))
    );
    assert!(flag.load(Ordering::SeqCst));
}

/// One poll, as one scheduler tick would do it.
fn futures_poll<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}

#[tokio::test(start_paused = true)]
async fn an_already_cancelled_context_never_runs_the_body() {
    #[cancellable]
    async fn body_runs(ran: &AtomicBool) -> Result<(), Error> {
        ran.store(true, Ordering::SeqCst);
        Ok(())
    }
    let ran = AtomicBool::new(false);
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    assert_eq!(ctx.scope(body_runs(&ran)).await, Err(Error::Canceled));
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn cancellation_wins_over_a_ready_future() {
    #[cancellable]
    async fn ready_after_cancel(
        cancel: ctxkit::CancelHandle,
        reached: &AtomicBool,
    ) -> Result<(), Error> {
        cancel.cancel();
        std::future::ready(()).await; // ready, but the context is done: not polled
        reached.store(true, Ordering::SeqCst);
        Ok(())
    }
    let reached = AtomicBool::new(false);
    let (ctx, cancel) = Context::background().with_cancel();
    let result = ctx.scope(ready_after_cancel(cancel, &reached)).await;
    assert_eq!(result, Err(Error::Canceled));
    assert!(!reached.load(Ordering::SeqCst));
}

#[derive(Clone, Debug, PartialEq, ContextKey)]
struct Trace(&'static str);

#[cancellable]
async fn inner_sees(expected: &Context) -> Result<bool, Error> {
    sleep(Duration::from_millis(1)).await;
    Ok(Context::current().ptr_eq(expected) && Trace::current() == Some(Trace("outer")))
}

#[cancellable]
async fn outer(ctx: &Context) -> Result<bool, Error> {
    inner_sees(ctx).await
}

#[tokio::test(start_paused = true)]
async fn nested_calls_share_the_context() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let ctx = Trace::set(&ctx, Trace("outer"));
    assert_eq!(outer(&ctx).await, Ok(true));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_caller_stops_the_nested_callee() {
    #[cancellable]
    async fn callee(steps: &AtomicUsize) -> Result<(), Error> {
        loop {
            sleep(Duration::from_millis(10)).await;
            steps.fetch_add(1, Ordering::SeqCst);
        }
    }
    #[cancellable]
    async fn caller(ctx: Context, steps: &AtomicUsize) -> Result<(), Error> {
        let _ = &ctx;
        callee(steps).await
    }
    let steps = AtomicUsize::new(0);
    let (ctx, cancel) = Context::background().with_cancel();
    let canceller = async {
        sleep(Duration::from_millis(35)).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(caller(ctx, &steps), canceller);
    assert_eq!(result, Err(Error::Canceled));
    assert_eq!(steps.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_implicit_context_is_read_at_the_first_poll() {
    #[cancellable]
    async fn slow() -> Result<(), Error> {
        sleep(Duration::from_secs(10)).await;
        Ok(())
    }
    let fut = slow(); // made outside any scope
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(5));
    let start = Instant::now();
    assert_eq!(ctx.scope(fut).await, Err(Error::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn the_explicit_context_wins_over_the_current_one() {
    #[cancellable]
    async fn by_value(ctx: Context) -> Result<bool, Error> {
        sleep(Duration::from_millis(1)).await;
        Ok(Context::current().ptr_eq(&ctx))
    }
    let (explicit, _a) = Context::background().with_cancel();
    let (current, cancel_current) = Context::background().with_cancel();
    cancel_current.cancel();
    assert_eq!(current.scope(by_value(explicit)).await, Ok(true));
}

#[cancellable(timeout = "50ms")]
async fn bounded(work: Duration) -> Result<u8, Error> {
    sleep(work).await;
    Ok(7)
}

#[tokio::test(start_paused = true)]
async fn the_timeout_argument_gives_deadline_exceeded() {
    let start = Instant::now();
    assert_eq!(bounded(Duration::from_millis(10)).await, Ok(7));
    let start2 = Instant::now();
    assert_eq!(
        bounded(Duration::from_secs(1)).await,
        Err(Error::DeadlineExceeded)
    );
    assert_eq!(start2.elapsed(), Duration::from_millis(50));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_parents_earlier_deadline_wins_over_the_timeout_argument() {
    #[cancellable(timeout = "10s")]
    async fn generous() -> Result<(), Error> {
        sleep(Duration::from_secs(60)).await;
        Ok(())
    }
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
    let start = Instant::now();
    assert_eq!(ctx.scope(generous()).await, Err(Error::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::from_millis(20));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_argument_leaves_the_parent_alone() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let result = ctx.scope(bounded(Duration::from_secs(1))).await;
    assert_eq!(result, Err(Error::DeadlineExceeded));
    assert_eq!(ctx.err(), None);
}

#[tokio::test(start_paused = true)]
async fn a_shield_finishes_its_statement_then_the_next_await_returns_the_error() {
    #[cancellable]
    async fn commit(log: &std::sync::Mutex<Vec<&'static str>>) -> Result<(), Error> {
        log.lock().unwrap().push("start");
        #[shield]
        let flushed = {
            sleep(Duration::from_millis(100)).await; // cancelled during this sleep
            log.lock().unwrap().push("written");
            sleep(Duration::from_millis(100)).await;
            log.lock().unwrap().push("flushed");
            true
        };
        assert!(flushed);
        log.lock().unwrap().push("after shield"); // no await since the shield: runs
        sleep(Duration::from_millis(1)).await; // the error comes here
        log.lock().unwrap().push("never");
        Ok(())
    }
    let log = std::sync::Mutex::new(Vec::new());
    let (ctx, cancel) = Context::background().with_cancel();
    let canceller = async {
        sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    };
    let start = Instant::now();
    let (result, ()) = tokio::join!(ctx.scope(commit(&log)), canceller);
    assert_eq!(result, Err(Error::Canceled));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(
        *log.lock().unwrap(),
        ["start", "written", "flushed", "after shield"]
    );
}

#[cancellable]
async fn sees_no_cancellation() -> Result<(bool, Option<Error>), Error> {
    sleep(Duration::from_millis(30)).await;
    Ok((Context::current().is_done(), Context::current().err()))
}

#[tokio::test(start_paused = true)]
async fn shielded_awaits_see_a_context_without_cancel() {
    #[cancellable]
    async fn cleanup() -> Result<(bool, Option<Error>, Option<u32>), Error> {
        #[shield]
        let seen = sees_no_cancellation().await?;
        Ok((seen.0, seen.1, Count::current()))
    }
    #[derive(Clone, Copy, ContextKey)]
    #[context_key(value = u32)]
    struct Count;
    let (ctx, cancel) = Context::background().with_cancel();
    let ctx = Count::set(&ctx, 3);
    cancel.cancel();
    // The entry check still wins: the shield only covers a running call.
    assert_eq!(ctx.scope(cleanup()).await, Err(Error::Canceled));

    let (ctx, cancel) = Context::background().with_cancel();
    let ctx = Count::set(&ctx, 3);
    let canceller = async {
        sleep(Duration::from_millis(10)).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(ctx.scope(cleanup()), canceller);
    // The callee ran to the end (not cancelled, values kept); the fn itself ended at its end.
    assert_eq!(result, Ok((false, None, Some(3))));
}

#[tokio::test(start_paused = true)]
async fn a_bounded_shield_ends_the_call_at_its_own_deadline() {
    #[cancellable]
    async fn cleanup(
        done: &AtomicBool,
        seen_deadline: &std::sync::Mutex<Option<Instant>>,
    ) -> Result<(), Error> {
        #[shield(timeout = "100ms")]
        {
            *seen_deadline.lock().unwrap() = ctx_deadline().await;
            sleep(Duration::from_secs(10)).await;
            done.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
    async fn ctx_deadline() -> Option<Instant> {
        Context::current().deadline()
    }
    let done = AtomicBool::new(false);
    let seen = std::sync::Mutex::new(None);
    let (ctx, _cancel) = Context::background().with_cancel();
    let start = Instant::now();
    let result = ctx.scope(cleanup(&done, &seen)).await;
    assert_eq!(result, Err(Error::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(!done.load(Ordering::SeqCst));
    assert_eq!(
        *seen.lock().unwrap(),
        Some(start + Duration::from_millis(100))
    );
}

#[tokio::test(start_paused = true)]
async fn a_bounded_shield_that_finishes_in_time_behaves_like_a_shield() {
    #[cancellable]
    async fn flush(log: &std::sync::Mutex<Vec<&'static str>>) -> Result<u8, Error> {
        #[shield(timeout = "1s")]
        sleep(Duration::from_millis(100)).await; // the caller cancels at 50ms
        log.lock().unwrap().push("flushed");
        sleep(Duration::from_millis(1)).await;
        log.lock().unwrap().push("never");
        Ok(1)
    }
    let log = std::sync::Mutex::new(Vec::new());
    let (ctx, cancel) = Context::background().with_cancel();
    let canceller = async {
        sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(ctx.scope(flush(&log)), canceller);
    assert_eq!(result, Err(Error::Canceled));
    assert_eq!(*log.lock().unwrap(), ["flushed"]);
}

#[tokio::test(start_paused = true)]
async fn a_shielded_tail_expression_is_the_fns_value() {
    #[cancellable]
    async fn last(ctx: &Context) -> Result<u8, Error> {
        let _ = ctx;
        #[shield]
        async { Ok(5) }.await
    }
    assert_eq!(last(&Context::background()).await, Ok(5));
}

#[tokio::test(start_paused = true)]
async fn a_shield_over_a_macro_keeps_the_call_alive_inside_it() {
    #[cancellable]
    async fn drain(done: &AtomicBool) -> Result<(), Error> {
        #[shield]
        tokio::select! {
            _ = sleep(Duration::from_millis(100)) => done.store(true, Ordering::SeqCst),
        }
        sleep(Duration::from_millis(1)).await;
        Ok(())
    }
    let done = AtomicBool::new(false);
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(ctx.scope(drain(&done)).await, Err(Error::DeadlineExceeded));
    assert!(done.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_shielded_let_else_keeps_its_bindings() {
    #[cancellable]
    async fn parse(input: &str) -> Result<u32, Error> {
        #[shield]
        let Ok(n) = async { input.parse::<u32>() }.await else {
            return Ok(0);
        };
        Ok(n)
    }
    assert_eq!(parse("12").await, Ok(12));
    assert_eq!(parse("x").await, Ok(0));
}

mod reexported {
    pub use ctxkit as kit;
}

#[tokio::test(start_paused = true)]
async fn the_crate_argument_reaches_the_runtime_through_a_reexport() {
    #[cancellable(crate = reexported::kit, timeout = "5ms")]
    async fn slow() -> Result<(), Error> {
        sleep(Duration::from_secs(1)).await;
        Ok(())
    }
    assert_eq!(slow().await, Err(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_wakes_a_call_parked_on_a_future_that_never_wakes() {
    #[cancellable]
    async fn parked(flag: Arc<AtomicBool>) -> Result<(), Error> {
        let _guard = DropFlag(flag);
        std::future::pending::<()>().await;
        Ok(())
    }
    let flag = Arc::new(AtomicBool::new(false));
    let (ctx, cancel) = Context::background().with_cancel();
    let task = tokio::spawn(ctx.scope(parked(flag.clone())));
    tokio::task::yield_now().await; // let it park
    assert!(!flag.load(Ordering::SeqCst));
    cancel.cancel();
    // Only the call's own registration can wake the task; without it this times out.
    let result = tokio::time::timeout(Duration::from_secs(1), task).await;
    assert_eq!(result.expect("woken").unwrap(), Err(Error::Canceled));
    assert!(flag.load(Ordering::SeqCst));
}

/// The context parameter cannot be rebound (a compile error, `ui-tests`); these are the ways the
/// error message points to, and they do apply the shorter deadline.
#[tokio::test(start_paused = true)]
async fn a_derived_deadline_applies_through_a_nested_fn_or_run() {
    #[cancellable]
    async fn slow_part(ctx: &Context) -> Result<(), Error> {
        let _ = ctx;
        sleep(Duration::from_millis(700)).await;
        Ok(())
    }
    #[cancellable]
    async fn through_a_nested_fn(ctx: &Context) -> Result<(), Error> {
        let (child, _cancel) = ctx.with_timeout(Duration::from_millis(100));
        slow_part(&child).await
    }
    #[cancellable]
    async fn through_run(ctx: &Context) -> Result<(), Error> {
        let (child, _cancel) = ctx.with_timeout(Duration::from_millis(100));
        child.run(sleep(Duration::from_millis(700))).await?;
        Ok(())
    }
    let ctx = Context::background();
    let start = Instant::now();
    assert_eq!(
        through_a_nested_fn(&ctx).await,
        Err(Error::DeadlineExceeded)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(through_run(&ctx).await, Err(Error::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_locals_drop_sees_the_call_cancelled_and_its_context_current() {
    struct Guard<'a>(&'a std::sync::Mutex<Option<(Option<Error>, bool)>>, Context);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let current = Context::current();
            *self.0.lock().unwrap() = Some((current.err(), current.ptr_eq(&self.1)));
        }
    }
    #[cancellable]
    async fn guarded(
        ctx: &Context,
        seen: &std::sync::Mutex<Option<(Option<Error>, bool)>>,
    ) -> Result<(), Error> {
        let _guard = Guard(seen, ctx.clone());
        std::future::pending::<()>().await;
        Ok(())
    }
    let seen = std::sync::Mutex::new(None);
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(guarded(&ctx, &seen).await, Err(Error::DeadlineExceeded));
    assert_eq!(
        *seen.lock().unwrap(),
        Some((Some(Error::DeadlineExceeded), true))
    );
}
