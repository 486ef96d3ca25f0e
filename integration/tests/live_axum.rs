//! The live request tree served by axum on loopback (`ctxkit::axum::LiveTree` at `/debug/ctx`):
//! three requests in flight, each suspended in a `#[cancellable]` fn, read back as JSON and as
//! text from a real server over real connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use ctxkit::axum::{Ctx, LiveTree};
use ctxkit::propagation::Accept;
use ctxkit::tower::ServerLayer;
use ctxkit::{Context, ContextKey, Error, cancellable};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How long anything may take on a saturated machine before the test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id", debug)]
struct RequestId;

#[cancellable]
async fn load_order(ctx: &Context, gate: Arc<Notify>) -> Result<String, Error> {
    gate.notified().await; // THE_AWAIT
    Ok("done".into())
}

async fn order(Ctx(ctx): Ctx, Path(_id): Path<u32>, gate: Arc<Notify>) -> Result<String, Error> {
    load_order(&ctx, gate).await
}

/// GETs `path` on a fresh connection: status, content type and body.
async fn get_from(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

fn line_of(marker: &str) -> u32 {
    let src = include_str!("live_axum.rs");
    let i = src
        .lines()
        .position(|l| l.contains(marker) && !l.contains("line_of"))
        .unwrap();
    u32::try_from(i).unwrap() + 1
}

#[tokio::test]
async fn debug_ctx_serves_the_requests_in_flight_as_json_and_text() {
    let (root, shutdown) = Context::background().with_cancel();
    let gate = Arc::new(Notify::new());
    let app = Router::new()
        .route(
            "/orders/{id}",
            get({
                let gate = gate.clone();
                move |ctx: Ctx, id: Path<u32>| order(ctx, id, gate.clone())
            }),
        )
        .route_service("/debug/ctx", LiveTree::new(root.clone()))
        .layer(ServerLayer::new(
            root.clone(),
            Accept::new().key::<RequestId>(),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let requests: Vec<_> = (1..=3)
        .map(|n| {
            tokio::spawn(async move {
                let id = format!("req-{n}");
                get_from(addr, &format!("/orders/{n}"), &[("x-request-id", &id)]).await
            })
        })
        .collect();

    // Poll the tree over HTTP until the three calls are suspended.
    let started = std::time::Instant::now();
    let json = loop {
        let (status, kind, body) = get_from(addr, "/debug/ctx?format=json", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind, "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if json["calls"] == 3 {
            break json;
        }
        assert!(started.elapsed() < PATIENCE, "never saw 3 calls: {json:#}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let here = format!("{}:{}:", file!(), line_of("// THE_AWAIT"));
    let children = json["root"]["children"].as_array().unwrap();
    let orders: Vec<&serde_json::Value> = children
        .iter()
        .filter(|c| c["calls"].as_array().is_some_and(|a| !a.is_empty()))
        .collect();
    assert_eq!(orders.len(), 3, "{json:#}");
    let mut ids = Vec::new();
    for o in &orders {
        // The request line is set before the request's context, the travelling keys after it:
        // those are shown with the call that runs under them.
        let values: Vec<(String, String)> = o["values"]
            .as_array()
            .unwrap()
            .iter()
            .chain(o["calls"][0]["values"].as_array().unwrap())
            .map(|v| {
                (
                    v["key"].as_str().unwrap().to_owned(),
                    v["value"].as_str().unwrap_or("..").to_owned(),
                )
            })
            .collect();
        assert!(
            values.contains(&(
                "Request".into(),
                format!("GET /orders/{}", &values_id(&values)[4..])
            )),
            "{values:?}"
        );
        ids.push(values_id(&values));
        let call = &o["calls"][0];
        assert!(
            call["name"].as_str().unwrap().ends_with("::load_order"),
            "{call}"
        );
        assert!(
            call["awaiting"].as_str().unwrap().starts_with(&here),
            "{call} vs {here}"
        );
        assert!(o["age_ms"].as_f64().is_some());
    }
    ids.sort();
    assert_eq!(ids, ["req-1", "req-2", "req-3"]);

    // The same tree as text, chosen by `Accept`'s absence and by `?format=text`.
    let (status, kind, text) = get_from(addr, "/debug/ctx", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/plain; charset=utf-8");
    assert!(text.starts_with("WithCancel "), "{text}");
    assert!(text.contains("· Request = GET /orders/2"), "{text}");
    assert!(text.contains("    · RequestId = \"req-2\""), "{text}");
    assert_eq!(
        text.matches(&format!("awaiting {here}")).count(),
        3,
        "{text}"
    );
    let (_, kind, _) = get_from(addr, "/debug/ctx", &[("accept", "application/json")]).await;
    assert_eq!(kind, "application/json");

    // Shutting down cancels the requests: they answer 503 and leave the tree.
    shutdown.cancel();
    for r in requests {
        let (status, _, _) = tokio::time::timeout(PATIENCE, r).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(ctxkit::live::snapshot(&root).calls, 0);
}

/// The request id among a context's values.
fn values_id(values: &[(String, String)]) -> String {
    values
        .iter()
        .find(|(k, _)| k == "RequestId")
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .unwrap()
}
