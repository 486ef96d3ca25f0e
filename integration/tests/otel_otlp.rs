//! One request traced end to end with OpenTelemetry, across Rust → Python → Rust, exported over
//! OTLP/gRPC to a real receiver.
//!
//! - The receiver is `peers/otlp_receiver.py` (opentelemetry-proto's services on grpcio),
//!   started by the test on a loopback port; it prints every span it receives.
//! - The Python hop is `peers/otel_hop.py`, instrumented with the OpenTelemetry SDK (its W3C
//!   propagators, its OTLP exporter), between two Rust services behind ctxkit's `ServerLayer`
//!   calling out through `ClientLayer`. The Rust spans go out through opentelemetry-otlp's tonic
//!   exporter, from a `tracing` subscriber with `tracing-opentelemetry`'s layer: the services
//!   themselves have no tracing code but their own spans.
//!
//! Asserted: every span of the request (9, in three services) is in one trace, and every span's
//! parent is the right one; the baggage set by the client reaches the last hop through Python
//! and comes back in the answer.
//!
//! Both need the Python peers (`peers/install.sh`): without them the test says so loudly and
//! passes, except under `CI=true`, where it fails.
#![cfg(unix)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use ctxkit::propagation::{Accept, Baggage};
use ctxkit::tower::{Client, ClientLayer, ServerLayer};
use ctxkit::{BoxError, Context};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};
use tower::{Layer, ServiceExt};
use tracing::Instrument;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// Nothing here waits this long unless it is broken.
const PATIENCE: Duration = Duration::from_secs(30);

/// The Python peers' venv python (see `support::peers_python`).
fn peers_python() -> Option<PathBuf> {
    support::peers_python()
}

/// A Python peer and the JSON lines it prints.
struct Peer {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn start(python: &PathBuf, script: &str, args: &[&str]) -> (Peer, u16) {
        let script = format!("{}/peers/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(python)
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {script}: {e}"));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut peer = Peer {
            _child: child,
            lines,
        };
        let first = peer.next().await;
        assert_eq!(first["event"], "port", "{script} said {first}");
        let port = first["port"].as_u64().unwrap() as u16;
        (peer, port)
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("the peer went silent")
            .unwrap()
            .expect("the peer exited");
        serde_json::from_str(&line).unwrap()
    }
}

type HttpClient = Client<HyperClient<HttpConnector, Empty<Bytes>>>;

fn http_client() -> HttpClient {
    ClientLayer::new().layer(HyperClient::builder(TokioExecutor::new()).build_http())
}

/// GET `url` under the current context: the body, if the answer is 200.
async fn get(client: &HttpClient, url: String) -> Result<String, BoxError> {
    let resp = client
        .clone()
        .oneshot(Request::get(url).body(Empty::new())?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    match status {
        StatusCode::OK => Ok(text),
        other => Err(format!("{other}: {text}").into()),
    }
}

/// Serves `handle` behind a `ServerLayer` on a loopback port.
async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServerLayer::new(Context::background(), Accept::new()).layer(tower::service_fn(
        move |_req: Request<hyper::body::Incoming>| {
            let handle = handle.clone();
            async move { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(handle().await))) }
        },
    ));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The process's tracer, exporting over OTLP/gRPC to `endpoint`, under the global `tracing`
/// subscriber.
fn install_tracing(endpoint: &str) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("rust").build())
        .with_batch_exporter(exporter)
        .build();
    // Only ctxkit's spans and the test's own: the exporter's transport (tonic, hyper, h2) has
    // spans too, whose export would make more of them.
    let only_ours = Targets::new()
        .with_target("ctxkit", Level::INFO)
        .with_target("otel_otlp", Level::INFO);
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("otel_otlp"))
            .with_filter(only_ours),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();
    provider
}

/// A span of the trace by its role in the request, from what the receiver printed.
fn role(span: &Value) -> String {
    const SERVER: i64 = 2;
    const CLIENT: i64 = 3;
    let attr = |k: &str| {
        span["attributes"][k]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let kind = span["kind"].as_i64().unwrap();
    match (span["name"].as_str().unwrap(), kind) {
        ("client.request", _) => "client".into(),
        ("front.work" | "back.work" | "py.handle" | "py.call", _) => {
            span["name"].as_str().unwrap().into()
        }
        (_, SERVER) => format!("server {}", attr("url.path")),
        (_, CLIENT) => format!("call {}", attr("url.full").rsplit('/').next().unwrap()),
        (name, _) => format!("unexpected span {name}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_rust_python_and_rust_is_one_trace_with_every_parent_right() {
    let Some(python) = peers_python() else {
        return;
    };
    let (mut receiver, otlp_port) = Peer::start(&python, "otlp_receiver.py", &[]).await;
    let endpoint = format!("http://127.0.0.1:{otlp_port}");
    let provider = install_tracing(&endpoint);

    // The last hop: reads the baggage that crossed Python, in a span of its own.
    let back = serve(|| async {
        let work = tracing::info_span!("back.work", user = tracing::field::Empty);
        let user = Context::current()
            .value::<Baggage>()
            .and_then(|b| b.get("user").map(str::to_owned))
            .unwrap_or_default();
        work.record("user", user.as_str());
        format!("back saw user={user}")
    })
    .await;
    let (_hop, hop_port) = Peer::start(
        &python,
        "otel_hop.py",
        &[&endpoint, &format!("http://{back}/back")],
    )
    .await;
    // The first hop: calls Python from a span of its own.
    let client = http_client();
    let front = serve(move || {
        let client = client.clone();
        async move {
            get(&client, format!("http://127.0.0.1:{hop_port}/hop"))
                .instrument(tracing::info_span!("front.work"))
                .await
                .unwrap_or_else(|e| format!("front failed: {e}"))
        }
    })
    .await;

    // The user: a request with baggage, in a root span.
    let mut baggage = Baggage::new();
    baggage.insert("user", "alice").unwrap();
    let (ctx, _cancel) = Context::background()
        .with_value::<Baggage>(baggage)
        .with_timeout(PATIENCE);
    let root = tracing::info_span!("client.request");
    let trace_id = root.context().span().span_context().trace_id().to_string();
    let client = http_client();
    let answer = ctx
        .scope(get(&client, format!("http://{front}/front")))
        .instrument(root)
        .await
        .unwrap();
    assert_eq!(answer, "py saw user=alice <- back saw user=alice");

    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap()
        .unwrap();

    // Every span of the trace, as the receiver got them: 5 of the Rust process before Python,
    // 2 of Python, 2 of the Rust service after it.
    let mut spans: Vec<Value> = Vec::new();
    let mut others: Vec<Value> = Vec::new();
    let collected = tokio::time::timeout(PATIENCE, async {
        while spans.len() + others.len() < 9 {
            let event = receiver.next().await;
            if event["event"] != "span" {
                continue;
            }
            if event["trace_id"] == trace_id.as_str() {
                spans.push(event);
            } else {
                others.push(event);
            }
        }
    })
    .await;
    assert!(
        collected.is_ok() && others.is_empty(),
        "the receiver got {} spans of the request's trace and these of others (the trace broke \
         there): {others:#?}",
        spans.len()
    );

    let by_role: HashMap<String, &Value> = spans.iter().map(|s| (role(s), s)).collect();
    let expected_parent = [
        ("client", None),
        ("call front", Some("client")),
        ("server /front", Some("call front")),
        ("front.work", Some("server /front")),
        ("call hop", Some("front.work")),
        ("py.handle", Some("call hop")),
        ("py.call", Some("py.handle")),
        ("server /back", Some("py.call")),
        ("back.work", Some("server /back")),
    ];
    assert_eq!(
        by_role.len(),
        expected_parent.len(),
        "{:?}",
        by_role.keys().collect::<Vec<_>>()
    );
    let mut right = 0;
    for (role, parent) in expected_parent {
        let span = by_role
            .get(role)
            .unwrap_or_else(|| panic!("no span {role}: {:?}", by_role.keys().collect::<Vec<_>>()));
        let want = parent.map_or(String::new(), |p| {
            by_role[p]["span_id"].as_str().unwrap().to_owned()
        });
        assert_eq!(
            span["parent_span_id"],
            want.as_str(),
            "the parent of {role}: {span:#}"
        );
        right += 1;
    }
    assert_eq!(
        right,
        spans.len(),
        "100% of the trace's spans have the right parent"
    );

    // The services as the receiver saw them, and the baggage on both sides of Python.
    assert_eq!(by_role["py.handle"]["service"], "py-hop");
    assert_eq!(by_role["server /back"]["service"], "rust");
    assert_eq!(by_role["py.handle"]["attributes"]["baggage.user"], "alice");
    assert_eq!(by_role["back.work"]["attributes"]["user"], "alice");
}
