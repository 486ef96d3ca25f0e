//! OpenTelemetry through [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry)
//! (feature `opentelemetry`, which enables `tracing` and `propagation`).
//!
//! Install a `tracing` subscriber with `tracing_opentelemetry`'s layer, put ctxkit's layers on
//! your services, and one trace crosses every hop, with no code at the call sites:
//!
//! - **Incoming.** [`ServerLayer`](crate::tower::ServerLayer) makes the caller's trace context
//!   the OpenTelemetry parent of the request's span (see [`crate::tracing`]), before anything
//!   can start the span: the handler's spans continue the caller's trace, with the caller's span
//!   as the request span's parent. The request's [`TraceContext`] then names the request span
//!   (its trace id and span id are OpenTelemetry's), so logs and propagation agree.
//! - **Outgoing.** [`propagation::inject`](crate::propagation::inject) (and so
//!   [`ClientLayer`](crate::tower::ClientLayer), and every integration that sends a context)
//!   writes the *current span's* trace context: the next hop's parent is the span that made the
//!   call (the `call` span of `ClientLayer`), not the span of the request that came in.
//! - **Baggage** stays in the [`Context`] as the typed value [`Baggage`]
//!   (`ctx.value::<Baggage>()`, `Context::current()` in any task that carries the context), so
//!   a new span never loses it (opentelemetry-rust#2718), and every outgoing call sends it.
//! - **The global propagator.** By default (OpenTelemetry's no-op propagator), ctxkit reads and
//!   writes W3C `traceparent`, `tracestate` and `baggage` with its own strict parsers. When the
//!   program set one with `opentelemetry::global::set_text_map_propagator` (B3, a composite),
//!   that one is used instead: to extract the caller's parent (ctxkit's W3C parse is the fallback
//!   when it finds none) and to inject the current span (ctxkit's own `traceparent` and
//!   `tracestate` are then left out; its `baggage` is still sent unless the propagator writes
//!   its own).
//! - **Without an OpenTelemetry layer** (spans are disabled, or the subscriber has no
//!   `tracing_opentelemetry` layer) nothing changes: ctxkit's own [`TraceContext`] travels as it
//!   does without the feature.
//! - **Cancellations are counted**: the counter [`CANCELLATIONS`] (`{cancellation}`), with the
//!   attribute [`KIND`], on the global meter provider. The instrument is
//!   made on first use and made again when the global provider changes, so a provider installed
//!   after the first cancellation still gets every later one.
//!
//! The request span is an `INFO` span of target `ctxkit::tower`: a filter that drops it also
//! drops the link to the caller's trace.
//!
//! ```
//! use std::convert::Infallible;
//! use ctxkit::Context;
//! use ctxkit::propagation::{Accept, TraceContext};
//! use ctxkit::tower::ServerLayer;
//! use http::{Request, Response};
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::{Layer, Service};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The setup: a tracing subscriber with OpenTelemetry's layer (spans kept in memory here).
//! let exported = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exported.clone()).build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("example")));
//! let _installed = tracing::subscriber::set_default(subscriber);
//!
//! // A handler with a span of its own, behind ServerLayer.
//! let handler = tower::service_fn(|_req: Request<()>| async {
//!     let _work = tracing::info_span!("load_user").entered();
//!     let trace = Context::current().value::<TraceContext>().unwrap().trace_id_hex();
//!     Ok::<_, Infallible>(Response::new(http_body_util::Full::<bytes::Bytes>::from(trace)))
//! });
//! let mut server = ServerLayer::new(Context::background(), Accept::new()).layer(handler);
//!
//! // A caller's request, in trace 4bf9… with span 00f0… as the parent.
//! let req = Request::builder()
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(())
//!     .unwrap();
//! drop(server.call(req).await.unwrap()); // the request span ends with its answer
//!
//! let spans = exported.get_finished_spans().unwrap();
//! let request = spans.iter().find(|s| s.name == "GET").unwrap();
//! let load_user = spans.iter().find(|s| s.name == "load_user").unwrap();
//! assert_eq!(request.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(request.parent_span_id.to_string(), "00f067aa0ba902b7");
//! assert_eq!(load_user.span_context.trace_id(), request.span_context.trace_id());
//! assert_eq!(load_user.parent_span_id, request.span_context.span_id());
//! # }
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use ::opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use ::opentelemetry::metrics::{Counter, MeterProvider};
use ::opentelemetry::propagation::TextMapPropagator;
use ::opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState as OtelTraceState,
};
use ::opentelemetry::{Context as OtelContext, InstrumentationScope, KeyValue, global};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Context;
use crate::propagation::{
    Baggage, Extractor, Injector, TRACEPARENT, TRACESTATE, TraceContext, TraceState,
};
use crate::tracing::{CancelKind, KIND};

/// The counter of cancellations, one per cancellation that took effect, with the attribute
/// [`KIND`] (`ctxkit.cancel.kind`). Unit `{cancellation}`; instrumentation
/// scope `ctxkit`.
pub const CANCELLATIONS: &str = "ctxkit.context.cancellations";

type Provider = Arc<dyn MeterProvider + Send + Sync>;

/// Adds one to [`CANCELLATIONS`] for `kind`.
///
/// `opentelemetry::global::meter` hands out instruments of the provider installed *when it is
/// called*: one made before `set_meter_provider` stays a no-op for ever. So the instrument is
/// made on first use and made again whenever the global provider is another one; between
/// changes this is a read lock, a reference count and a comparison.
pub(crate) fn count_cancellation(kind: CancelKind) {
    static COUNTER: Mutex<Option<(Provider, Counter<u64>)>> = Mutex::new(None);
    let provider = global::meter_provider();
    let counter = {
        let mut cached = COUNTER.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            // The cache holds the provider, so its address cannot be reused by another.
            Some((p, c)) if std::ptr::addr_eq(Arc::as_ptr(p), Arc::as_ptr(&provider)) => c.clone(),
            _ => {
                let scope = InstrumentationScope::builder("ctxkit")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build();
                let counter = provider
                    .meter_with_scope(scope)
                    .u64_counter(CANCELLATIONS)
                    .with_description("Contexts cancelled, by why (ctxkit.cancel.kind)")
                    .with_unit("{cancellation}")
                    .build();
                *cached = Some((provider, counter.clone()));
                counter
            }
        }
    };
    counter.add(1, &[KeyValue::new(KIND, kind.as_str())]);
}

/// Runs `f` with the global propagator when the program set one; `None` for OpenTelemetry's
/// default, the no-op propagator, which declares no fields (there is no other way to tell).
fn user_propagator<T>(f: impl FnOnce(&dyn TextMapPropagator) -> T) -> Option<T> {
    let mut f = Some(f);
    global::get_text_map_propagator(|p| {
        let set_by_the_program = p.fields().next().is_some();
        f.take().filter(|_| set_by_the_program).map(|f| f(p))
    })
}

/// A ctxkit carrier as OpenTelemetry's `Extractor`. ctxkit's carriers do not list their fields,
/// so `keys()` is empty: a propagator that reads fields by prefix finds none.
// Used by the servers that make request spans (`ServerLayer`).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
struct ExtractFrom<'a, E: ?Sized>(&'a E);

impl<E: Extractor + ?Sized> ::opentelemetry::propagation::Extractor for ExtractFrom<'_, E> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// A ctxkit carrier as OpenTelemetry's `Injector`; an empty value is left out (OpenTelemetry's
/// W3C propagator writes an empty `tracestate`).
struct InjectInto<'a, I: ?Sized>(&'a mut I);

impl<I: Injector + ?Sized> ::opentelemetry::propagation::Injector for InjectInto<'_, I> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            self.0.remove(key);
        } else {
            self.0.set(key, value);
        }
    }
}

/// ctxkit's baggage as OpenTelemetry's: members with their properties as metadata.
fn otel_baggage(baggage: &Baggage) -> ::opentelemetry::baggage::Baggage {
    baggage
        .iter()
        .map(|m| {
            let metadata = m
                .properties()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(";");
            KeyValueMetadata::new(m.key().to_owned(), m.value().to_owned(), metadata)
        })
        .collect()
}

/// The caller's span and baggage as an OpenTelemetry parent, from what ctxkit's own parsers read
/// into `ctx` (an empty parent for a new trace).
// Used by the servers that make request spans (`ServerLayer`).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
fn parent_from(ctx: &Context) -> OtelContext {
    let mut parent = OtelContext::new();
    if let Some(trace) = ctx.value::<TraceContext>()
        && let Some(caller) = trace.parent_span_id()
    {
        let state =
            OtelTraceState::from_key_value(trace.state().iter()).unwrap_or(OtelTraceState::NONE);
        parent = parent.with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(trace.trace_id()),
            SpanId::from_bytes(caller),
            TraceFlags::new(trace.flags()),
            true,
            state,
        ));
    }
    if let Some(baggage) = ctx.value::<Baggage>() {
        parent = parent.with_baggage(otel_baggage(baggage));
    }
    parent
}

/// Makes the caller's trace context (in `carrier`, as read into `ctx` by `extract`) the parent
/// of `span`, a request span that nothing has started yet, and returns `ctx` with a
/// [`TraceContext`] naming `span`. Without an OpenTelemetry layer (or with `span` disabled),
/// `ctx` comes back as it was.
// Used by the servers that make request spans (`ServerLayer`).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn continue_trace<E: Extractor + ?Sized>(
    span: &::tracing::Span,
    carrier: &E,
    ctx: Context,
) -> Context {
    if span.is_disabled() {
        return ctx;
    }
    let parent =
        user_propagator(|p| p.extract_with_context(&OtelContext::new(), &ExtractFrom(carrier)))
            .filter(|cx| cx.span().span_context().is_valid())
            .unwrap_or_else(|| parent_from(&ctx));
    let caller = parent.span().span_context().clone();
    if span.set_parent(parent).is_err() {
        return ctx;
    }
    let started = span.context();
    let ours = started.span().span_context().clone();
    if !ours.is_valid() {
        return ctx;
    }
    let state =
        TraceState::decode_bytes(ours.trace_state().header().as_bytes()).unwrap_or_default();
    let trace = TraceContext::from_parts(
        ours.trace_id().to_bytes(),
        ours.span_id().to_bytes(),
        caller.is_valid().then(|| caller.span_id().to_bytes()),
        ours.trace_flags().to_u8(),
        state,
    );
    ctx.with_value::<TraceContext>(trace)
}

/// Writes the current span's trace context into `carrier`, over what ctxkit wrote from `ctx`'s
/// own [`TraceContext`]: with the global propagator when the program set one (with `ctx`'s
/// baggage), else as W3C `traceparent` and `tracestate`. Nothing when no OpenTelemetry layer
/// made the current span.
pub(crate) fn inject_current_span<I: Injector + ?Sized>(ctx: &Context, carrier: &mut I) {
    let current = ::tracing::Span::current();
    if current.is_disabled() {
        return;
    }
    let cx = current.context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    let by_user = user_propagator(|p| {
        carrier.remove(TRACEPARENT);
        carrier.remove(TRACESTATE);
        let cx = match ctx.value::<Baggage>() {
            Some(baggage) => cx.with_baggage(otel_baggage(baggage)),
            None => cx.clone(),
        };
        p.inject_context(&cx, &mut InjectInto(&mut *carrier));
    });
    if by_user.is_some() {
        return;
    }
    carrier.set(
        TRACEPARENT,
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ),
    );
    match sc.trace_state().header() {
        state if state.is_empty() => carrier.remove(TRACESTATE),
        state => carrier.set(TRACESTATE, state),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::*;
    use crate::observe::{self, Reached};

    /// A meter provider whose counts can be read back.
    fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        (provider, exporter)
    }

    /// The counts of [`CANCELLATIONS`] per kind, as `provider` exports them now.
    fn counts(
        provider: &SdkMeterProvider,
        exporter: &InMemoryMetricExporter,
    ) -> BTreeMap<String, u64> {
        provider.force_flush().unwrap();
        let mut out = BTreeMap::new();
        for rm in exporter.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                assert_eq!(sm.scope().name(), "ctxkit");
                for m in sm.metrics().filter(|m| m.name() == CANCELLATIONS) {
                    assert_eq!(m.unit(), "{cancellation}");
                    let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else {
                        panic!("{CANCELLATIONS} is not a u64 sum: {:?}", m.data());
                    };
                    assert!(sum.is_monotonic());
                    for dp in sum.data_points() {
                        let kind = dp
                            .attributes()
                            .find(|kv| kv.key.as_str() == KIND)
                            .map(|kv| kv.value.to_string())
                            .expect("every point has a kind");
                        // Cumulative: the last export holds the totals.
                        out.insert(kind, dp.value());
                    }
                }
            }
        }
        out
    }

    fn cancel_with(cause: impl Into<crate::Cause>) -> Context {
        let (ctx, cancel) = Context::background().with_cancel();
        cancel.cancel_with(cause);
        ctx
    }

    fn report(ctx: &Context, reached: Reached) {
        observe::cancelled(ctx.err().unwrap(), &ctx.cause().unwrap(), reached);
    }

    /// One test, as it changes the process's global meter provider; and in a process of its own
    /// (this test binary run again for this test only), as the other tests of this binary
    /// cancel contexts at the same time, which the global provider would count too.
    #[test]
    fn each_cancellation_counts_once_by_kind_on_the_provider_installed_when_it_happens() {
        const ALONE: &str = "CTXKIT_TEST_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let path = module_path!().split_once("::").unwrap().1;
            let name = format!(
                "{path}::each_cancellation_counts_once_by_kind_on_the_provider_installed_when_it_happens"
            );
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([&name, "--exact", "--test-threads=1"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{name} alone: {}\n{stdout}\n{stderr}",
                out.status
            );
            return;
        }
        let explicit = cancel_with(std::io::Error::other("stop"));
        let gone = cancel_with(crate::tower::ClientWentAway);
        let (late, _c) = Context::background().with_timeout(std::time::Duration::ZERO);

        // Before any provider is installed: counted nowhere, and nothing is kept that would
        // make later counts no-ops.
        report(&explicit, Reached::Here);

        let (first, first_exported) = provider();
        global::set_meter_provider(first.clone());
        report(&explicit, Reached::Here);
        report(&gone, Reached::Here);
        report(&gone, Reached::Here);
        report(&late, Reached::Here);
        // A context reached by its parent's cancellation: that cancellation was counted.
        report(&explicit, Reached::FromParent);
        let expected: BTreeMap<String, u64> = [
            ("client_went_away".to_owned(), 2),
            ("deadline_exceeded".to_owned(), 1),
            ("explicit".to_owned(), 1),
        ]
        .into();
        assert_eq!(counts(&first, &first_exported), expected);

        // A provider installed later gets the later cancellations, and the first no more.
        let (second, second_exported) = provider();
        global::set_meter_provider(second.clone());
        report(&late, Reached::Here);
        assert_eq!(
            counts(&second, &second_exported),
            [("deadline_exceeded".to_owned(), 1)].into()
        );
        first_exported.reset();
        assert_eq!(counts(&first, &first_exported), expected);
    }
}
