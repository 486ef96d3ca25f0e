//! Threads and sync code under a context: `ctxkit::thread`, `Context::enter`.

use std::sync::mpsc;

use ctxkit::{Context, ContextKey, Error};

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

#[test]
fn thread_spawn_carries_the_current_context() {
    let ctx = Context::background().with_value::<Tenant>("carried");
    let worker =
        ctx.sync_scope(|| ctxkit::thread::spawn(|| Context::current().value::<Tenant>().copied()));
    assert_eq!(worker.join().unwrap(), Some("carried"));
}

#[test]
fn a_thread_sees_the_cancellation_of_the_context_it_carried() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (go_tx, go) = mpsc::channel::<()>();
    let worker = ctx.sync_scope(|| {
        ctxkit::thread::spawn(move || {
            go.recv().unwrap();
            Context::current().check()
        })
    });
    cancel.cancel();
    go_tx.send(()).unwrap();
    assert_eq!(worker.join().unwrap(), Err(Error::Canceled));
}

#[test]
fn the_builder_names_the_thread_and_carries_the_context() {
    let ctx = Context::background().with_value::<Tenant>("built");
    let worker = ctx
        .sync_scope(|| {
            ctxkit::thread::Builder::new()
                .name("worker-7".into())
                .spawn(|| {
                    (
                        std::thread::current().name().map(str::to_owned),
                        Context::current().value::<Tenant>().copied(),
                    )
                })
        })
        .unwrap();
    assert_eq!(
        worker.join().unwrap(),
        (Some("worker-7".to_owned()), Some("built"))
    );
}

#[test]
fn without_a_current_context_the_thread_has_none() {
    let worker = ctxkit::thread::spawn(Context::try_current);
    assert!(worker.join().unwrap().is_none());
}

#[test]
fn scoped_threads_of_a_pool_enter_the_context_themselves() {
    // What rayon's or any pool's workers do: they are not started per request, so each piece
    // of work enters the request's context.
    let ctx = Context::background().with_value::<Tenant>("pooled");
    let seen: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let _current = ctx.enter();
                    Context::current().value::<Tenant>().copied()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(seen, [Some("pooled"); 4]);
}
