//! `inject` and `extract`: deadlines, trace context, baggage and travelling keys across a
//! (simulated) process boundary.
#![cfg(feature = "http")]

use std::time::Duration;

use ctxkit::propagation::{
    self, Accept, Baggage, DisplayFromStr, KeyCodec, PropagationError, TraceContext, TraceParent,
    TraceState,
};
use ctxkit::{BoxError, Context, ContextKey, Error, Instant};
use http::{HeaderMap, HeaderValue};

/// Travels in `x-request-id`, as text.
struct RequestId;
impl ContextKey for RequestId {
    type Value = u64;
    const HEADER: Option<&'static str> = Some("x-request-id");
    fn encode(v: &u64) -> Option<String> {
        Some(DisplayFromStr::encode(v))
    }
    fn decode(s: &str) -> Result<u64, BoxError> {
        DisplayFromStr::decode(s)
    }
}

/// Travels in `x-tenant`.
struct Tenant;
impl ContextKey for Tenant {
    type Value = String;
    const HEADER: Option<&'static str> = Some("x-tenant");
    fn encode(v: &String) -> Option<String> {
        Some(v.clone())
    }
    fn decode(s: &str) -> Result<String, BoxError> {
        Ok(s.to_owned())
    }
}

/// Never leaves the process.
struct Secret;
impl ContextKey for Secret {
    type Value = String;
}

/// Claims a reserved header: never written (a hand-written impl; the derive rejects it).
struct Sneaky;
impl ContextKey for Sneaky {
    type Value = String;
    const HEADER: Option<&'static str> = Some("grpc-timeout");
    fn encode(v: &String) -> Option<String> {
        Some(v.clone())
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn extract_with(h: &HeaderMap, accept: &Accept) -> Result<Context, PropagationError> {
    // The handle is leaked on purpose in these tests: dropping it would cancel the context.
    propagation::extract(h, &Context::background(), accept, Instant::now()).map(|(ctx, handle)| {
        std::mem::forget(handle);
        ctx
    })
}

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03";

#[tokio::test(start_paused = true)]
async fn inject_sends_the_budget_left_now() {
    let (ctx, _c) = Context::background().with_timeout(Duration::from_millis(1500));
    tokio::time::advance(Duration::from_millis(500)).await;
    let mut h = HeaderMap::new();
    propagation::inject(&ctx, &mut h).unwrap();
    assert_eq!(h["grpc-timeout"], "1000000u");

    tokio::time::advance(Duration::from_secs(5)).await;
    propagation::inject(&ctx, &mut h).unwrap();
    assert_eq!(h["grpc-timeout"], "0n");

    let mut none = HeaderMap::new();
    propagation::inject(&Context::background().with_cancel().0, &mut none).unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test(start_paused = true)]
async fn extract_measures_the_budget_from_arrival() {
    let arrived = Instant::now();
    tokio::time::advance(Duration::from_millis(300)).await; // queued before we got to it
    let h = headers(&[("grpc-timeout", "1S")]);
    let (ctx, _c) =
        propagation::extract(&h, &Context::background(), &Accept::new(), arrived).unwrap();
    assert_eq!(ctx.deadline(), Some(arrived + Duration::from_secs(1)));

    tokio::time::advance(Duration::from_millis(699)).await;
    assert_eq!(ctx.err(), None);
    tokio::time::advance(Duration::from_millis(1)).await;
    ctx.done().await;
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_received_timeout_never_extends_a_local_limit() {
    let now = Instant::now();
    // The parent's deadline comes first.
    let (parent, _p) = Context::background().with_timeout(Duration::from_millis(100));
    let h = headers(&[("grpc-timeout", "10S")]);
    let (ctx, _c) = propagation::extract(&h, &parent, &Accept::new(), now).unwrap();
    assert_eq!(ctx.deadline(), parent.deadline());

    // The server's maximum comes first.
    let max = Accept::new().max_timeout(Duration::from_secs(2));
    let (ctx, _c) = propagation::extract(&h, &Context::background(), &max, now).unwrap();
    assert_eq!(ctx.deadline(), Some(now + Duration::from_secs(2)));

    // The caller's budget comes first.
    let short = headers(&[("grpc-timeout", "250m")]);
    let (ctx, _c) = propagation::extract(&short, &Context::background(), &max, now).unwrap();
    assert_eq!(ctx.deadline(), Some(now + Duration::from_millis(250)));

    // No budget received: the maximum applies.
    let (ctx, _c) =
        propagation::extract(&HeaderMap::new(), &Context::background(), &max, now).unwrap();
    assert_eq!(ctx.deadline(), Some(now + Duration::from_secs(2)));

    // Nothing at all: no deadline.
    let (ctx, _c) = propagation::extract(
        &HeaderMap::new(),
        &Context::background(),
        &Accept::new(),
        now,
    )
    .unwrap();
    assert_eq!(ctx.deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn budgets_shrink_hop_by_hop() {
    let (client, _c) = Context::background().with_timeout(Duration::from_secs(1));
    let mut h = HeaderMap::new();
    propagation::inject(&client, &mut h).unwrap();

    let arrived = Instant::now();
    tokio::time::advance(Duration::from_millis(200)).await;
    let (middle, _m) =
        propagation::extract(&h, &Context::background(), &Accept::new(), arrived).unwrap();
    tokio::time::advance(Duration::from_millis(300)).await;
    let mut h2 = HeaderMap::new();
    propagation::inject(&middle, &mut h2).unwrap();
    assert_eq!(h2["grpc-timeout"], "500000u");
}

#[test]
fn malformed_or_repeated_grpc_timeout_is_an_error_naming_it() {
    let err = extract_with(&headers(&[("grpc-timeout", "1.5S")]), &Accept::new()).unwrap_err();
    assert_eq!(err.header(), "grpc-timeout");
    assert_eq!(err.value(), "1.5S");
    assert!(err.to_string().contains("grpc-timeout"), "{err}");

    let twice = headers(&[("grpc-timeout", "1S"), ("grpc-timeout", "2S")]);
    let err = extract_with(&twice, &Accept::new()).unwrap_err();
    assert!(
        matches!(&err, PropagationError::GrpcTimeout { value, .. } if value == "1S,2S"),
        "{err:?}"
    );
}

#[test]
fn a_failed_extract_leaves_nothing_registered() {
    let (root, _r) = Context::background().with_cancel();
    let h = headers(&[("x-request-id", "not a number")]);
    let accept = Accept::new().key::<RequestId>();
    let err = propagation::extract(&h, &root, &accept, Instant::now()).unwrap_err();
    assert!(
        matches!(
            err,
            PropagationError::Key {
                header: "x-request-id",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(ctxkit::test_hooks::registered(&root), 0);
}

#[test]
fn the_request_context_is_a_child_of_the_server_root() {
    let (root, shutdown) = Context::background().with_cancel();
    let (a, _a) =
        propagation::extract(&HeaderMap::new(), &root, &Accept::new(), Instant::now()).unwrap();
    let (b, b_done) =
        propagation::extract(&HeaderMap::new(), &root, &Accept::new(), Instant::now()).unwrap();
    drop(b_done); // the request finished
    assert_eq!(b.err(), Some(Error::Canceled));
    assert_eq!(a.err(), None);
    shutdown.cancel(); // the server shuts down
    assert_eq!(a.err(), Some(Error::Canceled));
}

#[test]
fn a_valid_trace_is_continued_with_a_new_span() {
    let h = headers(&[
        ("traceparent", TP),
        ("tracestate", "rojo=00f067aa0ba902b7"),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]);
    let ctx = extract_with(&h, &Accept::new()).unwrap();
    let received: TraceParent = TP.parse().unwrap();
    let trace = ctx.value::<TraceContext>().unwrap();
    assert_eq!(trace.trace_id(), received.trace_id());
    assert_eq!(trace.parent_span_id(), Some(received.parent_id()));
    assert_ne!(trace.span_id(), received.parent_id());
    assert_eq!(trace.flags(), 0x03); // the random bit is kept
    assert_eq!(
        trace.state().to_string(),
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    );

    let mut out = HeaderMap::new();
    propagation::inject(&ctx, &mut out).unwrap();
    let sent: TraceParent = out["traceparent"].to_str().unwrap().parse().unwrap();
    assert_eq!(sent.trace_id(), received.trace_id());
    assert_eq!(sent.parent_id(), trace.span_id());
    assert_eq!(sent.flags(), 0x03);
    assert_eq!(out["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
}

#[test]
fn no_or_an_invalid_trace_starts_a_new_one_and_ignores_tracestate() {
    let received: TraceParent = TP.parse().unwrap();
    let upper = TP.replace("0af7", "0AF7");
    for h in [
        headers(&[("tracestate", "rojo=1")]),
        headers(&[("traceparent", &upper), ("tracestate", "rojo=1")]),
        headers(&[
            ("traceparent", TP),
            ("traceparent", TP),
            ("tracestate", "rojo=1"),
        ]),
    ] {
        let ctx = extract_with(&h, &Accept::new()).unwrap();
        let trace = ctx.value::<TraceContext>().unwrap();
        assert_ne!(trace.trace_id(), received.trace_id());
        assert_eq!(trace.parent_span_id(), None);
        assert!(trace.state().is_empty());
    }
}

#[test]
fn an_invalid_tracestate_is_dropped_whole() {
    let h = headers(&[("traceparent", TP), ("tracestate", "ok=1,Bad=2")]);
    let ctx = extract_with(&h, &Accept::new()).unwrap();
    let trace = ctx.value::<TraceContext>().unwrap();
    assert_eq!(
        trace.parent_span_id(),
        Some(TP.parse::<TraceParent>().unwrap().parent_id())
    );
    assert_eq!(trace.state(), &TraceState::default());
    let mut out = HeaderMap::new();
    propagation::inject(&ctx, &mut out).unwrap();
    assert!(!out.contains_key("tracestate"));
}

#[test]
fn baggage_travels_and_an_invalid_one_is_dropped() {
    let h = headers(&[("baggage", "user=alice, q=a%3Db"), ("baggage", "n=1;p")]);
    let ctx = extract_with(&h, &Accept::new()).unwrap();
    let b = ctx.value::<Baggage>().unwrap();
    assert_eq!(b.get("user"), Some("alice"));
    assert_eq!(b.get("q"), Some("a=b"));
    assert_eq!(b.member("n").unwrap().properties()[0].key(), "p");

    let mut out = HeaderMap::new();
    propagation::inject(&ctx, &mut out).unwrap();
    assert_eq!(out["baggage"], "user=alice,q=a=b,n=1;p");

    let bad = extract_with(&headers(&[("baggage", "user=alice,oops")]), &Accept::new()).unwrap();
    assert_eq!(bad.value::<Baggage>(), None);
}

#[test]
fn only_accepted_keys_are_decoded() {
    let h = headers(&[("x-request-id", "42"), ("x-tenant", "acme")]);
    let ctx = extract_with(&h, &Accept::new().key::<RequestId>()).unwrap();
    assert_eq!(ctx.value::<RequestId>(), Some(&42));
    assert_eq!(ctx.value::<Tenant>(), None);

    let both = Accept::new()
        .key::<RequestId>()
        .key::<Tenant>()
        .key::<RequestId>();
    assert_eq!(
        both.headers().collect::<Vec<_>>(),
        ["x-request-id", "x-tenant"]
    );
    let ctx = extract_with(&h, &both).unwrap();
    assert_eq!(ctx.value::<Tenant>().map(String::as_str), Some("acme"));
    let ctx = extract_with(&HeaderMap::new(), &both).unwrap();
    assert_eq!(ctx.value::<RequestId>(), None);
}

#[test]
fn bad_travelling_values_are_errors_naming_the_header() {
    let accept = Accept::new().key::<RequestId>();
    let long = "1".repeat(5000);
    let cases: [(HeaderMap, &str); 3] = [
        (headers(&[("x-request-id", "abc")]), "abc"),
        (
            headers(&[("x-request-id", "1"), ("x-request-id", "2")]),
            "1,2",
        ),
        (headers(&[("x-request-id", &long)]), &long),
    ];
    for (h, value) in cases {
        let err = extract_with(&h, &accept).unwrap_err();
        assert_eq!(err.header(), "x-request-id");
        if value.len() <= 1024 {
            assert_eq!(err.value(), value);
        } else {
            // Long values are cut in errors.
            assert_eq!(err.value(), format!("{}…", &value[..1024]));
        }
        assert!(
            err.to_string().starts_with("invalid x-request-id header"),
            "{err}"
        );
    }
    let mut h = HeaderMap::new();
    h.insert("x-request-id", HeaderValue::from_bytes(b"\xff").unwrap());
    let err = extract_with(&h, &accept).unwrap_err();
    assert!(err.to_string().contains("not visible ASCII"), "{err}");
}

#[test]
fn inject_writes_travelling_keys_nearest_first_and_nothing_else() {
    let ctx = Context::background()
        .with_value::<RequestId>(1)
        .with_value::<Secret>("hunter2".into())
        .with_value::<Tenant>("acme".into())
        .with_cancel()
        .0
        .with_value::<RequestId>(2);
    let mut h = HeaderMap::new();
    propagation::inject(&ctx, &mut h).unwrap();
    assert_eq!(h["x-request-id"], "2");
    assert_eq!(h["x-tenant"], "acme");
    assert!(!h.contains_key("grpc-timeout"));
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(!format!("{h:?}").contains("hunter2"));
}

#[test]
fn a_value_a_receiver_would_reject_is_an_error_and_nothing_is_written() {
    for (value, reason) in [
        ("a\nb", "not visible ASCII"),
        ("Zürich", "not visible ASCII"),
        (&*"x".repeat(5000), "longer than 4096 bytes"),
    ] {
        let bad = Context::background()
            .with_value::<RequestId>(1)
            .with_value::<Tenant>(value.into());
        let mut h = HeaderMap::new();
        let err = propagation::inject(&bad, &mut h).unwrap_err();
        assert_eq!(err.header(), "x-tenant");
        assert!(err.to_string().contains(reason), "{err}");
        assert!(h.is_empty(), "{h:?}");
    }
}

#[test]
fn a_key_on_a_reserved_header_is_an_error_naming_it() {
    let ctx = Context::background().with_value::<Sneaky>("99H".into());
    let mut h = HeaderMap::new();
    let err = propagation::inject(&ctx, &mut h).unwrap_err();
    assert!(
        matches!(&err, PropagationError::KeyHeader { header: "grpc-timeout", key, .. } if key.ends_with("Sneaky")),
        "{err:?}"
    );
    assert!(h.is_empty());
}

/// Another key on `x-tenant`.
struct TenantId;
impl ContextKey for TenantId {
    type Value = u64;
    const HEADER: Option<&'static str> = Some("x-tenant");
    fn encode(v: &u64) -> Option<String> {
        Some(DisplayFromStr::encode(v))
    }
    fn decode(s: &str) -> Result<u64, BoxError> {
        DisplayFromStr::decode(s)
    }
}

#[test]
fn two_keys_on_one_header_are_an_error_when_sent_and_neither_is_sent() {
    let ctx = Context::background()
        .with_value::<Tenant>("acme".into())
        .with_value::<TenantId>(42)
        .with_value::<RequestId>(1);
    let mut h = HeaderMap::new();
    let err = propagation::inject(&ctx, &mut h).unwrap_err();
    let PropagationError::KeyConflict { header, keys } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*header, "x-tenant");
    assert!(
        keys[0].ends_with("TenantId") && keys[1].ends_with("Tenant"),
        "{keys:?}"
    );
    assert!(
        err.to_string().contains("give each key its own header"),
        "{err}"
    );
    assert!(h.is_empty(), "{h:?}");
    // One of them alone travels.
    let one = Context::background().with_value::<TenantId>(42);
    propagation::inject(&one, &mut h).unwrap();
    assert_eq!(h["x-tenant"], "42");
}

#[test]
fn accepting_two_keys_on_one_header_stops_the_server_at_construction_naming_both() {
    let panic =
        std::panic::catch_unwind(|| Accept::new().key::<Tenant>().key::<TenantId>()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("TenantId") && message.contains("Tenant`"),
        "{message}"
    );
    assert!(message.contains("\"x-tenant\""), "{message}");
    // The same key twice is the key once.
    let accept = Accept::new().key::<Tenant>().key::<Tenant>();
    assert_eq!(accept.headers().collect::<Vec<_>>(), ["x-tenant"]);
}

#[test]
fn a_higher_traceparent_version_is_continued_and_sent_on_as_version_00() {
    let h = headers(&[(
        "traceparent",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever",
    )]);
    let ctx = extract_with(&h, &Accept::new()).unwrap();
    let mut out = HeaderMap::new();
    propagation::inject(&ctx, &mut out).unwrap();
    let sent = out["traceparent"].to_str().unwrap();
    assert!(
        sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && sent.ends_with("-01"),
        "{sent}"
    );
    assert_eq!(sent.len(), 55);
}

#[test]
fn keys_round_trip_through_inject_and_extract() {
    let ctx = Context::background()
        .with_value::<RequestId>(7)
        .with_value::<Tenant>("globex".into());
    let mut h = HeaderMap::new();
    propagation::inject(&ctx, &mut h).unwrap();
    let accept = Accept::new().key::<RequestId>().key::<Tenant>();
    let back = extract_with(&h, &accept).unwrap();
    assert_eq!(back.value::<RequestId>(), Some(&7));
    assert_eq!(back.value::<Tenant>().map(String::as_str), Some("globex"));
}
