//! W3C Trace Context: the `traceparent` header, and [`TraceContext`], a request's trace as a
//! context value.

use std::fmt;
use std::str::FromStr;

use super::{PropagationError, TraceState};
use crate::ContextKey;

/// The length of a version-00 `traceparent`: `vv-32hex-16hex-ff`.
const LEN_V00: usize = 55;
/// Longest `traceparent` read at all (higher versions may append fields).
pub(crate) const MAX_TRACEPARENT_BYTES: usize = 512;

/// A W3C `traceparent` header: trace id, parent (span) id and trace flags, as version `00`
/// defines them.
///
/// Parsing is strict, as the specification asks: lower-case hex only, exact field lengths,
/// all-zero ids and version `ff` are invalid; a version-00 header is exactly 55 characters, while
/// a higher (unknown) version is read by its version-00 prefix and may carry more fields after a
/// dash. All flag bits are kept (`0x01` sampled, `0x02` random, and any others).
///
/// A value always prints as version `00` with the four fields it understands: a header of a
/// higher version (`cc-…-01`, `01-…-01-extra`) is forwarded as `00-…-01`, never under a version
/// whose other fields it would not carry.
///
/// ```
/// use ctxkit::propagation::TraceParent;
///
/// let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03".parse().unwrap();
/// assert_eq!(tp.trace_id()[0], 0x4b);
/// assert_eq!(tp.parent_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
/// assert!(tp.sampled() && tp.random());
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
///
/// assert!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
///
/// // A higher version is read by its version-00 prefix and forwarded as version 00.
/// let newer: TraceParent =
///     "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever".parse().unwrap();
/// assert_eq!(newer.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Flag bit: the caller may have recorded this trace.
    pub const SAMPLED: u8 = 0x01;
    /// Flag bit (Trace Context level 2): the trace id's right 7 bytes are random.
    pub const RANDOM: u8 = 0x02;

    /// A version-00 `traceparent`. All-zero ids are invalid.
    pub fn new(
        trace_id: [u8; 16],
        parent_id: [u8; 8],
        flags: u8,
    ) -> Result<TraceParent, PropagationError> {
        let tp = TraceParent {
            trace_id,
            parent_id,
            flags,
        };
        if trace_id == [0; 16] {
            return Err(PropagationError::traceparent(
                tp.to_string().as_bytes(),
                "all-zero trace-id",
            ));
        }
        if parent_id == [0; 8] {
            return Err(PropagationError::traceparent(
                tp.to_string().as_bytes(),
                "all-zero parent-id",
            ));
        }
        Ok(tp)
    }

    /// The trace id, 16 bytes, never all zero.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the caller's span, 8 bytes, never all zero.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// All 8 flag bits, as received.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the sampled flag (`0x01`) is set.
    pub fn sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// Whether the random flag (`0x02`) is set.
    pub fn random(&self) -> bool {
        self.flags & Self::RANDOM != 0
    }

    /// [`TraceParent::decode_bytes`] on a header value.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn decode(value: &http::HeaderValue) -> Result<TraceParent, PropagationError> {
        Self::decode_bytes(value.as_bytes())
    }

    /// Parses a `traceparent` value (see the type's documentation for the rules).
    pub fn decode_bytes(s: &[u8]) -> Result<TraceParent, PropagationError> {
        let bad = |reason| Err(PropagationError::traceparent(s, reason));
        if s.len() > MAX_TRACEPARENT_BYTES {
            return bad("longer than 512 bytes");
        }
        if s.len() < LEN_V00 {
            return bad("shorter than 55 characters");
        }
        let Some(version) = hex_byte(&s[0..2]) else {
            return bad("version is not 2 lower-case hex digits");
        };
        if version == 0xff {
            return bad("version ff is invalid");
        }
        if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return bad("fields are not separated by dashes");
        }
        let mut trace_id = [0u8; 16];
        if !hex_into(&s[3..35], &mut trace_id) {
            return bad("trace-id is not 32 lower-case hex digits");
        }
        let mut parent_id = [0u8; 8];
        if !hex_into(&s[36..52], &mut parent_id) {
            return bad("parent-id is not 16 lower-case hex digits");
        }
        let Some(flags) = hex_byte(&s[53..55]) else {
            return bad("trace-flags are not 2 lower-case hex digits");
        };
        if s.len() > LEN_V00 {
            if version == 0 {
                return bad("version 00 has exactly 4 fields");
            }
            if s[LEN_V00] != b'-' {
                return bad("trace-flags are not followed by a dash or the end");
            }
        }
        if trace_id == [0; 16] {
            return bad("all-zero trace-id");
        }
        if parent_id == [0; 8] {
            return bad("all-zero parent-id");
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The header value (always valid).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn to_header_value(&self) -> http::HeaderValue {
        http::HeaderValue::try_from(self.to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

impl FromStr for TraceParent {
    type Err = PropagationError;
    fn from_str(s: &str) -> Result<TraceParent, PropagationError> {
        TraceParent::decode_bytes(s.as_bytes())
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the version whose fields this value holds: a higher version's extra fields are
        // not carried, so forwarding its number would be a lie.
        f.write_str("00-")?;
        write_hex(f, &self.trace_id)?;
        f.write_str("-")?;
        write_hex(f, &self.parent_id)?;
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some(hex_digit(two[0])? << 4 | hex_digit(two[1])?)
}

fn hex_into(src: &[u8], out: &mut [u8]) -> bool {
    for (pair, o) in src.chunks_exact(2).zip(out.iter_mut()) {
        match hex_byte(pair) {
            Some(b) => *o = b,
            None => return false,
        }
    }
    true
}

/// A request's W3C trace context, as stored in its [`Context`](crate::Context) by
/// [`extract`](super::extract) and sent on by [`inject`](super::inject): the trace id, the span id
/// of this hop, the caller's span id and flags, and the vendors' `tracestate`.
///
/// It is also the [`ContextKey`] it is stored under: `ctx.value::<TraceContext>()`.
///
/// ```
/// use ctxkit::Context;
/// use ctxkit::propagation::{TraceContext, TraceParent, TraceState};
///
/// let incoming: TraceParent =
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// let ours = TraceContext::child_of(&incoming, TraceState::default());
/// assert_eq!(ours.trace_id(), incoming.trace_id()); // same trace
/// assert_eq!(ours.parent_span_id(), Some(incoming.parent_id()));
/// assert_ne!(ours.span_id(), incoming.parent_id()); // our own span
/// // What goes downstream names our span as the parent:
/// assert_eq!(ours.traceparent().parent_id(), ours.span_id());
///
/// let ctx = Context::background().with_value::<TraceContext>(ours.clone());
/// assert_eq!(ctx.value::<TraceContext>(), Some(&ours));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    flags: u8,
    state: TraceState,
}

impl ContextKey for TraceContext {
    type Value = TraceContext;
}

impl TraceContext {
    /// A new trace: random trace and span ids, the random flag set, not sampled, no state.
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: random_nonzero_u128().to_be_bytes(),
            span_id: random_nonzero_u64().to_be_bytes(),
            parent_span_id: None,
            flags: TraceParent::RANDOM,
            state: TraceState::default(),
        }
    }

    /// This hop's part of the caller's trace: same trace id and flags, a new random span id, the
    /// caller's span as parent, and the caller's `tracestate`.
    pub fn child_of(parent: &TraceParent, state: TraceState) -> TraceContext {
        TraceContext {
            trace_id: parent.trace_id,
            span_id: random_nonzero_u64().to_be_bytes(),
            parent_span_id: Some(parent.parent_id),
            flags: parent.flags,
            state,
        }
    }

    /// A trace context with these exact ids: this hop's span as another tracer (OpenTelemetry)
    /// made it, so that both name the same span.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn from_parts(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_span_id: Option<[u8; 8]>,
        flags: u8,
        state: TraceState,
    ) -> TraceContext {
        TraceContext {
            trace_id,
            span_id,
            parent_span_id,
            flags,
            state,
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span id of this hop, sent downstream as the parent id.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The caller's span id, if this hop continues a received trace.
    pub fn parent_span_id(&self) -> Option<[u8; 8]> {
        self.parent_span_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The vendors' `tracestate`.
    pub fn state(&self) -> &TraceState {
        &self.state
    }

    /// The `traceparent` this hop sends downstream: version 00, this trace, this hop's span as the
    /// parent, the same flags.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
        }
    }

    /// The trace id as 32 lower-case hex digits, as logs usually show it.
    pub fn trace_id_hex(&self) -> String {
        let tp = self.traceparent().to_string();
        tp[3..35].to_owned()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TraceContext");
        d.field("traceparent", &format_args!("{}", self.traceparent()));
        if let Some(p) = self.parent_span_id {
            d.field(
                "parent_span_id",
                &format_args!("{:016x}", u64::from_be_bytes(p)),
            );
        }
        d.field("state", &format_args!("{}", self.state)).finish()
    }
}

fn random_nonzero_u128() -> u128 {
    loop {
        let v = fastrand::u128(..);
        if v != 0 {
            return v;
        }
    }
}

fn random_nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn parse(s: &str) -> Result<TraceParent, PropagationError> {
        s.parse()
    }

    #[test]
    fn parses_and_prints_version_00() {
        let tp = parse(VALID).unwrap();
        assert_eq!(tp.trace_id()[..2], [0x0a, 0xf7]);
        assert_eq!(tp.parent_id()[7], 0x31);
        assert_eq!(tp.flags(), 1);
        assert_eq!(tp.to_string(), VALID);
    }

    #[test]
    fn keeps_unknown_flags() {
        let tp = parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff").unwrap();
        assert_eq!(tp.flags(), 0xff);
        assert!(tp.random() && tp.sampled());
    }

    #[test]
    fn rejects_what_the_spec_calls_invalid() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
            "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0F",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(&err, PropagationError::TraceParent { value, .. } if value == bad),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid traceparent"), "{err}");
        }
    }

    #[test]
    fn reads_higher_versions_by_their_v00_prefix() {
        let tp =
            parse("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever").unwrap();
        assert_eq!(tp.flags(), 1);
        assert_eq!(tp, parse(VALID).unwrap());
        parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        // Still: the flags end the string or are followed by a dash.
        assert!(parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x").is_err());
        assert!(parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0").is_err());
    }

    #[test]
    fn higher_versions_are_forwarded_as_version_00_with_the_fields_it_understands() {
        for newer in [
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            let tp = parse(newer).unwrap();
            assert_eq!(tp.to_string(), VALID, "{newer}");
            #[cfg(feature = "http")]
            assert_eq!(tp.to_header_value(), VALID, "{newer}");
            assert_eq!(parse(&tp.to_string()).unwrap(), tp, "{newer}");
        }
    }

    #[test]
    fn new_rejects_zero_ids() {
        assert!(TraceParent::new([0; 16], [1; 8], 0).is_err());
        assert!(TraceParent::new([1; 16], [0; 8], 0).is_err());
        let tp = TraceParent::new([1; 16], [2; 8], 3).unwrap();
        assert_eq!(parse(&tp.to_string()).unwrap(), tp);
    }

    #[test]
    fn roots_are_random_and_valid() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.parent_span_id(), None);
        let tp = a.traceparent();
        assert_eq!(parse(&tp.to_string()).unwrap(), tp);
        assert!(tp.random() && !tp.sampled());
        assert_eq!(a.trace_id_hex().len(), 32);
    }
}
