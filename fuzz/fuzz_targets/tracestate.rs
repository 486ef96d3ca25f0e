//! `tracestate`: never panics; whatever parses prints back to a value that parses the same,
//! split over several headers or not.
#![no_main]

use ctxkit::propagation::TraceState;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ts) = TraceState::decode_bytes(data) {
        assert!(ts.len() <= TraceState::MAX_MEMBERS);
        let text = ts.to_string();
        assert_eq!(text.parse::<TraceState>().unwrap(), ts);
        // The same members sent one header each combine to the same list.
        let values: Vec<HeaderValue> = ts
            .iter()
            .map(|(k, v)| HeaderValue::try_from(format!("{k}={v}")).unwrap())
            .collect();
        assert_eq!(TraceState::decode_all(&values).unwrap(), ts);
    }
});
