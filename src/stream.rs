//! Streams under a context (feature `stream`): [`Context::until_done`] ends a stream when the
//! context is done, [`Context::scope_stream`] makes the context current while a stream is
//! polled.
//!
//! Go's consumer loop
//!
//! ```go
//! for {
//!     select {
//!     case <-ctx.Done():
//!         return ctx.Err()
//!     case v := <-ch:
//!         handle(v)
//!     }
//! }
//! ```
//!
//! is `while let Some(v) = ctx.until_done(stream).next().await { handle(v?) }`.

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context as TaskContext, Poll};

use futures_core::{FusedStream, Stream};
use pin_project::pin_project;

use crate::race::{self, Watch};
use crate::scope::poll_in;
use crate::{Context, Done, Error};

impl Context {
    /// `stream`, ended by this context: it yields `Ok(item)` for each of `stream`'s items while
    /// the context is live, then, once the context is done, one `Err` with the context's error
    /// (dropping `stream` at once) and ends. A stream that ends by itself first just ends.
    /// `stream` is polled with this context current, as [`Context::run`] does for a future.
    ///
    /// Each wait for an item is a race under the crate's [fairness rule](Context::run): a
    /// cancellation visible before a poll wins; an item that a poll produces is yielded.
    ///
    /// ```
    /// use std::pin::Pin;
    /// use std::task::{Context as TaskContext, Poll};
    /// use futures_core::Stream;
    /// use ctxkit::{Context, Error};
    ///
    /// /// 0, 1, 2, ... forever.
    /// struct Count(u32);
    /// impl Stream for Count {
    ///     type Item = u32;
    ///     fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<u32>> {
    ///         self.0 += 1;
    ///         Poll::Ready(Some(self.0 - 1))
    ///     }
    /// }
    ///
    /// /// `StreamExt::next` without the `futures` crate.
    /// async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    ///     std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let mut numbers = Box::pin(ctx.until_done(Count(0)));
    /// assert_eq!(next(&mut numbers).await, Some(Ok(0)));
    /// assert_eq!(next(&mut numbers).await, Some(Ok(1)));
    /// cancel.cancel();
    /// assert_eq!(next(&mut numbers).await, Some(Err(Error::Canceled)));
    /// assert_eq!(next(&mut numbers).await, None);
    /// # }
    /// ```
    pub fn until_done<S: Stream>(&self, stream: S) -> UntilDone<S> {
        UntilDone {
            watch: DoneWatch {
                ctx: self.clone(),
                done: self.done(),
            },
            scope: Some(self.clone()),
            stream: Some(stream),
            ended: false,
        }
    }

    /// `stream`, polled with this context current: what [`Context::scope`] is for a future.
    /// For a stream that a server or a combinator polls outside your scope, such as a response
    /// body.
    ///
    /// ```
    /// use std::pin::Pin;
    /// use std::task::{Context as TaskContext, Poll};
    /// use futures_core::Stream;
    /// use ctxkit::{Context, ContextKey};
    ///
    /// struct Tenant;
    /// impl ContextKey for Tenant {
    ///     type Value = &'static str;
    /// }
    ///
    /// /// Yields the current tenant once.
    /// struct WhoAmI(bool);
    /// impl Stream for WhoAmI {
    ///     type Item = Option<&'static str>;
    ///     fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
    ///         let first = std::mem::replace(&mut self.0, false);
    ///         Poll::Ready(first.then(|| Context::try_current()?.value::<Tenant>().copied()))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_value::<Tenant>("acme");
    /// let mut scoped = Box::pin(ctx.scope_stream(WhoAmI(true)));
    /// let seen = std::future::poll_fn(|cx| scoped.as_mut().poll_next(cx)).await;
    /// assert_eq!(seen, Some(Some("acme")));
    /// # }
    /// ```
    pub fn scope_stream<S: Stream>(&self, stream: S) -> ScopedStream<S> {
        crate::missing::note_scope_used();
        ScopedStream {
            ctx: Some(self.clone()),
            stream,
        }
    }
}

/// A race's watch on a context through its public face: `is_done()` to look, `done()` to wait.
struct DoneWatch {
    ctx: Context,
    done: Done,
}

impl Watch for DoneWatch {
    fn stopped(&self) -> Option<Error> {
        if self.ctx.is_done() {
            Some(self.ctx.err().unwrap_or(Error::Canceled))
        } else {
            None
        }
    }

    fn poll_stopped(&mut self, cx: &mut TaskContext<'_>) -> Poll<Error> {
        match Pin::new(&mut self.done).poll(cx) {
            Poll::Ready(()) => Poll::Ready(self.ctx.err().unwrap_or(Error::Canceled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One `poll_next` of a stream, as a future, with a context current.
struct Next<'a, S> {
    stream: Pin<&'a mut S>,
    scope: &'a mut Option<Context>,
}

impl<S: Stream> Future for Next<'_, S> {
    type Output = Option<S::Item>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let stream = this.stream.as_mut();
        poll_in(this.scope, || stream.poll_next(cx))
    }
}

/// The stream returned by [`Context::until_done`].
#[pin_project]
#[must_use = "streams do nothing unless polled"]
pub struct UntilDone<S> {
    watch: DoneWatch,
    /// Current while the stream is polled.
    scope: Option<Context>,
    /// Dropped as soon as the race is decided against it, or it ends.
    #[pin]
    stream: Option<S>,
    ended: bool,
}

impl<S: Stream> Stream for UntilDone<S> {
    type Item = Result<S::Item, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        let raced = {
            let Some(stream) = this.stream.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            let next = pin!(Some(Next {
                stream,
                scope: this.scope,
            }));
            race::poll_race(this.watch, next, cx)
        };
        match raced {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(item))) => Poll::Ready(Some(Ok(item))),
            Poll::Ready(Ok(None)) => {
                this.stream.set(None);
                *this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.stream.set(None);
                *this.ended = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.stream {
            // It may end early with one `Err`.
            Some(s) => (0, s.size_hint().1.and_then(|n| n.checked_add(1))),
            None => (0, Some(0)),
        }
    }
}

impl<S: Stream> FusedStream for UntilDone<S> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<S> fmt::Debug for UntilDone<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilDone")
            .field("ctx", &self.watch.ctx)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// The stream returned by [`Context::scope_stream`].
#[pin_project]
#[must_use = "streams do nothing unless polled"]
pub struct ScopedStream<S> {
    /// In the thread's slot during a poll, here between polls.
    ctx: Option<Context>,
    #[pin]
    stream: S,
}

impl<S: Stream> Stream for ScopedStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let stream = this.stream;
        poll_in(this.ctx, || stream.poll_next(cx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S: FusedStream> FusedStream for ScopedStream<S> {
    fn is_terminated(&self) -> bool {
        self.stream.is_terminated()
    }
}

impl<S> fmt::Debug for ScopedStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedStream").finish_non_exhaustive()
    }
}
