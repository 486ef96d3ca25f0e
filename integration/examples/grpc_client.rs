//! A tonic client through `ClientLayer`, next to tonic's own timers.
//!
//! A `Channel` wrapped in `ClientLayer` sends the current context's deadline as `grpc-timeout`;
//! tonic's channel reads that header and runs a timer of its own, which tonic reports as
//! CANCELLED "Timeout expired". The layer fires no later and reports the call's failure as the
//! context's: DEADLINE_EXCEEDED. An `Endpoint::timeout` shorter than the context's budget is the
//! channel's own limit, and its CANCELLED is the truth then.
//!
//! On the server side, `tonic::transport::Server` runs its `grpc-timeout` timer outside every
//! layer, a moment before `ServerLayer`'s: when both are due in the same tick, its CANCELLED may
//! win. Serving tonic's routes behind `ServerLayer` with hyper leaves one timer, and every passed
//! deadline is DEADLINE_EXCEEDED. The example counts both over 20 raw calls with no timer of
//! their own.
//!
//! Run with `cargo run -p ctxkit-integration --example grpc_client`.

#[path = "../peers/hop.rs"]
mod hop;

use std::time::Duration;

use ctxkit::Context;
use ctxkit::propagation::Accept;
use ctxkit::tower::{ClientLayer, ServerLayer};
use hop::{HopReply, HopRequest, HopServer};
use tonic::transport::Endpoint;
use tonic::{Code, Response};
use tower::Layer;

/// A `Hop` server that works `sleep_ms` before answering, unless its context ends first.
fn sleeper() -> HopServer {
    HopServer::new(|req: tonic::Request<HopRequest>| async move {
        let ctx = Context::current();
        let work = Duration::from_millis(req.get_ref().sleep_ms.into());
        ctx.run(tokio::time::sleep(work))
            .await
            .map_err(|e| tonic::Status::aborted(e.to_string()))?;
        Ok(Response::new(HopReply {
            report: "done".into(),
        }))
    })
}

/// One call through a channel to `addr` with `Endpoint::timeout(endpoint_timeout)`, behind
/// `ClientLayer`, under a context with `budget`.
async fn call(addr: std::net::SocketAddr, endpoint_timeout: Duration, budget: Duration) -> Code {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(endpoint_timeout)
        .connect()
        .await
        .unwrap();
    let client = ClientLayer::new().layer(channel);
    let (ctx, _cancel) = Context::background().with_timeout(budget);
    let job = HopRequest {
        sleep_ms: 5_000,
        note: String::new(),
    };
    match ctx.scope(hop::call(&client, job)).await {
        Ok(_) => Code::Ok,
        Err(status) => {
            println!("    {:?}: {}", status.code(), status.message());
            status.code()
        }
    }
}

/// The grpc-status of 20 raw calls (no client timer) with a 50 ms budget each.
async fn raw_statuses(addr: std::net::SocketAddr) -> Vec<String> {
    let job = HopRequest {
        sleep_ms: 5_000,
        note: String::new(),
    };
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (status, _) = hop::raw_call(addr, &[("grpc-timeout", "50m")], &job).await;
        statuses.push(status);
    }
    statuses
}

fn tally(statuses: &[String]) -> String {
    let count = |s: &str| statuses.iter().filter(|x| *x == s).count();
    format!(
        "{} DEADLINE_EXCEEDED, {} CANCELLED, {} other",
        count("4"),
        count("1"),
        statuses.len() - count("4") - count("1")
    )
}

#[tokio::main]
async fn main() {
    // hyper serving tonic's routes behind ServerLayer: one timer, the layer's.
    let behind_layer = hop::serve(Context::background(), Accept::new(), sleeper()).await;

    println!("client: context budget 200 ms, channel timeout 10 s");
    let ctx_first = call(
        behind_layer,
        Duration::from_secs(10),
        Duration::from_millis(200),
    )
    .await;
    println!("client: context budget 10 s, channel timeout 200 ms");
    let channel_first = call(
        behind_layer,
        Duration::from_millis(200),
        Duration::from_secs(10),
    )
    .await;

    // tonic's own server, with ServerLayer as one of its layers: two timers.
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let tonic_server = incoming.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(ServerLayer::new(Context::background(), Accept::new()))
            .add_service(sleeper())
            .serve_with_incoming(incoming),
    );

    let hyper_statuses = raw_statuses(behind_layer).await;
    let tonic_statuses = raw_statuses(tonic_server).await;
    println!("20 raw calls, 50 ms each, no client timer:");
    println!(
        "  hyper + ServerLayer:              {}",
        tally(&hyper_statuses)
    );
    println!(
        "  tonic::transport::Server + layer: {}",
        tally(&tonic_statuses)
    );

    assert_eq!(ctx_first, Code::DeadlineExceeded, "the context's deadline");
    assert_eq!(channel_first, Code::Cancelled, "the channel's own timeout");
    assert!(
        hyper_statuses.iter().all(|s| s == "4"),
        "{hyper_statuses:?}"
    );
    assert!(
        tonic_statuses.iter().all(|s| s == "4" || s == "1"),
        "{tonic_statuses:?}"
    );
}
