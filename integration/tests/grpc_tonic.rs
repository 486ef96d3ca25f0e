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
    let (ctx, _cancel) = Context::background()
        .with_value::<RequestId>("r-9".to_owned())
        .with_timeout(Duration::from_secs(5));
    let reply = tokio::time::timeout(PATIENCE, ctx.scope(hop::call(&client, job(0))))
        .await
        .unwrap()
        .unwrap();
    let (budget, id) = reply.report.split_once(' ').unwrap();
    let budget: u128 = budget
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!((4_000..=5_000).contains(&budget), "{}", reply.report);
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
