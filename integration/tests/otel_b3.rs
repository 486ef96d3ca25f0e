//! A global propagator set by the program (B3, from opentelemetry-propagator-b3) is the one
//! ctxkit's layers use: B3 headers in, B3 headers out, and W3C's `traceparent` still read when a
//! caller sends no B3. Its own test binary: the global propagator is process-wide.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Once};

use ctxkit::Context;
use ctxkit::propagation::{Accept, Baggage};
use ctxkit::tower::{ClientLayer, ServerLayer};
use http::{HeaderMap, Request, Response};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Layer, Service, ServiceExt};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

fn b3_everywhere() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        opentelemetry::global::set_text_map_propagator(B3::with_encoding(
            B3Encoding::MultipleHeader,
        ));
    });
}

/// An OpenTelemetry subscriber on this thread, exporting to memory.
fn install() -> (InMemorySpanExporter, DefaultGuard) {
    b3_everywhere();
    let exported = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("b3")));
    (exported, tracing::subscriber::set_default(subscriber))
}

fn server_span(exported: &InMemorySpanExporter) -> SpanData {
    exported
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("a request span")
}

/// A server whose handler calls downstream through `ClientLayer`; the headers it sent.
async fn call_through(req: Request<()>) -> HeaderMap {
    let sent = Arc::new(Mutex::new(None));
    let keep = sent.clone();
    let transport = tower::service_fn(move |req: Request<()>| {
        *keep.lock().unwrap() = Some(req.headers().clone());
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let client = ClientLayer::new().layer(transport);
    let handler = tower::service_fn(move |_req: Request<()>| {
        let client = client.clone();
        async move {
            client
                .oneshot(Request::get("http://downstream/").body(()).unwrap())
                .await
                .unwrap();
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        }
    });
    let mut server = ServerLayer::new(Context::background(), Accept::new()).layer(handler);
    drop(server.call(req).await.unwrap());
    sent.lock().unwrap().take().unwrap()
}

#[tokio::test]
async fn b3_headers_in_make_the_parent_and_b3_headers_out_name_the_call() {
    let (exported, _installed) = install();
    let req = Request::get("/")
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .header("x-b3-sampled", "1")
        .header("baggage", "user=alice")
        .body(())
        .unwrap();
    let sent = call_through(req).await;

    let request = server_span(&exported);
    assert_eq!(
        request.span_context.trace_id().to_string(),
        "80f198ee56343ba864fe8b2a57d3eff7"
    );
    assert_eq!(request.parent_span_id.to_string(), "e457b5a2e4d86bd1");
    let call = exported
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .unwrap();
    assert_eq!(sent["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(
        sent["x-b3-spanid"],
        call.span_context.span_id().to_string().as_str()
    );
    assert_eq!(sent["x-b3-sampled"], "1");
    // What the program chose is what goes out: no W3C trace headers besides B3's...
    assert!(!sent.contains_key("traceparent"), "{sent:?}");
    assert!(!sent.contains_key("tracestate"), "{sent:?}");
    // ...but ctxkit's baggage, which B3 does not carry, still travels.
    assert_eq!(sent["baggage"], "user=alice");
}

#[tokio::test]
async fn a_caller_without_b3_is_still_followed_by_its_w3c_traceparent() {
    let (exported, _installed) = install();
    let req = Request::get("/")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .unwrap();
    let sent = call_through(req).await;
    let request = server_span(&exported);
    assert_eq!(
        request.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(request.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(sent["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[tokio::test]
async fn inject_on_any_carrier_writes_what_the_global_propagator_writes() {
    // A broker message's headers, say: the same rule as for HTTP.
    let (exported, _installed) = install();
    let mut baggage = Baggage::new();
    baggage.insert("tenant", "acme").unwrap();
    let ctx = Context::background().with_value::<Baggage>(baggage);
    let mut fields = std::collections::HashMap::new();
    ctx.scope(async { ctxkit::propagation::inject(&Context::current(), &mut fields).unwrap() })
        .instrument(tracing::info_span!("publish"))
        .await;
    let publish = exported.get_finished_spans().unwrap().pop().unwrap();
    assert_eq!(
        fields["x-b3-spanid"],
        publish.span_context.span_id().to_string()
    );
    assert!(!fields.contains_key("traceparent"), "{fields:?}");
    assert_eq!(fields["baggage"], "tenant=acme");
}

use tracing::Instrument;
