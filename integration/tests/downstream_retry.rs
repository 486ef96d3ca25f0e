//! `ctxkit::retry` with `ctxkit::reqwest` against a failing server on loopback: the retries
//! never outlast the deadline by more than one attempt, and with a minimum budget per attempt
//! they give up before it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ctxkit::reqwest::RequestBuilderExt;
use ctxkit::retry::{GaveUp, RetryPolicy};
use ctxkit::{Context, Instant};

/// How long the server takes to fail each request.
const FAIL_AFTER: Duration = Duration::from_millis(200);

async fn failing_server() -> String {
    let app = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(FAIL_AFTER).await;
            (http::StatusCode::SERVICE_UNAVAILABLE, "try later")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug
enum CallError {
    Status(u16),
    Send(ctxkit::reqwest::Error),
}

/// Retries GETs of `url` under a `budget` until the retry gives up; returns the error, how long
/// the whole took, and how long each attempt that finished took.
async fn run(
    url: &str,
    budget: Duration,
    policy: &RetryPolicy,
) -> (
    ctxkit::retry::RetryError<CallError>,
    Duration,
    Vec<Duration>,
) {
    let client = reqwest::Client::new();
    let (ctx, _cancel) = Context::background().with_timeout(budget);
    let start = Instant::now();
    let took = Arc::new(Mutex::new(Vec::new()));
    let err = ctxkit::retry(&ctx, policy, |attempt| {
        let (client, took) = (client.clone(), took.clone());
        async move {
            let began = Instant::now();
            let out: Result<(), CallError> =
                match client.get(url).send_with(attempt.context()).await {
                    Ok(resp) => Err(CallError::Status(resp.status().as_u16())),
                    Err(e) => Err(CallError::Send(e)),
                };
            took.lock().unwrap().push(began.elapsed());
            out
        }
    })
    .await
    .unwrap_err();
    let elapsed = start.elapsed();
    let took = took.lock().unwrap().clone();
    (err, elapsed, took)
}

#[tokio::test]
async fn retries_never_overrun_the_deadline_by_more_than_one_attempt() {
    let url = failing_server().await;
    let budget = Duration::from_secs(2);
    // No minimum per attempt: attempts start until the very end, and the last is cut at the
    // deadline.
    let policy = RetryPolicy::new()
        .first_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(100))
        .unlimited_attempts();
    for _ in 0..3 {
        let (err, elapsed, took) = run(&url, budget, &policy).await;
        let longest = took.iter().max().copied().unwrap();
        let overrun = elapsed.saturating_sub(budget);
        eprintln!(
            "attempts {} finished, longest {longest:?}, total {elapsed:?}, overrun {overrun:?}, {:?}",
            took.len(),
            err.reason()
        );
        assert!(took.len() >= 2, "{took:?}");
        // Every attempt got the server's 503, except perhaps the last, cut by the deadline
        // (seen by reqwest's timer, which is the budget, a moment before the retry saw it).
        let (last, rest) = err.errors().split_last().unwrap();
        assert!(
            rest.iter().all(|e| matches!(e, CallError::Status(503))),
            "{err:?}"
        );
        assert!(
            matches!(last, CallError::Status(503))
                || matches!(last, CallError::Send(e) if e.is_deadline_exceeded()),
            "{err:?}"
        );
        assert!(err.kind().is_some(), "{err:?}");
        // The bound: one attempt, as measured in this run (its connect time and the server's
        // answer time), never more.
        assert!(
            overrun <= longest,
            "overran the deadline by {overrun:?}, more than the longest attempt {longest:?}"
        );
    }
}

#[tokio::test]
async fn with_a_minimum_per_attempt_the_retries_end_before_the_deadline() {
    let url = failing_server().await;
    let budget = Duration::from_secs(2);
    let policy = RetryPolicy::new()
        .first_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(100))
        .unlimited_attempts()
        // An attempt needs the server's time to fail, and then some.
        .min_attempt(FAIL_AFTER * 2);
    let (err, elapsed, took) = run(&url, budget, &policy).await;
    eprintln!(
        "attempts {}, total {elapsed:?}, {:?}",
        took.len(),
        err.reason()
    );
    if err.reason() == GaveUp::Budget {
        // Every attempt finished, none was cut, and the caller has the rest of its budget.
        assert!(elapsed < budget, "{elapsed:?}");
        assert_eq!(took.len(), err.errors().len());
    } else {
        // Only on a machine so slow that an attempt outlasted twice the server's time.
        let longest = took.iter().max().copied().unwrap_or_default();
        assert!(longest > FAIL_AFTER * 2 || elapsed >= budget, "{err:?}");
    }
}
