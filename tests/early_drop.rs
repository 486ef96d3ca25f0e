//! `let (ctx, _) = parent.with_timeout(d);` drops the handle at once, cancelling `ctx` before it
//! is used. Debug builds report it, once per place the handle was made (a warning, never a
//! panic); `test_hooks::early_drop_reported` tells whether a place was reported.
#![cfg(debug_assertions)]

use std::panic::Location;
use std::time::Duration;

use ctxkit::test_hooks::early_drop_reported;
use ctxkit::{CancelHandle, Context, ContextKey, Error};

/// Makes a handle at the caller's place, runs `then` with the pair, and says whether that place
/// was reported. Each call is on a line of its own.
#[track_caller]
fn reported(then: impl FnOnce(Context, CancelHandle)) -> bool {
    let at = Location::caller();
    let (ctx, cancel) = make();
    then(ctx, cancel);
    early_drop_reported(at.file(), at.line())
}

#[track_caller]
fn make() -> (Context, CancelHandle) {
    Context::background().with_cancel()
}

/// Runs `attempt` (which makes and drops a handle on `line`) until that place is reported; an
/// attempt that took longer than the 50 ms window (a saturated machine) does not count.
fn reported_within_tries(line: u32, mut attempt: impl FnMut()) -> bool {
    for _ in 0..5 {
        let began = std::time::Instant::now();
        attempt();
        if early_drop_reported(file!(), line) {
            return true;
        }
        if began.elapsed() < Duration::from_millis(50) {
            return false;
        }
    }
    false
}

#[test]
fn a_handle_bound_to_underscore_is_reported_naming_where_it_was_made() {
    let line = line!() + 2;
    assert!(reported_within_tries(line, || {
        let (ctx, _) = Context::background().with_timeout(Duration::from_secs(5));
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }));
}

#[test]
fn with_cancel_and_with_deadline_are_reported_too() {
    let line = line!() + 2;
    assert!(reported_within_tries(line, || {
        let (ctx, _) = Context::background().with_cancel();
        assert!(ctx.is_done());
    }));
    let at = ctxkit::Instant::now() + Duration::from_secs(5);
    let line = line!() + 2;
    assert!(reported_within_tries(line, || {
        let (ctx, _) = Context::background().with_deadline(at);
        assert!(ctx.is_done());
    }));
}

#[test]
fn a_named_handle_kept_for_the_scope_is_not_reported() {
    assert!(!reported(|ctx, cancel| {
        assert_eq!(ctx.check(), Ok(()));
        drop(cancel);
    }));
}

#[test]
fn cancelling_on_purpose_is_not_reported() {
    assert!(!reported(|ctx, cancel| {
        cancel.cancel();
        drop(cancel);
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }));
}

#[test]
fn a_context_used_before_the_drop_is_not_reported() {
    // Handed on (cloned), read, derived from, or waited on: each is a use.
    assert!(!reported(|ctx, cancel| {
        drop(ctx.clone());
        drop(cancel);
    }));
    assert!(!reported(|ctx, cancel| {
        assert!(!ctx.is_done());
        drop(cancel);
    }));
    assert!(!reported(|ctx, cancel| {
        drop(ctx.with_value::<Tenant>(1));
        drop(cancel);
    }));
    assert!(!reported(|ctx, cancel| {
        drop(ctx.done());
        drop(cancel);
    }));
}

#[test]
fn a_handle_whose_context_is_gone_is_not_reported() {
    assert!(!reported(|ctx, cancel| {
        drop(ctx);
        drop(cancel);
    }));
}

#[test]
fn a_handle_kept_a_while_is_not_reported() {
    // Kept (say, in a struct) while its context is used elsewhere, then dropped: not the trap.
    assert!(!reported(|ctx, cancel| {
        let elsewhere = std::thread::spawn(move || ctx.done());
        let _done = elsewhere.join().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        drop(cancel);
    }));
}

#[test]
fn the_request_scope_pattern_is_not_reported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(!reported(|ctx, scope| {
        rt.block_on(async {
            assert_eq!(ctx.run(tokio::task::yield_now()).await, Ok(()));
        });
        drop(scope);
    }));
}

struct Tenant;
impl ContextKey for Tenant {
    type Value = u32;
}
