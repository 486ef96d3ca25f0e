//! The talk's pipelined processing across three processes connected by a real NATS server:
//! stage 1 (this process) sends jobs with a request id and a deadline, stage 2 (`transform`, a
//! child process) transforms each and asks stage 3 (`store`, another child process) to store it.
//! Every hop is a `ctxkit::nats::request` made under the job's context, so the job's deadline,
//! trace and request id reach every stage, and a job its requester cancels stops everywhere.
//!
//! - `job-1` goes through: every stage prints its trace id, request id and budget left.
//! - `job-2` is sent with a 100 ms budget while `transform`'s only handler slot is busy with
//!   `job-1`: it expires while queued and `transform` drops it, with the reason, without starting
//!   its work.
//! - `job-3` is cancelled by stage 1 while `store` is working on it: `transform` and `store` are
//!   cancelled through cancel notices; the demo prints how long after the cancel `store`
//!   stopped.
//! - Then it measures the cancel latency over 50 runs, one hop (stage 1 → `store`) and two hops
//!   (stage 1 → `transform` → `store`), and prints min / median / max, and each stage's counts.
//!
//! Run with `CTXKIT_NATS_URL=nats://127.0.0.1:4222 cargo run -p ctxkit-integration --example
//! broker_pipeline` against a running `nats-server`. Without `CTXKIT_NATS_URL` it says so loudly
//! and does nothing (and fails under `CI=true`).

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{Client, Message};
use ctxkit::nats::{self, Dropped, NatsError, Server};
use ctxkit::propagation::{Accept, TraceContext};
use ctxkit::{Context, ContextKey, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const URL_ENV: &str = "CTXKIT_NATS_URL";
const TRANSFORM: &str = "pipeline.transform";
const STORE: &str = "pipeline.store";

/// The talk's request id, travelling in `x-request-id`.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id")]
struct RequestId;

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// What a stage prints about the context it runs under (the current one).
fn describe() -> String {
    let ctx = Context::current();
    let id = RequestId::current().unwrap_or_default();
    let trace = ctx
        .value::<TraceContext>()
        .map(|t| t.trace_id_hex())
        .unwrap_or_default();
    let budget = ctx.deadline().map_or("none".to_owned(), |d| {
        format!(
            "{} ms",
            d.saturating_duration_since(Instant::now()).as_millis()
        )
    });
    format!("request id {id}, trace {trace}, budget left {budget}")
}

/// Works `ms` milliseconds under the current context, or stops when it ends (printing when, for
/// stage 1 to measure).
async fn work(stage: &str, ms: u64) -> Result<(), ctxkit::Error> {
    let ctx = Context::current();
    let id = RequestId::current().unwrap_or_default();
    println!("@started {stage} {id}");
    match ctx.run(tokio::time::sleep(Duration::from_millis(ms))).await {
        Ok(()) => Ok(()),
        Err(e) => {
            println!("@stopped {stage} {id} {}", unix_nanos());
            if !id.starts_with("lat-") {
                println!("[{stage}] {id}: stopped: {}", ctx.cause().unwrap());
            }
            Err(e)
        }
    }
}

/// A stage's process: serves its subject until its standard input closes.
async fn stage(role: &str, url: &str) {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let (root, stop) = Context::background().with_cancel();
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = stdin.next_line().await {}
        stop.cancel();
    });
    let subject = if role == "transform" {
        TRANSFORM
    } else {
        STORE
    };
    let stage: &'static str = if role == "transform" {
        "transform"
    } else {
        "store"
    };
    let server = Server::subscribe(&client, subject)
        .await
        .expect("subscribe")
        .accept(Accept::new().key::<RequestId>())
        // One job at a time in `transform`: a job waits in the queue behind the one in flight.
        .max_in_flight(if stage == "transform" { 1 } else { 64 })
        .on_drop(move |msg: &Message, why: &Dropped| {
            println!(
                "[{stage}] dropped {:?} without starting it: {why}",
                msg.payload
            );
        });
    let stats = server.stats();
    println!("READY");
    let served = if stage == "transform" {
        let to_store = client.clone();
        server
            .serve(&root, move |ctx: Context, msg: Message| {
                let client = to_store.clone();
                async move {
                    let id = RequestId::current().unwrap_or_default();
                    if !id.starts_with("lat-") {
                        println!("[transform] {id}: {}", describe());
                    }
                    work("transform", 100).await?;
                    let upper = msg.payload.to_ascii_uppercase();
                    // The next hop, under this job's context: cancelled with it.
                    match nats::request(&client, &ctx, STORE, upper.into()).await {
                        Ok(stored) => Ok(stored.payload),
                        Err(e) => {
                            if !id.starts_with("lat-") {
                                println!("[transform] {id}: gave up on store: {e}");
                            }
                            Err::<_, NatsError>(e)
                        }
                    }
                }
            })
            .await
    } else {
        server
            .serve(&root, |_ctx: Context, msg: Message| async move {
                let id = RequestId::current().unwrap_or_default();
                if !id.starts_with("lat-") {
                    println!("[store] {id}: {}", describe());
                }
                let ms = if msg.payload.ends_with(b"SLOW") || msg.payload.ends_with(b"slow") {
                    60_000
                } else {
                    200
                };
                work("store", ms).await?;
                Ok::<_, ctxkit::Error>(format!("stored {}", String::from_utf8_lossy(&msg.payload)))
            })
            .await
    };
    served.expect("serve");
    println!(
        "@stats {stage} received={} handled={} expired={} canceled={} malformed={}",
        stats.received(),
        stats.handled(),
        stats.expired(),
        stats.canceled(),
        stats.malformed()
    );
}

/// A stage running in a child process; its lines come out on `lines`.
struct Child {
    process: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

async fn start(role: &'static str, url: &str, lines: mpsc::UnboundedSender<String>) -> Child {
    let mut process = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg(role)
        .env(URL_ENV, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start a stage");
    let stdin = process.stdin.take();
    let mut out = BufReader::new(process.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), out.next_line())
        .await
        .expect("a stage that starts")
        .unwrap();
    assert_eq!(first.as_deref(), Some("READY"), "{role}");
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            if line.starts_with('@') {
                if lines.send(line).is_err() {
                    break;
                }
            } else {
                println!("{line}");
            }
        }
    });
    Child { process, stdin }
}

/// The `@` events of the other stages (their other lines are echoed as they come).
struct Lines {
    rx: mpsc::UnboundedReceiver<String>,
    stats: Vec<String>,
}

impl Lines {
    /// The next `@` event that is `prefix` or starts with `prefix` and a space. `stats` events
    /// are kept, and found even if they came earlier.
    async fn event(&mut self, prefix: &str) -> String {
        let matches = |event: &str| {
            event == prefix
                || event
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(' '))
        };
        if let Some(seen) = self.stats.iter().find(|e| matches(e)) {
            return seen.clone();
        }
        let wait = async {
            loop {
                let line = self.rx.recv().await.expect("the stages are running");
                if let Some(event) = line.strip_prefix('@') {
                    if event.starts_with("stats ") {
                        self.stats.push(event.to_owned());
                    }
                    if matches(event) {
                        return event.to_owned();
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} from the stages within 60 s"))
    }
}

/// Sends a slow job, cancels it once `stage` started it, and returns the time from the cancel to
/// `store` stopping.
async fn cancel_once(
    client: &Client,
    lines: &mut Lines,
    subject: &'static str,
    id: &str,
    verbose: bool,
) -> Duration {
    let (ctx, cancel) = Context::background()
        .with_value::<RequestId>(id.to_owned())
        .with_timeout(Duration::from_secs(30));
    let pending = tokio::spawn({
        let client = client.clone();
        async move { nats::request(&client, &ctx, subject, "slow".into()).await }
    });
    lines.event(&format!("started store {id}")).await;
    let cancelled_at = unix_nanos();
    cancel.cancel();
    let got = pending.await.unwrap();
    if verbose {
        println!("[stage 1] {id}: cancelled by its requester: {got:?}");
    }
    let stopped = lines.event(&format!("stopped store {id}")).await;
    let at: u128 = stopped.rsplit(' ').next().unwrap().parse().unwrap();
    Duration::from_nanos(u64::try_from(at.saturating_sub(cancelled_at)).unwrap())
}

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{name}: min {:.2} ms, median {:.2} ms, max {:.2} ms over {} runs",
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    )
}

async fn demo(url: &str) {
    let (tx, rx) = mpsc::unbounded_channel();
    let store = start("store", url, tx.clone()).await;
    let transform = start("transform", url, tx).await;
    let mut lines = Lines {
        rx,
        stats: Vec::new(),
    };
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let trace = TraceContext::new_root();

    // job-1 goes through all three stages.
    let (job1, _c1) = Context::background()
        .with_value::<TraceContext>(trace.clone())
        .with_value::<RequestId>("job-1".into())
        .with_timeout(Duration::from_secs(5));
    println!(
        "[stage 1] job-1: sending, request id job-1, trace {}, budget 5000 ms",
        trace.trace_id_hex()
    );
    let first = tokio::spawn({
        let (client, job1) = (client.clone(), job1.clone());
        async move { nats::request(&client, &job1, TRANSFORM, "job-1 payload".into()).await }
    });
    lines.event("started transform job-1").await;

    // job-2: 100 ms, queued behind job-1 (which takes 300 ms): it expires in the queue.
    let (job2, _c2) = Context::background()
        .with_value::<RequestId>("job-2".into())
        .with_timeout(Duration::from_millis(100));
    println!("[stage 1] job-2: published with a budget of 100 ms, behind job-1");
    nats::publish(&client, &job2, TRANSFORM, "job-2 payload".into())
        .await
        .unwrap();

    let reply = first.await.unwrap().expect("job-1 is stored");
    println!(
        "[stage 1] job-1: {:?}",
        String::from_utf8_lossy(&reply.payload)
    );

    // job-3: cancelled by its requester while `store` works on it.
    let latency = cancel_once(&client, &mut lines, TRANSFORM, "job-3", true).await;
    println!(
        "[stage 1] job-3: store stopped {:.2} ms after the cancel (two hops)",
        latency.as_secs_f64() * 1e3
    );

    // The cancel latency, measured.
    let mut one_hop = Vec::new();
    let mut two_hops = Vec::new();
    for i in 0..50 {
        one_hop.push(cancel_once(&client, &mut lines, STORE, &format!("lat-{i}"), false).await);
    }
    for i in 50..100 {
        two_hops
            .push(cancel_once(&client, &mut lines, TRANSFORM, &format!("lat-{i}"), false).await);
    }
    let one = summary("cancel latency, stage 1 -> store (one hop)", one_hop);
    let two = summary(
        "cancel latency, stage 1 -> transform -> store (two hops)",
        two_hops,
    );

    // Stop the stages: their standard input closes, their root contexts end.
    let mut children = vec![transform, store];
    for child in &mut children {
        drop(child.stdin.take());
    }
    lines.event("stats transform").await;
    lines.event("stats store").await;
    for child in &mut children {
        let status = child.process.wait().await.unwrap();
        assert!(status.success(), "{status}");
    }
    println!("{one}");
    println!("{two}");
    for s in &lines.stats {
        println!("{}", s.strip_prefix("stats ").unwrap_or(s));
    }
    let transform_stats = lines
        .stats
        .iter()
        .find(|s| s.contains("transform"))
        .unwrap();
    assert!(
        transform_stats.contains("expired=1 "),
        "job-2 expired in transform's queue: {transform_stats}"
    );
}

#[tokio::main]
async fn main() {
    let role = std::env::args().nth(1);
    let url = match std::env::var(URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            let msg = format!(
                "{URL_ENV} is not set: broker_pipeline needs a running nats-server \
                 (e.g. `nats-server -a 127.0.0.1 -p 4222` and {URL_ENV}=nats://127.0.0.1:4222)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("!!!!!! SKIPPED: {msg}");
            return;
        }
    };
    match role.as_deref() {
        None => demo(&url).await,
        Some(role @ ("transform" | "store")) => stage(role, &url).await,
        Some(other) => {
            eprintln!("unknown stage {other:?}; run without arguments");
            std::process::exit(2);
        }
    }
}
