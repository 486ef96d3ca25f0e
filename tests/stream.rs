//! Streams under a context (feature `stream`): `until_done` and `scope_stream`.
#![cfg(feature = "stream")]

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use ctxkit::{Context, ContextKey, Error};
use futures_core::{FusedStream, Stream};

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

/// Yields `tick` items, one per `every`, forever; notes when it is dropped, and what the
/// current tenant was at each poll.
struct Ticks {
    sleep: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    n: u32,
    dropped: Arc<AtomicBool>,
    tenants: Vec<Option<&'static str>>,
}

impl Ticks {
    fn new(every: Duration, dropped: Arc<AtomicBool>) -> Ticks {
        Ticks {
            sleep: Box::pin(tokio::time::sleep(every)),
            every,
            n: 0,
            dropped,
            tenants: Vec::new(),
        }
    }
}

impl Stream for Ticks {
    type Item = (u32, Option<&'static str>);
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let tenant = Context::try_current().and_then(|c| c.value::<Tenant>().copied());
        self.tenants.push(tenant);
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        self.n += 1;
        Poll::Ready(Some((self.n, tenant)))
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        self.dropped.store(true, SeqCst);
    }
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[tokio::test(start_paused = true)]
async fn items_flow_until_the_context_is_done_then_one_error_then_the_end() {
    let dropped = Arc::new(AtomicBool::new(false));
    let (ctx, _cancel) = Context::background()
        .with_value::<Tenant>("acme")
        .with_timeout(Duration::from_millis(35));
    let mut s = Box::pin(ctx.until_done(Ticks::new(Duration::from_millis(10), dropped.clone())));
    let mut got = Vec::new();
    while let Some(item) = next(&mut s).await {
        got.push(item);
    }
    assert_eq!(
        got,
        [
            Ok((1, Some("acme"))),
            Ok((2, Some("acme"))),
            Ok((3, Some("acme"))),
            Err(Error::DeadlineExceeded)
        ]
    );
    // The source is dropped as soon as the context won, not when the adapter is.
    assert!(dropped.load(SeqCst));
    assert!(s.is_terminated());
    assert_eq!(next(&mut s).await, None);
}

#[tokio::test]
async fn a_cancellation_visible_before_a_poll_wins_over_a_ready_item() {
    struct Ready;
    impl Stream for Ready {
        type Item = ();
        fn poll_next(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<()>> {
            Poll::Ready(Some(()))
        }
    }
    let (ctx, cancel) = Context::background().with_cancel();
    let mut s = Box::pin(ctx.until_done(Ready));
    assert_eq!(next(&mut s).await, Some(Ok(())));
    cancel.cancel();
    assert_eq!(next(&mut s).await, Some(Err(Error::Canceled)));
    assert_eq!(next(&mut s).await, None);
}

#[tokio::test]
async fn a_stream_that_ends_by_itself_just_ends() {
    struct Two(u8);
    impl Stream for Two {
        type Item = u8;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<u8>> {
            self.0 += 1;
            Poll::Ready((self.0 <= 2).then_some(self.0))
        }
    }
    let (ctx, _cancel) = Context::background().with_cancel();
    let mut s = Box::pin(ctx.until_done(Two(0)));
    assert_eq!(next(&mut s).await, Some(Ok(1)));
    assert_eq!(next(&mut s).await, Some(Ok(2)));
    assert_eq!(next(&mut s).await, None);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_consumer_is_woken_by_the_cancellation() {
    let dropped = Arc::new(AtomicBool::new(false));
    let (ctx, cancel) = Context::background().with_cancel();
    let mut s = Box::pin(ctx.until_done(Ticks::new(Duration::from_secs(3600), dropped)));
    let waiting = tokio::spawn(async move { next(&mut s).await });
    tokio::task::yield_now().await;
    cancel.cancel();
    assert_eq!(waiting.await.unwrap(), Some(Err(Error::Canceled)));
}

#[tokio::test(start_paused = true)]
async fn scope_stream_makes_the_context_current_on_every_poll_only() {
    let dropped = Arc::new(AtomicBool::new(false));
    let ctx = Context::background().with_value::<Tenant>("scoped");
    let mut s = Box::pin(ctx.scope_stream(Ticks::new(Duration::from_millis(5), dropped)));
    assert_eq!(next(&mut s).await, Some((1, Some("scoped"))));
    assert_eq!(next(&mut s).await, Some((2, Some("scoped"))));
    assert!(Context::try_current().is_none());
}
