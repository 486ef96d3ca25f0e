//! The talk's main example, "Cancellable Request", in Rust.
//!
//! A request starts with a timeout and carries its id in its context under a typed key. The
//! server reads the id (no id, no processing), spawns the slow event processing under the
//! request's context and waits for whichever comes first: the result, or the context being done.
//! On cancellation it cleans up (the talk's `cancelRequestAndCleanup`), waits for the processing
//! task to finish (the talk's `<-p`) and returns the context's error.
//!
//! The slow steps are a `#[cancellable]` fn: its plain `.await`s end as soon as the request is
//! done. The server keeps Go's explicit `select` on `done()`, because it has work to do after the
//! cancellation (clean up, then wait), where a `#[cancellable]` fn would return at once.
//!
//! Four requests show it: a fast one, a slow one that hits its deadline, one whose client hangs
//! up (and where that came from), and one without a valid id.
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

/// How long the processing takes to undo its partial work once stopped.
pub const ROLLBACK: Duration = Duration::from_millis(5);

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
}

impl Processor {
    /// The talk's `processor.Server`.
    pub async fn server(&self, ctx: &Context, event: &Event) -> Result<Status, ServerError> {
        let Some(RequestId(id)) = RequestId::get(ctx) else {
            return Err(ServerError::NoRequestId);
        };
        let event_id = match &event.payload {
            Payload::Downstream1 { event_id } => event_id.clone(),
            Payload::Downstream2 { seq } => format!("ds2-{seq}"),
        };
        say!(ctx, "server: request {id}, processing {event_id}");

        // The highly latent processing runs as its own task, under the request's context: it
        // sees the request's values and is cancelled with it.
        let mut p =
            tokio::spawn(ctx.scope(self.clone().process_event(event_id.clone(), event.steps)));

        // Wait till the event is either processed or the request is done.
        tokio::select! {
            biased; // the cancellation wins a tie
            () = ctx.done() => {
                self.cancel_request_and_cleanup(ctx, &event_id);
                let _ = (&mut p).await; // <-p: the processing task has ended when we return
                say!(ctx, "server: processing task has ended");
                Err(ctx.err().expect("done").into())
            }
            processed = &mut p => processed.expect("the processing task panicked"),
        }
    }

    /// The processing task: runs the steps and, when the request ends first, undoes the partial
    /// work before it ends (the server waits for that: the talk's `<-p`).
    async fn process_event(self, event_id: String, steps: u32) -> Result<Status, ServerError> {
        let _in_flight = InFlight::enter(&self.in_flight);
        let ctx = Context::current(); // the request's context, carried into this task
        let mut done = 0;
        let processed = run_steps(&event_id, steps, &mut done).await;
        if let Err(e) = &processed {
            say!(&ctx, "processor: stopped after {done}/{steps} steps: {e}");
            tokio::time::sleep(ROLLBACK).await; // undoing takes a moment too
            say!(
                &ctx,
                "processor: rolled back the partial work on {event_id}"
            );
        }
        processed
    }

    /// The talk's `cancelRequestAndCleanup`: tell upstream to forget the event, free its buffers.
    fn cancel_request_and_cleanup(&self, ctx: &Context, event_id: &str) {
        say!(ctx, "server: request done early, cleaning up {event_id}");
        self.cleaned_up.lock().unwrap().push(event_id.to_string());
    }

    /// Processing tasks still running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The events whose processing was cleaned up after a cancellation, oldest first.
    pub fn cleaned_up(&self) -> Vec<String> {
        self.cleaned_up.lock().unwrap().clone()
    }
}

/// The slow part: `steps` calls of [`STEP`] each. Being `#[cancellable]`, every `.await` here is
/// raced against the current context (the request's), so the loop ends with the request.
#[cancellable]
async fn run_steps(event_id: &str, steps: u32, done: &mut u32) -> Result<Status, ServerError> {
    for step in 1..=steps {
        tokio::time::sleep(STEP).await;
        *done = step;
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

/// Counts a processing task as running until it ends (however it ends).
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
        Ok(status) => say!(
            &ctx,
            "done: {} processed in {} steps",
            status.event_id,
            status.steps
        ),
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

/// The demo's four requests, one after the other; returns each one's result.
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

    println!("\n4. A request whose id is not a UUID.");
    let event = Event {
        request_id: "not-a-uuid",
        payload: Payload::Downstream2 { seq: 20 },
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
        "  processing tasks still running: {}; cleaned up after cancellation: {:?}",
        processor.in_flight(),
        processor.cleaned_up()
    );
}
