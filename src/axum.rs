//! axum support (feature `axum`): the extractor [`Ctx`] of a request's context, and
//! `IntoResponse` for [`Error`], so a `#[cancellable]` handler can return it.
//!
//! # What a context error answers
//!
//! A handler returning `Err(ctxkit::Error)` (or `?` on one) answers:
//!
//! - [`Error::DeadlineExceeded`]: **504 Gateway Timeout**, body `context deadline exceeded`, as
//!   [`ServerLayer`](crate::tower::ServerLayer) answers a request whose deadline passed.
//! - [`Error::Canceled`]: **503 Service Unavailable**, body `context canceled`. A cancelled
//!   handler whose client is still there to read the answer was stopped by the server (a
//!   shutdown, or the handler's own decision), so the client should retry, possibly elsewhere:
//!   503, as `ServerLayer` answers a shutdown (gRPC `UNAVAILABLE`). When the client itself went
//!   away there is nobody to answer; nginx's non-standard 499 ("client closed request") would
//!   only ever reach a log, and a log can read the cause
//!   ([`ClientWentAway`](crate::tower::ClientWentAway)) instead.
//!
//! ```
//! use axum_core::response::IntoResponse;
//! use ctxkit::Error;
//!
//! assert_eq!(Error::DeadlineExceeded.into_response().status(), 504);
//! assert_eq!(Error::Canceled.into_response().status(), 503);
//! ```

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::{Context, Error};

/// Serves the live request tree (features `axum` and `live`); see [`crate::live`].
#[cfg(feature = "live")]
#[cfg_attr(docsrs, doc(cfg(feature = "live")))]
pub use crate::live::LiveTree;

/// Extracts the request's [`Context`]: the one [`ServerLayer`](crate::tower::ServerLayer) made
/// from the request's headers (its deadline, trace, baggage and accepted travelling keys,
/// cancelled when the client goes away), or the one a middleware derived from it.
///
/// # `Ctx` and `Context::current()` agree
///
/// `Ctx` is always the current context ([`Context::current`]), so a handler's `Ctx`, its
/// `#[cancellable]` fns, `ctxkit::spawn` and [`ClientLayer`](crate::tower::ClientLayer) all see
/// one context. A middleware that derives a context for the handlers behind it (a value, a
/// shorter timeout) runs them under it, and then `Ctx` extracts the derived one:
///
/// ```text
/// async fn tenant(req: Request, next: Next) -> Response {
///     let ctx = Context::current().with_value::<Tenant>(tenant_of(&req));
///     ctx.scope(next.run(req)).await
/// }
/// ```
///
/// The current context wins over the request's extensions because it is the one everything the
/// handler calls reads. So a middleware that only puts a derived context into the request's
/// extensions, without running the rest under it, would leave two contexts in one handler:
/// `Ctx` then fails with [`CtxRejection::NotCurrent`] (HTTP 500, saying what to do) rather than
/// pick one silently. The extensions' context must be the current one or one of its ancestors.
///
/// Without a `ServerLayer` in front of the handler, the extraction fails with
/// [`CtxRejection::Missing`] (HTTP 500): a handler never silently runs without its request's
/// context.
///
/// ```
/// use axum_core::extract::FromRequestParts;
/// use ctxkit::Context;
/// use ctxkit::axum::Ctx;
///
/// /// An axum handler: `async fn handler(Ctx(ctx): Ctx) -> String`.
/// async fn handler(Ctx(ctx): Ctx) -> String {
///     format!("deadline: {:?}", ctx.deadline())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // What `ServerLayer` does for each request: the context in the extensions, and current.
/// let (ctx, _cancel) = Context::background().with_cancel();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ctx.clone());
/// let (mut parts, ()) = req.into_parts();
/// let Ctx(got) = ctx
///     .scope(Ctx::from_request_parts(&mut parts, &()))
///     .await
///     .unwrap();
/// assert!(got.ptr_eq(&ctx));
/// assert_eq!(handler(Ctx(got)).await, "deadline: None");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Ctx(pub Context);

impl<S: Sync> FromRequestParts<S> for Ctx {
    type Rejection = CtxRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, CtxRejection> {
        let request = parts
            .extensions
            .get::<Context>()
            .ok_or(CtxRejection::Missing)?;
        match Context::try_current() {
            Some(current) if request.is_ancestor_or_same(&current) => Ok(Ctx(current)),
            _ => Err(CtxRejection::NotCurrent),
        }
    }
}

/// Why [`Ctx`] could not be extracted. Answers HTTP 500 with the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CtxRejection {
    /// The request has no context: no [`ServerLayer`](crate::tower::ServerLayer) runs in front
    /// of the handler.
    Missing,
    /// The request's context (in its extensions) is neither the current context nor one of its
    /// ancestors: a middleware put a derived context into the request without running the rest
    /// of the request under it.
    NotCurrent,
}

impl fmt::Display for CtxRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CtxRejection::Missing => {
                "the request has no context: add ctxkit's ServerLayer in front of this handler"
            }
            CtxRejection::NotCurrent => {
                "the request's context is not the current one: a middleware put a derived context \
                 into the request's extensions without running the rest of the request under it; \
                 run the rest with `ctx.scope(next.run(req))`"
            }
        })
    }
}

impl std::error::Error for CtxRejection {}

impl IntoResponse for CtxRejection {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// 504 for a deadline, 503 for a cancellation; see the [module docs](self) for why.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match self {
            Error::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Error::Canceled => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}
