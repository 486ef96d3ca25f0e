//! tonic 0.14 routes behind `ServerLayer`, called through `ClientLayer` over tonic channels (no
//! Python needed): deadlines answered DEADLINE_EXCEEDED, malformed `grpc-timeout` INTERNAL naming
//! it, travelling keys and budgets reaching the handler, local failure of an expired context,
//! mid-call cancellation and shutdown reaching the server.

#[path = "../peers/hop.rs"]
mod hop;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ctxkit::propagation::Accept;
use ctxkit::{Context, ContextKey, Error, Instant};
use hop::{HopReply, HopRequest, HopServer};
use tokio::sync::mpsc;
use tonic::{Code, Response};

const PATIENCE: Duration = Duration::from_secs(10);

#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id")]
struct RequestId;

/// A server whose handler reports its budget (ms) and request id, counts calls, works
/// `sleep_ms` and reports (on `ended`) how its context ended when it ends early.
async fn server(
    root: Context,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<Error>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, ended) = mpsc::unbounded_channel();
    let counted = calls.clone();
    let handler = HopServer::new(move |req: tonic::Request<HopRequest>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let tx = tx.clone();
        async move {
            let ctx = Context::current();
            let budget = ctx
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()).as_millis());
            let sleep = Duration::from_millis(req.get_ref().sleep_ms.into());
            let work = ctxkit::spawn(async move {
                let ctx = Context::current();
                tokio::select! {
                    () = tokio::time::sleep(sleep) => true,
                    () = ctx.done() => {
                        let _ = tx.send(ctx.err().unwrap());
                        false
                    }
                }
            });
            if !work.await.unwrap() {
                return Err(tonic::Status::aborted("stopped"));
            }
            Ok(Response::new(HopReply {
                report: format!("{budget:?} {:?}", ctx.value::<RequestId>()),
            }))
        }
    });
    let addr = hop::serve(root, Accept::new().key::<RequestId>(), handler).await;
    (addr, calls, ended)
}

/// Waits (bounded) until the server has seen `n` calls.
async fn until_calls(calls: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while calls.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the call never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn job(sleep_ms: u32) -> HopRequest {
    HopRequest {
        sleep_ms,
        note: String::new(),
    }
}

#[tokio::test]
async fn budget_and_request_id_reach_the_handler() {
    let (addr, _, _) = server(Context::background()).await;
    let client = hop::connect(addr).await;
    let made = std::time::Instant::now();
    let (ctx, _cancel) = Context::background()
        .with_value::<RequestId>("r-9".to_owned())
        .with_timeout(Duration::from_secs(5));
    let reply = tokio::time::timeout(PATIENCE, ctx.scope(hop::call(&client, job(0))))
        .await
        .unwrap()
        .unwrap();
    let took = made.elapsed().as_millis();
    let (budget, id) = reply.report.split_once(' ').unwrap();
    let budget: u128 = budget
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    // The 5 s less at most what this test measured from making the context to the answer (and
    // 1 ms of rounding down).
    assert!(
        (5_000u128.saturating_sub(took + 1)..=5_000).contains(&budget),
        "{} (took {took} ms)",
        reply.report
    );
    assert_eq!(id, "Some(\"r-9\")");
}

#[tokio::test]
async fn a_passed_deadline_is_status_4_and_stops_the_work() {
    let (addr, _, mut ended) = server(Context::background()).await;
    let (status, message) = tokio::time::timeout(
        PATIENCE,
        hop::raw_call(addr, &[("grpc-timeout", "200m")], &job(60_000)),
    )
    .await
    .unwrap();
    assert_eq!(status, "4", "{message}");
    let err = tokio::time::timeout(PATIENCE, ended.recv()).await.unwrap();
    assert_eq!(err, Some(Error::DeadlineExceeded));
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_status_13_naming_it() {
    let (addr, _, _) = server(Context::background()).await;
    for bad in ["12X", "123456789S", "-1S", "S"] {
        let (status, message) = tokio::time::timeout(
            PATIENCE,
            hop::raw_call(addr, &[("grpc-timeout", bad)], &job(0)),
        )
        .await
        .unwrap();
        assert_eq!(status, "13", "{bad}: {message}");
        assert!(message.contains("grpc-timeout"), "{bad}: {message}");
    }
    let (status, _) = tokio::time::timeout(
        PATIENCE,
        hop::raw_call(addr, &[("grpc-timeout", "1S")], &job(0)),
    )
    .await
    .unwrap();
    assert_eq!(status, "0");
}

#[tokio::test]
async fn an_expired_context_fails_locally_and_sends_nothing() {
    let (addr, calls, _) = server(Context::background()).await;
    let client = hop::connect(addr).await;
    let (ctx, _cancel) = Context::background().with_timeout(Duration::ZERO);
    let status = ctx.scope(hop::call(&client, job(0))).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    // The connection still works, and only this call reached the server.
    let (live, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
    live.scope(hop::call(&client, job(0))).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cancelling_mid_call_reaches_the_server() {
    let (addr, calls, mut ended) = server(Context::background()).await;
    let client = hop::connect(addr).await;
    let (ctx, cancel) = Context::background().with_cancel();
    let call = ctxkit::spawn({
        let ctx = ctx.clone();
        async move { ctx.scope(hop::call(&client, job(60_000))).await }
    });
    until_calls(&calls, 1).await;
    cancel.cancel();
    let status = tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);
    let err = tokio::time::timeout(PATIENCE, ended.recv()).await.unwrap();
    assert_eq!(err, Some(Error::Canceled));
}

#[tokio::test]
async fn shutting_down_ends_calls_in_flight_as_unavailable() {
    let (root, shutdown) = Context::background().with_cancel();
    let (addr, calls, mut ended) = server(root).await;
    let call = tokio::spawn(async move { hop::raw_call(addr, &[], &job(60_000)).await });
    until_calls(&calls, 1).await;
    shutdown.cancel();
    let err = tokio::time::timeout(PATIENCE, ended.recv()).await.unwrap();
    assert_eq!(err, Some(Error::Canceled));
    let (status, _) = tokio::time::timeout(PATIENCE, call).await.unwrap().unwrap();
    assert_eq!(status, "14");
}

/// A middle hop that passes its downstream call's failure on with `?`, as most handlers do: in
/// its own task, or (note `"spawned"`) awaiting a task that makes the call, so that the call's
/// own race is the first to see the deadline.
async fn middle_passing_errors_on(down: std::net::SocketAddr) -> std::net::SocketAddr {
    let client = hop::connect(down).await;
    let handler = HopServer::new(move |req: tonic::Request<HopRequest>| {
        let client = client.clone();
        async move {
            let req = req.into_inner();
            let reply = if req.note == "spawned" {
                ctxkit::spawn(async move { hop::call(&client, req).await })
                    .await
                    .map_err(|e| tonic::Status::internal(e.to_string()))??
            } else {
                hop::call(&client, req).await?
            };
            Ok(Response::new(reply))
        }
    });
    hop::serve(Context::background(), Accept::new(), handler).await
}

/// The statuses of raw calls (no timer of their own) to `middle` with these budgets.
async fn raw_calls_with_budgets(
    middle: std::net::SocketAddr,
    budgets_ms: impl Iterator<Item = u64>,
    note: &str,
) -> Vec<String> {
    let job = HopRequest {
        sleep_ms: 60_000,
        note: note.to_owned(),
    };
    let mut calls = Vec::new();
    for budget_ms in budgets_ms {
        let job = job.clone();
        calls.push(tokio::spawn(async move {
            let timeout = format!("{budget_ms}m");
            let (status, message) = tokio::time::timeout(
                PATIENCE,
                hop::raw_call(middle, &[("grpc-timeout", &timeout)], &job),
            )
            .await
            .expect("an answer");
            format!("{status} {message}")
        }));
    }
    let mut seen = Vec::new();
    for call in calls {
        seen.push(call.await.unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_at_a_middle_hop_reaches_a_raw_caller_as_status_4_every_time() {
    let (down, _, _) = server(Context::background()).await;
    let middle = middle_passing_errors_on(down).await;
    let mut seen = Vec::new();
    // One at a time, each budget a little longer, so the deadlines fall at every phase of the
    // timers' millisecond ticks; then a burst of concurrent calls.
    for note in ["", "spawned"] {
        for budget_ms in (0..12).map(|i| 20 + 7 * i) {
            seen.extend(raw_calls_with_budgets(middle, std::iter::once(budget_ms), note).await);
        }
        seen.extend(raw_calls_with_budgets(middle, (0..16).map(|i| 30 + i), note).await);
    }
    let wrong: Vec<_> = seen.iter().filter(|s| !s.starts_with("4 ")).collect();
    eprintln!(
        "{} of {} calls answered status 4",
        seen.len() - wrong.len(),
        seen.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} calls were not status 4: {wrong:?}",
        wrong.len(),
        seen.len()
    );
}
