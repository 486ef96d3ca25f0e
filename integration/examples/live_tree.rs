//! The live request tree of a server (ctxkit's `live` feature): an axum server with three
//! requests in flight, each waiting in a `#[cancellable]` fn on a slow "database", and
//! `/debug/ctx` showing what each one is doing: its age, its deadline, its values, and the
//! `file:line:column` of the `.await` it is suspended at.
//!
//! `cargo run -p ctxkit-integration --example live_tree`
//!
//! Prints something like:
//!
//! ```text
//! WithCancel integration/examples/live_tree.rs:82:50 age=24.0ms
//!   WithDeadline src/propagation/mod.rs:327:28 age=24.0ms deadline_in=19983.0ms
//!     · Request = GET /orders/1
//!     ↳ live_tree::load_order (integration/examples/live_tree.rs:51:10) age=24.0ms awaiting integration/examples/live_tree.rs:52:30
//!         · TraceContext = ..
//!         · RequestId = "req-1"
//!     WithCancel integration/examples/live_tree.rs:58:10 age=24.0ms deadline_in=19983.0ms
//!       · TraceContext = ..
//!       · RequestId = "req-1"
//!       ↳ live_tree::query (integration/examples/live_tree.rs:58:10) age=24.0ms awaiting integration/examples/live_tree.rs:59:65
//!   WithDeadline src/propagation/mod.rs:327:28 age=24.0ms deadline_in=19983.2ms
//!     · Request = GET /orders/2
//!   ...
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use ctxkit::axum::{Ctx, LiveTree};
use ctxkit::propagation::Accept;
use ctxkit::tower::ServerLayer;
use ctxkit::{Context, ContextKey, Error, cancellable};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The request id: travels in `x-request-id`, and the tree shows it (`debug`).
#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id", debug)]
struct RequestId;

/// `GET /orders/{id}`: loads the order.
async fn order(Ctx(ctx): Ctx, Path(id): Path<u32>) -> Result<String, Error> {
    load_order(&ctx, id).await
}

#[cancellable]
async fn load_order(ctx: &Context, id: u32) -> Result<String, Error> {
    let row = query(ctx, id).await?;
    Ok(format!("order {id}: {row}\n"))
}

/// A slow database query (a sleep), bounded by its own timeout.
#[cancellable(timeout = "30s")]
async fn query(ctx: &Context, id: u32) -> Result<String, Error> {
    tokio::time::sleep(Duration::from_secs(60 + u64::from(id))).await;
    Ok("row".into())
}

/// GETs `path` from the server: the body.
async fn get_body(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::main]
async fn main() {
    let (root, shutdown) = Context::background().with_cancel();
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .route_service("/debug/ctx", LiveTree::new(root.clone()))
        .layer(ServerLayer::new(
            root.clone(),
            Accept::new().key::<RequestId>(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    // Three clients, each with a 20-second budget (`grpc-timeout`) and a request id.
    let clients: Vec<_> = (1..=3)
        .map(|n| {
            tokio::spawn(async move {
                let id = format!("req-{n}");
                let headers = [("x-request-id", id.as_str()), ("grpc-timeout", "20S")];
                get_body(addr, &format!("/orders/{n}"), &headers).await
            })
        })
        .collect();

    // Wait until all three are suspended in `query` (two calls each).
    let began = std::time::Instant::now();
    let tree = loop {
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "the requests did not all reach their await within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let json = get_body(addr, "/debug/ctx?format=json", &[]).await;
        let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        if json["calls"] == 6 {
            break get_body(addr, "/debug/ctx", &[]).await;
        }
    };
    println!("GET /debug/ctx with three requests in flight:\n\n{tree}");

    shutdown.cancel();
    for c in clients {
        let body = c.await.expect("client");
        println!("a client got: {}", body.trim());
    }
}
