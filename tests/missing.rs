//! A lookup that finds no current context is reported, never silent: once per call site to the
//! hook (or as a warning), every time as a panic in strict mode.

use std::sync::{Arc, Mutex, MutexGuard};

use ctxkit::Context;
use ctxkit::missing::{self, MissingContext};

/// The hook and strict mode are process-wide: these tests take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn collect() -> Arc<Mutex<Vec<MissingContext>>> {
    let seen: Arc<Mutex<Vec<MissingContext>>> = Arc::default();
    let sink = seen.clone();
    missing::set_hook(move |m| sink.lock().unwrap().push(m.clone()));
    // This process uses the implicit context.
    Context::background().sync_scope(|| ());
    seen
}

#[test]
fn a_lookup_that_finds_nothing_is_reported_once_per_call_site_with_its_location() {
    let _turn = one_at_a_time();
    let seen = collect();
    let lookup = || {
        std::thread::spawn(|| (line!(), Context::current()))
            .join()
            .unwrap()
    };
    let (line, ctx) = lookup();
    lookup();
    assert!(ctx.ptr_eq(&Context::background()));
    let seen = seen.lock().unwrap();
    let here: Vec<_> = seen
        .iter()
        .filter(|m| m.location().file() == file!() && m.location().line() == line)
        .collect();
    assert_eq!(here.len(), 1, "{seen:?}");
    let text = here[0].to_string();
    assert!(text.contains(&format!("{}:{line}", file!())), "{text}");
    assert!(text.contains("ctxkit::spawn"), "says what to do: {text}");
}

#[test]
fn try_current_is_never_reported() {
    let _turn = one_at_a_time();
    let seen = collect();
    let before = seen.lock().unwrap().len();
    assert!(
        std::thread::spawn(Context::try_current)
            .join()
            .unwrap()
            .is_none()
    );
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[test]
fn strict_mode_panics_at_every_lookup_that_finds_nothing() {
    let _turn = one_at_a_time();
    collect();
    missing::strict(true);
    let lookup = || std::thread::spawn(Context::current).join();
    let first = lookup();
    let second = lookup();
    missing::strict(false);
    for outcome in [first, second] {
        let payload = outcome.unwrap_err();
        let message = payload.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("ctxkit strict mode: no current context at"),
            "{message}"
        );
    }
    // Off again: the lookup falls back to background().
    assert!(lookup().is_ok());
}

#[test]
fn a_context_that_is_current_is_not_reported() {
    let _turn = one_at_a_time();
    let seen = collect();
    let before = seen.lock().unwrap().len();
    let (ctx, _cancel) = Context::background().with_cancel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(ctx.scope(async { Context::current() }));
    ctx.sync_scope(Context::current);
    assert_eq!(seen.lock().unwrap().len(), before);
}
