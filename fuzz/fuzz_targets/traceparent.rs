//! `traceparent`: never panics; whatever parses prints back to a value that parses the same.
#![no_main]

use ctxkit::propagation::TraceParent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match TraceParent::decode_bytes(data) {
        Ok(tp) => {
            assert_ne!(tp.trace_id(), [0; 16]);
            assert_ne!(tp.parent_id(), [0; 8]);
            assert_ne!(tp.version(), 0xff);
            let text = tp.to_string();
            assert_eq!(text.len(), 55);
            assert_eq!(text.parse::<TraceParent>().unwrap(), tp);
            if tp.version() == 0 {
                assert_eq!(text.as_bytes(), data);
            }
        }
        Err(e) => assert_eq!(e.header(), "traceparent"),
    }
});
