//! A load client for `e2e-server`: requests/s and latency percentiles, at saturation or at a
//! fixed rate.
//!
//! ```text
//! e2e-load PROTO ADDR [--rate R] [--secs S] [--warmup S] [--conns C] [--ctxkit]
//! ```
//!
//! - `PROTO`: `http` (GET / over HTTP/1.1, one connection per `--conns`) or `grpc` (unary calls
//!   over one HTTP/2 channel, `--conns` calls in flight).
//! - `--rate R`: R requests/s in all, each connection on its own schedule. A request sent late
//!   because the one before it was slow counts from when it was due, so a stalled server is
//!   charged for the requests it delayed; one sent when its timer woke counts from then.
//!   `0` (the default): each connection sends its next request as soon as the last one answered.
//! - `--ctxkit`: (grpc) the channel goes through ctxkit's `ClientLayer` and each call runs under
//!   a context with a 5 s timeout, which travels as `grpc-timeout`.
//!
//! Prints one line: `rps=… p50_us=… p90_us=… p99_us=… requests=… errors=…`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ctxkit::Context;
use ctxkit::tower::ClientLayer;
use ctxkit_e2e::{HelloReply, HelloRequest, PATH};
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower::Layer;

struct Options {
    grpc: bool,
    addr: SocketAddr,
    rate: f64,
    secs: f64,
    warmup: f64,
    conns: usize,
    ctxkit: bool,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let grpc = match args.next().as_deref() {
        Some("http") => false,
        Some("grpc") => true,
        other => return Err(format!("PROTO must be http or grpc, not {other:?}")),
    };
    let addr = args
        .next()
        .ok_or("missing ADDR")?
        .parse()
        .map_err(|e| format!("ADDR: {e}"))?;
    let mut o = Options {
        grpc,
        addr,
        rate: 0.0,
        secs: 5.0,
        warmup: 1.0,
        conns: 16,
        ctxkit: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--ctxkit" {
            o.ctxkit = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--rate" => o.rate = num(&value)?,
            "--secs" => o.secs = num(&value)?,
            "--warmup" => o.warmup = num(&value)?,
            "--conns" => o.conns = num(&value)? as usize,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    Ok(o)
}

/// When each worker sends, and what it records.
struct Schedule {
    /// Time between two requests of one worker; zero at saturation.
    interval: Duration,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    errors: Arc<AtomicU64>,
}

impl Schedule {
    /// Runs `request` on this worker's schedule until the end; the latencies (µs) of the
    /// requests due after the warm-up.
    async fn run<F, Fut>(&self, worker: usize, workers: usize, mut request: F) -> Vec<u32>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut latencies = Vec::new();
        // Workers are spread over one interval so that the total rate is even.
        let mut due = self.start + self.interval.mul_f64(worker as f64 / workers as f64);
        loop {
            let now = Instant::now();
            if now >= self.end {
                return latencies;
            }
            // A request counts from when it was due, unless this client's own timer woke late
            // (tokio's timer has a 1 ms grain): then from when it was sent.
            let mut from = due;
            if self.interval.is_zero() {
                due = now;
                from = now;
            } else if due > now {
                tokio::time::sleep_until(due).await;
                from = Instant::now();
            }
            let ok = request().await;
            if !ok {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            if due >= self.measure_from && ok {
                let micros = from.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            due += self.interval;
        }
    }
}

async fn http_worker(addr: SocketAddr, schedule: Arc<Schedule>, i: usize, n: usize) -> Vec<u32> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the server accepts");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1.1 connection");
    tokio::spawn(conn);
    let authority = addr.to_string();
    schedule
        .run(i, n, || {
            let req = http::Request::get("/")
                .header(http::header::HOST, &authority)
                .header("x-request-id", "r-1")
                .body(Empty::<bytes::Bytes>::new())
                .expect("a request");
            let sent = sender.send_request(req);
            async move {
                match sent.await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                }
            }
        })
        .await
}

async fn grpc_call<T>(client: T, ctxkit: bool) -> bool
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let call = async move {
        let mut grpc = tonic::client::Grpc::new(client);
        if grpc.ready().await.is_err() {
            return false;
        }
        let mut req = tonic::Request::new(HelloRequest {
            name: "e2e".to_owned(),
        });
        req.metadata_mut().insert(
            "x-request-id",
            tonic::metadata::MetadataValue::from_static("r-1"),
        );
        grpc.unary::<HelloRequest, HelloReply, _>(
            req,
            PathAndQuery::from_static(PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .is_ok()
    };
    if ctxkit {
        let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
        ctx.scope(call).await
    } else {
        call.await
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e-load: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let interval = if o.rate > 0.0 {
            Duration::from_secs_f64(o.conns as f64 / o.rate)
        } else {
            Duration::ZERO
        };
        let start = Instant::now() + Duration::from_millis(50);
        let schedule = Arc::new(Schedule {
            interval,
            start,
            measure_from: start + Duration::from_secs_f64(o.warmup),
            end: start + Duration::from_secs_f64(o.warmup + o.secs),
            errors: Arc::new(AtomicU64::new(0)),
        });
        let mut workers = Vec::with_capacity(o.conns);
        if o.grpc {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", o.addr))
                .expect("an endpoint")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("the server accepts");
            for i in 0..o.conns {
                let (schedule, channel, ctxkit) = (schedule.clone(), channel.clone(), o.ctxkit);
                let n = o.conns;
                workers.push(tokio::spawn(async move {
                    let layered = ClientLayer::new().layer(channel.clone());
                    schedule
                        .run(i, n, || {
                            let (plain, layered) = (channel.clone(), layered.clone());
                            async move {
                                if ctxkit {
                                    grpc_call(layered, true).await
                                } else {
                                    grpc_call(plain, false).await
                                }
                            }
                        })
                        .await
                }));
            }
        } else {
            for i in 0..o.conns {
                let schedule = schedule.clone();
                workers.push(tokio::spawn(http_worker(o.addr, schedule, i, o.conns)));
            }
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.expect("a worker"));
        }
        all.sort_unstable();
        println!(
            "rps={:.0} p50_us={} p90_us={} p99_us={} requests={} errors={}",
            all.len() as f64 / o.secs,
            percentile(&all, 0.50),
            percentile(&all, 0.90),
            percentile(&all, 0.99),
            all.len(),
            schedule.errors.load(Ordering::Relaxed)
        );
    });
}
