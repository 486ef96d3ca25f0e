//! The axum extractor of a request's context (feature `axum`).

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Context;

/// Extracts the request's [`Context`], as put in the request's extensions by
/// [`ServerLayer`](crate::tower::ServerLayer): its deadline, trace, baggage and accepted
/// travelling keys, cancelled when the client goes away.
///
/// Without a `ServerLayer` in front of the handler the extraction fails with [`MissingContext`]
/// (HTTP 500): a handler never silently runs without its request's context.
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
/// let (ctx, _cancel) = Context::background().with_cancel();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ctx.clone());
/// let (mut parts, ()) = req.into_parts();
/// let Ctx(got) = Ctx::from_request_parts(&mut parts, &()).await.unwrap();
/// assert!(got.same(&ctx));
/// assert_eq!(handler(Ctx(got)).await, "deadline: None");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Ctx(pub Context);

impl<S: Sync> FromRequestParts<S> for Ctx {
    type Rejection = MissingContext;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, MissingContext> {
        parts
            .extensions
            .get::<Context>()
            .cloned()
            .map(Ctx)
            .ok_or(MissingContext)
    }
}

/// The rejection of [`Ctx`]: the request has no context, because no
/// [`ServerLayer`](crate::tower::ServerLayer) runs in front of the handler. Answers HTTP 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingContext;

impl fmt::Display for MissingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request has no context: add ctxkit's ServerLayer in front of this handler")
    }
}

impl std::error::Error for MissingContext {}

impl IntoResponse for MissingContext {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
