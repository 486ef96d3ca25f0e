//! `ctxkit::retry` on tokio's paused clock: backoff growth and jitter bounds, the deadline never
//! slept past, no attempt started without its minimum budget, cancellation during a backoff or
//! an attempt, every error kept, permanent errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctxkit::retry::{GaveUp, RetryPolicy};
use ctxkit::{Context, Error, Instant};

const MS: Duration = Duration::from_millis(1);

/// Calls `retry` with an attempt that fails (after `work`) with its number, recording when each
/// attempt started.
async fn always_failing(
    ctx: &Context,
    policy: &RetryPolicy,
    work: Duration,
) -> (ctxkit::retry::RetryError<u32>, Vec<Duration>) {
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let seen = starts.clone();
    let err = ctxkit::retry(ctx, policy, move |attempt| {
        seen.lock().unwrap().push(start.elapsed());
        async move {
            tokio::time::sleep(work).await;
            Err::<(), _>(attempt.number())
        }
    })
    .await
    .unwrap_err();
    let starts = starts.lock().unwrap().clone();
    (err, starts)
}

#[tokio::test(start_paused = true)]
async fn without_jitter_the_backoff_doubles_up_to_the_cap() {
    let policy = RetryPolicy::new()
        .first_delay(100 * MS)
        .max_delay(300 * MS)
        .jitter(0.0)
        .max_attempts(5);
    let (err, starts) = always_failing(&Context::background(), &policy, Duration::ZERO).await;
    assert_eq!(err.reason(), GaveUp::Attempts);
    assert_eq!(err.kind(), None);
    assert_eq!(err.errors(), &[1, 2, 3, 4, 5]);
    assert_eq!(starts, [0, 100, 300, 600, 900].map(|ms| ms * MS));
}

#[tokio::test(start_paused = true)]
async fn jitter_only_shortens_each_backoff_by_up_to_its_share() {
    let policy = RetryPolicy::new()
        .first_delay(100 * MS)
        .multiplier(3.0)
        .jitter(0.5)
        .max_attempts(4);
    for _ in 0..50 {
        let (_, starts) = always_failing(&Context::background(), &policy, Duration::ZERO).await;
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, full) in gaps.iter().zip([100 * MS, 300 * MS, 900 * MS]) {
            assert!(*gap <= full && *gap >= full / 2, "{gaps:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_never_slept_past_and_each_attempt_gets_its_minimum() {
    for jitter in [0.0, 0.5, 1.0] {
        for _ in 0..20 {
            let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(2));
            let deadline = ctx.deadline().unwrap();
            let start = Instant::now();
            let policy = RetryPolicy::new()
                .first_delay(100 * MS)
                .jitter(jitter)
                .unlimited_attempts()
                .min_attempt(250 * MS);
            let (err, starts) = always_failing(&ctx, &policy, 50 * MS).await;
            assert_eq!(err.reason(), GaveUp::Budget);
            assert_eq!(err.kind(), Some(Error::DeadlineExceeded));
            assert_eq!(err.errors().len(), starts.len());
            // Returned before the deadline, without sleeping into it.
            assert!(Instant::now() < deadline);
            // Every attempt started with at least its minimum left.
            for s in &starts {
                assert!(start + *s + 250 * MS < deadline, "{starts:?}");
            }
            assert!(ctx.err().is_none());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_when_the_budget_is_below_the_minimum() {
    let (ctx, _cancel) = Context::background().with_timeout(100 * MS);
    let policy = RetryPolicy::new().min_attempt(200 * MS);
    let (err, starts) = always_failing(&ctx, &policy, Duration::ZERO).await;
    assert_eq!(err.reason(), GaveUp::Budget);
    assert!(starts.is_empty());
    assert!(err.errors().is_empty());
    assert_eq!(
        err.to_string(),
        "gave up after 0 failed attempts: the deadline leaves no time for another"
    );
}

#[tokio::test(start_paused = true)]
async fn a_context_already_done_makes_no_attempt() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let (err, starts) = always_failing(&ctx, &RetryPolicy::new(), Duration::ZERO).await;
    assert_eq!(err.reason(), GaveUp::Context(Error::Canceled));
    assert!(starts.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_during_a_backoff_stops_at_once() {
    let (ctx, cancel) = Context::background().with_cancel();
    let policy = RetryPolicy::new()
        .first_delay(Duration::from_secs(10))
        .jitter(0.0);
    let start = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(300 * MS).await;
        cancel.cancel();
    });
    let (err, starts) = always_failing(&ctx, &policy, Duration::ZERO).await;
    assert_eq!(start.elapsed(), 300 * MS);
    assert_eq!(err.reason(), GaveUp::Context(Error::Canceled));
    assert_eq!(err.kind(), Some(Error::Canceled));
    assert_eq!(err.errors(), &[1]);
    assert_eq!(starts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_during_an_attempt_drops_it_at_once() {
    struct Dropped(Arc<Mutex<bool>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = true;
        }
    }
    let (ctx, cancel) = Context::background().with_cancel();
    let dropped = Arc::new(Mutex::new(false));
    let flag = dropped.clone();
    tokio::spawn(async move {
        tokio::time::sleep(300 * MS).await;
        cancel.cancel();
    });
    let start = Instant::now();
    let err = ctxkit::retry(&ctx, &RetryPolicy::new().jitter(0.0), |attempt| {
        let guard = Dropped(flag.clone());
        async move {
            if attempt.number() == 1 {
                return Err("first fails");
            }
            let _guard = guard;
            std::future::pending::<Result<(), &str>>().await
        }
    })
    .await
    .unwrap_err();
    assert_eq!(start.elapsed(), 300 * MS);
    assert!(*dropped.lock().unwrap());
    assert_eq!(err.reason(), GaveUp::Context(Error::Canceled));
    assert_eq!(err.errors(), &["first fails"]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_during_an_attempt_ends_it_at_the_deadline() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(1));
    let start = Instant::now();
    let policy = RetryPolicy::new().first_delay(50 * MS).jitter(0.0);
    let (err, starts) = always_failing(&ctx, &policy, 400 * MS).await;
    // Attempts at 0 (fails at 400), 450 (fails at 850), 950 (cut at 1000).
    assert_eq!(starts, [0, 450, 950].map(|ms| ms * MS));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(err.reason(), GaveUp::Context(Error::DeadlineExceeded));
    assert_eq!(err.errors(), &[1, 2]);
}

#[tokio::test(start_paused = true)]
async fn success_after_failures_returns_the_value() {
    let v = ctxkit::retry(
        &Context::background(),
        &RetryPolicy::new(),
        |a| async move {
            if a.number() < 4 {
                Err("no")
            } else {
                Ok(a.number() * 10)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(v, 40);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_ends_the_retries_and_the_attempt_sees_its_budget() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
    let budgets = Arc::new(Mutex::new(Vec::new()));
    let seen = budgets.clone();
    let err = ctxkit::retry_if(
        &ctx,
        &RetryPolicy::new().jitter(0.0),
        |e: &&str| *e != "bad request",
        |attempt| {
            seen.lock().unwrap().push(attempt.budget().unwrap());
            assert!(attempt.context().ptr_eq(&ctx));
            async move {
                Err::<(), _>(if attempt.number() == 1 {
                    "unavailable"
                } else {
                    "bad request"
                })
            }
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), GaveUp::Permanent);
    assert_eq!(err.errors(), &["unavailable", "bad request"]);
    assert_eq!(err.last(), Some(&"bad request"));
    assert_eq!(
        *budgets.lock().unwrap(),
        [Duration::from_secs(5), Duration::from_secs(5) - 100 * MS]
    );
    assert_eq!(
        err.to_string(),
        "gave up on a permanent error after 2 attempts; last error: bad request"
    );
}

#[test]
fn bad_settings_are_clamped() {
    // A multiplier below 1 or NaN, a jitter outside 0..=1, zero attempts: still a usable policy.
    let policy = RetryPolicy::new()
        .multiplier(f64::NAN)
        .jitter(7.0)
        .max_attempts(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let err = rt.block_on(ctxkit::retry(&Context::background(), &policy, |_| async {
        Err::<(), _>(())
    }));
    assert_eq!(err.unwrap_err().errors().len(), 1);
    let _ = RetryPolicy::new().jitter(f64::NAN).multiplier(0.5);
}
