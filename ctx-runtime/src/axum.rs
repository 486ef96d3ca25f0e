//! The axum extractor for the request's context (feature `axum`).
//!
//! [`Ctx`] hands a handler the context [`ServerLayer`](crate::tower::ServerLayer) made for the
//! request: its deadline, the accepted travelling keys, and its cancellation (the client went
//! away, the deadline passed, the server is shutting down). The same context is also
//! [`Context::current`] while the handler runs; the extractor makes the dependency visible in the
//! handler's signature and is what a spawned task should be given.
//!
//! ```
//! use axum::{Router, routing::get};
//! use ctx_runtime::axum::Ctx;
//! use ctx_runtime::propagation::Accept;
//! use ctx_runtime::tower::ServerLayer;
//! use ctx_runtime::Context;
//!
//! async fn hello(Ctx(ctx): Ctx) -> String {
//!     format!("budget: {:?}", ctx.deadline().map(|d| d - ctx_runtime::Instant::now()))
//! }
//!
//! let (root, _shutdown) = Context::background().with_cancel();
//! let app: Router = Router::new()
//!     .route("/", get(hello))
//!     .layer(ServerLayer::new(root, Accept::new()));
//! ```

use std::fmt;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::Context;

/// The request's context, put in the request's extensions by
/// [`ServerLayer`](crate::tower::ServerLayer). See the [module docs](self).
///
/// Extraction fails with [`MissingServerLayer`] (HTTP 500) when the route is not behind a
/// `ServerLayer`.
#[derive(Clone, Debug)]
pub struct Ctx(pub Context);

impl<S: Sync> FromRequestParts<S> for Ctx {
    type Rejection = MissingServerLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, MissingServerLayer> {
        parts
            .extensions
            .get::<Context>()
            .cloned()
            .map(Ctx)
            .ok_or(MissingServerLayer { _private: () })
    }
}

/// The rejection of [`Ctx`]: the request carries no context because the route is not behind a
/// [`ServerLayer`](crate::tower::ServerLayer). Answered with HTTP 500, since it is a server
/// misconfiguration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingServerLayer {
    _private: (),
}

impl fmt::Display for MissingServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no request context: the route is not behind ctx_runtime::tower::ServerLayer")
    }
}

impl std::error::Error for MissingServerLayer {}

impl IntoResponse for MissingServerLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
