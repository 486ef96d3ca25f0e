//! Which header names a travelling key may use, checked in `const` so that `Accept::key` rejects
//! a bad one at compile time.

use super::{BAGGAGE, CTXKIT_CANCEL, CTXKIT_DEADLINE, CTXKIT_ERROR, CTXKIT_SENT};
use super::{GRPC_TIMEOUT, TRACEPARENT, TRACESTATE};

/// The headers with a meaning of their own, which no travelling key may use.
///
/// The derive (`ctxkit-macros`, a proc-macro crate, which cannot share constants with this one)
/// keeps a copy to reject them at compile time; `tests/derive.rs` checks that both lists agree.
pub const RESERVED_HEADERS: [&str; 8] = [
    GRPC_TIMEOUT,
    TRACEPARENT,
    TRACESTATE,
    BAGGAGE,
    CTXKIT_DEADLINE,
    CTXKIT_SENT,
    CTXKIT_CANCEL,
    CTXKIT_ERROR,
];

/// Why `name` cannot be a travelling key's header, if it cannot: it must be a lower-case HTTP
/// token (RFC 9110) and not one of [`RESERVED_HEADERS`].
pub(crate) const fn header_problem(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Some("the header name is empty");
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let token = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        if !token {
            return Some("not a lower-case header name");
        }
        i += 1;
    }
    let mut r = 0;
    while r < RESERVED_HEADERS.len() {
        if bytes_eq(b, RESERVED_HEADERS[r].as_bytes()) {
            return Some("the header carries the context's own deadline or trace");
        }
        r += 1;
    }
    None
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_tokens_that_are_not_reserved_are_fine() {
        assert_eq!(header_problem("x-request-id"), None);
        assert_eq!(header_problem("x_tenant.v2"), None);
        assert!(header_problem("").is_some());
        assert!(header_problem("X-Request-Id").is_some());
        assert!(header_problem("x request").is_some());
        assert!(header_problem("x:y").is_some());
        for reserved in RESERVED_HEADERS {
            assert!(header_problem(reserved).is_some(), "{reserved}");
        }
    }
}
