//! Contexts work outside any tokio runtime: creating, reading and cancelling never panic, and
//! deadlines still fire (reported by `err()`, and through a fallback timer thread).

use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant as StdInstant};

use ctxkit::{Context, ContextKey, Error, Instant};

struct RequestId;
impl ContextKey for RequestId {
    type Value = u64;
}

/// Bounds that only a hang can reach (miri runs thousands of times slower, on the real clock).
const GENEROUS: Duration = Duration::from_secs(if cfg!(miri) { 1200 } else { 30 });

#[test]
fn every_operation_works_outside_a_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let root = Context::background().with_value::<RequestId>(1);
    let (c, cancel) = root.with_cancel();
    let (cc, cause) = c.with_cancel();
    let (t, _ht) = cc.with_timeout(Duration::from_secs(3600));
    let (d, _hd) = t.with_deadline(Instant::now() + Duration::from_secs(1800));
    let w = d.without_cancel();
    let todo = Context::todo();
    assert_eq!(Context::current().err(), None);
    assert!(Context::try_current().is_none());
    let inside = d.sync_scope(|| Context::current().value::<RequestId>().copied());
    assert_eq!(inside, Some(1));
    let _ = format!("{root:?}{c:?}{cc:?}{t:?}{d:?}{w:?}{todo:?}");
    cause.cancel_with(std::io::Error::other("x"));
    cancel.cancel();
    assert_eq!(d.err(), Some(Error::Canceled));
    assert_eq!(d.cause().unwrap().to_string(), "x");
    assert_eq!(c.err(), Some(Error::Canceled));
    assert_eq!(w.err(), None);
}

#[test]
fn err_reports_deadline_exceeded_once_the_deadline_passed() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
    let (child, _hc) = ctx.with_value::<RequestId>(1).with_cancel();
    thread::sleep(Duration::from_millis(40));
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert!(child.is_done());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn after_func_fires_at_the_deadline_via_the_fallback_thread() {
    let start = StdInstant::now();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    let _after = ctx.after_func(move || tx.send(StdInstant::now()).unwrap());
    let ran_at = rx.recv_timeout(GENEROUS).expect("after_func ran");
    assert!(ran_at - start >= Duration::from_millis(50));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn after_func_runs_on_its_own_thread_outside_a_runtime() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, rx) = mpsc::channel();
    let _after = ctx.after_func(move || tx.send(thread::current().id()).unwrap());
    cancel.cancel();
    let ran_on = rx.recv_timeout(GENEROUS).unwrap();
    assert_ne!(ran_on, thread::current().id());
}

struct Unpark(Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn done_wakes_a_plain_waker_at_the_deadline_outside_a_runtime() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(30));
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut done = ctx.done();
    let give_up = StdInstant::now() + GENEROUS;
    loop {
        if std::pin::Pin::new(&mut done).poll(&mut TaskContext::from_waker(&waker))
            == Poll::Ready(())
        {
            break;
        }
        assert!(StdInstant::now() < give_up, "done() never resolved");
        thread::park_timeout(Duration::from_secs(1));
    }
    assert!(ctx.is_done());
}

#[test]
fn context_outliving_its_runtime_still_fires_its_deadline() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ctx, handle) =
        rt.block_on(async { Context::background().with_timeout(Duration::from_millis(200)) });
    drop(rt);
    let (tx, rx) = mpsc::channel();
    let _after = ctx.after_func(move || tx.send(()).unwrap());
    rx.recv_timeout(GENEROUS)
        .expect("the deadline fired after the runtime was gone");
    assert!(ctx.is_done());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    drop(handle);
}

#[test]
fn context_made_in_a_runtime_can_be_cancelled_after_it_is_gone() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ctx, cancel) =
        rt.block_on(async { Context::background().with_timeout(Duration::from_secs(3600)) });
    drop(rt);
    cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn zero_timeout_and_past_deadlines_are_done_at_once_outside_a_runtime() {
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert!(ctx.is_done());
    let (past, _h) = Context::background().with_deadline(Instant::now() - Duration::from_secs(1));
    assert_eq!(past.err(), Some(Error::DeadlineExceeded));
    let (never, _h) = Context::background().with_timeout(Duration::MAX);
    assert_eq!(never.deadline(), None);
    assert_eq!(never.err(), None);
}
