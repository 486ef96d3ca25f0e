//! `grpc-timeout`: never panics; whatever decodes re-encodes to the same duration.
#![no_main]

use ctxkit::propagation::GrpcTimeout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = GrpcTimeout::decode_bytes(data) {
        let again = GrpcTimeout::encode(d);
        assert!(again.len() <= 9);
        assert_eq!(GrpcTimeout::decode(&again).unwrap(), d);
    }
});
