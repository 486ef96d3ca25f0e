//! Property tests of the wire formats: what is encoded decodes to the same, no input makes a
//! parser panic, every carrier is read as strictly as HTTP headers, and a deadline sent through a
//! queue follows the clock-skew rule.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use ctxkit::propagation::{
    self, Accept, Baggage, BaggageMember, DeadlineFormat, GrpcTimeout, TraceContext, TraceParent,
    TraceState,
};
use ctxkit::{BoxError, Context, ContextKey, Error, Instant};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

struct Label;
impl ContextKey for Label {
    type Value = String;
    const HEADER: Option<&'static str> = Some("x-label");
    fn encode(v: &String) -> Option<String> {
        Some(v.clone())
    }
    fn decode(s: &str) -> Result<String, BoxError> {
        Ok(s.to_owned())
    }
}

/// The nanoseconds of one `grpc-timeout` unit, finest first.
const UNITS: [u128; 6] = [
    1,
    1_000,
    1_000_000,
    1_000_000_000,
    60_000_000_000,
    3_600_000_000_000,
];

fn tchar_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn tracestate_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_*/-]{0,20}",
        "[a-z0-9][a-z0-9_*/-]{0,10}@[a-z][a-z0-9_*/-]{0,13}",
    ]
}

fn tracestate_value() -> impl Strategy<Value = String> {
    // Printable ASCII but ',' and '=', not ending in a space.
    "[ -+\\--<>-~]{0,30}[!-+\\--<>-~]"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn grpc_timeout_round_trips_rounding_up(secs in 0u64..=400_000_000_000, nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let v = GrpcTimeout::encode(d);
        prop_assert!((2..=9).contains(&v.len()), "{v:?}");
        let back = GrpcTimeout::decode(&v).unwrap();
        let cap = Duration::from_secs(99_999_999 * 3_600);
        if d <= cap {
            prop_assert!(back >= d, "{d:?} -> {v:?} -> {back:?}");
            // Rounded up by less than one unit of the one used.
            let unit = UNITS.iter().copied().find(|u| d.as_nanos().div_ceil(*u) <= 99_999_999).unwrap();
            prop_assert!(back.as_nanos() - d.as_nanos() < unit);
        } else {
            prop_assert_eq!(back, cap);
        }
        if d.as_nanos() <= 99_999_999 {
            prop_assert_eq!(back, d);
        }
    }

    #[test]
    fn grpc_timeout_values_round_trip(count in 0u64..=99_999_999, unit in prop::sample::select(&b"HMSmun"[..])) {
        let text = format!("{count}{}", unit as char);
        let d = GrpcTimeout::decode_bytes(text.as_bytes()).unwrap();
        prop_assert_eq!(GrpcTimeout::decode(&GrpcTimeout::encode(d)).unwrap(), d);
    }

    #[test]
    fn grpc_timeout_never_panics(bytes in vec(any::<u8>(), 0..16)) {
        if let Err(e) = GrpcTimeout::decode_bytes(&bytes) {
            prop_assert_eq!(e.header(), "grpc-timeout");
        }
    }

    #[test]
    fn traceparent_round_trips(trace in any::<[u8; 16]>(), parent in any::<[u8; 8]>(), flags in any::<u8>()) {
        match TraceParent::new(trace, parent, flags) {
            Ok(tp) => {
                let text = tp.to_string();
                prop_assert_eq!(text.len(), 55);
                prop_assert_eq!(text.parse::<TraceParent>().unwrap(), tp);
                prop_assert_eq!(TraceParent::decode(&tp.to_header_value()).unwrap(), tp);
            }
            Err(_) => prop_assert!(trace == [0; 16] || parent == [0; 8]),
        }
    }

    #[test]
    fn traceparent_never_panics(bytes in vec(any::<u8>(), 0..80), s in "[0-9a-fA-F-]{50,70}") {
        let _ = TraceParent::decode_bytes(&bytes);
        if let Ok(tp) = s.parse::<TraceParent>() {
            prop_assert_eq!(tp.to_string().parse::<TraceParent>().unwrap(), tp);
        }
    }

    #[test]
    fn tracestate_round_trips(members in btree_map(tracestate_key(), tracestate_value(), 0..=32)) {
        let text = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" , ");
        let ts: TraceState = text.parse().unwrap();
        prop_assert_eq!(ts.len(), members.len());
        prop_assert_eq!(ts.to_string().parse::<TraceState>().unwrap(), ts.clone());
        for (k, v) in &members {
            prop_assert_eq!(ts.get(k), Some(v.as_str()));
        }
    }

    #[test]
    fn tracestate_never_panics(bytes in vec(any::<u8>(), 0..300), s in "[a-z0-9=, @*/_-]{0,200}") {
        let _ = TraceState::decode_bytes(&bytes);
        if let Ok(ts) = s.parse::<TraceState>() {
            prop_assert_eq!(ts.to_string().parse::<TraceState>().unwrap(), ts);
        }
    }

    #[test]
    fn baggage_round_trips_any_text(
        members in btree_map(tchar_key(), any::<String>(), 0..20),
        prop_key in tchar_key(),
    ) {
        let mut b = Baggage::new();
        for (k, v) in &members {
            b.insert_member(BaggageMember::new(k, v).unwrap().with_property(&prop_key, Some("x=1")).unwrap());
        }
        let text = b.to_string();
        prop_assume!(text.len() <= Baggage::MAX_BYTES);
        let back: Baggage = text.parse().unwrap();
        prop_assert_eq!(&back, &b);
        for (k, v) in &members {
            prop_assert_eq!(back.get(k), Some(v.as_str()));
        }
        if let Some(h) = b.to_header_value() {
            prop_assert_eq!(Baggage::decode(&h).unwrap(), b);
        }
    }

    #[test]
    fn baggage_sends_whole_members_within_limits(sizes in vec(0usize..3000, 0..100)) {
        let mut b = Baggage::new();
        for (i, n) in sizes.iter().enumerate() {
            b.insert(&format!("k{i}"), &"v".repeat(*n)).unwrap();
        }
        if let Some(h) = b.to_header_value() {
            prop_assert!(h.len() <= Baggage::MAX_BYTES);
            let back = Baggage::decode(&h).unwrap();
            prop_assert!(back.len() <= Baggage::MAX_MEMBERS);
            for m in back.iter() {
                prop_assert_eq!(b.member(m.key()), Some(m));
            }
        }
    }

    #[test]
    fn baggage_never_panics(bytes in vec(any::<u8>(), 0..400), s in "[a-z=%;, 0-9A-F]{0,200}") {
        let _ = Baggage::decode_bytes(&bytes);
        if let Ok(b) = s.parse::<Baggage>() {
            prop_assert_eq!(b.to_string().parse::<Baggage>().unwrap(), b);
        }
    }

    #[test]
    fn extract_never_panics(pairs in vec((prop::sample::select(vec![
        "grpc-timeout", "traceparent", "tracestate", "baggage", "x-label", "other",
    ]), vec(any::<u8>(), 0..80)), 0..8)) {
        let mut h = HeaderMap::new();
        for (name, value) in &pairs {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        let accept = Accept::new().key::<Label>();
        if let Ok((ctx, _c)) = propagation::extract(&h, &Context::background(), &accept, Instant::now()) {
            let mut out = HeaderMap::new();
            propagation::inject(&ctx, &mut out).unwrap();
            let (again, _c) = propagation::extract(&out, &Context::background(), &accept, Instant::now()).unwrap();
            prop_assert_eq!(again.value::<Label>(), ctx.value::<Label>());
        }
    }

    #[test]
    fn travelling_values_round_trip(value in "[ -~]{1,100}") {
        let ctx = Context::background().with_value::<Label>(value.clone());
        let mut h = HeaderMap::new();
        propagation::inject(&ctx, &mut h).unwrap();
        let (back, _c) = propagation::extract(&h, &Context::background(), &Accept::new().key::<Label>(), Instant::now()).unwrap();
        prop_assert_eq!(back.value::<Label>(), Some(&value));
    }

    /// The strict parsers are the carrier's no matter what: the same fields in a `HashMap` and
    /// in an `http::HeaderMap` give the same context, or the same error.
    #[test]
    fn every_carrier_is_read_as_strictly_as_http_headers(fields in btree_map(
        prop::sample::select(vec![
            "grpc-timeout", "traceparent", "tracestate", "baggage", "x-label", "other",
        ]),
        prop_oneof![
            "[ -~]{0,60}",
            "[0-9]{1,9}[HMSmunx]",
            "(00|cc|ff)-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[a-z]{0,4})?",
            "[a-z]{1,5}=[a-z0-9]{0,5}(,[a-z]{1,5}=[a-z0-9]{0,5}){0,3}",
        ],
        0..6,
    )) {
        let map: HashMap<String, String> =
            fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let mut h = HeaderMap::new();
        for (k, v) in &fields {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        let accept = Accept::new().key::<Label>();
        let arrived = Instant::now();
        let from_map = propagation::extract(&map, &Context::background(), &accept, arrived);
        let from_http = propagation::extract(&h, &Context::background(), &accept, arrived);
        match (from_map, from_http) {
            (Ok((a, _ca)), Ok((b, _cb))) => {
                prop_assert_eq!(a.deadline(), b.deadline());
                prop_assert_eq!(a.value::<Label>(), b.value::<Label>());
                prop_assert_eq!(a.value::<Baggage>(), b.value::<Baggage>());
                let (ta, tb) = (a.value::<TraceContext>().unwrap(), b.value::<TraceContext>().unwrap());
                prop_assert_eq!(ta.parent_span_id(), tb.parent_span_id());
                if ta.parent_span_id().is_some() {
                    prop_assert_eq!(ta.trace_id(), tb.trace_id()); // both continued the trace
                }
                prop_assert_eq!(ta.state(), tb.state());
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "map: {:?}, http: {:?}", a.map(|p| p.0), b.map(|p| p.0)),
        }
    }

    /// The clock-skew rule, end to end through a carrier: a message whose send and deadline
    /// times are shifted by `shift_ms` (negative: it waited in a queue, or the sender's clock is
    /// behind; positive: the sender's clock is ahead) gets `min(budget, deadline - now)`: never
    /// more than the budget it was sent with, the time it waited counted in full, and an
    /// expired context when that leaves nothing.
    #[test]
    fn a_deadline_through_a_queue_follows_the_clock_skew_rule(
        budget_ms in 1u64..20_000,
        shift_ms in -40_000i64..40_000,
    ) {
        let budget = Duration::from_millis(budget_ms);
        let (start, start_wall) = (Instant::now(), SystemTime::now());
        let (job, _cancel) = Context::background()
            .with_value::<Label>("job-1".into())
            .with_deadline(start + budget);
        let mut message = HashMap::new();
        propagation::inject_with(&job, &mut message, DeadlineFormat::Absolute).unwrap();
        for field in ["ctxkit-deadline", "ctxkit-sent"] {
            let t: i128 = message[field].parse().unwrap();
            message.insert(field.to_owned(), (t + i128::from(shift_ms) * 1_000_000).to_string());
        }
        let sent_budget = GrpcTimeout::decode_bytes(message["grpc-timeout"].as_bytes()).unwrap();

        let accept = Accept::new().key::<Label>().deadline_format(DeadlineFormat::Absolute);
        let arrived = Instant::now();
        let (ctx, _done) =
            propagation::extract(&message, &Context::background(), &accept, arrived).unwrap();
        // What this test itself measured between making the job and reading the message, on
        // both clocks the rule and the conversion read (and a millisecond for reading them).
        let elapsed = start.elapsed().max(start_wall.elapsed().unwrap_or_default())
            + Duration::from_millis(1);

        let given = ctx.deadline().unwrap().saturating_duration_since(arrived);
        prop_assert!(given <= sent_budget, "{given:?} > the budget sent, {sent_budget:?}");
        let waited = Duration::from_millis(shift_ms.unsigned_abs());
        if shift_ms < 0 {
            prop_assert!(given <= budget.saturating_sub(waited), "{given:?}: the wait was not counted");
            prop_assert!(given + elapsed >= budget.saturating_sub(waited), "{given:?}");
        } else {
            prop_assert!(given + elapsed >= budget, "{given:?}: a sender ahead cost time");
        }
        if shift_ms < 0 && waited >= sent_budget {
            // Expired while it waited: the receiver must not start the work.
            prop_assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
        }
        // The rest of the context travels with it.
        prop_assert_eq!(ctx.value::<Label>().map(String::as_str), Some("job-1"));
    }

    /// Whatever arrives in a broker message's deadline fields, extract never panics, and an error
    /// names one of them.
    #[test]
    fn broker_deadline_fields_never_panic_and_errors_name_them(
        deadline in prop::option::of("[ -~]{0,24}"),
        sent in prop::option::of("[0-9]{0,21}"),
        budget in prop::option::of("[0-9]{1,9}[HMSmun]"),
    ) {
        let mut message = HashMap::new();
        for (field, value) in [("ctxkit-deadline", deadline), ("ctxkit-sent", sent), ("grpc-timeout", budget)] {
            if let Some(v) = value {
                message.insert(field.to_owned(), v);
            }
        }
        let accept = Accept::new().deadline_format(DeadlineFormat::Absolute);
        match propagation::extract(&message, &Context::background(), &accept, Instant::now()) {
            Ok((ctx, _done)) => prop_assert_eq!(ctx.deadline().is_some(), !message.is_empty()),
            Err(e) => prop_assert!(
                ["ctxkit-deadline", "ctxkit-sent", "grpc-timeout"].contains(&e.header()),
                "{e}"
            ),
        }
    }
}
