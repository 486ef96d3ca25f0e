//! The `nats` feature against a real nats-server (`CTXKIT_NATS_URL`): contexts through publish /
//! subscribe and request / reply, expired messages dropped, cancellation across the broker, the
//! server's stop, and malformed headers.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message};
use ctxkit::nats::{self, Dropped, NatsError, RequesterCanceled, Server};
use ctxkit::propagation::{self, Accept, DeadlineFormat};
use ctxkit::{Context, ContextKey, Error, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(ContextKey)]
#[context_key(value = u64, header = "x-request-id")]
struct RequestId;

#[derive(ContextKey)]
#[context_key(value = String, header = "x-guid")]
struct Guid;

/// Generous: a bound that holds on a saturated 2-core machine, for things that take
/// milliseconds.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(url: &str) -> Client {
    async_nats::connect(url)
        .await
        .expect("connect to nats-server")
}

/// A subject of this test's own, so that tests running at once never see each other's messages.
fn subject(name: &str) -> String {
    format!("ctxkit-test.{name}.{}", fastrand_u64())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

/// Waits until `cond` holds (polling), failing after PATIENCE.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn values_and_deadline_arrive_over_request_reply_and_publish() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("values");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let server = Server::subscribe(&client, &subj)
        .await
        .unwrap()
        .accept(Accept::new().key::<RequestId>().key::<Guid>());
    let stats = server.stats();
    let (root, stop) = Context::background().with_cancel();
    let serving = tokio::spawn({
        let root = root.clone();
        server.serve(&root.clone(), move |ctx: Context, msg: Message| {
            let seen_tx = seen_tx.clone();
            async move {
                // The message's context is current, and is the one passed.
                let current = Context::current();
                assert!(current.ptr_eq(&ctx));
                let id = RequestId::current();
                let guid = current.value::<Guid>().cloned();
                let left = ctx
                    .deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()));
                let _ = seen_tx.send((id, guid, left, msg.reply.is_some()));
                Ok::<_, Error>(format!("{id:?}"))
            }
        })
    });
    drop(root);

    // Request / reply.
    let (ctx, _c) = Context::background()
        .with_value::<RequestId>(42)
        .with_value::<Guid>("5f0c-9a".into())
        .with_timeout(Duration::from_secs(30));
    let reply = within(
        "reply",
        nats::request(&client, &ctx, subj.clone(), "x".into()),
    )
    .await
    .unwrap();
    assert_eq!(&reply.payload[..], b"Some(42)");
    let (id, guid, left, is_request) = seen_rx.recv().await.unwrap();
    assert_eq!(id, Some(42));
    assert_eq!(guid.as_deref(), Some("5f0c-9a"));
    assert!(is_request);
    let left = left.expect("the deadline arrived");
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(10),
        "{left:?}"
    );

    // Publish / subscribe: the same values, no reply.
    let (ctx, _c) = Context::background()
        .with_value::<RequestId>(7)
        .with_timeout(Duration::from_secs(20));
    nats::publish(&client, &ctx, subj.clone(), "y".into())
        .await
        .unwrap();
    let (id, guid, left, is_request) = within("published", seen_rx.recv()).await.unwrap();
    assert_eq!((id, guid, is_request), (Some(7), None, false));
    assert!(left.unwrap() <= Duration::from_secs(20));

    // A message with no context at all: a plain child of the root, no deadline.
    client.publish(subj.clone(), "z".into()).await.unwrap();
    let (id, _, left, _) = within("bare", seen_rx.recv()).await.unwrap();
    assert_eq!((id, left), (None, None));

    assert_eq!(stats.handled(), 3);
    assert_eq!(stats.received(), 3);
    stop.cancel();
    within("stop", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_expired_message_is_dropped_and_counted_without_running_its_handler() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("expired");
    let ran = Arc::new(AtomicUsize::new(0));
    let (drop_tx, mut drop_rx) = mpsc::unbounded_channel();
    let server = Server::subscribe(&client, &subj)
        .await
        .unwrap()
        .accept(Accept::new().key::<RequestId>())
        .on_drop(move |msg, why| {
            let _ = drop_tx.send((
                msg.payload.clone(),
                matches!(why, Dropped::Expired),
                why.to_string(),
            ));
        });
    let stats = server.stats();
    let (root, stop) = Context::background().with_cancel();
    let serving = tokio::spawn({
        let ran = ran.clone();
        server.serve(&root, move |_ctx: Context, msg: Message| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(msg.payload)
            }
        })
    });

    // A message that waited in a queue past its deadline: its headers were written 200 ms
    // before it was handed to the broker, with a 50 ms budget.
    let (job, _c) = Context::background()
        .with_value::<RequestId>(9)
        .with_timeout(Duration::from_millis(50));
    let mut headers = HeaderMap::new();
    propagation::inject_with(&job, &mut headers, DeadlineFormat::Absolute).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .publish_with_headers(subj.clone(), headers, "stale".into())
        .await
        .unwrap();

    // A fresh request after it is served: the stale one, sent first, was handled first.
    let (ctx, _c) = Context::background().with_timeout(Duration::from_secs(30));
    let reply = within(
        "fresh",
        nats::request(&client, &ctx, subj.clone(), "fresh".into()),
    )
    .await
    .unwrap();
    assert_eq!(&reply.payload[..], b"fresh");
    let (payload, expired, reason) = within("on_drop", drop_rx.recv()).await.unwrap();
    assert_eq!(&payload[..], b"stale");
    assert!(expired, "{reason}");
    assert!(reason.contains("deadline"), "{reason}");
    assert_eq!(ran.load(Ordering::SeqCst), 1, "only the fresh message ran");
    assert_eq!(stats.expired(), 1);
    assert_eq!(stats.handled(), 1);
    stop.cancel();
    within("stop", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn in_flight_handlers_are_bounded_and_a_message_expiring_while_it_waits_is_dropped() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("bounded");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let server = Server::subscribe(&client, &subj)
        .await
        .unwrap()
        .max_in_flight(1);
    let stats = server.stats();
    let (root, stop) = Context::background().with_cancel();
    let serving = tokio::spawn({
        let (running, most, release) = (running.clone(), most.clone(), release.clone());
        server.serve(&root, move |_ctx: Context, msg: Message| {
            let (running, most, release) = (running.clone(), most.clone(), release.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                if &msg.payload[..] == b"slow" {
                    release.notified().await;
                }
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Error>(msg.payload)
            }
        })
    });

    // The slow one takes the only slot; the short one waits for it and expires meanwhile.
    let (long, _c) = Context::background().with_timeout(Duration::from_secs(60));
    let slow = tokio::spawn({
        let (client, subj, long) = (client.clone(), subj.clone(), long.clone());
        async move { nats::request(&client, &long, subj, "slow".into()).await }
    });
    eventually("the slow handler runs", || {
        running.load(Ordering::SeqCst) == 1
    })
    .await;
    // Published, not requested: no cancel notice can race the message's own deadline.
    let (short, _c) = Context::background().with_timeout(Duration::from_millis(300));
    nats::publish(&client, &short, subj.clone(), "short".into())
        .await
        .unwrap();
    eventually("the waiting message expires", || stats.expired() == 1).await;
    release.notify_one();
    let reply = within("slow reply", slow).await.unwrap().unwrap();
    assert_eq!(&reply.payload[..], b"slow");
    let reply = within(
        "after",
        nats::request(&client, &long, subj.clone(), "next".into()),
    )
    .await
    .unwrap();
    assert_eq!(&reply.payload[..], b"next");
    assert_eq!(most.load(Ordering::SeqCst), 1);
    assert_eq!(stats.handled(), 2);
    stop.cancel();
    within("stop", serving).await.unwrap().unwrap();
}

/// A responder whose handler reports when it starts (with the request's cancel key) and when
/// its context ends (with the instant and the cause).
struct Watched {
    started: mpsc::UnboundedReceiver<String>,
    ended: mpsc::UnboundedReceiver<(Instant, Option<Error>, bool)>,
    stats: ctxkit::nats::Stats,
    stop: ctxkit::CancelHandle,
    serving: tokio::task::JoinHandle<Result<(), NatsError>>,
}

async fn watched(client: &Client, subj: &str) -> Watched {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let server = Server::subscribe(client, subj).await.unwrap();
    let stats = server.stats();
    let (root, stop) = Context::background().with_cancel();
    let serving = tokio::spawn(server.serve(&root, move |ctx: Context, msg: Message| {
        let (started_tx, ended_tx) = (started_tx.clone(), ended_tx.clone());
        async move {
            let key = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(nats::CTXKIT_CANCEL))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let _ = started_tx.send(key);
            ctx.done().await;
            let at = Instant::now();
            let by_requester = ctx.cause().is_some_and(|c| c.is::<RequesterCanceled>());
            let _ = ended_tx.send((at, ctx.err(), by_requester));
            Err::<&'static str, _>(ctx.err().unwrap())
        }
    }));
    Watched {
        started,
        ended,
        stats,
        stop,
        serving,
    }
}

#[tokio::test]
async fn a_requesters_cancel_reaches_the_responder_and_nobody_else_can_send_it() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let intruder = connect(&url).await;
    let subj = subject("cancel");
    let mut w = watched(&client, &subj).await;

    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(60));
    let pending = tokio::spawn({
        let (client, subj) = (client.clone(), subj.clone());
        async move { nats::request(&client, &ctx, subj, "work".into()).await }
    });
    let key = within("started", w.started.recv()).await.unwrap();
    assert_eq!(key.len(), 64, "{key:?}");

    // A third party that saw the request's headers cannot cancel it: it has the key, not the
    // secret.
    for forged in [key.clone(), "0".repeat(64), "not hex".to_owned()] {
        intruder
            .publish(nats::cancel_subject(&subj, &key), forged.into())
            .await
            .unwrap();
    }
    intruder.flush().await.unwrap();
    eventually("the forged notices are ignored", || {
        w.stats.ignored_notices() == 3
    })
    .await;
    assert!(
        w.ended.try_recv().is_err(),
        "a forged notice cancelled the request"
    );

    let cancelled_at = Instant::now();
    cancel.cancel();
    let (ended_at, err, by_requester) = within("the responder's cancel", w.ended.recv())
        .await
        .unwrap();
    assert_eq!(err, Some(Error::Canceled));
    assert!(by_requester, "the cause is RequesterCanceled");
    assert!(ended_at >= cancelled_at);
    let got = within("requester", pending).await.unwrap();
    assert!(
        matches!(got, Err(NatsError::Context(Error::Canceled))),
        "{got:?}"
    );
    assert_eq!(w.stats.canceled(), 1);

    // The requester's deadline passing cancels the responder's context too.
    let (ctx, _c) = Context::background().with_timeout(Duration::from_millis(300));
    let got = nats::request(&client, &ctx, subj.clone(), "slow".into()).await;
    assert!(
        matches!(got, Err(NatsError::Context(Error::DeadlineExceeded))),
        "{got:?}"
    );
    let (_, err, _) = within("the responder's deadline", w.ended.recv())
        .await
        .unwrap();
    assert!(err.is_some());

    w.stop.cancel();
    within("stop", w.serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_dropped_request_future_cancels_the_responder() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("dropped");
    let mut w = watched(&client, &subj).await;
    let (ctx, _c) = Context::background().with_timeout(Duration::from_secs(60));
    let req = tokio::spawn({
        let (client, subj) = (client.clone(), subj.clone());
        async move { nats::request(&client, &ctx, subj, "work".into()).await }
    });
    within("started", w.started.recv()).await.unwrap();
    req.abort();
    let (_, err, by_requester) = within("the responder's cancel", w.ended.recv())
        .await
        .unwrap();
    assert_eq!((err, by_requester), (Some(Error::Canceled), true));
    w.stop.cancel();
    within("stop", w.serving).await.unwrap().unwrap();
}

/// Cancel latency: from the requester's `cancel()` to the responder's context being done, on
/// loopback, over 50 runs. Printed (run with `--nocapture`); only a generous bound is checked.
#[tokio::test]
async fn cancel_latency_over_50_runs() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let responder = connect(&url).await;
    let subj = subject("latency");
    let mut w = watched(&responder, &subj).await;
    let mut samples = Vec::new();
    for i in 0..50 {
        let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(60));
        let mut pending = tokio::spawn({
            let (client, subj) = (client.clone(), subj.clone());
            async move { nats::request(&client, &ctx, subj, "work".into()).await }
        });
        tokio::select! {
            s = w.started.recv() => { s.unwrap(); }
            r = &mut pending => panic!("run {i}: {r:?} {:?}", w.stats),
        }
        let t0 = Instant::now();
        cancel.cancel();
        let (t1, _, by_requester) = within("cancelled", w.ended.recv()).await.unwrap();
        assert!(by_requester);
        samples.push(t1 - t0);
        let _ = pending.await;
    }
    samples.sort();
    let (min, median, max) = (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    );
    println!(
        "cancel latency over {} runs: min {min:?}, median {median:?}, max {max:?}",
        samples.len()
    );
    assert!(max < PATIENCE);
    w.stop.cancel();
    within("stop", w.serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_server_stops_with_its_root_context_after_its_handlers_return() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("stop");
    let mut w = watched(&client, &subj).await;
    let (ctx, _c) = Context::background().with_timeout(Duration::from_secs(60));
    let pending = tokio::spawn({
        let (client, subj) = (client.clone(), subj.clone());
        async move { nats::request(&client, &ctx, subj, "work".into()).await }
    });
    within("started", w.started.recv()).await.unwrap();
    w.stop.cancel(); // the root
    let (_, err, by_requester) = within("the handler sees the root", w.ended.recv())
        .await
        .unwrap();
    assert_eq!((err, by_requester), (Some(Error::Canceled), false));
    within("serve returns", w.serving).await.unwrap().unwrap();
    // The handler's answer (an error: its context was cancelled) still went out.
    let got = within("requester", pending).await.unwrap();
    assert!(
        matches!(&got, Err(NatsError::Remote(t)) if t.contains("canceled")),
        "{got:?}"
    );
    // Nobody serves the subject any more.
    let (ctx, _c) = Context::background().with_timeout(Duration::from_secs(30));
    let got = nats::request(&client, &ctx, subj.clone(), "late".into()).await;
    assert!(
        matches!(&got, Err(NatsError::Request(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{got:?}"
    );
}

#[tokio::test]
async fn draining_stops_taking_messages_but_lets_the_handlers_in_flight_finish() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("drain");
    let shutdown = ctxkit::Shutdown::new(&Context::background(), Duration::from_secs(60));
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go_rx = Arc::new(tokio::sync::Mutex::new(Some(go_rx)));
    let started = Arc::new(AtomicBool::new(false));
    let server = Server::subscribe(&client, &subj)
        .await
        .unwrap()
        .draining(shutdown.draining());
    let serving = tokio::spawn({
        let (go_rx, started) = (go_rx.clone(), started.clone());
        server.serve(shutdown.hard(), move |ctx: Context, _msg: Message| {
            let (go_rx, started) = (go_rx.clone(), started.clone());
            async move {
                started.store(true, Ordering::SeqCst);
                let rx = go_rx.lock().await.take().unwrap();
                let _ = rx.await;
                Ok::<_, Error>(if ctx.is_done() {
                    "cancelled"
                } else {
                    "finished"
                })
            }
        })
    });
    let (ctx, _c) = Context::background().with_timeout(Duration::from_secs(60));
    let pending = tokio::spawn({
        let (client, subj) = (client.clone(), subj.clone());
        async move { nats::request(&client, &ctx, subj, "work".into()).await }
    });
    eventually("started", || started.load(Ordering::SeqCst)).await;
    shutdown.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !serving.is_finished(),
        "serve waits for the handler in flight"
    );
    go_tx.send(()).unwrap();
    let reply = within("reply", pending).await.unwrap().unwrap();
    assert_eq!(&reply.payload[..], b"finished");
    within("serve returns", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_headers_get_clear_errors_never_run_the_handler_and_the_server_goes_on() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("malformed");
    let ran = Arc::new(AtomicUsize::new(0));
    let server = Server::subscribe(&client, &subj)
        .await
        .unwrap()
        .accept(Accept::new().key::<RequestId>());
    let stats = server.stats();
    let (root, stop) = Context::background().with_cancel();
    let serving = tokio::spawn({
        let ran = ran.clone();
        server.serve(&root, move |_ctx: Context, msg: Message| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(msg.payload)
            }
        })
    });

    let (good, _c) = Context::background().with_timeout(Duration::from_secs(30));
    let mut valid = HeaderMap::new();
    propagation::inject_with(&good, &mut valid, DeadlineFormat::Absolute).unwrap();
    let upper = "A".repeat(64);
    // (the header named in the error, the fields sent, the reason given)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "ctxkit-deadline",
            vec![("ctxkit-deadline", "soon")],
            "ASCII digits only",
        ),
        (
            "ctxkit-sent",
            vec![("ctxkit-sent", "-5")],
            "ASCII digits only",
        ),
        (
            "ctxkit-deadline",
            vec![("ctxkit-deadline", "1")],
            "earlier than ctxkit-sent",
        ),
        (
            "grpc-timeout",
            vec![("grpc-timeout", "10s")],
            "unknown unit",
        ),
        (
            "x-request-id",
            vec![("x-request-id", "forty-two")],
            "x-request-id",
        ),
        (
            "x-request-id",
            vec![("x-request-id", "1"), ("x-request-id", "2")],
            "repeated",
        ),
        (
            "ctxkit-cancel",
            vec![("ctxkit-cancel", "abc")],
            "64 lower-case hex",
        ),
        (
            "ctxkit-cancel",
            vec![("ctxkit-cancel", &upper)],
            "64 lower-case hex",
        ),
    ];
    // A burst: every bad message three times.
    for _ in 0..3 {
        for (header, fields, reason) in &cases {
            let mut headers = valid.clone();
            for (i, (name, value)) in fields.iter().enumerate() {
                if i == 0 {
                    headers.insert(*name, *value);
                } else {
                    headers.append(*name, *value);
                }
            }
            let req = async_nats::Request::new()
                .headers(headers)
                .payload("bad".into());
            let reply = within("error reply", client.send_request(subj.clone(), req))
                .await
                .unwrap();
            let text = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(nats::CTXKIT_ERROR))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| panic!("{header}: no {} header", nats::CTXKIT_ERROR));
            assert!(
                text.contains(header) && text.contains(reason),
                "{header}: {text}"
            );
        }
    }
    // A grpc-timeout alone (a budget that cannot count the queue) is refused too.
    let mut only_budget = HeaderMap::new();
    only_budget.insert("grpc-timeout", "5S");
    let req = async_nats::Request::new()
        .headers(only_budget)
        .payload("bad".into());
    let reply = client.send_request(subj.clone(), req).await.unwrap();
    assert!(
        reply
            .headers
            .unwrap()
            .get(nats::CTXKIT_ERROR)
            .unwrap()
            .as_str()
            .contains("queue")
    );

    // Through `nats::request`, the error is typed.
    let mut h = HeaderMap::new();
    h.insert("x-request-id", "nope");
    let (plain, _c) = Context::background().with_timeout(Duration::from_secs(30));
    let got = nats::request_with_headers(&client, &plain, subj.clone(), h, "bad".into()).await;
    assert!(
        matches!(&got, Err(NatsError::Remote(t)) if t.contains("x-request-id")),
        "{got:?}"
    );

    let n = (cases.len() * 3 + 2) as u64;
    assert_eq!(stats.malformed(), n);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "no handler ran with a half-parsed context"
    );
    // Still serving.
    let reply = nats::request(&client, &good, subj.clone(), "ok".into())
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"ok");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    stop.cancel();
    within("stop", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_context_that_is_done_sends_nothing() {
    let url = require!(support::nats_url());
    let client = connect(&url).await;
    let subj = subject("done");
    let mut sub = client.subscribe(subj.clone()).await.unwrap();
    client.flush().await.unwrap();
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let err = nats::publish(&client, &ctx, subj.clone(), "x".into())
        .await
        .unwrap_err();
    assert!(matches!(err, NatsError::Context(Error::Canceled)));
    let err = nats::request(&client, &ctx, subj.clone(), "x".into())
        .await
        .unwrap_err();
    assert!(matches!(err, NatsError::Context(Error::Canceled)));
    client.publish(subj.clone(), "marker".into()).await.unwrap();
    use futures_util::StreamExt;
    let first = within("marker", sub.next()).await.unwrap();
    assert_eq!(
        &first.payload[..],
        b"marker",
        "nothing was sent before the marker"
    );
}
