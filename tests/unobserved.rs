//! A dropped handle skips the cancellation of a node nobody can observe; everything that can
//! observe it must still see it cancelled.

use std::sync::mpsc;
use std::time::Duration;

use ctxkit::{Context, Error};

#[test]
fn an_after_func_whose_handle_and_context_are_gone_still_runs_when_the_cancel_handle_drops() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let after = ctx.after_func(move || tx.send(()).unwrap());
    drop(after);
    drop(ctx);
    drop(cancel);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the callback ran");
}

#[test]
fn unobserved_children_leave_their_parents_registry_when_their_handles_drop() {
    let (parent, _cancel) = Context::background().with_cancel();
    let v = parent.with_value::<Key>(1);
    for _ in 0..1000 {
        let (child, handle) = parent.with_cancel();
        let (behind_value, h2) = v.with_cancel();
        drop(child);
        drop(behind_value);
        drop(handle);
        drop(h2);
    }
    assert_eq!(ctxkit::test_hooks::registered(&parent), 0);
}

#[test]
fn a_grandchild_still_sees_the_cancellation_of_a_child_whose_context_is_gone() {
    let (parent, _cancel) = Context::background().with_cancel();
    let (child, handle) = parent.with_cancel();
    let (grandchild, _h) = child.with_cancel();
    drop(child);
    drop(handle);
    assert_eq!(grandchild.err(), Some(Error::Canceled));
    assert_eq!(parent.err(), None);
    assert_eq!(ctxkit::test_hooks::registered(&parent), 0);
}

#[tokio::test]
async fn a_waiter_on_a_clone_wakes_when_the_handle_drops() {
    let (ctx, cancel) = Context::background().with_cancel();
    let waiter = tokio::spawn(ctx.done());
    tokio::task::yield_now().await;
    drop(ctx);
    drop(cancel);
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken")
        .unwrap();
}

struct Key;
impl ctxkit::ContextKey for Key {
    type Value = u8;
}
