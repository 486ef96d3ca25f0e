//! The `opentelemetry` feature without the network: spans exported to memory, services called
//! directly. The request span continues the caller's trace; calls send the current span; baggage
//! survives new spans; without an OpenTelemetry layer ctxkit's own trace context travels.
//! (The global propagator is tested in `integration/tests/otel_b3.rs`: it is process-wide.)
#![cfg(all(feature = "opentelemetry", feature = "tower"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use ctxkit::Context;
use ctxkit::propagation::{Accept, Baggage, TraceContext};
use ctxkit::tower::{ClientLayer, ServerLayer};
use http::{HeaderMap, Request, Response};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Layer, Service, ServiceExt};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A subscriber with OpenTelemetry's layer on this thread (the tests run on current-thread
/// runtimes), exporting to memory.
struct Otel {
    exported: InMemorySpanExporter,
    _installed: DefaultGuard,
}

impl Otel {
    fn install() -> Otel {
        let exported = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
        Otel {
            exported,
            _installed: tracing::subscriber::set_default(subscriber),
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.exported.get_finished_spans().unwrap()
    }

    fn span(&self, name: &str) -> SpanData {
        self.span_of(name, None)
    }

    /// The one span named `name` (of `kind`, if given).
    fn span_of(&self, name: &str, kind: Option<SpanKind>) -> SpanData {
        let spans = self.spans();
        let mut found = spans
            .iter()
            .filter(|s| s.name == name && kind.as_ref().is_none_or(|k| *k == s.span_kind));
        let span = found
            .next()
            .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"));
        assert!(found.next().is_none(), "two spans {name}");
        span.clone()
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

/// A transport that keeps the headers it was sent.
fn recording_transport(
    sent: Arc<Mutex<Vec<HeaderMap>>>,
) -> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(move |req: Request<()>| {
        sent.lock().unwrap().push(req.headers().clone());
        async { Ok::<_, Infallible>(Response::new(())) }
    })
}

/// A server whose handler works in a span of its own (`handler`), then calls downstream through
/// `ClientLayer`, and answers with the trace id its context holds.
fn server(
    sent: Arc<Mutex<Vec<HeaderMap>>>,
) -> impl Service<Request<()>, Response = Response<ctxkit::tower::ServerBody<Body>>, Error = Infallible>
{
    let client = ClientLayer::new().layer(recording_transport(sent));
    let handler = tower::service_fn(move |_req: Request<()>| {
        let client = client.clone();
        async move {
            let trace = async {
                let work = tracing::info_span!("handler");
                let _ = client
                    .oneshot(Request::get("http://downstream/x").body(()).unwrap())
                    .instrument(work)
                    .await
                    .unwrap();
                Context::current().value::<TraceContext>().cloned()
            }
            .await;
            let text = trace.map(|t| t.trace_id_hex()).unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Body::from(text)))
        }
    });
    ServerLayer::new(Context::background(), Accept::new()).layer(handler)
}

async fn body_text(resp: Response<impl http_body::Body<Error: std::fmt::Debug>>) -> String {
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

use tracing::Instrument;

#[tokio::test]
async fn every_span_of_the_request_continues_the_callers_trace_and_the_next_hops_parent_is_the_call()
 {
    let otel = Otel::install();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut svc = server(sent.clone());
    let req = Request::get("/")
        .header("traceparent", CALLER)
        .header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        .body(())
        .unwrap();
    let resp = svc.call(req).await.unwrap();
    let answered_trace = body_text(resp).await;

    let request = otel.span_of("GET", Some(SpanKind::Server));
    let handler = otel.span("handler");
    let call = otel
        .spans()
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .unwrap();
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(request.span_context.trace_id().to_string(), CALLER_TRACE);
    assert_eq!(request.parent_span_id.to_string(), CALLER_SPAN);
    assert!(request.parent_span_is_remote);
    assert_eq!(
        request.span_context.trace_state().header(),
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(handler.parent_span_id, request.span_context.span_id());
    assert_eq!(call.parent_span_id, handler.span_context.span_id());
    for span in [&handler, &call] {
        assert_eq!(span.span_context.trace_id().to_string(), CALLER_TRACE);
    }
    // The request's context names the same trace.
    assert_eq!(answered_trace, CALLER_TRACE);

    // Downstream, the call is the parent, and the caller's tracestate goes along.
    let sent = sent.lock().unwrap();
    assert_eq!(
        sent[0]["traceparent"],
        format!("00-{CALLER_TRACE}-{}-01", call.span_context.span_id())
    );
    assert_eq!(
        sent[0]["tracestate"],
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
}

#[tokio::test]
async fn a_request_without_a_trace_starts_one_that_its_context_names() {
    let otel = Otel::install();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut svc = server(sent.clone());
    let resp = svc.call(Request::get("/").body(()).unwrap()).await.unwrap();
    let answered_trace = body_text(resp).await;
    let request = otel.span_of("GET", Some(SpanKind::Server));
    assert_eq!(
        request.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    assert_eq!(answered_trace, request.span_context.trace_id().to_string());
    let sent = sent.lock().unwrap();
    assert!(
        sent[0]["traceparent"]
            .to_str()
            .unwrap()
            .starts_with(&format!("00-{answered_trace}-"))
    );
    assert!(!sent[0].contains_key("tracestate"), "no empty tracestate");
}

#[tokio::test]
async fn baggage_is_a_typed_value_that_survives_new_spans_and_travels_on() {
    let _otel = Otel::install();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let client = ClientLayer::new().layer(recording_transport(sent.clone()));
    let handler = tower::service_fn(move |_req: Request<()>| {
        let client = client.clone();
        async move {
            // Two spans below the request's: the baggage is in the context, not in a span.
            let user = async {
                async {
                    let user = Context::current()
                        .value::<Baggage>()
                        .and_then(|b| b.get("user").map(str::to_owned));
                    client
                        .oneshot(Request::get("http://downstream/").body(()).unwrap())
                        .await
                        .unwrap();
                    user
                }
                .instrument(tracing::info_span!("inner"))
                .await
            }
            .instrument(tracing::info_span!("outer"))
            .await;
            Ok::<_, Infallible>(Response::new(Body::from(user.unwrap_or_default())))
        }
    });
    let mut svc = ServerLayer::new(Context::background(), Accept::new()).layer(handler);
    let req = Request::get("/")
        .header("traceparent", CALLER)
        .header("baggage", "user=alice,tier=gold;ttl=60")
        .body(())
        .unwrap();
    let user = body_text(svc.call(req).await.unwrap()).await;
    assert_eq!(user, "alice");
    let sent = sent.lock().unwrap();
    assert_eq!(sent[0]["baggage"], "user=alice,tier=gold;ttl=60");
}

#[tokio::test]
async fn without_an_opentelemetry_layer_ctxkits_own_trace_context_travels() {
    // No subscriber at all: today's behaviour, unchanged.
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut svc = server(sent.clone());
    let req = Request::get("/")
        .header("traceparent", CALLER)
        .body(())
        .unwrap();
    let answered_trace = body_text(svc.call(req).await.unwrap()).await;
    assert_eq!(answered_trace, CALLER_TRACE);
    let sent = sent.lock().unwrap();
    let traceparent = sent[0]["traceparent"].to_str().unwrap().to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{CALLER_TRACE}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains(CALLER_SPAN),
        "this hop's own span is the parent"
    );
}

#[tokio::test]
async fn a_call_outside_any_request_is_parented_by_the_current_span() {
    let otel = Otel::install();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let client = ClientLayer::new().layer(recording_transport(sent.clone()));
    // The context's own trace loses to the span that makes the call.
    let ctx = Context::background().with_value::<TraceContext>(TraceContext::new_root());
    ctx.scope(client.oneshot(Request::get("http://downstream/").body(()).unwrap()))
        .instrument(tracing::info_span!("job"))
        .await
        .unwrap();
    let job = otel.span("job");
    let call = otel.span("GET");
    assert_eq!(call.parent_span_id, job.span_context.span_id());
    assert_eq!(
        sent.lock().unwrap()[0]["traceparent"],
        format!(
            "00-{}-{}-01",
            job.span_context.trace_id(),
            call.span_context.span_id()
        )
    );
}

#[test]
fn opentelemetrys_default_propagator_declares_no_fields() {
    // What tells ctxkit that the program set no propagator (there is no API to ask): the
    // default, the no-op propagator, declares none, and every real one declares its headers.
    // (Nothing in this test binary sets the global propagator.)
    assert!(opentelemetry::global::get_text_map_propagator(|p| p
        .fields()
        .next()
        .is_none()));
}
