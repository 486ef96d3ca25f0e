//! `extract` on arbitrary headers (one `name: value` per line), reading deadlines as budgets or,
//! when the input starts with `!`, as absolute times (a broker message): never panics; the
//! deadline never outlives the local maximum; what it builds injects back to headers that
//! extract again.
#![no_main]

use std::time::Duration;

use ctxkit::propagation::{self, Accept, DeadlineFormat, TraceContext};
use ctxkit::{BoxError, Context, ContextKey, Instant};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

struct RequestId;
impl ContextKey for RequestId {
    type Value = String;
    const HEADER: Option<&'static str> = Some("x-request-id");
    fn encode(v: &String) -> Option<String> {
        Some(v.clone())
    }
    fn decode(s: &str) -> Result<String, BoxError> {
        if s.is_empty() {
            return Err("empty".into());
        }
        Ok(s.to_owned())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            headers.append(n, v);
        }
    }
    let format = match data.first() {
        Some(b'!') => DeadlineFormat::Absolute,
        _ => DeadlineFormat::Budget,
    };
    let max = Duration::from_secs(3600);
    let accept = Accept::new()
        .key::<RequestId>()
        .max_timeout(max)
        .deadline_format(format);
    let arrived = Instant::now();
    match propagation::extract(&headers, &Context::background(), &accept, arrived) {
        Ok((ctx, _cancel)) => {
            let deadline = ctx.deadline().expect("max_timeout sets a deadline");
            assert!(deadline <= arrived + max);
            assert!(ctx.value::<TraceContext>().is_some());
            let mut out = HeaderMap::new();
            propagation::inject_with(&ctx, &mut out, format)
                .expect("what extract builds, inject writes");
            let (again, _c) =
                propagation::extract(&out, &Context::background(), &accept, Instant::now())
                    .expect("what inject writes, extract reads");
            assert_eq!(
                again.value::<TraceContext>().unwrap().trace_id(),
                ctx.value::<TraceContext>().unwrap().trace_id()
            );
            assert_eq!(again.value::<RequestId>(), ctx.value::<RequestId>());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
