//! The talk's main example, "Cancellable Request", in Rust.
//!
//! A request starts with a timeout and carries its id in its context under a typed key. The
//! server is the talk's `processor.Server` without the goroutine, the channel and the `select`:
//! it is `#[cancellable]`, so each of its `.await`s is raced against the request's context. When
//! the request ends first, the call returns the context's error at the await it was waiting on,
//! dropping the processing in flight there (the talk's `<-p`: once the server returns, nothing of
//! the processing runs any more). A `Cleanup` guard does the talk's `cancelRequestAndCleanup`
//! when the call ends early, and `#[shield]` keeps the final commit whole even if the request ends
//! while it runs.
//!
//! Five requests show it: a fast one, a slow one that hits its deadline, one whose client hangs
//! up (and where that came from), one whose deadline passes during the commit, and one without a
//! valid id.
//!
//! Run it with `cargo run --example cancellable_request`.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ctxkit::{Context, ContextKey, Instant, cancellable};
use uuid::Uuid;

/// Prints a line of the story: `say!(ctx, "format {}", args)`.
macro_rules! say {
    ($ctx:expr, $($fmt:tt)+) => {
        narrate($ctx, format_args!($($fmt)+))
    };
}

// ---- util: the request id under a typed key (the talk's SetContextValue/GetContextValue) ----

/// The id of the request being served. The type is the key: no string constant to collide with,
/// no type assertion to get wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ContextKey)]
pub struct RequestId(pub Uuid);

// ---- event: what arrives from downstream ----

/// An event, as it arrives on the wire.
pub struct Event {
    /// The request id as sent (the talk's thrift `ContextValue.requestID`): not necessarily valid.
    pub request_id: &'static str,
    /// Which downstream sent it, with that downstream's fields.
    pub payload: Payload,
    /// How many slow steps processing it takes.
    pub steps: u32,
}

/// The talk's `DownstreamEvent1` / `DownstreamEvent2`: one variant per downstream.
pub enum Payload {
    /// From the first downstream.
    Downstream1 {
        /// Its event id.
        event_id: String,
    },
    /// From the second downstream, which numbers its events.
    Downstream2 {
        /// Its event number.
        seq: u64,
    },
}

/// The talk's `getIDFromEvent`: the id, if the event carries a valid one.
pub fn get_id_from_event(event: &Event) -> Option<RequestId> {
    Uuid::parse_str(event.request_id).ok().map(RequestId)
}

// ---- processor: the server ----

/// How long one processing step takes.
pub const STEP: Duration = Duration::from_millis(40);

/// How long each of the commit's two writes takes.
pub const COMMIT_WRITE: Duration = Duration::from_millis(20);

/// What the server answers when the processing finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The event that was processed.
    pub event_id: String,
    /// The steps it took.
    pub steps: u32,
}

/// Why the server gave no [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerError {
    /// The context carries no request id (the talk's "Not a valid UUID to process").
    NoRequestId,
    /// The request's context ended first.
    Context(ctxkit::Error),
}

impl From<ctxkit::Error> for ServerError {
    fn from(e: ctxkit::Error) -> Self {
        ServerError::Context(e)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NoRequestId => f.write_str("not a valid UUID to process"),
            ServerError::Context(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::NoRequestId => None,
            ServerError::Context(e) => Some(e),
        }
    }
}

/// The talk's `processor` package: the server, and what it keeps track of.
#[derive(Clone, Default)]
pub struct Processor {
    in_flight: Arc<AtomicUsize>,
    cleaned_up: Arc<Mutex<Vec<String>>>,
    stored: Arc<Mutex<Vec<Status>>>,
    acknowledged: Arc<Mutex<Vec<String>>>,
}

impl Processor {
    /// The talk's `processor.Server`: every `.await` here is raced against `ctx`, so no
    /// goroutine, no channel and no `select` on `ctx.Done()` are needed.
    #[cancellable]
    pub async fn server(&self, ctx: &Context, event: &Event) -> Result<Status, ServerError> {
        let RequestId(id) = *RequestId::get(ctx).ok_or(ServerError::NoRequestId)?;
        let event_id = event.id();
        say!(ctx, "server: request {id}, processing {event_id}");
        let cleanup = Cleanup::arm(self, ctx, &event_id); // runs if the call ends early
        let status = self.process_event(&event_id, event.steps).await?; // the request's end stops it here
        #[shield(timeout = "100ms")]
        self.commit(&status).await?; // once started, the commit finishes
        cleanup.disarm();
        Ok(status)
    }

    /// The highly latent processing: `steps` steps of [`STEP`]. It takes the request's context
    /// as the current one, so it stops with the server.
    #[cancellable]
    async fn process_event(&self, event_id: &str, steps: u32) -> Result<Status, ServerError> {
        let _in_flight = InFlight::enter(&self.in_flight);
        for step in 1..=steps {
            tokio::time::sleep(STEP).await;
            say!(
                &Context::current(),
                "processor: step {step}/{steps} of {event_id} done"
            );
        }
        Ok(Status {
            event_id: event_id.to_string(),
            steps,
        })
    }

    /// Stores the result, then acknowledges the event upstream: two writes that must not be
    /// separated (a stored but unacknowledged event would be processed again). Under the
    /// server's `#[shield]` its current context is one the request's end does not cancel.
    #[cancellable]
    async fn commit(&self, status: &Status) -> Result<(), ServerError> {
        tokio::time::sleep(COMMIT_WRITE).await;
        self.stored.lock().unwrap().push(status.clone());
        tokio::time::sleep(COMMIT_WRITE).await;
        let event_id = status.event_id.clone();
        say!(&Context::current(), "server: committed {event_id}");
        self.acknowledged.lock().unwrap().push(event_id);
        Ok(())
    }

    /// Processings still running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The events whose processing was cleaned up after the server stopped early, oldest first.
    pub fn cleaned_up(&self) -> Vec<String> {
        self.cleaned_up.lock().unwrap().clone()
    }

    /// The results stored by a commit, oldest first.
    pub fn stored(&self) -> Vec<Status> {
        self.stored.lock().unwrap().clone()
    }

    /// The events acknowledged upstream by a commit, oldest first.
    pub fn acknowledged(&self) -> Vec<String> {
        self.acknowledged.lock().unwrap().clone()
    }
}

impl Event {
    /// The event's id, whichever downstream sent it.
    pub fn id(&self) -> String {
        match &self.payload {
            Payload::Downstream1 { event_id } => event_id.clone(),
            Payload::Downstream2 { seq } => format!("ds2-{seq}"),
        }
    }
}

/// The talk's `cancelRequestAndCleanup`, as a guard: armed when the processing starts and
/// disarmed once the result is committed. Dropped armed, that is when the server's call ends
/// early (its context ended during an await, or an error returned), it tells upstream to forget
/// the event and frees its buffers. It runs as the call returns, after the in-flight processing
/// was dropped.
struct Cleanup<'a> {
    processor: &'a Processor,
    ctx: &'a Context,
    event_id: &'a str,
    armed: bool,
}

impl<'a> Cleanup<'a> {
    fn arm(processor: &'a Processor, ctx: &'a Context, event_id: &'a str) -> Self {
        Cleanup {
            processor,
            ctx,
            event_id,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let why = self
            .ctx
            .err()
            .map_or_else(|| "an error".to_string(), |e| e.to_string());
        say!(
            self.ctx,
            "server: request ended early ({why}), cleaning up {}",
            self.event_id
        );
        let mut cleaned_up = self.processor.cleaned_up.lock().unwrap();
        cleaned_up.push(self.event_id.to_string());
    }
}

/// Counts a processing as running until it ends (however it ends).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---- request: the talk's startRequest ----

/// The talk's `startRequest`: a context with a timeout (under `parent`, the connection's
/// context), the id stored in it, then the server.
pub async fn start_request(
    parent: &Context,
    processor: &Processor,
    event: &Event,
    timeout: Duration,
) -> Result<Status, ServerError> {
    // Go's `defer cancel()` is the handle's drop: the context is cancelled when we return.
    let (ctx, _cancel) = parent.with_timeout(timeout);

    // Store the id inside the context tree's value node (if the event has a valid one).
    let ctx = match get_id_from_event(event) {
        Some(id) => RequestId::set(&ctx, id),
        None => ctx,
    };

    let result = processor.server(&ctx, event).await;
    match &result {
        Ok(status) => {
            say!(
                &ctx,
                "done: {} processed in {} steps",
                status.event_id,
                status.steps
            );
            if let Some(e) = ctx.err() {
                say!(
                    &ctx,
                    "the request ended during the commit ({e}), which finished anyway"
                );
            }
        }
        Err(e) => {
            say!(&ctx, "failed: {e}");
            if let Some(cause) = ctx.cause() {
                let origin = cause.origin().unwrap_or_else(|| "unknown".into());
                // Just the place: a deadline's origin also prints the instant it was set for.
                let origin = origin.split_once(" (").map_or(&*origin, |(place, _)| place);
                say!(&ctx, "why: {cause}; {origin}");
            }
        }
    }
    result
}

// ---- narration ----

/// Prints a line, stamped with the time since the program started and the request's id (read
/// from the context, as a tracer would).
fn narrate(ctx: &Context, what: fmt::Arguments<'_>) {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    let id = match RequestId::get(ctx) {
        Some(RequestId(id)) => id.simple().to_string()[..8].to_string(),
        None => "no id".to_string(),
    };
    println!("  {ms:>4} ms  [{id:>8}]  {what}");
}

/// A client that hung up.
#[derive(Debug)]
pub struct ClientHungUp;

impl fmt::Display for ClientHungUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client hung up")
    }
}

impl std::error::Error for ClientHungUp {}

/// The demo's five requests, one after the other; returns each one's result.
pub async fn demo(processor: &Processor) -> Vec<Result<Status, ServerError>> {
    let mut results = Vec::new();

    println!("1. A fast request: 3 steps of {STEP:?}, a timeout of 300ms.");
    let event = Event {
        request_id: "c66e30e7-5a91-435c-bf18-e63469d472b3", // the talk's example id
        payload: Payload::Downstream1 {
            event_id: "ds1-17".into(),
        },
        steps: 3,
    };
    let conn = Context::background();
    results.push(start_request(&conn, processor, &event, Duration::from_millis(300)).await);

    println!("\n2. A slow request: 10 steps of {STEP:?}, a timeout of 150ms.");
    let event = Event {
        request_id: "0b7e4a52-2f1c-4d8e-9a63-5c1d2e3f4a5b",
        payload: Payload::Downstream2 { seq: 18 },
        steps: 10,
    };
    results.push(start_request(&conn, processor, &event, Duration::from_millis(150)).await);

    println!("\n3. A request whose client hangs up after 60ms (the timeout is 300ms).");
    let event = Event {
        request_id: "9f1d3c2b-8a7e-4f60-b5d4-3c2b1a0f9e8d",
        payload: Payload::Downstream1 {
            event_id: "ds1-19".into(),
        },
        steps: 10,
    };
    let (conn, hang_up) = Context::background().with_cancel();
    let client = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        hang_up.cancel_with(ClientHungUp);
    });
    results.push(start_request(&conn, processor, &event, Duration::from_millis(300)).await);
    client.await.expect("the client task panicked");

    println!(
        "\n4. A request whose deadline (140ms) passes during its commit, after 3 steps of {STEP:?}."
    );
    let event = Event {
        request_id: "5d2c1b0a-9e8f-4a7b-8c6d-1e2f3a4b5c6d",
        payload: Payload::Downstream2 { seq: 20 },
        steps: 3,
    };
    let conn = Context::background();
    results.push(start_request(&conn, processor, &event, Duration::from_millis(140)).await);

    println!("\n5. A request whose id is not a UUID.");
    let event = Event {
        request_id: "not-a-uuid",
        payload: Payload::Downstream2 { seq: 21 },
        steps: 3,
    };
    let conn = Context::background();
    results.push(start_request(&conn, processor, &event, Duration::from_millis(300)).await);

    results
}

#[tokio::main]
async fn main() {
    println!("The talk's cancellable request, with ctxkit.\n");
    let processor = Processor::default();
    let results = demo(&processor).await;

    println!("\nSummary:");
    for (n, result) in results.iter().enumerate() {
        match result {
            Ok(status) => println!("  request {}: ok, {} processed", n + 1, status.event_id),
            Err(e) => println!("  request {}: error: {e}", n + 1),
        }
    }
    println!(
        "  processings still running: {}; cleaned up: {:?}; committed: {:?}",
        processor.in_flight(),
        processor.cleaned_up(),
        processor.acknowledged()
    );
}
