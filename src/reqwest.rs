//! reqwest calls under a context (feature `reqwest`): [`RequestBuilderExt::send_with`].
//!
//! ```no_run
//! use std::time::Duration;
//! use ctxkit::Context;
//! use ctxkit::reqwest::RequestBuilderExt;
//!
//! # async fn handler(ctx: Context) -> Result<(), ctxkit::reqwest::Error> {
//! let client = reqwest::Client::new();
//! // However much of the request's budget is left becomes this call's timeout; the deadline,
//! // trace context, baggage and travelling keys go along as headers.
//! let resp = client.get("http://inventory.internal/items/42").send_with(&ctx).await?;
//! // The body too is read under the context (the timeout also covers it).
//! let body = ctx.run(resp.text()).await;
//! # let _ = body;
//! # Ok(())
//! # }
//! ```
//!
//! `send_with(&ctx)`:
//!
//! - fails at once, sending nothing, when `ctx` is already done (its deadline passed or it was
//!   cancelled): [`Error::Context`] with `sent: false`;
//! - sets the request's timeout to the budget left (or keeps a shorter one set on the request),
//!   so reqwest's own timer bounds connect, send, response and body;
//! - writes the context's headers into the request, the ones `tower::ClientLayer` writes
//!   ([`propagation::inject`]): `grpc-timeout`, `traceparent`/`tracestate`, `baggage` and the
//!   travelling keys, replacing fields of those names already set;
//! - drops the call as soon as `ctx` ends before the response arrives: over HTTP/1.1 reqwest
//!   closes the connection, which the server sees as the client hanging up (over HTTP/2 it
//!   resets the stream). The error is
//!   [`Error::Context`] with the context's kind ([`crate::Error::DeadlineExceeded`] or
//!   [`crate::Error::Canceled`]). A reqwest error that arrives after the context ended (its
//!   timer, from our budget) is reported the same way, keeping reqwest's error as the source.
//!
//! # Why an extension of `RequestBuilder`, not a `reqwest-middleware` middleware
//!
//! - It works with the plain `reqwest::Client` every application already has: no wrapper client
//!   type to adopt, no extra crate in the tree.
//! - The context is an argument, as in Go's `http.NewRequestWithContext`: a middleware would have
//!   to find it in the request's extensions or in the current task, where it may be missing
//!   without anyone noticing.
//! - Failing locally before sending, setting the per-request timeout, and telling a deadline
//!   from a cancellation in the error type all need no middleware chain. Applications that do use
//!   `reqwest-middleware` can call [`propagation::inject`] in their own middleware. Retries
//!   bounded by the budget are `ctxkit::retry` (feature `retry`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use ::reqwest::{RequestBuilder, Response};

use crate::propagation::{self, PropagationError};
use crate::{Context, Instant};

/// Sends a reqwest request under a [`Context`]. See the [module documentation](self).
pub trait RequestBuilderExt: sealed::Sealed {
    /// Sends the request under `ctx`: its budget as the timeout, its headers written, nothing
    /// sent once it is done, the call dropped when it ends.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::Context;
    /// use ctxkit::reqwest::{Error, RequestBuilderExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(2));
    /// cancel.cancel();
    /// // Nothing is sent: the context is already done.
    /// let err = reqwest::Client::new()
    ///     .get("http://127.0.0.1:9/never")
    ///     .send_with(&ctx)
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), Some(ctxkit::Error::Canceled));
    /// assert!(matches!(err, Error::Context { sent: false, .. }));
    /// # }
    /// ```
    fn send_with(self, ctx: &Context) -> SendWith;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ::reqwest::RequestBuilder {}
}

impl RequestBuilderExt for RequestBuilder {
    fn send_with(self, ctx: &Context) -> SendWith {
        let ctx = ctx.clone();
        let (client, request) = self.build_split();
        SendWith(Box::pin(async move {
            if let Some(kind) = ctx.err() {
                return Err(Error::unsent(kind));
            }
            let mut request = request.map_err(Error::Reqwest)?;
            if let Some(at) = ctx.deadline() {
                let budget = at.saturating_duration_since(Instant::now());
                if budget.is_zero() {
                    return Err(Error::unsent(crate::Error::DeadlineExceeded));
                }
                let timeout = request.timeout_mut();
                *timeout = Some(timeout.map_or(budget, |own| own.min(budget)));
            }
            propagation::inject(&ctx, request.headers_mut()).map_err(Error::Propagation)?;
            // Dropping reqwest's future aborts the request: over HTTP/1.1 its connection is
            // closed, over HTTP/2 its stream is reset.
            match ctx.run(client.execute(request)).await {
                Ok(Ok(resp)) => Ok(resp),
                // Reqwest's timer is our budget: once the context has ended, its error is ours.
                Ok(Err(e)) => match ctx.err() {
                    Some(kind) => Err(Error::Context {
                        kind,
                        sent: true,
                        source: Some(e),
                    }),
                    None => Err(Error::Reqwest(e)),
                },
                Err(kind) => Err(Error::Context {
                    kind,
                    sent: true,
                    source: None,
                }),
            }
        }))
    }
}

/// The future of [`send_with`](RequestBuilderExt::send_with): the response, or why there is
/// none. It owns everything it needs (`'static`, `Send`): spawn it, store it, return it from a
/// closure.
#[must_use = "futures do nothing unless polled"]
pub struct SendWith(Pin<Box<dyn Future<Output = Result<Response, Error>> + Send>>);

impl Future for SendWith {
    type Output = Result<Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for SendWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendWith").finish_non_exhaustive()
    }
}

/// Why a [`send_with`](RequestBuilderExt::send_with) call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The call's context ended.
    Context {
        /// Deadline or cancellation.
        kind: crate::Error,
        /// `false`: the context had ended before the call, and nothing was sent. `true`: the
        /// request was handed to reqwest, and dropped (its connection closed, or its HTTP/2
        /// stream reset) when the context
        /// ended.
        sent: bool,
        /// Reqwest's error, when reqwest noticed first (its timeout, which is the budget).
        source: Option<::reqwest::Error>,
    },
    /// The context could not be written into the request's headers (nothing was sent): see
    /// [`propagation::inject`].
    Propagation(PropagationError),
    /// Reqwest failed while the context was live: the request could not be built, or the
    /// connection or the server failed.
    Reqwest(::reqwest::Error),
}

impl Error {
    context_error_helpers!("call");
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Context {
                kind, sent: false, ..
            } => write!(f, "{kind}: request not sent"),
            Error::Context { kind, .. } => write!(f, "{kind}: request dropped"),
            Error::Propagation(e) => write!(f, "request not sent: {e}"),
            Error::Reqwest(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Context {
                source: Some(e), ..
            } => Some(e),
            Error::Context { kind, .. } => Some(kind),
            Error::Propagation(e) => Some(e),
            Error::Reqwest(e) => e.source(),
        }
    }
}
