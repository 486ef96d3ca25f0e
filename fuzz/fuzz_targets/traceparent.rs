//! `traceparent`: never panics; whatever parses prints back, as version 00, to a value that parses
//! the same.
#![no_main]

use ctxkit::propagation::TraceParent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match TraceParent::decode_bytes(data) {
        Ok(tp) => {
            assert_ne!(tp.trace_id(), [0; 16]);
            assert_ne!(tp.parent_id(), [0; 8]);
            assert_ne!(&data[..2], b"ff");
            let text = tp.to_string();
            assert_eq!(text.len(), 55);
            assert_eq!(text.parse::<TraceParent>().unwrap(), tp);
            // Always version 00 with the four fields it understands: a version-00 input prints
            // back byte for byte, a higher version as its version-00 prefix.
            assert_eq!(&text[..3], "00-");
            assert_eq!(&text.as_bytes()[2..], &data[2..55]);
        }
        Err(e) => assert_eq!(e.header(), "traceparent"),
    }
});
