//! Pipelined processing, from the talk's "Pipelined Processing" slide: four stages joined by
//! bounded channels, each a task of one [`Group`] under the request's context.
//!
//! ```text
//!   generate ──▶ parse ──▶ enrich ──▶ sink        (channels hold 4 items each)
//! ```
//!
//! Two ways a pipeline ends early, both stopping every stage at its next `.await`, wherever it is
//! (waiting for input, for room downstream, or in the middle of its own work):
//! - The client disconnects mid-stream: one `cancel` on the request's context.
//! - A stage fails (the enrich stage's lookup breaks): the group cancels its context, which
//!   every stage runs under, and `wait` reports that one error, once; the stages it stopped
//!   report no errors of their own, and the request's context is left alone.
//!
//! The stages themselves know nothing about cancellation: each runs inside `ctx.run(..)`, which
//! drops it the moment the context is done. Waiting for the group, with a timeout, proves that
//! no task is left running.
//!
//! Run it with `cargo run --example pipeline`.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ctxkit::{Context, Error, Group, Instant};
use tokio::sync::mpsc::{self, Receiver, Sender};

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

/// Looks up each record's region: the slow stage (a few milliseconds per item). The lookup
/// breaks on line `fail_at`, if given.
pub async fn enrich(
    mut input: Receiver<Record>,
    out: Sender<Enriched>,
    handled: Counter,
    fail_at: Option<u64>,
) -> Result<(), PipelineError> {
    while let Some(record) = input.recv().await {
        tokio::time::sleep(Duration::from_millis(4)).await; // a remote lookup
        if Some(record.seq) == fail_at {
            return Err(PipelineError::Lookup {
                seq: record.seq,
                user: record.user,
            });
        }
        let region = ["eu-west", "us-east", "ap-south"]
            [record.user.bytes().map(usize::from).sum::<usize>() % 3];
        if out.send(Enriched { record, region }).await.is_err() {
            return Ok(());
        }
        handled.add();
    }
    Ok(())
}

/// Why a pipeline failed: the error of the one stage that broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineError {
    /// The enrich stage could not look up a record's region.
    Lookup {
        /// The record's line.
        seq: u64,
        /// The user it was about.
        user: String,
    },
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Lookup { seq, user } => {
                write!(f, "region lookup failed for {user} (line {seq})")
            }
        }
    }
}

impl std::error::Error for PipelineError {}

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

// ---- Wiring: every stage is a task of one group under the request's context. ----

/// The stages' names, in pipeline order.
pub const STAGES: [&str; 4] = ["generate", "parse", "enrich", "sink"];

/// A running pipeline: one group, one task per stage.
pub struct Pipeline {
    group: Group<PipelineError>,
    stages: Vec<Stage>,
}

/// One stage: its name, its count, and how it ended once it has.
struct Stage {
    name: &'static str,
    handled: Counter,
    ended: Arc<OnceLock<Ended>>,
}

#[derive(Clone, Copy)]
enum Ended {
    /// Ran out of input.
    Finished,
    /// The context stopped it.
    Stopped(Error),
    /// It failed: the group has its error.
    Failed,
}

/// How one stage ended.
pub struct StageReport {
    /// The stage's name.
    pub name: &'static str,
    /// Items it passed on.
    pub handled: usize,
    /// `Ok` if it returned by itself (it ran out of input, or it failed: see `failed`), the
    /// context's error if the context stopped it.
    pub ended: Result<(), Error>,
    /// Whether this is the stage whose error stopped the pipeline.
    pub failed: bool,
}

impl fmt::Display for StageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ended = match self.ended {
            _ if self.failed => "failed (the pipeline's error)".to_string(),
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

/// A pipeline that has ended: how each stage ended, and the pipeline's error, reported once.
pub struct Finished {
    /// One report per stage, in pipeline order.
    pub stages: Vec<StageReport>,
    /// The first (and only) stage error; `Ok` if the input ran out or the context stopped it.
    pub result: Result<(), PipelineError>,
}

impl Pipeline {
    /// Spawns the four stages in a group under `ctx`, joined by channels of [`CAPACITY`] items.
    /// `limit` bounds the input (`None`: endless, until `ctx` is cancelled).
    pub fn start(ctx: &Context, limit: Option<u64>) -> Pipeline {
        Pipeline::start_failing_at(ctx, limit, None)
    }

    /// Like [`Pipeline::start`], but the enrich stage's lookup fails on line `fail_at`.
    pub fn start_failing_at(ctx: &Context, limit: Option<u64>, fail_at: Option<u64>) -> Pipeline {
        let (lines_tx, lines_rx) = mpsc::channel(CAPACITY);
        let (records_tx, records_rx) = mpsc::channel(CAPACITY);
        let (enriched_tx, enriched_rx) = mpsc::channel(CAPACITY);
        let counters: [Counter; 4] = Default::default();
        let [g, p, e, s] = counters.clone();
        let mut pipeline = Pipeline {
            group: Group::new(ctx),
            stages: Vec::new(),
        };
        let [n0, n1, n2, n3] = STAGES;
        pipeline.stage(n0, &counters[0], async move {
            generate(lines_tx, limit, g).await;
            Ok(())
        });
        pipeline.stage(n1, &counters[1], async move {
            parse(lines_rx, records_tx, p).await;
            Ok(())
        });
        pipeline.stage(
            n2,
            &counters[2],
            enrich(records_rx, enriched_tx, e, fail_at),
        );
        pipeline.stage(n3, &counters[3], async move {
            sink(enriched_rx, s).await;
            Ok(())
        });
        pipeline
    }

    /// Starts one stage as a task of the group. `Context::current()` there is the group's
    /// context: `run` drops the stage as soon as it is done, whether the request was cancelled
    /// or another stage failed. Only a stage's own failure is an error of the group: the stages
    /// it stops have nothing to report but the context's error.
    fn stage(
        &mut self,
        name: &'static str,
        handled: &Counter,
        work: impl Future<Output = Result<(), PipelineError>> + Send + 'static,
    ) {
        let ended = Arc::new(OnceLock::new());
        let record = ended.clone();
        let started = self.group.try_spawn(async move {
            let (how, result) = match Context::current().run(work).await {
                Ok(Ok(())) => (Ended::Finished, Ok(())),
                Ok(Err(e)) => (Ended::Failed, Err(e)),
                Err(e) => (Ended::Stopped(e), Ok(())),
            };
            let _ = record.set(how);
            result
        });
        assert!(started, "a group without a limit always has room");
        self.stages.push(Stage {
            name,
            handled: handled.clone(),
            ended,
        });
    }

    /// Items the sink has stored so far.
    pub fn stored(&self) -> usize {
        self.stages.last().map_or(0, |s| s.handled.get())
    }

    /// Waits for every stage to end, at most `within`; a stage still running then is an error
    /// (and every stage still running is aborted).
    pub async fn join(self, within: Duration) -> Result<Vec<StageReport>, StillRunning> {
        Ok(self.finish(within).await?.stages)
    }

    /// Like [`Pipeline::join`], also returning the pipeline's error, if a stage failed.
    pub async fn finish(self, within: Duration) -> Result<Finished, StillRunning> {
        let Pipeline { group, stages } = self;
        // Dropping `wait` at the timeout drops the group, which aborts the stages left.
        let Ok(result) = tokio::time::timeout(within, group.wait()).await else {
            let stuck = stages.iter().find(|s| s.ended.get().is_none());
            return Err(StillRunning(stuck.map_or(STAGES[0], |s| s.name)));
        };
        let stages = stages
            .into_iter()
            .map(|s| {
                let ended = *s.ended.get().expect("wait returned: every stage has ended");
                StageReport {
                    name: s.name,
                    handled: s.handled.get(),
                    ended: match ended {
                        Ended::Stopped(e) => Err(e),
                        Ended::Finished | Ended::Failed => Ok(()),
                    },
                    failed: matches!(ended, Ended::Failed),
                }
            })
            .collect();
        Ok(Finished { stages, result })
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
    let (request, disconnect) = Context::background().with_cancel();
    println!("  starting {} under {request:?}", STAGES.join(" -> "));
    let pipeline = Pipeline::start(&request, None);

    tokio::time::sleep(client_waits).await;
    println!(
        "  the client disconnects after {client_waits:?}, with {} records stored",
        pipeline.stored()
    );
    let cancelled_at = Instant::now();
    disconnect.cancel_with(ClientDisconnected);

    let stages = pipeline.join(Duration::from_secs(2)).await?;
    Ok(Outcome {
        stages,
        stopped_in: cancelled_at.elapsed(),
        request,
    })
}

/// What the failure demo observed.
pub struct FailureOutcome {
    /// How each stage ended, and the pipeline's error.
    pub finished: Finished,
    /// The context of the group the stages ran in, after the fact.
    pub stages_context: Context,
    /// Whether the request's context was still live once the pipeline had failed.
    pub request_live: bool,
}

/// The second demo: an endless pipeline whose enrich stage breaks on line `fail_at`.
pub async fn demo_failure(fail_at: u64) -> Result<FailureOutcome, StillRunning> {
    let (request, _cancel) = Context::background().with_cancel();
    println!("  the enrich stage's lookup will break on line {fail_at}");
    let pipeline = Pipeline::start_failing_at(&request, None, Some(fail_at));
    let stages_context = pipeline.group.context().clone();
    let finished = pipeline.finish(Duration::from_secs(2)).await?;
    Ok(FailureOutcome {
        finished,
        stages_context,
        request_live: request.err().is_none(),
    })
}

#[tokio::main]
async fn main() -> Result<(), StillRunning> {
    println!(
        "Pipelined processing: each stage is a task of a group under the request's context.\n"
    );
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

    println!("\nA stage fails: the group stops every other stage and reports the error once.\n");
    let failure = demo_failure(42).await?;
    for stage in &failure.finished.stages {
        println!("    {stage}");
    }
    match &failure.finished.result {
        Err(e) => println!("  the pipeline failed: {e}"),
        Ok(()) => println!("  the pipeline did not fail (it should have)"),
    }
    if let Some(cause) = failure.stages_context.cause() {
        println!("  the stages were stopped by: {cause}");
    }
    println!(
        "  the request's own context is {}: a failed pipeline is the handler's to report.",
        if failure.request_live {
            "still live"
        } else {
            "cancelled"
        }
    );
    Ok(())
}
