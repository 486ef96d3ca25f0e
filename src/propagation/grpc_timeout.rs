//! gRPC's `grpc-timeout` header: a deadline sent as the remaining budget.

use std::time::Duration;

use super::PropagationError;

/// The largest number a `grpc-timeout` may carry: 8 ASCII digits.
const MAX_DIGITS_VALUE: u128 = 99_999_999;

/// Units from the finest to the coarsest, with their length in nanoseconds.
const UNITS: [(u128, u8); 6] = [
    (1, b'n'),
    (1_000, b'u'),
    (1_000_000, b'm'),
    (1_000_000_000, b'S'),
    (60 * 1_000_000_000, b'M'),
    (3_600 * 1_000_000_000, b'H'),
];

/// The codec of gRPC's `grpc-timeout` header: 1 to 8 ASCII digits followed by a unit, one of `H`
/// (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n`
/// (nanoseconds).
///
/// A deadline travels as the budget left at send time, never as a wall-clock time, so the clocks
/// of the two hosts never need to agree.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::propagation::GrpcTimeout;
///
/// let v = GrpcTimeout::encode_text(Duration::from_millis(1500));
/// assert_eq!(v, "1500000u"); // the finest unit that fits in 8 digits
/// assert_eq!(GrpcTimeout::decode_bytes(v.as_bytes()).unwrap(), Duration::from_millis(1500));
///
/// let err = GrpcTimeout::decode_bytes(b"1.5S").unwrap_err();
/// assert!(err.to_string().contains("grpc-timeout"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcTimeout;

impl GrpcTimeout {
    /// The budget as a `grpc-timeout` value: in the finest unit whose count fits in 8 digits,
    /// rounded up (so the receiver never gets more time than was left, nor less than the unit
    /// allows). Budgets beyond `99999999H` (over 11 000 years) are sent as that.
    pub fn encode_text(budget: Duration) -> String {
        let nanos = budget.as_nanos();
        for (unit, suffix) in UNITS {
            let count = nanos.div_ceil(unit);
            if count <= MAX_DIGITS_VALUE {
                return format!("{count}{}", suffix as char);
            }
        }
        "99999999H".to_owned()
    }

    /// [`GrpcTimeout::encode_text`] as a header value.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn encode(budget: Duration) -> http::HeaderValue {
        // Digits and an ASCII letter are always a valid header value.
        http::HeaderValue::try_from(Self::encode_text(budget))
            .unwrap_or_else(|_| http::HeaderValue::from_static("99999999H"))
    }

    /// [`GrpcTimeout::decode_bytes`] on a header value.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn decode(value: &http::HeaderValue) -> Result<Duration, PropagationError> {
        Self::decode_bytes(value.as_bytes())
    }

    /// Reads a `grpc-timeout` value. Anything but 1-8 ASCII digits followed by one unit letter is
    /// a [`PropagationError::GrpcTimeout`] carrying the value.
    pub fn decode_bytes(value: &[u8]) -> Result<Duration, PropagationError> {
        let bad = |reason| PropagationError::grpc_timeout(value, reason);
        let Some((&unit, digits)) = value.split_last() else {
            return Err(bad("empty"));
        };
        if digits.is_empty() {
            return Err(bad("no digits before the unit"));
        }
        if digits.len() > 8 {
            return Err(bad("more than 8 digits"));
        }
        let mut count: u64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(bad(
                    "expected ASCII digits followed by one of H, M, S, m, u, n",
                ));
            }
            count = count * 10 + u64::from(d - b'0');
        }
        Ok(match unit {
            b'H' => Duration::from_secs(count * 3_600),
            b'M' => Duration::from_secs(count * 60),
            b'S' => Duration::from_secs(count),
            b'm' => Duration::from_millis(count),
            b'u' => Duration::from_micros(count),
            b'n' => Duration::from_nanos(count),
            _ => return Err(bad("unknown unit (expected one of H, M, S, m, u, n)")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(d: Duration) -> String {
        GrpcTimeout::encode_text(d)
    }

    #[test]
    fn encodes_in_the_finest_unit_that_fits() {
        assert_eq!(enc(Duration::ZERO), "0n");
        assert_eq!(enc(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(enc(Duration::from_nanos(100_000_000)), "100000u");
        assert_eq!(enc(Duration::from_nanos(100_000_001)), "100001u"); // rounded up
        assert_eq!(enc(Duration::from_secs(1)), "1000000u");
        assert_eq!(enc(Duration::from_secs(100_000)), "100000S");
        assert_eq!(enc(Duration::from_secs(99_999_999 * 3_600)), "99999999H");
        assert_eq!(enc(Duration::MAX), "99999999H");
    }

    #[test]
    fn decodes_every_unit() {
        let d = |s: &str| GrpcTimeout::decode_bytes(s.as_bytes());
        assert_eq!(d("2H").unwrap(), Duration::from_secs(7_200));
        assert_eq!(d("3M").unwrap(), Duration::from_secs(180));
        assert_eq!(d("4S").unwrap(), Duration::from_secs(4));
        assert_eq!(d("5m").unwrap(), Duration::from_millis(5));
        assert_eq!(d("6u").unwrap(), Duration::from_micros(6));
        assert_eq!(d("00000007n").unwrap(), Duration::from_nanos(7));
        assert_eq!(
            d("99999999H").unwrap(),
            Duration::from_secs(99_999_999 * 3_600)
        );
    }

    #[test]
    fn rejects_malformed_values_naming_them() {
        for bad in [
            "",
            "S",
            "1",
            "123456789S",
            "1s",
            "1h",
            "-1S",
            "+1S",
            " 1S",
            "1S ",
            "1.5S",
            "1SS",
            "١S",
        ] {
            let err = GrpcTimeout::decode_bytes(bad.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, PropagationError::GrpcTimeout { value, .. } if value == bad),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid grpc-timeout"), "{err}");
        }
    }
}
