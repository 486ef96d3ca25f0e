//! `baggage`: never panics; limits hold; whatever parses prints back to a value that parses the
//! same, and what is sent is always whole members within the limits.
#![no_main]

use ctxkit::propagation::Baggage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Baggage::decode_bytes(data) {
        assert!(b.len() <= Baggage::MAX_MEMBERS);
        let text = b.to_string();
        if text.len() <= Baggage::MAX_BYTES {
            assert_eq!(text.parse::<Baggage>().unwrap(), b);
        }
        if let Some(sent) = b.to_header_value() {
            assert!(sent.len() <= Baggage::MAX_BYTES);
            let back = Baggage::decode_bytes(sent.as_bytes()).unwrap();
            for m in back.iter() {
                assert_eq!(b.member(m.key()), Some(m));
            }
        }
    }
});
