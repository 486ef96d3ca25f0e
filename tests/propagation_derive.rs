//! `#[derive(ContextKey)]` with `header = "…"` (and `codec = path`): travelling keys.
#![cfg(feature = "propagation")]

use ctxkit::propagation::KeyCodec;
use ctxkit::{BoxError, ContextKey};

#[derive(Clone, Debug, PartialEq, ContextKey)]
#[context_key(header = "x-request-id")]
struct RequestId(u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

impl std::str::FromStr for RequestId {
    type Err = BoxError;
    fn from_str(s: &str) -> Result<RequestId, BoxError> {
        let n = s.strip_prefix("req-").ok_or("expected req-<number>")?;
        Ok(RequestId(n.parse()?))
    }
}

#[derive(ContextKey)]
#[context_key(value = String, header = "x-user")]
struct User;

/// Upper-case hex on the wire.
struct Hex;
impl KeyCodec<u32> for Hex {
    fn encode(v: &u32) -> String {
        format!("{v:X}")
    }
    fn decode(s: &str) -> Result<u32, BoxError> {
        Ok(u32::from_str_radix(s, 16)?)
    }
}

#[derive(ContextKey)]
#[context_key(value = u32, header = "x-shard", codec = Hex)]
struct Shard;

#[derive(ContextKey)]
#[context_key(value = String)]
struct Local;

#[test]
fn the_derive_records_header_and_codec() {
    assert_eq!(RequestId::HEADER, Some("x-request-id"));
    assert_eq!(RequestId::encode(&RequestId(9)).as_deref(), Some("req-9"));
    assert_eq!(RequestId::decode("req-9").unwrap(), RequestId(9));
    let err = RequestId::decode("9").unwrap_err();
    assert_eq!(err.to_string(), "expected req-<number>");

    assert_eq!(User::HEADER, Some("x-user"));
    assert_eq!(User::decode("ann").unwrap(), "ann");

    assert_eq!(Shard::encode(&255).as_deref(), Some("FF"));
    assert_eq!(Shard::decode("FF").unwrap(), 255);
    assert!(Shard::decode("zz").is_err());

    assert_eq!(Local::HEADER, None);
    assert_eq!(Local::encode(&"x".to_string()), None);
    assert!(Local::decode("x").is_err());
}

#[cfg(feature = "http")]
#[test]
fn derived_keys_travel_through_headers() {
    use ctxkit::propagation::{self, Accept};
    use ctxkit::{Context, Instant};

    let ctx = Context::background();
    let ctx = RequestId::set(&ctx, RequestId(7));
    let ctx = User::set(&ctx, "gopher".into());
    let ctx = Shard::set(&ctx, 0xbeef);
    let ctx = Local::set(&ctx, "stays here".into());
    let mut headers = http::HeaderMap::new();
    propagation::inject(&ctx, &mut headers).unwrap();
    assert_eq!(headers["x-request-id"], "req-7");
    assert_eq!(headers["x-user"], "gopher");
    assert_eq!(headers["x-shard"], "BEEF");
    assert_eq!(headers.len(), 3, "{headers:?}");

    let accept = Accept::new().key::<RequestId>().key::<Shard>();
    let (server, _done) =
        propagation::extract(&headers, &Context::background(), &accept, Instant::now()).unwrap();
    assert_eq!(RequestId::get(&server), Some(&RequestId(7)));
    assert_eq!(Shard::get(&server), Some(&0xbeef));
    assert_eq!(User::get(&server), None); // not accepted
    assert_eq!(Local::get(&server), None);
}

#[derive(ContextKey)]
#[context_key(value = String, header = "x-tenant")]
struct TenantName;

#[derive(ContextKey)]
#[context_key(value = u64, header = "x-tenant")]
struct TenantId;

/// The trap: two derived keys on one header. Before, the receiver got one key with the other's
/// value (`TenantName=Some("42") TenantId=None`); now neither side lets it through.
#[test]
fn two_derived_keys_on_one_header_are_rejected_by_sender_and_receiver() {
    use std::collections::HashMap;

    use ctxkit::propagation::{self, Accept, PropagationError};
    use ctxkit::{Context, Instant};

    let ctx = TenantName::set(&Context::background(), "acme".into());
    let ctx = TenantId::set(&ctx, 42);
    let mut fields = HashMap::new();
    let err = propagation::inject(&ctx, &mut fields).unwrap_err();
    assert!(
        matches!(
            err,
            PropagationError::KeyConflict {
                header: "x-tenant",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(fields.is_empty());

    let accept = std::panic::catch_unwind(|| Accept::new().key::<TenantName>().key::<TenantId>());
    let message = accept.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("TenantName") && message.contains("TenantId"),
        "{message}"
    );

    // Each alone is fine.
    let only_id = TenantId::set(&Context::background(), 42);
    propagation::inject(&only_id, &mut fields).unwrap();
    let (got, _done) = propagation::extract(
        &fields,
        &Context::background(),
        &Accept::new().key::<TenantId>(),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(TenantId::get(&got), Some(&42));
    assert_eq!(TenantName::get(&got), None);
}
