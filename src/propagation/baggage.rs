//! W3C Baggage: the `baggage` header.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

use super::PropagationError;

/// Longest combined `baggage` input read at all; past it the header is rejected whole.
pub(crate) const MAX_BAGGAGE_INPUT: usize = 64 * 1024;

/// What a value may not contain raw: everything outside W3C's `baggage-octet`, plus `%` itself
/// so that every value comes back unchanged. (Non-ASCII is always encoded.)
const VALUE_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// The W3C `baggage` header: application-defined `key=value` members, each with optional
/// properties, travelling with a request.
///
/// Values are percent-decoded when read and percent-encoded when written, so any text travels,
/// `=` included; percent-encoded bytes that are not UTF-8 read as U+FFFD. Property values are kept
/// as received (raw `baggage-octet`s). A member whose key is not an RFC 7230 token or whose text
/// has characters outside the grammar makes the whole header invalid.
///
/// At most [`Baggage::MAX_MEMBERS`] members and [`Baggage::MAX_BYTES`] bytes are read and sent
/// (the minimum the specification asks every platform to propagate); past that, whole members are
/// dropped, never part of one.
///
/// It is also the [`ContextKey`](crate::ContextKey) it is stored under: `ctx.value::<Baggage>()`.
///
/// ```
/// use ctxkit::propagation::Baggage;
///
/// let b: Baggage = "userId=alice, serverNode=DF%2028, isProduction=false;ttl=60".parse().unwrap();
/// assert_eq!(b.get("serverNode"), Some("DF 28"));
/// assert_eq!(b.member("isProduction").unwrap().properties()[0].key(), "ttl");
///
/// let mut b = Baggage::new();
/// b.insert("query", "a=1; b=2, ok?").unwrap();
/// assert_eq!(b.to_string(), "query=a=1%3B%20b=2%2C%20ok?");
/// assert_eq!(b.to_string().parse::<Baggage>().unwrap(), b);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Baggage {
    members: Vec<BaggageMember>,
}

impl crate::ContextKey for Baggage {
    type Value = Baggage;
}

/// One `baggage` member: a key, its (decoded) value and its properties.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BaggageMember {
    key: String,
    value: String,
    properties: Vec<BaggageProperty>,
}

/// A member's property: `key` or `key=value` (the value as received, not percent-decoded).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BaggageProperty {
    key: String,
    value: Option<String>,
}

impl Baggage {
    /// The most members read or sent.
    pub const MAX_MEMBERS: usize = 64;
    /// The most bytes of members (with their separators) read or sent.
    pub const MAX_BYTES: usize = 8192;

    /// No members.
    pub fn new() -> Baggage {
        Baggage::default()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The value of `key`'s member.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.member(key).map(BaggageMember::value)
    }

    /// `key`'s member.
    pub fn member(&self, key: &str) -> Option<&BaggageMember> {
        self.members.iter().find(|m| m.key == key)
    }

    /// The members, in order.
    pub fn iter(&self) -> impl Iterator<Item = &BaggageMember> {
        self.members.iter()
    }

    /// Sets `key` to `value` (any text), keeping `key`'s place if it is there already. The key
    /// must be an RFC 7230 token.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), PropagationError> {
        self.insert_member(BaggageMember::new(key, value)?);
        Ok(())
    }

    /// Adds `member`, replacing one with the same key in its place.
    pub fn insert_member(&mut self, member: BaggageMember) {
        match self.members.iter_mut().find(|m| m.key == member.key) {
            Some(m) => *m = member,
            None => self.members.push(member),
        }
    }

    /// Removes `key`'s member and gives it back.
    pub fn remove(&mut self, key: &str) -> Option<BaggageMember> {
        let i = self.members.iter().position(|m| m.key == key)?;
        Some(self.members.remove(i))
    }

    /// Parses one `baggage` header value.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn decode(value: &http::HeaderValue) -> Result<Baggage, PropagationError> {
        Self::decode_bytes(value.as_bytes())
    }

    /// Parses the combined values of every `baggage` header, in order. No header gives an empty
    /// baggage.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn decode_all<'a>(
        values: impl IntoIterator<Item = &'a http::HeaderValue>,
    ) -> Result<Baggage, PropagationError> {
        let values: Vec<&[u8]> = values
            .into_iter()
            .map(http::HeaderValue::as_bytes)
            .collect();
        Self::decode_joined(&values)
    }

    /// Parses the values of a repeated field as one list, in order.
    pub(crate) fn decode_joined(values: &[&[u8]]) -> Result<Baggage, PropagationError> {
        let combined = super::join_list(values, MAX_BAGGAGE_INPUT)
            .map_err(|long| PropagationError::baggage(&long, "too long"))?;
        Self::decode_bytes(&combined)
    }

    /// Parses one `baggage` value. Members past the limits are dropped whole.
    pub fn decode_bytes(s: &[u8]) -> Result<Baggage, PropagationError> {
        if s.len() > MAX_BAGGAGE_INPUT {
            return Err(PropagationError::baggage(s, "too long"));
        }
        let mut out = Baggage::new();
        let mut bytes = 0;
        for raw in s.split(|&b| b == b',') {
            let text = trim_ows(raw);
            if text.is_empty() {
                continue;
            }
            let member = BaggageMember::decode(text)
                .map_err(|reason| PropagationError::baggage(text, reason))?;
            let size = text.len() + usize::from(bytes > 0);
            if out.members.len() < Self::MAX_MEMBERS && bytes + size <= Self::MAX_BYTES {
                bytes += size;
                out.insert_member(member);
            }
        }
        Ok(out)
    }

    /// The text to send, or `None` when empty: the members in order, skipping whole members that
    /// would go past [`Baggage::MAX_MEMBERS`] or [`Baggage::MAX_BYTES`].
    pub fn to_text(&self) -> Option<String> {
        let mut out = String::new();
        let mut n = 0;
        for m in &self.members {
            if n == Self::MAX_MEMBERS {
                break;
            }
            let text = m.to_string();
            let sep = usize::from(!out.is_empty());
            if out.len() + sep + text.len() > Self::MAX_BYTES {
                continue;
            }
            if sep == 1 {
                out.push(',');
            }
            out.push_str(&text);
            n += 1;
        }
        if out.is_empty() {
            return None;
        }
        Some(out)
    }

    /// [`Baggage::to_text`] as a header value.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn to_header_value(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::try_from(self.to_text()?).ok()
    }
}

impl FromStr for Baggage {
    type Err = PropagationError;
    fn from_str(s: &str) -> Result<Baggage, PropagationError> {
        Baggage::decode_bytes(s.as_bytes())
    }
}

/// All members, encoded, without the size limits of [`Baggage::to_text`].
impl fmt::Display for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl BaggageMember {
    /// A member without properties. The key must be an RFC 7230 token; the value is any text.
    pub fn new(key: &str, value: &str) -> Result<BaggageMember, PropagationError> {
        if !is_token(key.as_bytes()) {
            return Err(PropagationError::baggage(
                format!("{key}=").as_bytes(),
                "key is not a token",
            ));
        }
        Ok(BaggageMember {
            key: key.to_owned(),
            value: value.to_owned(),
            properties: Vec::new(),
        })
    }

    /// Adds a property (`key` or `key=value`); the key must be a token and the value made of
    /// `baggage-octet`s (printable ASCII but `"`, `,`, `;`, `\`).
    pub fn with_property(
        mut self,
        key: &str,
        value: Option<&str>,
    ) -> Result<BaggageMember, PropagationError> {
        let ok = is_token(key.as_bytes()) && value.is_none_or(|v| is_octets(v.as_bytes()));
        if !ok {
            let text = match value {
                Some(v) => format!("{key}={v}"),
                None => key.to_owned(),
            };
            return Err(PropagationError::baggage(
                text.as_bytes(),
                "invalid property",
            ));
        }
        self.properties.push(BaggageProperty {
            key: key.to_owned(),
            value: value.map(str::to_owned),
        });
        Ok(self)
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value, percent-decoded.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The properties, in order.
    pub fn properties(&self) -> &[BaggageProperty] {
        &self.properties
    }

    /// Parses `key OWS = OWS value *(OWS ; OWS property)` (already trimmed).
    fn decode(text: &[u8]) -> Result<BaggageMember, &'static str> {
        let mut parts = text.split(|&b| b == b';');
        let first = parts.next().unwrap_or_default();
        let Some(eq) = first.iter().position(|&b| b == b'=') else {
            return Err("a member has no '='");
        };
        let key = trim_ows(&first[..eq]);
        let value = trim_ows(&first[eq + 1..]);
        if !is_token(key) {
            return Err("key is not a token");
        }
        if !is_octets(value) {
            return Err("value has characters outside baggage-octet");
        }
        let mut properties = Vec::new();
        for p in parts {
            let p = trim_ows(p);
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(eq) => (trim_ows(&p[..eq]), Some(trim_ows(&p[eq + 1..]))),
                None => (p, None),
            };
            if !is_token(k) || v.is_some_and(|v| !is_octets(v)) {
                return Err("invalid property");
            }
            properties.push(BaggageProperty {
                key: ascii(k),
                value: v.map(ascii),
            });
        }
        Ok(BaggageMember {
            key: ascii(key),
            value: percent_decode(value).decode_utf8_lossy().into_owned(),
            properties,
        })
    }
}

impl fmt::Display for BaggageMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}",
            self.key,
            utf8_percent_encode(&self.value, VALUE_ESCAPES)
        )?;
        for p in &self.properties {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

impl BaggageProperty {
    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value, if any, as received.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Display for BaggageProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// Checked-ASCII bytes as a string.
fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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

/// RFC 7230 `token`: one or more `tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter().all(|&c| {
            c.is_ascii_alphanumeric()
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
                )
        })
}

/// `*baggage-octet`: `%x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`.
fn is_octets(s: &[u8]) -> bool {
    s.iter()
        .all(|&c| matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_equals_and_percent_encoding() {
        let b: Baggage = "k1=a=b=c,k2=%E2%9C%93%20ok , k3=".parse().unwrap();
        assert_eq!(b.get("k1"), Some("a=b=c"));
        assert_eq!(b.get("k2"), Some("\u{2713} ok"));
        assert_eq!(b.get("k3"), Some(""));
    }

    #[test]
    fn invalid_utf8_reads_as_replacement_character() {
        let b: Baggage = "k=%FFx%C3".parse().unwrap();
        assert_eq!(b.get("k"), Some("\u{fffd}x\u{fffd}"));
    }

    #[test]
    fn properties_are_kept() {
        let b: Baggage = "k=v ; p1 ; p2 = x=y".parse().unwrap();
        let m = b.member("k").unwrap();
        assert_eq!(m.value(), "v");
        let props: Vec<_> = m
            .properties()
            .iter()
            .map(|p| (p.key(), p.value()))
            .collect();
        assert_eq!(props, [("p1", None), ("p2", Some("x=y"))]);
        assert_eq!(b.to_string(), "k=v;p1;p2=x=y");
    }

    #[test]
    fn malformed_members_name_themselves() {
        for (input, member) in [
            ("ok=1,bad", "bad"),
            ("=v", "=v"),
            ("k y=v", "k y=v"),
            ("k=a\"b", "k=a\"b"),
            ("k=a\\b", "k=a\\b"),
            ("k=v;=p", "k=v;=p"),
            ("k=v;p=a b", "k=v;p=a b"),
            ("k=\u{e9}", "k=\u{e9}"),
        ] {
            let err = input.parse::<Baggage>().unwrap_err();
            assert!(
                matches!(&err, PropagationError::Baggage { value, .. } if value == member),
                "{input:?}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid baggage"), "{err}");
        }
    }

    #[test]
    fn at_most_64_members_whole_members_only() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}")).collect();
        let b: Baggage = many.join(",").parse().unwrap();
        assert_eq!(b.len(), 64);
        assert_eq!(b.get("k63"), Some("v63"));
        assert_eq!(b.get("k64"), None);

        let mut b = Baggage::new();
        for i in 0..100 {
            b.insert(&format!("k{i}"), "v").unwrap();
        }
        let sent = b.to_text().unwrap();
        let back = Baggage::decode_bytes(sent.as_bytes()).unwrap();
        assert_eq!(back.len(), 64);
    }

    #[test]
    fn at_most_8192_bytes_whole_members_only() {
        let mut b = Baggage::new();
        // 10 members of ~1000 bytes: 8 fit.
        for i in 0..10 {
            b.insert(&format!("k{i}"), &"x".repeat(997)).unwrap();
        }
        let sent = b.to_text().unwrap();
        assert!(sent.len() <= Baggage::MAX_BYTES);
        let back = Baggage::decode_bytes(sent.as_bytes()).unwrap();
        assert_eq!(back.len(), 8);
        assert!(back.iter().all(|m| m.value().len() == 997));
        // The same limit applies when reading.
        let read = Baggage::decode_bytes(b.to_string().as_bytes()).unwrap();
        assert_eq!(read, back);
        // A member larger than the limit is never sent in part.
        let mut huge = Baggage::new();
        huge.insert("big", &"y".repeat(9000)).unwrap();
        huge.insert("small", "1").unwrap();
        assert_eq!(huge.to_text().unwrap(), "small=1");
    }

    #[test]
    fn insert_validates_keys_and_replaces_in_place() {
        let mut b = Baggage::new();
        b.insert("a", "1").unwrap();
        b.insert("b", "2").unwrap();
        b.insert("a", "3").unwrap();
        assert_eq!(b.to_string(), "a=3,b=2");
        assert!(b.insert("bad key", "1").is_err());
        assert!(b.insert("", "1").is_err());
        assert_eq!(b.remove("a").unwrap().value(), "3");
        assert!(
            BaggageMember::new("k", "v")
                .unwrap()
                .with_property("p", Some("a,b"))
                .is_err()
        );
    }
}
