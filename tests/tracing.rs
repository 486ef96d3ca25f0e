//! The `tracing` feature: spans that follow the context into tasks, threads and blocking code,
//! the request span of `ServerLayer` (with the recorded keys), the call span of `ClientLayer`,
//! and the warning of a lost context.
#![cfg(all(feature = "tracing", feature = "tower"))]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};

use ctxkit::propagation::Accept;
use ctxkit::tower::{ClientLayer, ServerLayer};
use ctxkit::{Context, ContextKey, Group, TaskSet};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as the collector saw it: its name, its parent's name and its fields.
#[derive(Clone, Debug, Default)]
struct SpanSeen {
    name: String,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

/// An event: its target, fields and the span it was in.
#[derive(Clone, Debug)]
struct EventSeen {
    target: String,
    fields: BTreeMap<String, String>,
    span: Option<u64>,
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, SpanSeen>,
    events: Vec<EventSeen>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, f: &Field, value: &str) {
        self.0.insert(f.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, f: &Field, value: u64) {
        self.0.insert(f.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, f: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(f.name().to_owned(), format!("{value:?}"));
    }
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Seen>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut span = SpanSeen {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.id().into_u64()),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .spans
            .insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let span = seen.spans.entry(id.into_u64()).or_default();
        values.record(&mut Fields(&mut span.fields));
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .events
            .push(EventSeen {
                target: event.metadata().target().to_owned(),
                fields,
                span: ctx.event_span(event).map(|s| s.id().into_u64()),
            });
    }
}

/// The process's subscriber (global: spans must be seen on every thread), shared by the tests,
/// which tell their spans and events apart by their own names and messages.
fn seen() -> &'static Collect {
    static COLLECT: OnceLock<Collect> = OnceLock::new();
    COLLECT.get_or_init(|| {
        let collect = Collect::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(collect.clone()),
        )
        .expect("no other subscriber in this test binary");
        collect
    })
}

impl Collect {
    fn span(&self, id: u64) -> SpanSeen {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .spans[&id]
            .clone()
    }

    /// The span named `name` whose field `field` is `value`.
    fn span_where(&self, name: &str, field: &str, value: &str) -> (u64, SpanSeen) {
        let seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found: Vec<_> = seen
            .spans
            .iter()
            .filter(|(_, s)| s.name == name && s.fields.get(field).is_some_and(|v| v == value))
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "spans {name} with {field}={value}: {found:?}"
        );
        found[0].clone()
    }

    /// The event whose message is `message`.
    fn event(&self, message: &str) -> EventSeen {
        let seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found: Vec<_> = seen
            .events
            .iter()
            .filter(|e| e.fields.get("message").is_some_and(|m| m == message))
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "events {message:?}: {found:?}");
        found[0].clone()
    }
}

/// The current span's id, as the collector knows it.
fn current() -> Option<u64> {
    tracing::Span::current().id().map(|id| id.into_u64())
}

#[tokio::test]
async fn ctxkit_spawn_runs_the_task_in_the_callers_span() {
    seen();
    let outer = tracing::info_span!("spawn_caller");
    let inner = {
        let _in = outer.enter();
        ctxkit::spawn(async { current() })
    };
    assert_eq!(inner.await.unwrap(), outer.id().map(|id| id.into_u64()));
    // As tokio::spawn does not.
    let bare = {
        let _in = outer.enter();
        tokio::spawn(async { current() })
    };
    assert_eq!(bare.await.unwrap(), None);
}

#[tokio::test]
async fn spawn_blocking_runs_the_closure_in_the_callers_span() {
    seen();
    let outer = tracing::info_span!("blocking_caller");
    let inner = ctxkit::spawn_blocking(current)
        .instrument(outer.clone())
        .await
        .unwrap();
    assert_eq!(inner, outer.id().map(|id| id.into_u64()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_set_tasks_run_in_the_span_they_were_spawned_in() {
    seen();
    let mut set = TaskSet::new(&Context::background());
    let first = tracing::info_span!("task_set_first");
    let second = tracing::info_span!("task_set_second");
    first.in_scope(|| set.spawn(async { current() }));
    second.in_scope(|| set.spawn_blocking(current));
    let mut got = set.join_all().await;
    got.sort();
    let mut want = vec![
        first.id().map(|id| id.into_u64()),
        second.id().map(|id| id.into_u64()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_tasks_and_threads_run_in_the_callers_span() {
    seen();
    let outer = tracing::info_span!("group_caller");
    let want = outer.id().map(|id| id.into_u64());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let group: Group<Infallible> = Group::new(&Context::background());
    async {
        let tx = tx.clone();
        group
            .spawn(async move {
                tx.send(current()).unwrap();
                Ok(())
            })
            .await;
    }
    .instrument(outer.clone())
    .await;
    group.wait().await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), want);

    let thread = outer.in_scope(|| ctxkit::thread::spawn(current));
    assert_eq!(thread.join().unwrap(), want);
}

/// Recorded in the request span, in a field of its own name.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id", record = "request_id")]
struct RequestId;

/// Recorded in a field named after its header.
#[derive(ContextKey)]
#[context_key(value = u32, header = "x-tenant", record)]
struct Tenant;

/// Travels, but is not recorded.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-secret")]
struct Secret;

#[tokio::test]
async fn the_handler_runs_in_a_request_span_carrying_the_recorded_keys_and_the_trace_id() {
    let collect = seen();
    let handler = tower::service_fn(|_req: Request<()>| async {
        tracing::info!("handled request 7");
        Ok::<_, Infallible>(
            Response::builder()
                .status(201)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
    });
    let accept = Accept::new()
        .key::<RequestId>()
        .key::<Tenant>()
        .key::<Secret>();
    let mut server = ServerLayer::new(Context::background(), accept).layer(handler);
    let req = Request::post("/orders/7")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "req-7")
        .header("x-tenant", "42")
        .header("x-secret", "hunter2")
        .body(())
        .unwrap();
    let resp = server.call(req).await.unwrap();
    assert_eq!(resp.status(), 201);

    let (id, span) = collect.span_where("request", "request_id", "req-7");
    assert_eq!(span.fields["x-tenant"], "42");
    assert_eq!(span.fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.fields["otel.name"], "POST");
    assert_eq!(span.fields["otel.kind"], "server");
    assert_eq!(span.fields["http.request.method"], "POST");
    assert_eq!(span.fields["url.path"], "/orders/7");
    assert_eq!(span.fields["http.response.status_code"], "201");
    assert!(!span.fields.contains_key("otel.status_code"), "{span:?}");
    assert!(
        !span.fields.values().any(|v| v.contains("hunter2")),
        "a key without `record` stays out of the span: {span:?}"
    );
    assert_eq!(collect.event("handled request 7").span, Some(id));
}

#[tokio::test]
async fn a_grpc_request_span_is_named_after_its_method_and_records_a_failing_status() {
    let collect = seen();
    let handler = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "5")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
    });
    let mut server = ServerLayer::new(Context::background(), Accept::new()).layer(handler);
    let req = Request::post("/shop.Orders/Find")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    server.call(req).await.unwrap();
    let (_, span) = collect.span_where("request", "otel.name", "shop.Orders/Find");
    assert_eq!(span.fields["rpc.system"], "grpc");
    assert_eq!(span.fields["rpc.service"], "shop.Orders");
    assert_eq!(span.fields["rpc.method"], "Find");
    assert_eq!(span.fields["rpc.grpc.status_code"], "5");
    assert_eq!(span.fields["otel.status_code"], "error");
}

#[tokio::test]
async fn a_call_is_a_client_span_inside_the_callers_span() {
    let collect = seen();
    let transport = tower::service_fn(|_req: Request<()>| async {
        tracing::info!("sent the call to the inventory");
        Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap())
    });
    let client = ClientLayer::new().layer(transport);
    let outer = tracing::info_span!("calling_inventory");
    let (ctx, _cancel) = Context::background().with_cancel();
    let resp = ctx
        .scope(
            client.oneshot(
                Request::get("http://inventory.internal:8080/items")
                    .body(())
                    .unwrap(),
            ),
        )
        .instrument(outer.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let (id, call) = collect.span_where("call", "url.full", "http://inventory.internal:8080/items");
    assert_eq!(call.parent, outer.id().map(|id| id.into_u64()));
    assert_eq!(call.fields["otel.kind"], "client");
    assert_eq!(call.fields["otel.name"], "GET");
    assert_eq!(call.fields["server.address"], "inventory.internal");
    assert_eq!(call.fields["server.port"], "8080");
    assert_eq!(call.fields["http.response.status_code"], "503");
    assert_eq!(call.fields["otel.status_code"], "error");
    assert_eq!(
        collect.event("sent the call to the inventory").span,
        Some(id)
    );
    assert_eq!(collect.span(id).name, "call");
}

#[tokio::test]
async fn a_lost_context_is_a_warning_event() {
    let collect = seen();
    let (ctx, _cancel) = Context::background().with_cancel();
    let line = ctx
        .scope(async {
            // tokio::spawn does not carry the context: the lookup inside is reported.
            tokio::spawn(async { (line!(), Context::current()).0 })
                .await
                .unwrap()
        })
        .await;
    let warning = collect
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .events
        .iter()
        .find(|e| e.target == "ctxkit::missing")
        .cloned()
        .expect("a warning event");
    let location = &warning.fields["ctxkit.missing.location"];
    assert!(
        location.starts_with(&format!("{}:{line}:", file!())),
        "{location}"
    );
    assert!(warning.fields["message"].contains("no current context"));
}

use tracing::Instrument;

/// `ctxkit-macros` cannot import `REQUEST_SPAN_FIELDS` (a proc-macro crate shares no constants),
/// so it keeps a copy to refuse them at compile time: the two lists must agree.
#[test]
fn the_derive_refuses_the_request_spans_own_fields() {
    let source = include_str!("../ctxkit-macros/src/key/args.rs");
    let start = source
        .find("const SPAN_FIELDS: [&str; ")
        .expect("the derive's SPAN_FIELDS list");
    let list = &source[start..];
    let list = &list[list.find('[').unwrap() + 1..];
    let list = &list[list.find('[').unwrap() + 1..list.find("];").unwrap()];
    let derive: Vec<&str> = list
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(derive, ctxkit::tracing::REQUEST_SPAN_FIELDS);
}

/// A cancellation emits one event, from the cancel walk, for the context it started at (its
/// descendants, reached by it, emit none), with the kind and where it came from.
#[test]
fn a_cancelled_context_emits_exactly_one_event_with_kind_and_origin() {
    let seen = seen();
    let (ctx, cancel) = Context::background().with_cancel();
    let (_child, _child_cancel) = ctx.with_cancel();
    let (_grandchild, _grandchild_cancel) = _child.with_cancel();
    let cause = "the walk reports this cancellation once";
    cancel.cancel_with(std::io::Error::other(cause));
    cancel.cancel(); // a second cancellation takes no effect, and is not reported
    let events: Vec<EventSeen> = seen
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .events
        .iter()
        .filter(|e| e.target == "ctxkit::cancel")
        .filter(|e| e.fields.get("ctxkit.cancel.cause").map(String::as_str) == Some(cause))
        .cloned()
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let fields = &events[0].fields;
    assert!(
        fields
            .get("ctxkit.cancel.kind")
            .is_some_and(|k| !k.is_empty()),
        "{fields:?}"
    );
    assert!(
        fields
            .get("ctxkit.cancel.origin")
            .is_some_and(|o| o.contains("tests/tracing.rs")),
        "{fields:?}"
    );
    assert_eq!(
        fields.get("ctxkit.cancel.error").map(String::as_str),
        Some("context canceled")
    );
}
