//! "Why was I cancelled?": causes and contexts name where their cancellation came from.
//!
//! A `Drop` impl cannot know its own call site, so a dropped handle names the place where it was
//! *created* (the `with_cancel` call).

use std::time::Duration;

use ctxkit::{Context, ContextKey, Instant};

struct RequestId;
impl ContextKey for RequestId {
    type Value = u64;
}

fn here(line: u32) -> String {
    format!("{}:{line}:", file!())
}

#[test]
fn cancel_call_site_is_named_by_the_cause_and_the_context() {
    let (ctx, cancel) = Context::background().with_cancel();
    let line = line!() + 1;
    cancel.cancel();
    let cause = format!("{:?}", ctx.cause().unwrap());
    assert!(
        cause.contains(&format!("cancel() called at {}", here(line))),
        "{cause}"
    );
    let debug = format!("{ctx:?}");
    assert!(debug.contains(&here(line)), "{debug}");
    assert_eq!(
        ctx.cause().unwrap().origin().unwrap(),
        format!("cancel() called at {}12", here(line))
    );
}

#[test]
fn cause_handle_call_site_is_named_too() {
    let (ctx, cancel) = Context::background().with_cancel();
    let line = line!() + 1;
    cancel.cancel_with(std::io::Error::other("disk full"));
    let cause = format!("{:?}", ctx.cause().unwrap());
    assert!(cause.contains("disk full"), "{cause}");
    assert!(cause.contains(&here(line)), "{cause}");
}

#[test]
fn dropped_handle_names_where_it_was_created() {
    let line = line!() + 1;
    let (ctx, cancel) = Context::background().with_cancel();
    drop(cancel);
    let cause = format!("{:?}", ctx.cause().unwrap());
    assert!(
        cause.contains(&format!("cancel handle created at {}", here(line))),
        "{cause}"
    );
    assert!(cause.contains("was dropped"), "{cause}");
}

#[test]
fn deadline_names_where_it_was_set() {
    let line = line!() + 1;
    let (ctx, _h) = Context::background().with_deadline(Instant::now());
    let cause = format!("{:?}", ctx.cause().unwrap());
    assert!(
        cause.contains(&format!("deadline set at {}", here(line))),
        "{cause}"
    );
}

#[tokio::test(start_paused = true)]
async fn descendants_name_the_ancestor_deadline_that_fired() {
    let line = line!() + 1;
    let (parent, _h) = Context::background().with_timeout(Duration::from_secs(1));
    let (child, _hc) = parent
        .with_value::<RequestId>(1)
        .with_timeout(Duration::from_secs(9));
    child.done().await;
    let cause = format!("{:?}", child.cause().unwrap());
    assert!(
        cause.contains(&format!("deadline set at {}", here(line))),
        "{cause}"
    );
    let debug = format!("{child:?}");
    assert!(
        debug.contains("[context deadline exceeded: deadline set at"),
        "{debug}"
    );
}

#[test]
fn descendants_name_the_ancestors_cancel_call() {
    let (root, cancel) = Context::background().with_cancel();
    let (child, _h) = root.with_value::<RequestId>(1).with_cancel();
    let line = line!() + 1;
    cancel.cancel();
    let debug = format!("{child:?}");
    assert!(
        debug.starts_with("Background.WithCancel.WithValue(RequestId).WithCancel [context canceled: cancel() called at "),
        "{debug}"
    );
    assert!(debug.contains(&here(line)), "{debug}");
}
