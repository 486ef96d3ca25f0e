//! W3C Trace Context: the `tracestate` header.

use std::fmt;
use std::str::FromStr;

use super::PropagationError;

/// Longest combined `tracestate` read at all: 32 members of at most 256 + 1 + 256 characters,
/// with separators and some whitespace.
pub(crate) const MAX_TRACESTATE_BYTES: usize = 32 * 1024;

/// The W3C `tracestate` header: up to 32 vendor `key=value` members, most recent first.
///
/// Several `tracestate` headers are one list, combined in order (`decode_all` on HTTP headers; [`extract`](super::extract) on any carrier). The
/// list is all or nothing: a malformed member, a duplicate key or more than 32 members make the
/// whole header invalid, and a receiver then drops it (as [`extract`](super::extract) does). It is
/// only read at all when `traceparent` is valid.
///
/// ```
/// use ctxkit::propagation::TraceState;
///
/// let mut ts: TraceState = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE".parse().unwrap();
/// assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
/// ts.insert("ours", "1").unwrap(); // an updated member moves to the front
/// assert_eq!(ts.to_string(), "ours=1,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
///
/// assert!("Upper=1".parse::<TraceState>().is_err());
/// assert!("a=1,a=2".parse::<TraceState>().is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    /// The most members a `tracestate` may have.
    pub const MAX_MEMBERS: usize = 32;

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The value of `key`'s member.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The members, most recent first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `key` to `value` and moves it to the front, as a vendor does for its own member. When
    /// the list is full, the last (oldest) member makes room. Invalid keys or values are an error.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), PropagationError> {
        let member = format!("{key}={value}");
        if !valid_key(key.as_bytes()) {
            return Err(PropagationError::tracestate(
                member.as_bytes(),
                "invalid key",
            ));
        }
        if !valid_value(value.as_bytes()) {
            return Err(PropagationError::tracestate(
                member.as_bytes(),
                "invalid value",
            ));
        }
        self.members.retain(|(k, _)| k != key);
        self.members.truncate(Self::MAX_MEMBERS - 1);
        self.members.insert(0, (key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Parses one `tracestate` header value.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn decode(value: &http::HeaderValue) -> Result<TraceState, PropagationError> {
        Self::decode_bytes(value.as_bytes())
    }

    /// Parses the combined values of every `tracestate` header, in order. No header gives an
    /// empty state.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn decode_all<'a>(
        values: impl IntoIterator<Item = &'a http::HeaderValue>,
    ) -> Result<TraceState, PropagationError> {
        let values: Vec<&[u8]> = values
            .into_iter()
            .map(http::HeaderValue::as_bytes)
            .collect();
        Self::decode_joined(&values)
    }

    /// Parses the values of a repeated field as one list, in order.
    pub(crate) fn decode_joined(values: &[&[u8]]) -> Result<TraceState, PropagationError> {
        let combined = super::join_list(values, MAX_TRACESTATE_BYTES)
            .map_err(|long| PropagationError::tracestate(&long, "too long"))?;
        Self::decode_bytes(&combined)
    }

    /// Parses one `tracestate` value.
    pub fn decode_bytes(s: &[u8]) -> Result<TraceState, PropagationError> {
        let bad = |reason| Err(PropagationError::tracestate(s, reason));
        if s.len() > MAX_TRACESTATE_BYTES {
            return bad("too long");
        }
        let mut members: Vec<(String, String)> = Vec::new();
        for raw in s.split(|&b| b == b',') {
            let member = trim_ows(raw);
            if member.is_empty() {
                continue; // empty list members are allowed
            }
            let Some(eq) = member.iter().position(|&b| b == b'=') else {
                return bad("a member has no '='");
            };
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) {
                return bad("invalid key");
            }
            if !valid_value(value) {
                return bad("invalid value");
            }
            if members.len() == Self::MAX_MEMBERS {
                return bad("more than 32 members");
            }
            // Both are ASCII, checked above.
            let key = String::from_utf8_lossy(key).into_owned();
            if members.iter().any(|(k, _)| *k == key) {
                return bad("duplicate key");
            }
            members.push((key, String::from_utf8_lossy(value).into_owned()));
        }
        Ok(TraceState { members })
    }

    /// The text to send, or `None` when empty.
    pub fn to_text(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.to_string())
    }

    /// The header value, or `None` when empty.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn to_header_value(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::try_from(self.to_text()?).ok()
    }
}

impl FromStr for TraceState {
    type Err = PropagationError;
    fn from_str(s: &str) -> Result<TraceState, PropagationError> {
        TraceState::decode_bytes(s.as_bytes())
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` or `tenant-id@system-id`.
fn valid_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key.iter().all(|&c| key_char(c))
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant.iter().all(|&c| key_char(c))
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system.iter().all(|&c| key_char(c))
        }
    }
}

/// 1-256 printable ASCII characters except `,` and `=`, not ending in a space.
fn valid_value(v: &[u8]) -> bool {
    (1..=256).contains(&v.len())
        && v.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && v[v.len() - 1] != b' '
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_headers_in_order() {
        let ts = TraceState::decode_joined(&[b"a=1, b=2", b"c=3"]).unwrap();
        assert_eq!(ts.to_string(), "a=1,b=2,c=3");
        assert_eq!(
            TraceState::decode_joined(&[]).unwrap(),
            TraceState::default()
        );
    }

    #[test]
    fn multi_tenant_keys_and_empty_members() {
        let ts: TraceState = "t1@sys=x, ,,2tenant@s_y-s=y z".parse().unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts.get("2tenant@s_y-s"), Some("y z"));
    }

    #[test]
    fn limits() {
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let ok = members.join(",");
        assert_eq!(ok.parse::<TraceState>().unwrap().len(), 32);
        let too_many = format!("{ok},k32=v");
        let err = too_many.parse::<TraceState>().unwrap_err();
        assert!(err.to_string().contains("more than 32"), "{err}");
        assert!(
            format!("a={}", "x".repeat(257))
                .parse::<TraceState>()
                .is_err()
        );
        assert!(
            format!("{}=x", "a".repeat(257))
                .parse::<TraceState>()
                .is_err()
        );
        assert!("a@bcdefghijklmnop=1".parse::<TraceState>().is_err()); // system-id > 14
    }

    #[test]
    fn invalid_members_reject_the_whole_list() {
        for bad in [
            "a", "a=", "=1", "A=1", "a=1=2", "a=\u{e9}", "a=1,a=2", "@b=1", "a@=1",
        ] {
            let err = bad.parse::<TraceState>().unwrap_err();
            assert!(
                matches!(&err, PropagationError::TraceState { value, .. } if value == bad),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn insert_moves_to_front_and_caps() {
        let mut ts = TraceState::default();
        for i in 0..40 {
            ts.insert(&format!("k{i}"), "v").unwrap();
        }
        assert_eq!(ts.len(), 32);
        assert_eq!(ts.iter().next(), Some(("k39", "v")));
        ts.insert("k20", "w").unwrap();
        assert_eq!(ts.len(), 32);
        assert_eq!(ts.iter().next(), Some(("k20", "w")));
        assert!(ts.insert("K", "v").is_err());
        assert!(ts.insert("k", "a,b").is_err());
    }
}
