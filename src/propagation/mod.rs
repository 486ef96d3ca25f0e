//! Contexts across processes: the wire formats of deadlines, trace context, baggage and
//! travelling keys, on any carrier of named text fields, with no I/O of their own (feature
//! `propagation`; `http` adds the `http` crate's headers as a carrier, and `tower` the
//! middleware that uses them).
//!
//! A sender calls [`inject`] to write its context into a carrier; a receiver calls [`extract`]
//! to build the request's (or message's) context from one:
//!
//! | what | field | format |
//! | --- | --- | --- |
//! | deadline | `grpc-timeout` | the budget left at send time ([`GrpcTimeout`]) |
//! | deadline over a broker | `ctxkit-deadline`, `ctxkit-sent`, `grpc-timeout` | absolute time, send time and budget ([`DeadlineFormat::Absolute`]) |
//! | trace | `traceparent`, `tracestate` | W3C Trace Context ([`TraceParent`], [`TraceState`], stored as [`TraceContext`]) |
//! | baggage | `baggage` | W3C Baggage ([`Baggage`]) |
//! | travelling keys | the key's `ContextKey::HEADER` | the key's text codec ([`KeyCodec`]); decoded only if [`Accept`]ed |
//!
//! A carrier is anything implementing [`Injector`] (to write) and [`Extractor`] (to read):
//! `http::HeaderMap` (feature `http`), `HashMap<String, String>` and `BTreeMap<String, String>`
//! (a broker message's headers), or a struct of your own (see [`Injector`] for the talk's Thrift
//! `ContextValue`). The parsers are the same, as strict, whatever the carrier.
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use ctxkit::{Context, ContextKey, Instant};
//! use ctxkit::propagation::{self, Accept, TraceContext};
//!
//! #[derive(ContextKey)]
//! #[context_key(value = u64, header = "x-request-id")]
//! struct RequestId;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // The sender: a request with a 2 s budget, a trace and a request id.
//! let (client, _cancel) = Context::background()
//!     .with_value::<TraceContext>(TraceContext::new_root())
//!     .with_value::<RequestId>(42)
//!     .with_timeout(Duration::from_secs(2));
//! let mut fields = HashMap::new(); // or an http::HeaderMap
//! propagation::inject(&client, &mut fields).unwrap();
//! assert_eq!(fields["grpc-timeout"], "2000000u");
//! assert_eq!(fields["x-request-id"], "42");
//!
//! // The receiver: the request's context is a child of the server's root.
//! let server_root = Context::background();
//! let accept = Accept::new().key::<RequestId>();
//! let arrived = Instant::now();
//! let (request, _done) = propagation::extract(&fields, &server_root, &accept, arrived).unwrap();
//! assert_eq!(request.deadline(), Some(arrived + Duration::from_secs(2)));
//! assert_eq!(request.value::<RequestId>(), Some(&42));
//! let trace = request.value::<TraceContext>().unwrap();
//! assert_eq!(trace.trace_id(), client.value::<TraceContext>().unwrap().trace_id());
//! # }
//! ```
//!
//! # Deadlines through a queue
//!
//! A budget is meaningless once a message has waited in a broker's queue. There, send the
//! deadline with [`inject_with`]`(.., DeadlineFormat::Absolute)` and read it with
//! [`Accept::deadline_format`]`(DeadlineFormat::Absolute)`; a message whose deadline passed while
//! it waited arrives with an expired context (see [the clock-skew rule](DeadlineFormat)), and its
//! work must not start:
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use ctxkit::{Context, Error, Instant};
//! use ctxkit::propagation::{self, Accept, DeadlineFormat};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (job, _cancel) = Context::background().with_timeout(Duration::from_millis(200));
//! let mut message = HashMap::new();
//! propagation::inject_with(&job, &mut message, DeadlineFormat::Absolute).unwrap();
//! assert!(message.contains_key("ctxkit-deadline") && message.contains_key("ctxkit-sent"));
//!
//! tokio::time::sleep(Duration::from_millis(300)).await; // queued longer than its budget
//!
//! let accept = Accept::new().deadline_format(DeadlineFormat::Absolute);
//! let (ctx, _done) =
//!     propagation::extract(&message, &Context::background(), &accept, Instant::now()).unwrap();
//! assert_eq!(ctx.err(), Some(Error::DeadlineExceeded)); // do not start the work
//! # }
//! ```

mod accept;
mod baggage;
mod carrier;
mod deadline;
mod error;
mod grpc_timeout;
mod header_name;
mod key_codec;
mod traceparent;
mod tracestate;

use std::any::TypeId;
use std::time::SystemTime;

pub use accept::Accept;
pub use baggage::{Baggage, BaggageMember, BaggageProperty};
pub use carrier::{Extractor, Injector};
pub use deadline::DeadlineFormat;
pub use error::PropagationError;
pub use grpc_timeout::GrpcTimeout;
pub use header_name::RESERVED_HEADERS;
pub use key_codec::{DisplayFromStr, KeyCodec};
pub use traceparent::{TraceContext, TraceParent};
pub use tracestate::TraceState;

use self::accept::AcceptedKey;
#[cfg(all(feature = "tracing", feature = "tower"))]
pub(crate) use self::accept::RecordedKey;
use self::header_name::header_problem;
use crate::{CancelHandle, Context, Instant};

/// The header of a deadline: gRPC's `grpc-timeout`.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The W3C Trace Context `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C Trace Context `tracestate` header.
pub const TRACESTATE: &str = "tracestate";
/// The W3C Baggage `baggage` header.
pub const BAGGAGE: &str = "baggage";
/// A deadline as an absolute time ([`DeadlineFormat::Absolute`]): Unix time in nanoseconds.
pub const CTXKIT_DEADLINE: &str = "ctxkit-deadline";
/// When a message was sent ([`DeadlineFormat::Absolute`]): Unix time in nanoseconds.
pub const CTXKIT_SENT: &str = "ctxkit-sent";
/// A request's cancel key over a broker: the SHA-256 of the secret whose notice cancels it
/// (lower-case hex; written and read by `ctxkit::nats`, feature `nats`).
pub const CTXKIT_CANCEL: &str = "ctxkit-cancel";
/// On a broker reply: the responder could not or did not serve the request, and why (written
/// and read by `ctxkit::nats`, feature `nats`).
pub const CTXKIT_ERROR: &str = "ctxkit-error";

/// The longest value of a travelling key read or written.
pub const MAX_KEY_VALUE_BYTES: usize = 4096;

/// Writes `ctx` into `carrier` ([`inject_with`] with [`DeadlineFormat::Budget`], for HTTP and
/// gRPC calls):
///
/// - its deadline as `grpc-timeout`, the budget left now (`0n` once passed);
/// - its [`TraceContext`] as `traceparent` (this hop's span as the parent) and `tracestate`;
///   with the `opentelemetry` feature, the current `tracing` span's trace context instead when
///   an OpenTelemetry layer made it (see `ctxkit::opentelemetry`);
/// - its [`Baggage`] as `baggage`, within the size limits;
/// - every travelling key's value (a key with a `ContextKey::HEADER`) found walking from `ctx`
///   to the root; the nearest value of a key wins.
///
/// Fields already present are replaced; nothing else is touched. Values of keys that do not
/// travel never leave the process. See the [module documentation](self) for an example.
///
/// # Errors
///
/// Nothing is written when a travelling value cannot be sent: two different keys in one header
/// ([`PropagationError::KeyConflict`]), a key whose header is reserved or not a header name
/// ([`PropagationError::KeyHeader`]), or a value longer than [`MAX_KEY_VALUE_BYTES`] or not
/// visible ASCII ([`PropagationError::Key`]), as a receiver would reject it.
pub fn inject<I: Injector + ?Sized>(
    ctx: &Context,
    carrier: &mut I,
) -> Result<(), PropagationError> {
    inject_with(ctx, carrier, DeadlineFormat::Budget)
}

/// [`inject`], writing the deadline in `format`: [`DeadlineFormat::Absolute`] for a message that
/// may wait in a queue.
///
/// # Errors
///
/// Those of [`inject`]; and with [`DeadlineFormat::Absolute`], a system clock before 1970 or
/// after 2554 ([`PropagationError::Deadline`]).
pub fn inject_with<I: Injector + ?Sized>(
    ctx: &Context,
    carrier: &mut I,
    format: DeadlineFormat,
) -> Result<(), PropagationError> {
    // Everything that can fail is checked before anything is written.
    let keys = travelling_fields(ctx)?;
    if let Some(at) = ctx.deadline() {
        let budget = at.saturating_duration_since(Instant::now());
        match format {
            DeadlineFormat::Budget => carrier.set(GRPC_TIMEOUT, GrpcTimeout::encode_text(budget)),
            DeadlineFormat::Absolute => {
                deadline::write_absolute(carrier, budget, SystemTime::now())?;
            }
        }
    }
    if let Some(trace) = ctx.value::<TraceContext>() {
        carrier.set(TRACEPARENT, trace.traceparent().to_string());
        match trace.state().to_text() {
            Some(state) => carrier.set(TRACESTATE, state),
            None => carrier.remove(TRACESTATE),
        }
    }
    if let Some(text) = ctx.value::<Baggage>().and_then(Baggage::to_text) {
        carrier.set(BAGGAGE, text);
    }
    for (header, text) in keys {
        carrier.set(header, text);
    }
    #[cfg(feature = "opentelemetry")]
    crate::opentelemetry::inject_current_span(ctx, carrier);
    Ok(())
}

/// The travelling keys' fields of `ctx`: the nearest value of each key, checked as a receiver
/// would check it.
fn travelling_fields(ctx: &Context) -> Result<Vec<(&'static str, String)>, PropagationError> {
    let mut seen: Vec<(&'static str, TypeId, &'static str)> = Vec::new();
    let mut out = Vec::new();
    for v in ctx.travelling_values() {
        if let Some(&(_, key, name)) = seen.iter().find(|(h, ..)| *h == v.header) {
            if key == v.key {
                continue; // a farther value of the same key: the nearest one was taken
            }
            return Err(PropagationError::KeyConflict {
                header: v.header,
                keys: [name, v.key_name],
            });
        }
        seen.push((v.header, v.key, v.key_name));
        if let Some(reason) = header_problem(v.header) {
            return Err(PropagationError::KeyHeader {
                key: v.key_name,
                header: v.header,
                reason,
            });
        }
        if let Some(text) = v.text {
            check_key_value(v.header, text.as_bytes())?;
            out.push((v.header, text));
        }
    }
    Ok(out)
}

/// A travelling key's value as a receiver accepts it: at most [`MAX_KEY_VALUE_BYTES`] of visible
/// ASCII (HTTP's rule for header text: no control characters, no bytes above 126).
fn check_key_value(header: &'static str, value: &[u8]) -> Result<(), PropagationError> {
    if value.len() > MAX_KEY_VALUE_BYTES {
        return Err(PropagationError::key(
            header,
            value,
            "longer than 4096 bytes",
        ));
    }
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(PropagationError::key(header, value, "not visible ASCII"));
    }
    Ok(())
}

/// Builds a request's (or message's) context from `carrier`: a cancellable child of `parent` (a
/// server's root context) carrying
///
/// - its deadline, read as [`Accept::deadline_format`] says: by default `arrived +
///   grpc-timeout`; never later than `parent`'s deadline nor than `arrived +`
///   [`Accept::max_timeout`];
/// - a [`TraceContext`]: the received trace continued with a new span id for this hop, or a new
///   trace when `traceparent` is missing or invalid (`tracestate` is then not read; an invalid
///   `tracestate` is dropped);
/// - the received [`Baggage`], if any (dropped whole when invalid);
/// - the value of every key `accept` names whose field is present.
///
/// `arrived` is when the request arrived: a budget counts from then, not from when this runs.
///
/// A deadline that has already passed gives a context that is already done
/// ([`Context::err`] is set): the receiver must not start the work.
///
/// # Errors
///
/// A malformed or repeated `grpc-timeout` (or, for [`DeadlineFormat::Absolute`], a malformed,
/// repeated or incomplete set of its fields), or an accepted key's field that is repeated,
/// longer than [`MAX_KEY_VALUE_BYTES`], not visible ASCII or rejected by the key's decoder, is
/// an error naming the field and the value (a server answers it with 400, or gRPC status 13).
///
/// The handle cancels the request's context; dropping it does too, so keep it for as long as the
/// request runs. See the [module documentation](self) for an example.
pub fn extract<E: Extractor + ?Sized>(
    carrier: &E,
    parent: &Context,
    accept: &Accept,
    arrived: Instant,
) -> Result<(Context, CancelHandle), PropagationError> {
    let budget = match accept.deadlines {
        DeadlineFormat::Budget => match single(carrier, GRPC_TIMEOUT) {
            Ok(None) => None,
            Ok(Some(v)) => Some(GrpcTimeout::decode_bytes(v)?),
            Err(joined) => {
                return Err(PropagationError::grpc_timeout(&joined, "header repeated"));
            }
        },
        DeadlineFormat::Absolute => {
            // The wall clock when the message arrived, for the clock-skew rule.
            let since = Instant::now().saturating_duration_since(arrived);
            let now = SystemTime::now()
                .checked_sub(since)
                .unwrap_or(SystemTime::now());
            deadline::read_absolute(carrier, now)?
        }
    };
    let mut deadline = budget.and_then(|b| arrived.checked_add(b));
    if let Some(max) = accept.max_timeout.and_then(|m| arrived.checked_add(m)) {
        deadline = Some(deadline.map_or(max, |d| d.min(max)));
    }

    // Decode every accepted key before making anything.
    let mut texts: Vec<(&AcceptedKey, &str)> = Vec::new();
    for key in accept.keys() {
        let value = match single(carrier, key.header) {
            Ok(None) => continue,
            Ok(Some(v)) => v,
            Err(joined) => {
                return Err(PropagationError::key(
                    key.header,
                    &joined,
                    "header repeated",
                ));
            }
        };
        check_key_value(key.header, value)?;
        // Visible ASCII is UTF-8.
        let text = std::str::from_utf8(value)
            .map_err(|_| PropagationError::key(key.header, value, "not visible ASCII"))?;
        texts.push((key, text));
    }

    let (mut ctx, handle) = match deadline {
        Some(at) => parent.with_deadline(at),
        None => parent.with_cancel(),
    };
    // A bad key below returns early, dropping the handle before the context: on purpose.
    crate::early_drop::used();
    for (key, text) in texts {
        ctx = (key.attach)(&ctx, text)
            .map_err(|e| PropagationError::key(key.header, text.as_bytes(), e.to_string()))?;
    }

    let trace = match single(carrier, TRACEPARENT) {
        Ok(Some(v)) => TraceParent::decode_bytes(v).ok().map(|tp| {
            let state = TraceState::decode_joined(&carrier.get_all(TRACESTATE)).unwrap_or_default();
            TraceContext::child_of(&tp, state)
        }),
        // None, or repeated: invalid.
        _ => None,
    };
    ctx = ctx.with_value::<TraceContext>(trace.unwrap_or_else(TraceContext::new_root));

    if let Ok(baggage) = Baggage::decode_joined(&carrier.get_all(BAGGAGE))
        && !baggage.is_empty()
    {
        ctx = ctx.with_value::<Baggage>(baggage);
    }
    Ok((ctx, handle))
}

/// The one value of field `name`: `Ok(None)` when absent, `Err(all values joined)` when repeated.
fn single<'c, E: Extractor + ?Sized>(
    carrier: &'c E,
    name: &str,
) -> Result<Option<&'c [u8]>, Vec<u8>> {
    let mut all = carrier.get_all(name);
    match all.len() {
        0 => Ok(None),
        1 => Ok(all.pop()),
        _ => Err(all.join(&b","[..])),
    }
}

/// Joins a repeated field's values with `,` (a W3C list split over several headers), failing
/// with `too_long` past `max` bytes.
fn join_list(values: &[&[u8]], max: usize) -> Result<Vec<u8>, Vec<u8>> {
    let mut combined = Vec::new();
    for v in values {
        if !combined.is_empty() {
            combined.push(b',');
        }
        combined.extend_from_slice(v);
        if combined.len() > max {
            return Err(combined);
        }
    }
    Ok(combined)
}
