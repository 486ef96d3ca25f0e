//! How a deadline travels: as the remaining budget over a direct call, or as an absolute time
//! with the budget and the send time over a broker, where a message may wait in a queue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{CTXKIT_DEADLINE, CTXKIT_SENT, Extractor, GRPC_TIMEOUT, GrpcTimeout, Injector};
use super::{PropagationError, single};

/// The most digits of a Unix time in nanoseconds (`u64::MAX` has 20).
const MAX_UNIX_NANOS_DIGITS: usize = 20;

/// How a deadline travels: what [`inject_with`](super::inject_with) writes, and what
/// [`Accept::deadline_format`](super::Accept::deadline_format) makes
/// [`extract`](super::extract) read.
///
/// # The clock-skew rule
///
/// A message sent with [`DeadlineFormat::Absolute`] carries the sender's deadline `D` and send
/// time `S` (both on the sender's wall clock) and the budget `B` it had left (`D = S + B`, `B`
/// rounded up). The receiver, whose wall clock reads `N` when the message arrives, gives it
///
/// > **min(B, D − N)**, and nothing once that is zero or less.
///
/// - **The clocks agree**: `D − N = B − (N − S)` is the budget minus the time the message
///   waited (in the queue, in transit), exactly what is left.
/// - **The receiver's clock is behind** (or the sender's ahead): `D − N` would be more than the
///   budget; `B` caps it. Skew can never extend a deadline, nor make a message wait longer than
///   its sender allowed it to run.
/// - **The receiver's clock is ahead by Δ**: the message gets Δ less and may expire up to Δ
///   early. That is the safe side: no work runs that its sender has given up on. Keep the hosts'
///   clocks synchronised (NTP keeps them within milliseconds): the error is bounded by the skew.
///
/// No tolerance is added: a message that waited beyond its deadline is expired, and a receiver
/// must not start its work (its context's [`err()`](crate::Context::err) is already set). `S`
/// adds nothing to the rule; it lets the receiver see how long a message waited (`N − S`) and
/// tell one that expired in the queue from one sent with no time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadlineFormat {
    /// `grpc-timeout`: the budget left at send time, counted by the receiver from the request's
    /// arrival. For HTTP and gRPC calls, which cannot wait between the two hosts: their clocks
    /// never need to agree.
    #[default]
    Budget,
    /// For broker messages, which may wait in a queue longer than any budget: `ctxkit-deadline`
    /// (the deadline as a Unix time in nanoseconds, decimal), `ctxkit-sent` (the send time,
    /// likewise) and `grpc-timeout` (the budget at send time), read with [the clock-skew
    /// rule](DeadlineFormat#the-clock-skew-rule). A message with a `grpc-timeout` alone is
    /// rejected: a budget cannot count the time it waited.
    Absolute,
}

/// A Unix time in nanoseconds: the wire form of `ctxkit-deadline` and `ctxkit-sent`.
fn unix_nanos(t: SystemTime) -> Option<u64> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

/// Writes a deadline `budget` from `now` (the sender's wall clock) as an absolute time.
pub(crate) fn write_absolute<I: Injector + ?Sized>(
    carrier: &mut I,
    budget: Duration,
    now: SystemTime,
) -> Result<(), PropagationError> {
    let Some(sent) = unix_nanos(now) else {
        return Err(PropagationError::deadline(
            CTXKIT_SENT,
            b"",
            "the sender's clock is not between 1970 and 2554",
        ));
    };
    let budget_nanos = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
    let deadline = sent.saturating_add(budget_nanos);
    carrier.set(CTXKIT_DEADLINE, deadline.to_string());
    carrier.set(CTXKIT_SENT, sent.to_string());
    carrier.set(GRPC_TIMEOUT, GrpcTimeout::encode_text(budget));
    Ok(())
}

/// The budget a message sent with [`DeadlineFormat::Absolute`] has left at `now` (the receiver's
/// wall clock), by the clock-skew rule; `None` when it carries no deadline.
pub(crate) fn read_absolute<E: Extractor + ?Sized>(
    carrier: &E,
    now: SystemTime,
) -> Result<Option<Duration>, PropagationError> {
    let field = |name: &'static str| -> Result<Option<&[u8]>, PropagationError> {
        single(carrier, name).map_err(|joined| match name {
            GRPC_TIMEOUT => PropagationError::grpc_timeout(&joined, "header repeated"),
            _ => PropagationError::deadline(name, &joined, "header repeated"),
        })
    };
    let (deadline, sent, budget) = (
        field(CTXKIT_DEADLINE)?,
        field(CTXKIT_SENT)?,
        field(GRPC_TIMEOUT)?,
    );
    let missing = |name| {
        PropagationError::deadline(
            name,
            b"",
            "missing: a deadline sent as an absolute time comes as ctxkit-deadline, ctxkit-sent \
             and grpc-timeout together",
        )
    };
    let (deadline, sent, budget) = match (deadline, sent, budget) {
        (None, None, None) => return Ok(None),
        (None, None, Some(_)) => {
            return Err(PropagationError::deadline(
                CTXKIT_DEADLINE,
                b"",
                "missing: a grpc-timeout alone cannot count the time a message waited in a \
                 queue; send it with DeadlineFormat::Absolute",
            ));
        }
        (Some(d), Some(s), Some(b)) => (d, s, b),
        (None, _, _) => return Err(missing(CTXKIT_DEADLINE)),
        (_, None, _) => return Err(missing(CTXKIT_SENT)),
        (_, _, None) => return Err(missing(GRPC_TIMEOUT)),
    };
    let deadline = decode_unix_nanos(CTXKIT_DEADLINE, deadline)?;
    let sent = decode_unix_nanos(CTXKIT_SENT, sent)?;
    let budget = GrpcTimeout::decode_bytes(budget)?;
    if deadline < sent {
        return Err(PropagationError::deadline(
            CTXKIT_DEADLINE,
            deadline.to_string().as_bytes(),
            "earlier than ctxkit-sent",
        ));
    }
    // Before 1970 or after 2554, the receiver's clock is as broken as can be: nothing is left.
    let now = unix_nanos(now).unwrap_or(u64::MAX);
    Ok(Some(remaining(budget, deadline, now)))
}

/// The clock-skew rule: `min(budget, deadline − now)`, never below zero.
fn remaining(budget: Duration, deadline: u64, now: u64) -> Duration {
    budget.min(Duration::from_nanos(deadline.saturating_sub(now)))
}

fn decode_unix_nanos(header: &'static str, value: &[u8]) -> Result<u64, PropagationError> {
    let bad = |reason| PropagationError::deadline(header, value, reason);
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.len() > MAX_UNIX_NANOS_DIGITS {
        return Err(bad("more than 20 digits"));
    }
    let mut n: u64 = 0;
    for &d in value {
        if !d.is_ascii_digit() {
            return Err(bad(
                "expected a Unix time in nanoseconds: ASCII digits only",
            ));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or_else(|| bad("beyond the year 2554"))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn the_rule_caps_at_the_budget_and_counts_the_wait() {
        let b = Duration::from_secs(10);
        // Clocks agree, no wait: the whole budget.
        assert_eq!(remaining(b, 110 * SEC, 100 * SEC), b);
        // Waited 4 s.
        assert_eq!(remaining(b, 110 * SEC, 104 * SEC), Duration::from_secs(6));
        // The receiver's clock is behind by 50 s: still no more than the budget.
        assert_eq!(remaining(b, 110 * SEC, 50 * SEC), b);
        // Waited past the deadline: nothing.
        assert_eq!(remaining(b, 110 * SEC, 111 * SEC), Duration::ZERO);
        assert_eq!(remaining(b, 110 * SEC, 110 * SEC), Duration::ZERO);
    }

    #[test]
    fn writes_three_fields_that_read_back() {
        let mut m = HashMap::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        write_absolute(&mut m, Duration::from_millis(1500), now).unwrap();
        assert_eq!(m[CTXKIT_SENT], "1700000000000000000");
        assert_eq!(m[CTXKIT_DEADLINE], "1700000001500000000");
        assert_eq!(m[GRPC_TIMEOUT], "1500000u");
        let later = now + Duration::from_millis(500);
        assert_eq!(
            read_absolute(&m, later).unwrap(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            read_absolute(&HashMap::<String, String>::new(), now).unwrap(),
            None
        );
    }

    #[test]
    fn malformed_or_partial_fields_are_errors_naming_them() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut good = HashMap::new();
        write_absolute(&mut good, Duration::from_secs(1), now).unwrap();
        for (field, value, reason) in [
            (CTXKIT_DEADLINE, "", "empty"),
            (CTXKIT_DEADLINE, "-1", "ASCII digits only"),
            (CTXKIT_SENT, "1.5", "ASCII digits only"),
            (CTXKIT_SENT, "99999999999999999999", "beyond the year 2554"),
            (
                CTXKIT_DEADLINE,
                "123456789012345678901",
                "more than 20 digits",
            ),
            (CTXKIT_DEADLINE, "1", "earlier than ctxkit-sent"),
        ] {
            let mut m = good.clone();
            m.insert(field.to_owned(), value.to_owned());
            let err = read_absolute(&m, now).unwrap_err();
            assert_eq!(err.header(), field, "{field}: {value:?}");
            assert!(err.to_string().contains(reason), "{err}");
        }
        for missing in [CTXKIT_DEADLINE, CTXKIT_SENT, GRPC_TIMEOUT] {
            let mut m = good.clone();
            m.remove(missing);
            let err = read_absolute(&m, now).unwrap_err();
            assert_eq!(err.header(), missing);
            assert!(err.to_string().contains("missing"), "{err}");
        }
        let only_budget = HashMap::from([(GRPC_TIMEOUT.to_owned(), "1S".to_owned())]);
        let err = read_absolute(&only_budget, now).unwrap_err();
        assert_eq!(err.header(), CTXKIT_DEADLINE);
        assert!(err.to_string().contains("queue"), "{err}");
    }
}
