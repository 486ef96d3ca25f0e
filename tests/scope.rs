//! The implicit current context: `scope`, `sync_scope`, `run` and `spawn`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ctxkit::{Context, ContextKey, Error, spawn};

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

#[tokio::test]
async fn current_is_background_outside_every_scope() {
    assert!(Context::try_current().is_none());
    assert!(Context::current().same(&Context::background()));
}

#[tokio::test]
async fn scope_makes_the_context_current_for_the_future_only() {
    let ctx = Context::background().with_value::<Tenant>("acme");
    let seen = ctx
        .scope(async {
            tokio::task::yield_now().await;
            Context::current().value::<Tenant>().copied()
        })
        .await;
    assert_eq!(seen, Some("acme"));
    assert!(Context::try_current().is_none());
}

#[tokio::test]
async fn nested_scopes_see_the_innermost_context() {
    let outer = Context::background().with_value::<Tenant>("outer");
    let inner = outer.with_value::<Tenant>("inner");
    let seen = outer
        .scope(async {
            let i = inner
                .scope(async { *Context::current().value::<Tenant>().unwrap() })
                .await;
            (i, *Context::current().value::<Tenant>().unwrap())
        })
        .await;
    assert_eq!(seen, ("inner", "outer"));
}

#[test]
fn sync_scope_sets_current_for_the_closure() {
    let ctx = Context::background().with_value::<Tenant>("sync");
    assert_eq!(
        ctx.sync_scope(|| Context::current().value::<Tenant>().copied()),
        Some("sync")
    );
    assert!(Context::try_current().is_none());
}

#[tokio::test]
async fn spawn_carries_the_current_context_into_the_task() {
    let ctx = Context::background().with_value::<Tenant>("carried");
    let seen = ctx
        .scope(async { spawn(async { Context::current().value::<Tenant>().copied() }).await })
        .await
        .unwrap();
    assert_eq!(seen, Some("carried"));
}

#[tokio::test]
async fn run_returns_the_output_of_a_future_that_finishes() {
    let (ctx, _h) = Context::background().with_cancel();
    assert_eq!(ctx.run(async { 5 }).await, Ok(5));
}

#[tokio::test]
async fn run_checks_cancellation_before_polling() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let polled = Arc::new(AtomicBool::new(false));
    let p = polled.clone();
    assert_eq!(
        ctx.run(async move { p.store(true, Ordering::SeqCst) })
            .await,
        Err(Error::Canceled)
    );
    assert!(!polled.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn run_ends_when_cancelled_mid_flight_and_the_future_sees_its_context() {
    let (ctx, cancel) = Context::background()
        .with_value::<Tenant>("t")
        .with_cancel();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        cancel.cancel();
    });
    let res = ctx
        .run(async {
            assert_eq!(Context::current().value::<Tenant>(), Some(&"t"));
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .await;
    assert_eq!(res, Err(Error::Canceled));
    canceller.await.unwrap();
}

#[tokio::test]
async fn run_on_a_never_cancellable_context_just_runs() {
    assert_eq!(Context::background().run(async { "ok" }).await, Ok("ok"));
}

#[test]
fn scoped_and_run_futures_are_send_and_static() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let ctx = Context::background();
    let scoped = ctx.scope(async {});
    assert_send_static(&scoped);
    let run = ctx.run(async {});
    assert_send_static(&run);
    assert_send_static(&ctx.done());
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Context>();
    assert_send_sync::<ctxkit::CancelHandle>();
    assert_send_sync::<ctxkit::CancelHandle>();
    assert_send_sync::<ctxkit::AfterFunc>();
    assert_send_sync::<ctxkit::Cause>();
}
