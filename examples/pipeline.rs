//! Pipelined processing, from the talk's "Pipelined Processing" slide: four stages joined by
//! bounded channels, each its own task under the request's context.
//!
//! ```text
//!   generate ──▶ parse ──▶ enrich ──▶ sink        (channels hold 4 items each)
//! ```
//!
//! The client disconnects mid-stream: one `cancel` on the request's context stops every stage at
//! its next `.await`, wherever it is (waiting for input, for room downstream, or in the middle of
//! its own work). The stages themselves know nothing about cancellation: each runs inside
//! `ctx.run(..)`, which drops it the moment the context is done. All handles are then joined
//! with a timeout, which proves that no task is left running.
//!
//! Run it with `cargo run --example pipeline`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ctxkit::{Context, Error, Instant};
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::task::JoinHandle;

/// How many items each channel between two stages holds.
pub const CAPACITY: usize = 4;

/// A raw log line, as the generator produces it.
pub type Line = String;

/// A parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the input.
    pub seq: u64,
    /// The user the line is about.
    pub user: String,
    /// What happened.
    pub action: String,
}

/// A record plus what the enrich stage looked up about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enriched {
    /// The record.
    pub record: Record,
    /// Which region serves the user (the slow lookup).
    pub region: &'static str,
}

/// A count of the items one stage has passed on; shared with whoever reports on the pipeline.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    fn add(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Items handled so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

// ---- The stages: plain async fns, unaware of cancellation (the context takes care of it). ----

/// Produces log lines: `limit` of them, or endlessly.
pub async fn generate(out: Sender<Line>, limit: Option<u64>, handled: Counter) {
    let mut seq = 0;
    while limit.is_none_or(|l| seq < l) {
        let line = format!(
            "{seq} user-{} {}",
            seq % 7,
            ["login", "view", "logout"][seq as usize % 3]
        );
        if out.send(line).await.is_err() {
            return; // downstream is gone
        }
        handled.add();
        seq += 1;
    }
}

/// Parses each line into a [`Record`]; malformed lines are skipped.
pub async fn parse(mut input: Receiver<Line>, out: Sender<Record>, handled: Counter) {
    while let Some(line) = input.recv().await {
        let mut words = line.split(' ');
        let (Some(seq), Some(user), Some(action)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(seq) = seq.parse() else { continue };
        let record = Record {
            seq,
            user: user.to_string(),
            action: action.to_string(),
        };
        if out.send(record).await.is_err() {
            return;
        }
        handled.add();
    }
}

/// Looks up each record's region: the slow stage (a few milliseconds per item).
pub async fn enrich(mut input: Receiver<Record>, out: Sender<Enriched>, handled: Counter) {
    while let Some(record) = input.recv().await {
        tokio::time::sleep(Duration::from_millis(4)).await; // a remote lookup
        let region = ["eu-west", "us-east", "ap-south"]
            [record.user.bytes().map(usize::from).sum::<usize>() % 3];
        if out.send(Enriched { record, region }).await.is_err() {
            return;
        }
        handled.add();
    }
}

/// Stores each enriched record, narrating every tenth.
pub async fn sink(mut input: Receiver<Enriched>, handled: Counter) {
    while let Some(item) = input.recv().await {
        tokio::time::sleep(Duration::from_millis(1)).await; // a write
        let n = handled.add();
        if n.is_multiple_of(10) {
            let r = &item.record;
            println!(
                "    sink: stored #{n:<3} (line {}: {} {} in {})",
                r.seq, r.user, r.action, item.region
            );
        }
    }
}

// ---- Wiring: every stage is a task under the request's context. ----

/// The stages' names, in pipeline order.
pub const STAGES: [&str; 4] = ["generate", "parse", "enrich", "sink"];

/// A running pipeline: one task per stage.
pub struct Pipeline {
    tasks: Vec<Task>,
}

/// One stage's task: its name, its count and its handle (`Err` if the context stopped it).
struct Task {
    name: &'static str,
    handled: Counter,
    handle: JoinHandle<Result<(), Error>>,
}

/// How one stage ended.
pub struct StageReport {
    /// The stage's name.
    pub name: &'static str,
    /// Items it passed on.
    pub handled: usize,
    /// `Ok` if it ran out of input, the context's error if the context stopped it.
    pub ended: Result<(), Error>,
}

impl fmt::Display for StageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ended = match self.ended {
            Ok(()) => "finished its input".to_string(),
            Err(e) => format!("stopped: {e}"),
        };
        write!(
            f,
            "{:<9} handled {:>3} items, {ended}",
            self.name, self.handled
        )
    }
}

/// A stage that did not stop in time.
#[derive(Debug)]
pub struct StillRunning(pub &'static str);

impl fmt::Display for StillRunning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage `{}` is still running", self.0)
    }
}

impl std::error::Error for StillRunning {}

impl Pipeline {
    /// Spawns the four stages under `ctx`, joined by channels of [`CAPACITY`] items. `limit`
    /// bounds the input (`None`: endless, until `ctx` is cancelled).
    pub fn start(ctx: &Context, limit: Option<u64>) -> Pipeline {
        let (lines_tx, lines_rx) = mpsc::channel(CAPACITY);
        let (records_tx, records_rx) = mpsc::channel(CAPACITY);
        let (enriched_tx, enriched_rx) = mpsc::channel(CAPACITY);
        let counters: [Counter; 4] = Default::default();
        let [g, p, e, s] = counters.clone();
        // `ctx.run(stage)` runs the stage with `ctx` as its current context and drops it as soon
        // as `ctx` is done, returning the context's error.
        let handles = [
            tokio::spawn(ctx.run(generate(lines_tx, limit, g))),
            tokio::spawn(ctx.run(parse(lines_rx, records_tx, p))),
            tokio::spawn(ctx.run(enrich(records_rx, enriched_tx, e))),
            tokio::spawn(ctx.run(sink(enriched_rx, s))),
        ];
        let tasks = STAGES
            .into_iter()
            .zip(counters)
            .zip(handles)
            .map(|((name, handled), handle)| Task {
                name,
                handled,
                handle,
            })
            .collect();
        Pipeline { tasks }
    }

    /// Items the sink has stored so far.
    pub fn stored(&self) -> usize {
        self.tasks.last().map_or(0, |t| t.handled.get())
    }

    /// Waits for every stage to end, at most `within`; a stage still running then is an error
    /// (and is aborted).
    pub async fn join(self, within: Duration) -> Result<Vec<StageReport>, StillRunning> {
        let give_up = Instant::now() + within;
        let mut reports = Vec::new();
        for Task {
            name,
            handled,
            mut handle,
        } in self.tasks
        {
            match tokio::time::timeout_at(give_up, &mut handle).await {
                Ok(joined) => reports.push(StageReport {
                    name,
                    handled: handled.get(),
                    ended: joined.expect("a pipeline stage panicked"),
                }),
                Err(_) => {
                    handle.abort();
                    return Err(StillRunning(name));
                }
            }
        }
        Ok(reports)
    }
}

/// The client that gave up on the request.
#[derive(Debug)]
pub struct ClientDisconnected;

impl fmt::Display for ClientDisconnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client disconnected")
    }
}

impl std::error::Error for ClientDisconnected {}

/// What the demo observed.
pub struct Outcome {
    /// One report per stage, in pipeline order.
    pub stages: Vec<StageReport>,
    /// From the cancel to the last stage joined.
    pub stopped_in: Duration,
    /// The request context, after the fact.
    pub request: Context,
}

/// The demo: an endless pipeline whose client disconnects after `client_waits`.
pub async fn demo(client_waits: Duration) -> Result<Outcome, StillRunning> {
    let (request, disconnect) = Context::background().with_cancel_cause();
    println!("  starting {} under {request:?}", STAGES.join(" -> "));
    let pipeline = Pipeline::start(&request, None);

    tokio::time::sleep(client_waits).await;
    println!(
        "  the client disconnects after {client_waits:?}, with {} records stored",
        pipeline.stored()
    );
    let cancelled_at = Instant::now();
    disconnect.cancel(ClientDisconnected);

    let stages = pipeline.join(Duration::from_secs(2)).await?;
    Ok(Outcome {
        stages,
        stopped_in: cancelled_at.elapsed(),
        request,
    })
}

#[tokio::main]
async fn main() -> Result<(), StillRunning> {
    println!("Pipelined processing: each stage is a task under the request's context.\n");
    let outcome = demo(Duration::from_millis(150)).await?;

    println!("\n  every stage has ended and been joined:");
    for stage in &outcome.stages {
        println!("    {stage}");
    }
    let first = outcome.stages.first().map_or(0, |s| s.handled);
    let last = outcome.stages.last().map_or(0, |s| s.handled);
    println!(
        "  {} items were in flight and dropped with the channels: bounded channels cap that at",
        first - last
    );
    println!(
        "  {} (3 channels of {CAPACITY}, plus one item in the hands of each later stage).",
        3 * CAPACITY + 3
    );
    println!(
        "  all {} tasks stopped {:?} after the cancel: none is left running.",
        outcome.stages.len(),
        outcome.stopped_in
    );
    if let Some(cause) = outcome.request.cause() {
        let origin = cause.origin().unwrap_or_default();
        println!("  why: {cause} ({origin})");
    }
    Ok(())
}
