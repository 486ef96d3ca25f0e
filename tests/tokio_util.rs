//! The tokio-util bridge (feature `tokio-util`): `cancellation_token` and
//! `with_cancellation_token`.
#![cfg(feature = "tokio-util")]

use std::time::Duration;

use ctxkit::{Context, ContextKey, Error, TokenCancelled};
use tokio_util::sync::CancellationToken;

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

/// Generous: a link takes one task hop, which only a loaded machine makes slow.
const PATIENCE: Duration = Duration::from_secs(30);

async fn cancelled_soon(token: &CancellationToken) {
    tokio::time::timeout(PATIENCE, token.cancelled())
        .await
        .expect("the token was cancelled");
}

#[tokio::test]
async fn the_token_is_cancelled_when_the_context_is() {
    let (ctx, cancel) = Context::background().with_cancel();
    let token = ctx.cancellation_token();
    assert!(!token.is_cancelled());
    cancel.cancel();
    cancelled_soon(&token).await;
}

#[tokio::test(start_paused = true)]
async fn the_token_follows_a_deadline_and_a_parents_cancellation() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
    let by_deadline = ctx.cancellation_token();
    cancelled_soon(&by_deadline).await;
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));

    let (parent, cancel_parent) = Context::background().with_cancel();
    let (child, _c) = parent.with_cancel();
    let by_parent = child.cancellation_token();
    cancel_parent.cancel();
    cancelled_soon(&by_parent).await;
}

#[test]
fn the_token_of_a_done_context_is_cancelled_at_once_without_a_runtime() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    assert!(ctx.cancellation_token().is_cancelled());
}

#[tokio::test]
async fn cancelling_the_token_leaves_the_context_alone() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let token = ctx.cancellation_token();
    token.cancel();
    tokio::task::yield_now().await;
    assert!(!ctx.is_done());
}

#[tokio::test]
async fn the_token_cancels_the_child_with_a_cause_that_says_so() {
    let token = CancellationToken::new();
    let parent = Context::background().with_value::<Tenant>("acme");
    let ctx = parent.with_cancellation_token(token.clone());
    assert_eq!(ctx.value::<Tenant>(), Some(&"acme"));
    assert!(!ctx.is_done());
    token.cancel();
    tokio::time::timeout(PATIENCE, ctx.done()).await.unwrap();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<TokenCancelled>());
    assert_eq!(cause.to_string(), "the CancellationToken was cancelled");
}

#[test]
fn an_already_cancelled_token_gives_a_done_child_without_a_runtime() {
    let token = CancellationToken::new();
    token.cancel();
    let ctx = Context::background().with_cancellation_token(token);
    assert!(ctx.cause().unwrap().is::<TokenCancelled>());
}

#[tokio::test]
async fn cancelling_the_child_or_its_parent_never_cancels_the_token() {
    let token = CancellationToken::new();
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (child_parent, cancel_child) = parent.with_cancel();
    let a = child_parent.with_cancellation_token(token.clone());
    let b = parent.with_cancellation_token(token.clone());
    cancel_child.cancel();
    cancel_parent.cancel();
    assert!(a.is_done() && b.is_done());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!token.is_cancelled());
}

#[tokio::test]
async fn the_child_of_a_forever_live_parent_lets_go_of_the_token_when_dropped() {
    let (parent, _cancel) = Context::background().with_cancel();
    let token = CancellationToken::new();
    let ctx = parent.with_cancellation_token(token.clone());
    assert_eq!(ctxkit::test_hooks::registered(&parent), 1);
    drop(ctx);
    // The link task ends and the child leaves its parent.
    for _ in 0..100 {
        if ctxkit::test_hooks::registered(&parent) == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(ctxkit::test_hooks::registered(&parent), 0);
}

#[test]
fn tokens_taken_on_many_threads_while_the_context_is_cancelled_all_end_up_cancelled() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..200 {
        let (ctx, cancel) = Context::background().with_cancel();
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let ctx = ctx.clone();
                let handle = rt.handle().clone();
                std::thread::spawn(move || {
                    let _in_runtime = handle.enter();
                    ctx.cancellation_token()
                })
            })
            .collect();
        cancel.cancel();
        for taker in takers {
            let token = taker.join().unwrap();
            // Generous: a lost link would hang here for ever.
            let cancelled = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), token.cancelled_owned()).await
            });
            assert!(cancelled.is_ok(), "a token was never cancelled");
        }
    }
}
