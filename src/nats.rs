//! Contexts through a NATS broker (feature `nats`, on the `async-nats` crate): messages and
//! requests that carry their sender's context in their headers, and a subscriber [`Server`]
//! that runs each message's handler under that context.
//!
//! ```no_run
//! use std::time::Duration;
//! use ctxkit::{Context, ContextKey};
//! use ctxkit::nats::{self, Server};
//! use ctxkit::propagation::Accept;
//!
//! #[derive(ContextKey)]
//! #[context_key(value = u64, header = "x-request-id")]
//! struct RequestId;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//!
//! // The responder: each request's handler runs under the request's context.
//! let root = Context::background();
//! let server = Server::subscribe(&client, "prices")
//!     .await?
//!     .accept(Accept::new().key::<RequestId>())
//!     .max_in_flight(64);
//! let stats = server.stats();
//! tokio::spawn(server.serve(&root, |ctx: Context, msg: async_nats::Message| async move {
//!     // The context is current too: `RequestId::current()` works, and so do
//!     // `#[cancellable]` fns, which stop when the requester gives up.
//!     let id = ctx.value::<RequestId>().copied();
//!     Ok::<_, ctxkit::Error>(format!("{id:?}: {} bytes", msg.payload.len()))
//! }));
//!
//! // The requester: a 2 s budget and a request id travel with the request.
//! let (ctx, _cancel) = Context::background()
//!     .with_value::<RequestId>(42)
//!     .with_timeout(Duration::from_secs(2));
//! let reply = nats::request(&client, &ctx, "prices", "EURUSD".into()).await?;
//! assert_eq!(&reply.payload[..], b"Some(42): 6 bytes");
//! println!("expired before their work started: {}", stats.expired());
//! # Ok(())
//! # }
//! ```
//!
//! # What travels
//!
//! [`publish`] and [`request`] write the context with
//! [`propagation::inject_with`]`(.., DeadlineFormat::Absolute)`: the deadline as an absolute time
//! with the send time and the budget (`ctxkit-deadline`, `ctxkit-sent`, `grpc-timeout`, read
//! with [the clock-skew rule](crate::propagation::DeadlineFormat#the-clock-skew-rule)), the trace
//! context, the baggage and the travelling keys. The [`Server`] reads them back with the same
//! strict parsers as over HTTP: a message whose context headers are malformed never reaches its
//! handler (a request gets an error reply naming the header), and one whose deadline passed while
//! it waited in the broker's queue is dropped before its work starts. Both are counted
//! ([`Stats`]).
//!
//! # Cancellation across the broker
//!
//! A NATS requester and its responder share no connection: the responder cannot see the
//! requester give up. So [`request`] sends a **cancel notice** when it gives up on a request
//! before the reply arrives (its context is cancelled or its deadline passes, or the request
//! future is dropped), and the [`Server`] serving that request cancels the request's context:
//!
//! - Each request carries `ctxkit-cancel: H`, where `H` is the SHA-256 (lower-case hex) of 32
//!   random bytes `S` (from the operating system's generator) known only to the requester.
//! - The notice is published on `ctxkit.cancel.<request subject>.<H>` (see [`cancel_subject`])
//!   with `S` (lower-case hex) as its payload. A [`Server`] subscribed to subject `P` listens on
//!   `ctxkit.cancel.<P>.*` (`ctxkit.cancel.<P>` when `P` ends with `>`), so notices reach the
//!   responders of that subject only.
//! - The server cancels a request only when the notice's `S` hashes to the `H` of a request it
//!   is serving. Anyone who can read the requests sees `H`, but cannot find an `S` for it:
//!   nobody but the requester can cancel a request, and a notice cancels no other request (a
//!   second request in flight with the same `H` is refused). `S` is revealed only once the
//!   request is given up.
//! - The responder's context is cancelled with [`RequesterCanceled`] as its cause, so handlers
//!   (and the `#[cancellable]` fns they call) stop; the request is counted as
//!   [`Stats::canceled`].
//!
//! A notice that arrives before its request has been read (the two travel on different
//! subjects, in order from one connection, so this does not happen with one requester
//! connection) or after its request finished is ignored ([`Stats::ignored_notices`]).
//!
//! # A broker is not a call
//!
//! [`publish`] is fire-and-forget: the message's context carries a deadline and values, but no
//! cancellation (there is no one to tell). A pipeline whose later stages must stop when the first
//! one gives up uses [`request`] at each hop: each stage's handler makes its request to the next
//! under its own context, so a cancel notice reaching one stage cancels its request to the next,
//! which sends the next notice.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::{Client, HeaderMap, HeaderValue, Message, Subscriber, subject::ToSubject};
use bytes::Bytes;
use futures_core::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::propagation::{self, Accept, DeadlineFormat, Extractor, Injector, PropagationError};
use crate::{CancelHandle, Context, Instant};

pub use crate::propagation::{CTXKIT_CANCEL, CTXKIT_ERROR};

/// The first tokens of every cancel notice's subject: see [`cancel_subject`].
pub const CANCEL_PREFIX: &str = "ctxkit.cancel";

/// The longest error text a [`Server`] puts in a [`CTXKIT_ERROR`] reply header.
const MAX_ERROR_TEXT: usize = 1024;

/// NATS message headers as a carrier. Field names are matched exactly (NATS header names are
/// case-sensitive); ctxkit writes them in lower case.
///
/// `set` leaves out a name or value NATS cannot carry (a name with a `:`, spaces or control
/// characters, a value with a line break); [`propagation::inject`] never writes one.
impl Injector for HeaderMap {
    fn set(&mut self, name: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            name.parse::<async_nats::HeaderName>(),
            value.parse::<HeaderValue>(),
        ) {
            self.insert(name, value);
        }
    }

    fn remove(&mut self, name: &str) {
        // async-nats has no `remove`: rebuild the map without the field.
        let Ok(name) = name.parse::<async_nats::HeaderName>() else {
            return;
        };
        if self.get(name.clone()).is_none() {
            return;
        }
        let mut kept = HeaderMap::new();
        for (n, values) in self.iter() {
            if *n != name {
                for v in values {
                    kept.append(n.clone(), v.clone());
                }
            }
        }
        *self = kept;
    }
}

/// Every value of a repeated header is read, so a repeated `ctxkit-deadline` or key header is an
/// error, as over HTTP.
impl Extractor for HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        let name = name.parse::<async_nats::HeaderName>().ok()?;
        HeaderMap::get(self, name).map(HeaderValue::as_str)
    }

    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        let Ok(name) = name.parse::<async_nats::HeaderName>() else {
            return Vec::new();
        };
        HeaderMap::get_all(self, name)
            .map(|v| v.as_str().as_bytes())
            .collect()
    }
}

/// What went wrong sending, requesting or serving through NATS.
#[derive(Debug)]
#[non_exhaustive]
pub enum NatsError {
    /// The context was done: nothing was sent (or, for [`request`], the requester gave up
    /// waiting for the reply and sent a cancel notice).
    Context(crate::Error),
    /// The context could not be written into the message, or a message's context headers could
    /// not be read (the same errors as over HTTP).
    Propagation(PropagationError),
    /// A message's [`CTXKIT_CANCEL`] header is malformed, repeated or already used by a request
    /// in flight.
    CancelKey {
        /// The value received (cut after 1024 bytes).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The responder did not serve the request, and says why ([`CTXKIT_ERROR`]): its handler
    /// failed, or the request's context headers were malformed.
    Remote(String),
    /// The operating system's random generator failed (for a request's cancel secret).
    Random(String),
    /// NATS refused to publish.
    Publish(async_nats::PublishError),
    /// NATS request failed: no responders, the client's timeout (when the context has no
    /// deadline), or the connection.
    Request(async_nats::RequestError),
    /// NATS refused a subscription.
    Subscribe(async_nats::SubscribeError),
    /// The connection could not be flushed.
    Flush(async_nats::client::FlushError),
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::Context(e) => write!(f, "nats: {e}"),
            NatsError::Propagation(e) => write!(f, "nats: {e}"),
            NatsError::CancelKey { value, reason } => {
                write!(
                    f,
                    "nats: invalid {CTXKIT_CANCEL} header {value:?}: {reason}"
                )
            }
            NatsError::Remote(text) => write!(f, "nats: the responder failed: {text}"),
            NatsError::Random(e) => write!(f, "nats: no random cancel secret: {e}"),
            NatsError::Publish(e) => write!(f, "nats: publish: {e}"),
            NatsError::Request(e) => write!(f, "nats: request: {e}"),
            NatsError::Subscribe(e) => write!(f, "nats: subscribe: {e}"),
            NatsError::Flush(e) => write!(f, "nats: flush: {e}"),
        }
    }
}

impl std::error::Error for NatsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NatsError::Context(e) => Some(e),
            NatsError::Propagation(e) => Some(e),
            NatsError::Publish(e) => Some(e),
            NatsError::Request(e) => Some(e),
            NatsError::Subscribe(e) => Some(e),
            NatsError::Flush(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PropagationError> for NatsError {
    fn from(e: PropagationError) -> Self {
        NatsError::Propagation(e)
    }
}

impl From<crate::Error> for NatsError {
    fn from(e: crate::Error) -> Self {
        NatsError::Context(e)
    }
}

/// The cause of a responder's context when its requester gave up: a cancel notice arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequesterCanceled {
    subject: String,
}

impl RequesterCanceled {
    /// The subject the request was sent to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for RequesterCanceled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the requester canceled its request on {:?}",
            self.subject
        )
    }
}

impl std::error::Error for RequesterCanceled {}

/// Publishes `payload` on `subject` with `ctx` in its headers (deadline as an absolute time,
/// trace context, baggage, travelling keys). Nothing is sent when `ctx` is already done.
///
/// ```no_run
/// use std::time::Duration;
/// use ctxkit::Context;
///
/// # async fn f(client: async_nats::Client) -> Result<(), ctxkit::nats::NatsError> {
/// // A job that is worth doing for the next 30 s only, however long it waits in the queue.
/// let (job, _cancel) = Context::background().with_timeout(Duration::from_secs(30));
/// ctxkit::nats::publish(&client, &job, "jobs.resize", "img-1".into()).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`NatsError::Context`] when `ctx` is done, [`NatsError::Propagation`] when its values cannot
/// be written ([`propagation::inject`]), [`NatsError::Publish`] from NATS.
pub async fn publish<S: ToSubject>(
    client: &Client,
    ctx: &Context,
    subject: S,
    payload: Bytes,
) -> Result<(), NatsError> {
    publish_with_headers(client, ctx, subject, HeaderMap::new(), payload).await
}

/// [`publish`] with headers of your own; the context's fields replace those of the same names.
///
/// # Errors
///
/// Those of [`publish`].
pub async fn publish_with_headers<S: ToSubject>(
    client: &Client,
    ctx: &Context,
    subject: S,
    mut headers: HeaderMap,
    payload: Bytes,
) -> Result<(), NatsError> {
    if let Some(e) = ctx.err() {
        return Err(NatsError::Context(e));
    }
    propagation::inject_with(ctx, &mut headers, DeadlineFormat::Absolute)?;
    client
        .publish_with_headers(subject, headers, payload)
        .await
        .map_err(NatsError::Publish)
}

/// Sends a request on `subject` with `ctx` in its headers and waits for the reply, no longer
/// than `ctx` lasts. When `ctx` ends first (cancelled, or its deadline passed), a cancel notice
/// goes to the responder (see the [module documentation](self)), which cancels the request's
/// context there. The notice is also sent when the returned future is dropped before the reply
/// arrives (from a task spawned on the current tokio runtime) and when the client's own request
/// timeout (used only when `ctx` has no deadline) expires.
///
/// ```no_run
/// use std::time::Duration;
/// use ctxkit::{Context, Error};
/// use ctxkit::nats::{self, NatsError};
///
/// # async fn f(client: async_nats::Client) -> Result<(), NatsError> {
/// let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(5));
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_millis(100)).await;
///     cancel.cancel(); // the user went away: the responder's handler is cancelled too
/// });
/// match nats::request(&client, &ctx, "reports.build", "q3".into()).await {
///     Err(NatsError::Context(Error::Canceled)) => println!("gave up; the responder was told"),
///     other => println!("{:?}", other.map(|m| m.payload)),
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`NatsError::Context`] when `ctx` is done before the reply (nothing is sent when it was done
/// already), [`NatsError::Remote`] when the responder answered with an error
/// ([`CTXKIT_ERROR`]), [`NatsError::Propagation`] when the context cannot be written,
/// [`NatsError::Request`] from NATS (e.g. no responders), [`NatsError::Random`] without a
/// random generator.
pub async fn request<S: ToSubject>(
    client: &Client,
    ctx: &Context,
    subject: S,
    payload: Bytes,
) -> Result<Message, NatsError> {
    request_with_headers(client, ctx, subject, HeaderMap::new(), payload).await
}

/// [`request`] with headers of your own; the context's fields (and [`CTXKIT_CANCEL`]) replace
/// those of the same names.
///
/// # Errors
///
/// Those of [`request`].
pub async fn request_with_headers<S: ToSubject>(
    client: &Client,
    ctx: &Context,
    subject: S,
    mut headers: HeaderMap,
    payload: Bytes,
) -> Result<Message, NatsError> {
    if let Some(e) = ctx.err() {
        return Err(NatsError::Context(e));
    }
    let subject = subject.to_subject();
    propagation::inject_with(ctx, &mut headers, DeadlineFormat::Absolute)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| NatsError::Random(e.to_string()))?;
    let key = hex(&Sha256::digest(secret));
    headers.insert(CTXKIT_CANCEL, key.as_str());

    let mut notice = Notice {
        client: client.clone(),
        subject: cancel_subject(&subject, &key),
        secret: Some(hex(&secret)),
    };
    let mut request = async_nats::Request::new().headers(headers).payload(payload);
    if ctx.deadline().is_some() {
        // The context bounds the wait; the client's default timeout would cut it short.
        request = request.timeout(None);
    }
    match ctx.run(client.send_request(subject, request)).await {
        Err(e) => {
            notice.send().await;
            Err(NatsError::Context(e))
        }
        Ok(Err(e)) => {
            if matches!(e.kind(), async_nats::RequestErrorKind::NoResponders) {
                notice.secret = None; // nobody got it
            } else {
                notice.send().await;
            }
            Err(NatsError::Request(e))
        }
        Ok(Ok(reply)) => {
            notice.secret = None;
            if let Some(text) = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(CTXKIT_ERROR))
                .map(HeaderValue::as_str)
            {
                return Err(NatsError::Remote(text.to_owned()));
            }
            Ok(reply)
        }
    }
}

/// The subject of the cancel notice of a request sent on `subject` with [`CTXKIT_CANCEL`]
/// `key`: `ctxkit.cancel.<subject>.<key>`.
///
/// ```
/// let key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// assert_eq!(
///     ctxkit::nats::cancel_subject("orders.new", key),
///     format!("ctxkit.cancel.orders.new.{key}")
/// );
/// ```
pub fn cancel_subject(subject: &str, key: &str) -> String {
    format!("{CANCEL_PREFIX}.{subject}.{key}")
}

/// The subject a [`Server`] subscribed to `pattern` listens on for cancel notices.
fn cancel_pattern(pattern: &str) -> String {
    if pattern == ">" || pattern.ends_with(".>") {
        format!("{CANCEL_PREFIX}.{pattern}")
    } else {
        format!("{CANCEL_PREFIX}.{pattern}.*")
    }
}

/// A request's cancel notice, sent at most once: by [`Notice::send`], or when dropped.
struct Notice {
    client: Client,
    subject: String,
    secret: Option<String>,
}

impl Notice {
    async fn send(&mut self) {
        if let Some(secret) = self.secret.take() {
            // Best effort: if the connection is gone, so is the request.
            let subject = std::mem::take(&mut self.subject);
            let _ = self.client.publish(subject, secret.into()).await;
            let _ = self.client.flush().await;
        }
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        if self.secret.is_some()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let mut notice = Notice {
                client: self.client.clone(),
                subject: std::mem::take(&mut self.subject),
                secret: self.secret.take(),
            };
            rt.spawn(async move { notice.send().await });
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn shown(value: &[u8]) -> String {
    let cut = &value[..value.len().min(1024)];
    String::from_utf8_lossy(cut).into_owned()
}

/// The cancel key of a message: `Ok(None)` when it has none.
fn cancel_key(headers: &HeaderMap) -> Result<Option<[u8; 32]>, NatsError> {
    let all = Extractor::get_all(headers, CTXKIT_CANCEL);
    match all.as_slice() {
        [] => Ok(None),
        [one] => unhex(one).map(Some).ok_or_else(|| NatsError::CancelKey {
            value: shown(one),
            reason: "expected the SHA-256 of the cancel secret: 64 lower-case hex digits",
        }),
        _ => Err(NatsError::CancelKey {
            value: shown(&all.join(&b","[..])),
            reason: "header repeated",
        }),
    }
}

/// Builds a message's context from its headers, as a [`Server`] does, for a subscriber loop of
/// your own: [`propagation::extract`] with `accept` read as [`DeadlineFormat::Absolute`].
/// A message without headers gets a plain child of `parent`. Check [`Context::err`] before
/// starting the work: a message whose deadline passed in the queue comes with an expired
/// context.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Instant};
/// use ctxkit::propagation::{self, Accept, DeadlineFormat};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (job, _cancel) = Context::background().with_timeout(Duration::from_secs(3));
/// let mut headers = async_nats::HeaderMap::new();
/// propagation::inject_with(&job, &mut headers, DeadlineFormat::Absolute).unwrap();
///
/// let arrived = Instant::now();
/// let (ctx, _done) =
///     ctxkit::nats::extract(Some(&headers), &Context::background(), &Accept::new(), arrived)
///         .unwrap();
/// assert!(ctx.deadline().unwrap() <= arrived + Duration::from_secs(3));
/// assert!(ctx.err().is_none());
/// # }
/// ```
///
/// # Errors
///
/// Those of [`propagation::extract`].
pub fn extract(
    headers: Option<&HeaderMap>,
    parent: &Context,
    accept: &Accept,
    arrived: Instant,
) -> Result<(Context, CancelHandle), PropagationError> {
    let accept = accept.clone().deadline_format(DeadlineFormat::Absolute);
    match headers {
        Some(h) => propagation::extract(h, parent, &accept, arrived),
        None => propagation::extract(&HeaderMap::new(), parent, &accept, arrived),
    }
}

/// Why a [`Server`] did not run a message's handler (see [`Server::on_drop`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Dropped {
    /// The message's deadline passed (in the queue, or waiting for a free handler).
    Expired,
    /// Its requester gave up before the handler started.
    Canceled,
    /// The server stopped (its root context ended) before the handler started.
    Stopped,
    /// Its context headers are malformed: the error names the header.
    Malformed(NatsError),
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Expired => f.write_str("its deadline passed before its work started"),
            Dropped::Canceled => f.write_str("its requester canceled it before its work started"),
            Dropped::Stopped => f.write_str("the server stopped before its work started"),
            Dropped::Malformed(e) => write!(f, "malformed context: {e}"),
        }
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    malformed: AtomicU64,
    canceled: AtomicU64,
    stopped: AtomicU64,
    ignored_notices: AtomicU64,
}

/// A [`Server`]'s counts, read live (a cheap handle: clone it, keep it after `serve` took the
/// server).
#[derive(Clone)]
pub struct Stats(Arc<Counters>);

impl Stats {
    /// Messages taken from the subscription.
    pub fn received(&self) -> u64 {
        self.0.received.load(Ordering::Relaxed)
    }
    /// Handlers that ran and returned (`Ok`, or failed or panicked: see [`Stats::failed`]).
    /// Each message counts in one of `handled`, `expired`, `malformed`, `stopped`, or `canceled`
    /// when canceled before its handler started; a request canceled while its handler ran
    /// counts in both `canceled` and `handled`.
    pub fn handled(&self) -> u64 {
        self.0.handled.load(Ordering::Relaxed)
    }
    /// Handlers that returned an error or panicked (also counted in [`Stats::handled`]).
    pub fn failed(&self) -> u64 {
        self.0.failed.load(Ordering::Relaxed)
    }
    /// Messages dropped without running their handler because their deadline had passed.
    pub fn expired(&self) -> u64 {
        self.0.expired.load(Ordering::Relaxed)
    }
    /// Messages dropped because their context headers were malformed.
    pub fn malformed(&self) -> u64 {
        self.0.malformed.load(Ordering::Relaxed)
    }
    /// Requests whose requester's cancel notice was honoured (before or while their handler ran).
    pub fn canceled(&self) -> u64 {
        self.0.canceled.load(Ordering::Relaxed)
    }
    /// Messages not started because the server stopped first.
    pub fn stopped(&self) -> u64 {
        self.0.stopped.load(Ordering::Relaxed)
    }
    /// Cancel notices that cancelled nothing: late (the request had finished), early, or with a
    /// secret that does not match.
    pub fn ignored_notices(&self) -> u64 {
        self.0.ignored_notices.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("received", &self.received())
            .field("handled", &self.handled())
            .field("failed", &self.failed())
            .field("expired", &self.expired())
            .field("malformed", &self.malformed())
            .field("canceled", &self.canceled())
            .field("stopped", &self.stopped())
            .field("ignored_notices", &self.ignored_notices())
            .finish()
    }
}

type DropHook = Arc<dyn Fn(&Message, &Dropped) + Send + Sync>;

/// The requests in flight by cancel key: the handle that cancels each one's context.
type Registry = Arc<Mutex<HashMap<[u8; 32], CancelHandle>>>;

/// A subscriber that runs each message's handler under that message's context: see the
/// [module documentation](self).
///
/// For each message, [`Server::serve`]:
///
/// 1. builds its context from its headers ([`extract`]), a child of the root context; malformed
///    headers drop it ([`Dropped::Malformed`]; a request gets a [`CTXKIT_ERROR`] reply naming
///    the header) and the server goes on with the next message;
/// 2. drops it if its deadline has passed ([`Dropped::Expired`]), or passes while it waits for
///    one of the [`Server::max_in_flight`] handler slots;
/// 3. runs the handler in a task of its own, with the message's context current (typed keys
///    readable with `K::current()`, `#[cancellable]` fns cancelled with it), and sends its
///    `Ok` as the reply when the message has a reply subject (an `Err` as a [`CTXKIT_ERROR`]
///    reply);
/// 4. cancels that context when the requester's cancel notice arrives.
///
/// It stops taking messages when its root context ends (or the [`Server::draining`] one does),
/// then waits for the handlers in flight to return (still honouring cancel notices) and returns.
pub struct Server {
    client: Client,
    subject: String,
    messages: Subscriber,
    notices: Subscriber,
    accept: Accept,
    max_in_flight: usize,
    draining: Option<Context>,
    on_drop: Option<DropHook>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("subject", &self.subject)
            .field("max_in_flight", &self.max_in_flight)
            .field("stats", &Stats(self.counters.clone()))
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Subscribes to `subject` (wildcards allowed) and to its cancel notices, and waits until
    /// the broker has both subscriptions (a round trip through it): a message published once
    /// this returns, from any connection, is received.
    ///
    /// # Errors
    ///
    /// [`NatsError::Subscribe`], [`NatsError::Publish`] or [`NatsError::Flush`] from NATS
    /// ([`NatsError::Flush`] also when the broker does not confirm the subscriptions within the
    /// client's request timeout).
    pub async fn subscribe(client: &Client, subject: &str) -> Result<Server, NatsError> {
        let messages = client
            .subscribe(subject.to_owned())
            .await
            .map_err(NatsError::Subscribe)?;
        Server::with(client, subject, messages).await
    }

    /// [`Server::subscribe`] in queue group `group`: each message goes to one server of the
    /// group. Every server of the group hears every cancel notice and acts on its own requests.
    ///
    /// # Errors
    ///
    /// Those of [`Server::subscribe`].
    pub async fn queue_subscribe(
        client: &Client,
        subject: &str,
        group: &str,
    ) -> Result<Server, NatsError> {
        let messages = client
            .queue_subscribe(subject.to_owned(), group.to_owned())
            .await
            .map_err(NatsError::Subscribe)?;
        Server::with(client, subject, messages).await
    }

    async fn with(
        client: &Client,
        subject: &str,
        messages: Subscriber,
    ) -> Result<Server, NatsError> {
        let notices = client
            .subscribe(cancel_pattern(subject))
            .await
            .map_err(NatsError::Subscribe)?;
        confirm(client).await?;
        Ok(Server {
            client: client.clone(),
            subject: subject.to_owned(),
            messages,
            notices,
            accept: Accept::new(),
            max_in_flight: 256,
            draining: None,
            on_drop: None,
            counters: Arc::default(),
        })
    }

    /// Which travelling keys to read, and the longest deadline to grant
    /// ([`Accept::max_timeout`]); the deadline format is always
    /// [`DeadlineFormat::Absolute`]. Default: [`Accept::new`].
    pub fn accept(mut self, accept: Accept) -> Server {
        self.accept = accept.deadline_format(DeadlineFormat::Absolute);
        self
    }

    /// How many handlers may run at once (at least 1; default 256). Messages wait for a free
    /// slot in arrival order; one whose deadline passes meanwhile is dropped.
    pub fn max_in_flight(mut self, n: usize) -> Server {
        self.max_in_flight = n.max(1);
        self
    }

    /// Stops taking messages when `ctx` ends, while the handlers in flight keep their contexts
    /// (children of the root): for a two-phase shutdown, pass `Shutdown::draining` here and
    /// `Shutdown::hard` as the root.
    pub fn draining(mut self, ctx: &Context) -> Server {
        self.draining = Some(ctx.clone());
        self
    }

    /// Calls `f` for each message whose handler did not run, with the reason (e.g. to log it).
    pub fn on_drop(mut self, f: impl Fn(&Message, &Dropped) + Send + Sync + 'static) -> Server {
        self.on_drop = Some(Arc::new(f));
        self
    }

    /// The server's counts, live.
    pub fn stats(&self) -> Stats {
        Stats(self.counters.clone())
    }

    /// Serves messages until `root` ends (or the [`Server::draining`] context does), then waits
    /// for the handlers in flight and returns. Each handler gets the message's context (also
    /// current while it runs) and the message; its `Ok` is the reply to a request.
    ///
    /// # Errors
    ///
    /// None today: bad messages are dropped and counted, failing handlers answered with an
    /// error, and a closed connection ends the loop. The `Result` leaves room for failures to
    /// come.
    pub fn serve<F, Fut, R, E>(
        self,
        root: &Context,
        handler: F,
    ) -> impl Future<Output = Result<(), NatsError>> + Send + 'static
    where
        F: Fn(Context, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Bytes> + 'static,
        E: fmt::Display + 'static,
    {
        self.serve_owned(root.clone(), handler)
    }

    async fn serve_owned<F, Fut, R, E>(self, root: Context, handler: F) -> Result<(), NatsError>
    where
        F: Fn(Context, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Bytes> + 'static,
        E: fmt::Display + 'static,
    {
        let Server {
            client,
            subject: _,
            mut messages,
            mut notices,
            accept,
            max_in_flight,
            draining,
            on_drop,
            counters,
        } = self;
        let accept = accept.deadline_format(DeadlineFormat::Absolute);
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(max_in_flight));
        let registry: Registry = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        let stop = draining.unwrap_or_else(|| root.clone());
        let shared = Arc::new(Shared {
            client: client.clone(),
            counters: counters.clone(),
            on_drop,
        });

        loop {
            tokio::select! {
                biased;
                () = root.done() => break,
                () = stop.done() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                msg = futures_next(&mut messages) => {
                    let Some(msg) = msg else { break }; // connection closed for good
                    let arrived = Instant::now();
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(job) = admit(&shared, &registry, &accept, &root, msg, arrived).await {
                        tasks.spawn(run(
                            job,
                            shared.clone(),
                            registry.clone(),
                            slots.clone(),
                            handler.clone(),
                        ));
                    }
                }
                notice = futures_next(&mut notices) => {
                    if let Some(notice) = notice {
                        honour(&registry, &counters, &notice);
                    }
                }
            }
        }
        // Stop taking messages; keep hearing cancel notices until the handlers have returned.
        let _ = messages.unsubscribe().await;
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                Some(notice) = futures_next(&mut notices) => honour(&registry, &counters, &notice),
            }
        }
        let _ = notices.unsubscribe().await;
        Ok(())
    }
}

/// Waits until the broker has processed everything `client` sent so far (its subscriptions
/// included): a message the client sends itself comes back. Flushing the socket is not enough, as
/// another connection's message may be processed first.
async fn confirm(client: &Client) -> Result<(), NatsError> {
    let failed = |why: &'static str| {
        NatsError::Flush(async_nats::client::FlushError::with_source(
            async_nats::client::FlushErrorKind::FlushError,
            why,
        ))
    };
    let inbox = client.new_inbox();
    let mut probe = client
        .subscribe(inbox.clone())
        .await
        .map_err(NatsError::Subscribe)?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(NatsError::Publish)?;
    client.flush().await.map_err(NatsError::Flush)?;
    let wait = futures_next(&mut probe);
    let back = match client.timeout() {
        Some(limit) => tokio::time::timeout(limit, wait).await.ok().flatten(),
        None => wait.await,
    };
    let _ = probe.unsubscribe().await;
    back.map(drop)
        .ok_or_else(|| failed("the broker did not confirm the subscriptions in time"))
}

/// The next message of a subscription (`None` once it is closed).
async fn futures_next(sub: &mut Subscriber) -> Option<Message> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *sub).poll_next(cx)).await
}

/// What a message's task and the loop share.
struct Shared {
    client: Client,
    counters: Arc<Counters>,
    on_drop: Option<DropHook>,
}

impl Shared {
    fn dropped(&self, msg: &Message, why: Dropped) {
        let counter = match why {
            Dropped::Expired => &self.counters.expired,
            Dropped::Canceled => &self.counters.canceled,
            Dropped::Stopped => &self.counters.stopped,
            Dropped::Malformed(_) => &self.counters.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.on_drop {
            hook(msg, &why);
        }
    }

    async fn reply_error(&self, msg: &Message, text: &str) {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        let mut text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.len() > MAX_ERROR_TEXT {
            let mut cut = MAX_ERROR_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let mut headers = HeaderMap::new();
        Injector::set(&mut headers, CTXKIT_ERROR, text);
        let _ = self
            .client
            .publish_with_headers(reply, headers, Bytes::new())
            .await;
    }
}

/// A message admitted: its context, the handle that cancels it and its cancel key.
struct Job {
    msg: Message,
    ctx: Context,
    key: Option<[u8; 32]>,
    /// The handle of a message without a cancel key (the registry keeps the others').
    handle: Option<CancelHandle>,
}

/// Reads a message's context; registers its cancel key. `None` when it was dropped.
async fn admit(
    shared: &Shared,
    registry: &Registry,
    accept: &Accept,
    root: &Context,
    msg: Message,
    arrived: Instant,
) -> Option<Job> {
    let parsed = cancel_key(msg.headers.as_ref().unwrap_or(&HeaderMap::new())).and_then(|key| {
        let (ctx, handle) =
            extract(msg.headers.as_ref(), root, accept, arrived).map_err(NatsError::Propagation)?;
        Ok((key, ctx, handle))
    });
    let (key, ctx, handle) = match parsed {
        Ok(v) => v,
        Err(e) => {
            let text = e.to_string();
            shared.dropped(&msg, Dropped::Malformed(e));
            shared.reply_error(&msg, &text).await;
            return None;
        }
    };
    if let Some(e) = ctx.err() {
        let why = if e.is_deadline_exceeded() {
            Dropped::Expired
        } else {
            Dropped::Stopped
        };
        shared.dropped(&msg, why);
        return None;
    }
    if let Some(k) = key {
        let taken = {
            let mut map = registry.lock().unwrap_or_else(|p| p.into_inner());
            match map.entry(k) {
                std::collections::hash_map::Entry::Occupied(_) => Some(handle),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(handle);
                    None
                }
            }
        };
        if let Some(handle) = taken {
            drop(handle);
            let e = NatsError::CancelKey {
                value: hex(&k),
                reason: "already used by a request in flight",
            };
            let text = e.to_string();
            shared.dropped(&msg, Dropped::Malformed(e));
            shared.reply_error(&msg, &text).await;
            return None;
        }
        return Some(Job {
            msg,
            ctx,
            key,
            handle: None,
        });
    }
    Some(Job {
        msg,
        ctx,
        key,
        handle: Some(handle),
    })
}

/// Cancels the request a cancel notice names, if its secret matches.
fn honour(registry: &Registry, counters: &Counters, notice: &Message) {
    let key = notice
        .subject
        .rsplit('.')
        .next()
        .and_then(|k| unhex(k.as_bytes()));
    let secret = unhex(notice.payload.trim_ascii());
    let handle = match (key, secret) {
        (Some(key), Some(secret)) if Sha256::digest(secret)[..] == key[..] => registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key),
        _ => None,
    };
    match handle {
        Some(handle) => {
            counters.canceled.fetch_add(1, Ordering::Relaxed);
            // The request's subject: the notice's, less the prefix and the key.
            let subject = notice
                .subject
                .strip_prefix(CANCEL_PREFIX)
                .and_then(|s| s.strip_prefix('.'))
                .and_then(|s| s.rsplit_once('.'))
                .map_or("", |(s, _)| s)
                .to_owned();
            handle.cancel_with(RequesterCanceled { subject });
        }
        None => {
            counters.ignored_notices.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A message's task: waits for a handler slot (dropping the message if its context ends first),
/// runs the handler under the message's context and replies.
async fn run<F, Fut, R, E>(
    job: Job,
    shared: Arc<Shared>,
    registry: Registry,
    slots: Arc<Semaphore>,
    handler: Arc<F>,
) where
    F: Fn(Context, Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Into<Bytes> + 'static,
    E: fmt::Display + 'static,
{
    let Job {
        msg,
        ctx,
        key,
        handle,
    } = job;
    // Leaves the registry (dropping the handle, which ends the context) whatever happens.
    let _registered = Unregister { registry, key };
    let _handle = handle;
    let slot = tokio::select! {
        biased;
        () = ctx.done() => None,
        slot = slots.acquire_owned() => slot.ok(),
    };
    let Some(_slot) = slot.filter(|_| !ctx.is_done()) else {
        let why = match ctx.err() {
            Some(crate::Error::DeadlineExceeded) => Dropped::Expired,
            _ if ctx.cause().is_some_and(|c| c.is::<RequesterCanceled>()) => {
                // Counted when the notice was honoured.
                if let Some(hook) = &shared.on_drop {
                    hook(&msg, &Dropped::Canceled);
                }
                return;
            }
            _ => Dropped::Stopped,
        };
        shared.dropped(&msg, why);
        return;
    };
    let reply_to = msg.reply.clone();
    let work = ctx.scope(handler(ctx.clone(), msg.clone()));
    // A task of its own, so that a panic is the handler's alone.
    let outcome = tokio::spawn(async move {
        match work.await {
            Ok(r) => Ok(r.into()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    shared.counters.handled.fetch_add(1, Ordering::Relaxed);
    let answer = match outcome {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => Err("the handler panicked".to_owned()),
        Err(_) => Err("the handler was aborted".to_owned()),
    };
    match answer {
        Ok(payload) => {
            if let Some(reply) = reply_to {
                let _ = shared.client.publish(reply, payload).await;
            }
        }
        Err(text) => {
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            shared.reply_error(&msg, &text).await;
        }
    }
}

/// Removes a request's cancel key from the registry when its task ends.
struct Unregister {
    registry: Registry,
    key: Option<[u8; 32]>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let handle = self
                .registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            drop(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_is_a_carrier_that_never_panics() {
        let mut h = HeaderMap::new();
        Injector::set(&mut h, "x-a", "1".into());
        Injector::set(&mut h, "x-a", "2".into()); // replaces
        Injector::set(&mut h, "x-b", "3".into());
        Injector::set(&mut h, "bad name", "4".into()); // left out, no panic
        Injector::set(&mut h, "x-c", "line\r\nbreak".into()); // left out, no panic
        assert_eq!(Extractor::get(&h, "x-a"), Some("2"));
        assert_eq!(Extractor::get(&h, "bad name"), None);
        assert_eq!(Extractor::get(&h, "x-c"), None);
        h.append("x-b", "5");
        assert_eq!(Extractor::get_all(&h, "x-b"), vec![&b"3"[..], &b"5"[..]]);
        Injector::remove(&mut h, "x-b");
        assert!(Extractor::get_all(&h, "x-b").is_empty());
        assert_eq!(Extractor::get(&h, "x-a"), Some("2"));
        Injector::remove(&mut h, "not there");
        Injector::remove(&mut h, "bad name");
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn a_repeated_deadline_header_is_an_error_naming_it() {
        let (ctx, _c) = Context::background().with_timeout(std::time::Duration::from_secs(5));
        let mut h = HeaderMap::new();
        propagation::inject_with(&ctx, &mut h, DeadlineFormat::Absolute).unwrap();
        let sent = Extractor::get(&h, propagation::CTXKIT_SENT)
            .unwrap()
            .to_owned();
        h.append(propagation::CTXKIT_SENT, sent.as_str());
        let err = extract(
            Some(&h),
            &Context::background(),
            &Accept::new(),
            Instant::now(),
        )
        .unwrap_err();
        assert_eq!(err.header(), propagation::CTXKIT_SENT);
        assert!(err.to_string().contains("repeated"), "{err}");
    }

    #[test]
    fn cancel_keys_and_subjects() {
        let secret = [7u8; 32];
        let key = hex(&Sha256::digest(secret));
        assert_eq!(
            unhex(key.as_bytes()).unwrap()[..],
            Sha256::digest(secret)[..]
        );
        assert_eq!(unhex(hex(&secret).as_bytes()), Some(secret));
        assert_eq!(unhex(b"00"), None);
        assert_eq!(unhex(key.to_uppercase().as_bytes()), None);
        let mut h = HeaderMap::new();
        assert!(cancel_key(&h).unwrap().is_none());
        h.insert(CTXKIT_CANCEL, key.as_str());
        assert!(cancel_key(&h).unwrap().is_some());
        h.append(CTXKIT_CANCEL, key.as_str());
        assert!(matches!(
            cancel_key(&h),
            Err(NatsError::CancelKey {
                reason: "header repeated",
                ..
            })
        ));
        assert_eq!(cancel_pattern("a.b"), "ctxkit.cancel.a.b.*");
        assert_eq!(cancel_pattern("a.*"), "ctxkit.cancel.a.*.*");
        assert_eq!(cancel_pattern("a.>"), "ctxkit.cancel.a.>");
        assert_eq!(cancel_pattern(">"), "ctxkit.cancel.>");
    }
}
