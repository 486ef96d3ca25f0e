//! A deadline across gRPC hops: an edge client calls `checkout`, which works a little and calls
//! `inventory`, each a tonic service behind `ServerLayer`, calling on through `ClientLayer`.
//! Every hop prints the budget it received: it shrinks by the time spent upstream. With a budget
//! too small for the whole chain, `inventory` runs out of time and DEADLINE_EXCEEDED (gRPC
//! status 4) surfaces at the edge: not CANCELLED, not UNKNOWN. The edge's deadline is the
//! earliest of the chain (each hop measures its own from the request's arrival), so the edge
//! gives up first; `inventory` stops too, cancelled by the edge giving up or at its own
//! deadline a moment later, whichever reaches it first.
//!
//! Run with `cargo run --example grpc_deadline --features tower`.

#[path = "../peers/hop.rs"]
mod hop;

use std::time::Duration;

use ctxkit::propagation::Accept;
use ctxkit::{Context, Instant};
use hop::{HopReply, HopRequest, HopServer};
use tonic::{Code, Response, Status};

/// Where `inventory` reports that it stopped early.
type Stopped = tokio::sync::mpsc::UnboundedSender<ctxkit::Error>;

/// The budget the current context has left, for printing.
fn budget() -> String {
    match Context::current().deadline() {
        Some(d) => format!(
            "{} ms",
            d.saturating_duration_since(Instant::now()).as_millis()
        ),
        None => "none".to_owned(),
    }
}

/// `hop` works `ms` milliseconds in a task of its own under the request's context, or stops
/// when that context ends (the request's future itself may just be dropped by then: a task is
/// what outlives it and must be told).
async fn work(hop: &'static str, ms: u64, stopped: Option<Stopped>) -> Result<(), Status> {
    let task = ctxkit::spawn(async move {
        let ctx = Context::current();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => true,
            () = ctx.done() => {
                println!("  {hop} stopped working: {}", ctx.cause().unwrap());
                if let Some(stopped) = stopped {
                    let _ = stopped.send(ctx.err().unwrap());
                }
                false
            }
        }
    });
    match task.await {
        Ok(true) => Ok(()),
        _ => Err(Status::deadline_exceeded("deadline exceeded")),
    }
}

#[tokio::main]
async fn main() {
    let (root, shutdown) = Context::background().with_cancel();

    // inventory: 300 ms of work.
    let (stopped, mut inventory_stopped) = tokio::sync::mpsc::unbounded_channel();
    let inventory = HopServer::new(move |_req| {
        let stopped = stopped.clone();
        async move {
            println!("  inventory received a budget of {}", budget());
            work("inventory", 300, Some(stopped)).await?;
            Ok(Response::new(HopReply {
                report: "3 in stock".into(),
            }))
        }
    });
    let inventory_addr = hop::serve(root.clone(), Accept::new(), inventory).await;

    // checkout: 200 ms of its own work, then asks inventory.
    let to_inventory = hop::connect(inventory_addr).await;
    let checkout = HopServer::new(move |_req| {
        let to_inventory = to_inventory.clone();
        async move {
            println!("  checkout received a budget of {}", budget());
            work("checkout", 200, None).await?;
            println!("  checkout calls inventory with {} left", budget());
            let stock = hop::call(&to_inventory, HopRequest::default()).await?;
            Ok(Response::new(HopReply {
                report: format!("ordered ({})", stock.report),
            }))
        }
    });
    let checkout_addr = hop::serve(root.clone(), Accept::new(), checkout).await;
    let edge = hop::connect(checkout_addr).await;

    let mut outcomes = Vec::new();
    for budget_ms in [1_000, 400] {
        println!("edge: calling checkout with a budget of {budget_ms} ms");
        let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(budget_ms));
        let outcome = ctx.scope(hop::call(&edge, HopRequest::default())).await;
        match &outcome {
            Ok(reply) => println!("edge: OK, {}", reply.report),
            Err(status) => println!("edge: {:?} ({})", status.code(), status.message()),
        }
        outcomes.push(outcome.map_err(|s| s.code()).map(|r| r.report));
    }
    // The edge's give-up reaches inventory, which stops working.
    let why = tokio::time::timeout(Duration::from_secs(5), inventory_stopped.recv()).await;
    shutdown.cancel();

    assert_eq!(outcomes[0].as_deref(), Ok("ordered (3 in stock)"));
    assert_eq!(outcomes[1], Err(Code::DeadlineExceeded));
    assert!(matches!(why, Ok(Some(_))), "inventory never stopped");
}
