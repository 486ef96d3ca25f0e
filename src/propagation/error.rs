//! [`PropagationError`]: what could not be read from a carrier, or written into one.

use std::fmt;

use super::{BAGGAGE, GRPC_TIMEOUT, TRACEPARENT, TRACESTATE};

/// The most characters of an offending value kept in an error.
const MAX_SHOWN: usize = 1024;

/// A field (header) that could not be read, or a context that could not be written. Each variant
/// names its field and carries the offending value (lossily as text, cut after 1024 bytes) and
/// why it was rejected.
///
/// ```
/// use ctxkit::propagation::{GrpcTimeout, PropagationError};
///
/// let err = GrpcTimeout::decode_bytes(b"10s").unwrap_err();
/// assert!(matches!(&err, PropagationError::GrpcTimeout { value, .. } if value == "10s"));
/// assert_eq!(err.header(), "grpc-timeout");
/// assert_eq!(
///     err.to_string(),
///     r#"invalid grpc-timeout header "10s": unknown unit (expected one of H, M, S, m, u, n)"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropagationError {
    /// `grpc-timeout` is not 1-8 digits and a unit, or the header is repeated.
    GrpcTimeout {
        /// The value received.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `traceparent` is malformed (a receiver starts a new trace).
    TraceParent {
        /// The value received.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `tracestate` is malformed (a receiver drops it whole).
    TraceState {
        /// The (combined) value received.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `baggage` is malformed (a receiver drops it whole).
    Baggage {
        /// The offending member, or the whole value when it is too long.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field of a deadline sent as an absolute time ([`DeadlineFormat::Absolute`](super::DeadlineFormat::Absolute)):
    /// `ctxkit-deadline` or `ctxkit-sent` malformed, repeated or missing its companions, or the
    /// sender's clock unreadable.
    Deadline {
        /// The field at fault.
        header: &'static str,
        /// The value received (empty when the field is missing).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An accepted travelling key's header could not be decoded, or a key's value cannot be sent
    /// (too long, or not visible ASCII).
    Key {
        /// The key's header.
        header: &'static str,
        /// The value received or to be sent.
        value: String,
        /// What is wrong with it (for a received value, the key's decoder's error).
        reason: String,
    },
    /// A travelling key's header cannot carry it: one with a meaning of its own (`grpc-timeout`,
    /// `traceparent`, …) or not a lower-case header name. The derive rejects both at compile
    /// time; this catches hand-written `ContextKey` impls when their value is sent.
    KeyHeader {
        /// The key type.
        key: &'static str,
        /// Its `ContextKey::HEADER`.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two different keys travel in one header: a receiver could not tell their values apart, so
    /// neither is sent.
    KeyConflict {
        /// The header both name.
        header: &'static str,
        /// The two key types.
        keys: [&'static str; 2],
    },
}

fn shown(value: &[u8]) -> String {
    if value.len() <= MAX_SHOWN {
        return String::from_utf8_lossy(value).into_owned();
    }
    let mut s = String::from_utf8_lossy(&value[..MAX_SHOWN]).into_owned();
    s.push('…');
    s
}

impl PropagationError {
    pub(crate) fn grpc_timeout(value: &[u8], reason: &'static str) -> Self {
        PropagationError::GrpcTimeout {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn traceparent(value: &[u8], reason: &'static str) -> Self {
        PropagationError::TraceParent {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn tracestate(value: &[u8], reason: &'static str) -> Self {
        PropagationError::TraceState {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn baggage(value: &[u8], reason: &'static str) -> Self {
        PropagationError::Baggage {
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn deadline(header: &'static str, value: &[u8], reason: &'static str) -> Self {
        PropagationError::Deadline {
            header,
            value: shown(value),
            reason,
        }
    }
    pub(crate) fn key(header: &'static str, value: &[u8], reason: impl Into<String>) -> Self {
        PropagationError::Key {
            header,
            value: shown(value),
            reason: reason.into(),
        }
    }

    /// The name of the header (field) at fault.
    pub fn header(&self) -> &'static str {
        match self {
            PropagationError::GrpcTimeout { .. } => GRPC_TIMEOUT,
            PropagationError::TraceParent { .. } => TRACEPARENT,
            PropagationError::TraceState { .. } => TRACESTATE,
            PropagationError::Baggage { .. } => BAGGAGE,
            PropagationError::Deadline { header, .. }
            | PropagationError::Key { header, .. }
            | PropagationError::KeyHeader { header, .. }
            | PropagationError::KeyConflict { header, .. } => header,
        }
    }

    /// The offending value, as text; empty for the errors about keys rather than values
    /// ([`KeyHeader`](PropagationError::KeyHeader), [`KeyConflict`](PropagationError::KeyConflict)).
    pub fn value(&self) -> &str {
        match self {
            PropagationError::GrpcTimeout { value, .. }
            | PropagationError::TraceParent { value, .. }
            | PropagationError::TraceState { value, .. }
            | PropagationError::Baggage { value, .. }
            | PropagationError::Deadline { value, .. }
            | PropagationError::Key { value, .. } => value,
            PropagationError::KeyHeader { .. } | PropagationError::KeyConflict { .. } => "",
        }
    }
}

impl fmt::Display for PropagationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason: &str = match self {
            PropagationError::GrpcTimeout { reason, .. }
            | PropagationError::TraceParent { reason, .. }
            | PropagationError::TraceState { reason, .. }
            | PropagationError::Baggage { reason, .. }
            | PropagationError::Deadline { reason, .. } => reason,
            PropagationError::Key { reason, .. } => reason,
            PropagationError::KeyHeader {
                key,
                header,
                reason,
            } => {
                return write!(
                    f,
                    "key `{key}` cannot travel in header {header:?}: {reason}"
                );
            }
            PropagationError::KeyConflict {
                header,
                keys: [a, b],
            } => {
                return write!(
                    f,
                    "keys `{a}` and `{b}` both travel in header {header:?}, so a receiver could \
                     not tell their values apart: give each key its own header"
                );
            }
        };
        write!(
            f,
            "invalid {} header {:?}: {reason}",
            self.header(),
            self.value()
        )
    }
}

impl std::error::Error for PropagationError {}
