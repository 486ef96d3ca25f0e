//! Go's rules for the context tree: cancellation travels down, never up or sideways; errors,
//! causes and deadlines are inherited and fixed; values shadow by nearest ancestor.

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Waker};
use std::time::Duration;

use ctxkit::{Cause, Context, ContextKey, Error, Instant};

struct RequestId;
impl ContextKey for RequestId {
    type Value = u64;
}

struct UserId;
impl ContextKey for UserId {
    type Value = u64;
}

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

#[derive(Debug, PartialEq)]
struct Reason(&'static str);
impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Reason {}

fn reason(ctx: &Context) -> Option<&'static str> {
    ctx.cause()
        .and_then(|c| c.downcast_ref::<Reason>().map(|r| r.0))
}

/// Sizes for loops: full natively, small under miri (which is thousands of times slower).
fn scale(n: u64) -> u64 {
    if cfg!(miri) { (n / 100).max(2) } else { n }
}

fn is_pending(fut: impl Future) -> bool {
    let mut fut = pin!(fut);
    fut.as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
        .is_pending()
}

#[test]
fn cancel_reaches_every_descendant_at_any_depth() {
    let (root, cancel) = Context::background().with_cancel();
    let mut chain = vec![root.clone()];
    let mut handles = Vec::new();
    for i in 0..scale(2_000) {
        let last = chain.last().unwrap().clone();
        let next = match i % 3 {
            0 => last.with_value::<RequestId>(i),
            _ => {
                let (c, h) = last.with_cancel();
                handles.push(h);
                c
            }
        };
        chain.push(next);
    }
    assert!(chain.iter().all(|c| c.err().is_none()));
    cancel.cancel();
    assert!(chain.iter().all(|c| c.err() == Some(Error::Canceled)));
    assert!(chain.iter().all(Context::is_done));
}

#[test]
fn cancel_reaches_every_descendant_at_any_fan_out() {
    let (root, cancel) = Context::background().with_cancel();
    let mut leaves = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..scale(200) {
        let (mid, h) = root.with_cancel();
        handles.push(h);
        for _ in 0..scale(50) {
            let (leaf, h) = mid.with_cancel();
            handles.push(h);
            leaves.push(leaf);
        }
    }
    assert_eq!(ctxkit::test_hooks::registered(&root), scale(200) as usize);
    cancel.cancel();
    assert!(leaves.iter().all(|l| l.err() == Some(Error::Canceled)));
    assert_eq!(ctxkit::test_hooks::registered(&root), 0);
}

#[test]
fn deep_chains_cancel_and_drop_without_overflowing_the_stack() {
    let (root, cancel) = Context::background().with_cancel();
    let mut leaf = root.clone();
    let mut handles = Vec::new();
    for i in 0..scale(200_000) {
        leaf = if i % 2 == 0 {
            let (c, h) = leaf.with_cancel();
            handles.push(h);
            c
        } else {
            leaf.with_value::<RequestId>(i)
        };
    }
    cancel.cancel();
    assert_eq!(leaf.err(), Some(Error::Canceled));
    drop(handles);
    drop(leaf); // the last reference to a 200,000-node chain
    assert_eq!(root.err(), Some(Error::Canceled));
}

#[test]
fn cancel_passes_through_value_nodes() {
    let (root, cancel) = Context::background().with_cancel();
    let v1 = root.with_value::<RequestId>(1);
    let v2 = v1.with_value::<Tenant>("acme");
    let (child, _h) = v2.with_cancel();
    let under = child.with_value::<UserId>(3);
    cancel.cancel();
    for ctx in [&v1, &v2, &child, &under] {
        assert_eq!(ctx.err(), Some(Error::Canceled));
    }
}

#[test]
fn cancel_cascades_below_a_without_cancel_node_from_its_own_cancellable_ancestors() {
    let (root, cancel_root) = Context::background().with_cancel();
    let detached = root.without_cancel();
    let (a, cancel_a) = detached.with_cancel();
    let b_parent = a.with_value::<RequestId>(1);
    let (b, _hb) = b_parent.with_cancel();
    cancel_root.cancel();
    assert_eq!(a.err(), None, "without_cancel cuts the cascade from above");
    assert_eq!(b.err(), None);
    cancel_a.cancel();
    assert_eq!(b.err(), Some(Error::Canceled));
}

#[test]
fn child_cancel_never_touches_parent() {
    let (parent, _hp) = Context::background().with_cancel();
    let (child, cancel) = parent.with_cancel();
    cancel.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(parent.err(), None);
    assert!(!parent.is_done());
}

#[test]
fn cancel_never_reaches_siblings() {
    let (parent, _hp) = Context::background().with_cancel();
    let (a, cancel_a) = parent.with_cancel();
    let (b, _hb) = parent.with_cancel();
    let (b_child, _hbc) = b.with_cancel();
    cancel_a.cancel();
    assert!(a.is_done());
    assert!(!b.is_done());
    assert!(!b_child.is_done());
}

#[test]
fn dropping_the_handle_cancels() {
    let (ctx, handle) = Context::background().with_cancel();
    drop(handle);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let (ctx, handle) = Context::background().with_cancel();
    drop(handle);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(
        ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
}

#[test]
fn child_with_later_deadline_reports_the_parents() {
    let now = Instant::now();
    let early = now + Duration::from_secs(60);
    let (parent, _hp) = Context::background().with_deadline(early);
    let (child, _hc) = parent.with_deadline(early + Duration::from_secs(60));
    assert_eq!(child.deadline(), Some(early));
    let (child, _hc) = parent.with_timeout(Duration::from_secs(3600));
    assert_eq!(child.deadline(), Some(early));
}

#[test]
fn child_with_earlier_deadline_reports_its_own() {
    let now = Instant::now();
    let (parent, _hp) = Context::background().with_deadline(now + Duration::from_secs(60));
    let own = now + Duration::from_secs(30);
    let (child, _hc) = parent.with_deadline(own);
    assert_eq!(child.deadline(), Some(own));
}

#[test]
fn non_deadline_descendants_report_the_nearest_deadline() {
    let at = Instant::now() + Duration::from_secs(60);
    let (parent, _hp) = Context::background().with_deadline(at);
    let (c, _hc) = parent.with_value::<RequestId>(1).with_cancel();
    assert_eq!(c.deadline(), Some(at));
    assert_eq!(c.with_value::<Tenant>("x").deadline(), Some(at));
    assert_eq!(Context::background().deadline(), None);
}

#[test]
fn the_nearest_earlier_deadline_wins_down_a_mixed_chain() {
    let now = Instant::now();
    let (far, near) = (
        now + Duration::from_secs(3600),
        now + Duration::from_secs(60),
    );
    let (a, _ha) = Context::background().with_deadline(far);
    let (b, _hb) = a.with_cancel();
    let (c, _hc) = b.with_value::<RequestId>(7).with_deadline(near);
    let (d, _hd) = c.with_cancel();
    let (e, _he) = d.with_deadline(far);
    assert_eq!(b.deadline(), Some(far));
    assert_eq!(c.deadline(), Some(near));
    assert_eq!(d.deadline(), Some(near));
    assert_eq!(
        e.deadline(),
        Some(near),
        "a later deadline of its own never applies"
    );
    assert_eq!(e.with_value::<Tenant>("t").deadline(), Some(near));
    // `without_cancel` drops the deadline as well as the cancellation (as in Go).
    let free = e.without_cancel();
    assert_eq!(free.deadline(), None);
    assert_eq!(free.with_cancel().0.deadline(), None);
    let (g, _hg) = free.with_deadline(far);
    assert_eq!(g.deadline(), Some(far));
}

#[test]
fn err_is_none_until_done_then_fixed_forever() {
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (child, cancel_child) = parent.with_deadline(Instant::now() + Duration::from_secs(3600));
    assert_eq!(child.err(), None);
    assert_eq!(child.cause().map(|_| ()), None);
    cancel_child.cancel();
    let first = format!("{:?}", child.cause().unwrap());
    cancel_parent.cancel();
    cancel_child.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(format!("{:?}", child.cause().unwrap()), first);
}

#[test]
fn err_some_implies_is_done() {
    let (ctx, cancel) = Context::background().with_cancel();
    assert!(ctx.err().is_none() && !ctx.is_done());
    cancel.cancel();
    assert!(ctx.err().is_some() && ctx.is_done());
    let (past, _h) = Context::background().with_deadline(Instant::now());
    assert!(past.err().is_some() && past.is_done());
}

#[test]
fn first_cause_wins() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (child, _hc) = ctx.with_cancel();
    cancel.cancel_with(Reason("first"));
    cancel.cancel_with(Reason("second"));
    assert_eq!(reason(&ctx), Some("first"));
    assert_eq!(reason(&child), Some("first"));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn plain_cancel_gives_the_error_itself_as_cause() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert_eq!(cause.to_string(), "context canceled");
}

#[test]
fn deadline_hit_reports_deadline_exceeded_as_cause() {
    let (ctx, _h) = Context::background().with_deadline(Instant::now());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let cause = ctx.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
}

#[test]
fn deadline_hit_reports_the_cause_argument() {
    let (ctx, _h) = Context::background().with_deadline_cause(Instant::now(), Reason("too slow"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(reason(&ctx), Some("too slow"));
    let (ctx, _h) = Context::background().with_timeout_cause(Duration::ZERO, Reason("budget"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(reason(&ctx), Some("budget"));
}

#[test]
fn cancel_cause_argument_is_ignored_once_the_deadline_hit() {
    let (ctx, _h) = Context::background().with_deadline_cause(Instant::now(), Reason("deadline"));
    let (child, cancel_child) = ctx.with_cancel();
    cancel_child.cancel_with(Reason("late"));
    assert_eq!(reason(&child), Some("deadline"));
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn descendants_inherit_the_cause_of_the_ancestor_that_reached_them_first() {
    let (root, cancel_root) = Context::background().with_cancel();
    let (mid, cancel_mid) = root.with_cancel();
    let (under_mid, _h1) = mid.with_value::<RequestId>(1).with_cancel();
    let (other, _h2) = root.with_cancel();
    cancel_mid.cancel_with(Reason("mid"));
    cancel_root.cancel_with(Reason("root"));
    assert_eq!(reason(&mid), Some("mid"));
    assert_eq!(reason(&under_mid), Some("mid"));
    assert_eq!(reason(&root), Some("root"));
    assert_eq!(reason(&other), Some("root"));
}

#[test]
fn child_of_a_cancelled_parent_is_born_cancelled_with_the_parents_cause() {
    let (parent, cancel) = Context::background().with_cancel();
    cancel.cancel_with(Reason("gone"));
    let (child, _h) = parent.with_value::<RequestId>(1).with_cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(reason(&child), Some("gone"));
    let (timed, _h) = parent.with_timeout(Duration::from_secs(60));
    assert_eq!(timed.err(), Some(Error::Canceled));
    assert_eq!(reason(&timed), Some("gone"));
    assert_eq!(ctxkit::test_hooks::registered(&parent), 0);
}

#[test]
fn child_of_a_parent_past_its_deadline_is_born_with_deadline_exceeded() {
    let (parent, _h) = Context::background().with_deadline_cause(Instant::now(), Reason("late"));
    let (child, _hc) = parent.with_cancel();
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert_eq!(reason(&child), Some("late"));
}

#[test]
fn without_cancel_keeps_values_only() {
    let (parent, cancel) = Context::background()
        .with_value::<RequestId>(7)
        .with_timeout(Duration::from_secs(1));
    let detached = parent.without_cancel();
    cancel.cancel();
    assert!(parent.is_done());
    assert_eq!(detached.value::<RequestId>(), Some(&7));
    assert_eq!(detached.err(), None);
    assert!(detached.cause().is_none());
    assert!(!detached.is_done());
    assert_eq!(detached.deadline(), None);
    assert!(is_pending(detached.done()));
    let (grandchild, _h) = detached.with_cancel();
    assert_eq!(grandchild.err(), None);
    assert_eq!(grandchild.value::<RequestId>(), Some(&7));
}

#[test]
fn background_and_todo_are_never_done() {
    for ctx in [Context::background(), Context::todo(), Context::default()] {
        assert_eq!(ctx.err(), None);
        assert!(ctx.cause().is_none());
        assert_eq!(ctx.deadline(), None);
        assert!(!ctx.is_done());
        assert!(is_pending(ctx.done()));
        assert_eq!(ctx.value::<RequestId>(), None);
        assert_eq!(ctxkit::test_hooks::registered(&ctx), 0);
    }
}

#[test]
fn nearest_value_shadows_farther_ones() {
    let a = Context::background().with_value::<RequestId>(1);
    let (b, _h) = a.with_cancel();
    let c = b.with_value::<RequestId>(2);
    let d = c.without_cancel().with_value::<Tenant>("t");
    assert_eq!(a.value::<RequestId>(), Some(&1));
    assert_eq!(b.value::<RequestId>(), Some(&1));
    assert_eq!(c.value::<RequestId>(), Some(&2));
    assert_eq!(d.value::<RequestId>(), Some(&2));
}

#[test]
fn keys_of_different_types_never_collide_even_with_equal_value_types() {
    let ctx = Context::background()
        .with_value::<RequestId>(1)
        .with_value::<UserId>(2);
    assert_eq!(ctx.value::<RequestId>(), Some(&1));
    assert_eq!(ctx.value::<UserId>(), Some(&2));
    assert_eq!(ctx.value::<Tenant>(), None);
    // A key type and a value type are not the same thing either.
    let only_user = Context::background().with_value::<UserId>(5);
    assert_eq!(only_user.value::<RequestId>(), None);
}

#[test]
fn values_survive_cancellation() {
    let (ctx, cancel) = Context::background()
        .with_value::<Tenant>("acme")
        .with_cancel();
    cancel.cancel();
    assert_eq!(ctx.value::<Tenant>(), Some(&"acme"));
}

#[test]
fn deriving_a_child_never_changes_the_parent() {
    let parent = Context::background().with_value::<RequestId>(1);
    let _child = parent.with_value::<RequestId>(2);
    let (_c, _h) = parent.with_timeout(Duration::from_secs(1));
    assert_eq!(parent.value::<RequestId>(), Some(&1));
    assert_eq!(parent.deadline(), None);
}

#[test]
fn same_compares_nodes_not_contents() {
    let a = Context::background().with_value::<RequestId>(1);
    let b = Context::background().with_value::<RequestId>(1);
    assert!(a.ptr_eq(&a.clone()));
    assert!(!a.ptr_eq(&b));
    assert!(Context::background().ptr_eq(&Context::background()));
    assert!(!Context::background().ptr_eq(&a));
}

#[test]
fn debug_prints_the_chain_with_gos_names() {
    let bg = Context::background();
    assert_eq!(format!("{bg:?}"), "Background");
    assert_eq!(format!("{:?}", Context::todo()), "TODO");
    let (c, _h) = bg.with_value::<RequestId>(1).with_cancel();
    assert_eq!(
        format!("{c:?}"),
        "Background.WithValue(RequestId).WithCancel"
    );
    let d = Context::todo().without_cancel().with_value::<Tenant>("x");
    assert_eq!(format!("{d:?}"), "TODO.WithoutCancel.WithValue(Tenant)");
    let (t, _h) = c.with_timeout(Duration::from_secs(5));
    let s = format!("{t:?}");
    assert!(
        s.starts_with("Background.WithValue(RequestId).WithCancel.WithDeadline(in "),
        "{s}"
    );
    // A deadline later than the parent's is the parent's: Go's `WithCancel` then.
    let (later, _h) = t.with_timeout(Duration::from_secs(50));
    assert!(format!("{later:?}").ends_with(".WithCancel"));
}

#[test]
fn debug_of_a_done_context_says_why() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let s = format!("{ctx:?}");
    assert!(
        s.starts_with("Background.WithCancel [context canceled: cancel() called at "),
        "{s}"
    );
    let (ctx, _h) = Context::background().with_deadline(Instant::now());
    let s = format!("{ctx:?}");
    assert!(
        s.contains("[context deadline exceeded: deadline set at "),
        "{s}"
    );
}

#[test]
fn error_displays_like_go() {
    assert_eq!(Error::Canceled.to_string(), "context canceled");
    assert_eq!(
        Error::DeadlineExceeded.to_string(),
        "context deadline exceeded"
    );
    assert!(Error::Canceled.is_canceled() && !Error::Canceled.is_deadline_exceeded());
    assert!(Error::DeadlineExceeded.is_deadline_exceeded());
}

#[test]
fn error_is_a_std_error() {
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Error::Canceled);
    assert!(boxed.source().is_none());
    assert_eq!(boxed.downcast_ref::<Error>(), Some(&Error::Canceled));
}

#[test]
fn error_converts_into_io_error_kinds() {
    let timed_out: std::io::Error = Error::DeadlineExceeded.into();
    assert_eq!(timed_out.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(timed_out.to_string(), "context deadline exceeded");
    let interrupted: std::io::Error = Error::Canceled.into();
    assert_eq!(interrupted.kind(), std::io::ErrorKind::Interrupted);
    let inner = interrupted.into_inner().unwrap();
    assert_eq!(inner.downcast_ref::<Error>(), Some(&Error::Canceled));

    fn read(ctx: &Context) -> std::io::Result<u8> {
        if let Some(e) = ctx.err() {
            return Err(e.into());
        }
        Ok(1)
    }
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(read(&ctx).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn cause_converts_from_any_error_and_back() {
    let cause: Cause = Reason("x").into();
    assert!(cause.is::<Reason>());
    assert!(!cause.is::<Error>());
    assert_eq!(cause.to_string(), "x");
    assert!(cause.origin().is_none());
    let boxed: Box<dyn std::error::Error + Send + Sync> = cause.clone().into();
    assert_eq!(boxed.to_string(), "x");
    let from_ctx_err: Cause = Error::DeadlineExceeded.into();
    assert_eq!(
        from_ctx_err.downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = from_ctx_err.into();
    assert_eq!(
        boxed.downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
}
