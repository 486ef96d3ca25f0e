//! `let (ctx, _) = parent.with_timeout(d);` drops the handle at once, cancelling `ctx` before it
//! is used. Debug builds report it (once per place; a panic in strict mode, as here).
#![cfg(debug_assertions)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use ctxkit::{Context, Error};

fn strict<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    ctxkit::missing::strict(true);
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn a_handle_bound_to_underscore_is_reported_naming_where_it_was_made() {
    let line = line!() + 2;
    let err = strict(|| {
        let (ctx, _) = Context::background().with_timeout(Duration::from_secs(5));
        ctx
    })
    .unwrap_err();
    assert!(err.contains("dropped before its context was used"), "{err}");
    assert!(err.contains(&format!("early_drop.rs:{line}")), "{err}");
    assert!(err.contains("let (ctx, _cancel)"), "{err}");
}

#[test]
fn with_cancel_and_with_deadline_are_reported_too() {
    assert!(strict(|| Context::background().with_cancel().0).is_err());
    let at = ctxkit::Instant::now() + Duration::from_secs(5);
    assert!(strict(|| Context::background().with_deadline(at).0).is_err());
}

#[test]
fn a_named_handle_kept_for_the_scope_is_not_reported() {
    let seen = strict(|| {
        let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
        ctx.check()
    });
    assert_eq!(seen, Ok(Ok(())));
}

#[test]
fn cancelling_on_purpose_is_not_reported() {
    let ctx = strict(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        cancel.cancel();
        drop(cancel);
        ctx
    })
    .unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn a_context_used_before_the_drop_is_not_reported() {
    // Handed on (cloned), read, derived from, or waited on: each is a use.
    let uses: [fn(&Context); 4] = [
        |c| drop(c.clone()),
        |c| assert!(!c.is_done()),
        |c| drop(c.with_value::<Tenant>(1)),
        |c| drop(c.done()),
    ];
    for (i, use_it) in uses.into_iter().enumerate() {
        let ctx = strict(|| {
            let (ctx, cancel) = Context::background().with_cancel();
            use_it(&ctx);
            drop(cancel);
            ctx
        })
        .unwrap_or_else(|e| panic!("use {i} was reported: {e}"));
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }
}

#[test]
fn a_handle_whose_context_is_gone_is_not_reported() {
    strict(|| {
        let (ctx, cancel) = Context::background().with_cancel();
        drop(ctx);
        drop(cancel);
    })
    .unwrap();
}

#[test]
fn the_request_scope_pattern_is_not_reported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let parent = Context::background();
    let out = strict(|| {
        rt.block_on(async {
            let (ctx, _scope) = parent.with_timeout(Duration::from_secs(5));
            ctx.run(tokio::task::yield_now()).await
        })
    });
    assert_eq!(out, Ok(Ok(())));
}

#[derive(ctxkit::ContextKey)]
#[context_key(value = u32)]
struct Tenant;
