//! The live tree over HTTP (features `live` and `axum`): [`LiveTree`].

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context as TaskContext, Poll};

use axum_core::body::Body;
use axum_core::response::Response;
use http::{HeaderValue, Request, header};
use tower_service::Service;

use crate::Context;

/// A service that answers every request with the live request tree under a root
/// ([`live::snapshot`](crate::live::snapshot)): an indented text tree by default, JSON
/// ([`Snapshot::to_json`](crate::live::Snapshot::to_json)) for `?format=json` or an `Accept`
/// header that names `application/json` (`?format=text` forces text). Mount it where operators
/// look, such as `/debug/ctx`, on a router they alone can reach: the tree shows every request's
/// values.
///
/// With axum:
///
/// ```text
/// let (root, _shutdown) = Context::background().with_cancel();
/// let app = Router::new()
///     .route("/orders/{id}", get(order))
///     .route_service("/debug/ctx", LiveTree::new(root.clone()))
///     .layer(ServerLayer::new(root, Accept::new()));
/// ```
///
/// It is a plain tower service:
///
/// ```
/// use ctxkit::Context;
/// use ctxkit::axum::LiveTree;
/// use http_body_util::BodyExt;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (root, _shutdown) = Context::background().with_cancel();
/// let (_request, _cancel) = root.with_cancel();
/// let req = http::Request::get("/debug/ctx?format=json").body(()).unwrap();
/// let resp = LiveTree::new(root).oneshot(req).await.unwrap();
/// assert_eq!(resp.headers()["content-type"], "application/json");
/// let body = resp.into_body().collect().await.unwrap().to_bytes();
/// assert!(String::from_utf8_lossy(&body).contains(r#""contexts":2"#));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LiveTree {
    root: Context,
}

impl LiveTree {
    /// Serves the live contexts under `root`: give it the root of the requests' contexts (the
    /// one given to [`ServerLayer`](crate::tower::ServerLayer)).
    pub fn new(root: Context) -> LiveTree {
        LiveTree { root }
    }

    /// The answer to `req`: the tree as text or JSON.
    fn answer<B>(&self, req: &Request<B>) -> Response {
        let tree = crate::live::snapshot(&self.root);
        let (body, kind) = if wants_json(req) {
            (tree.to_json_string(), "application/json")
        } else {
            (tree.to_string(), "text/plain; charset=utf-8")
        };
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// `?format=json`, or no `format` and an `Accept` naming `application/json`.
fn wants_json<B>(req: &Request<B>) -> bool {
    let format = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("format=")));
    match format {
        Some(f) => f.eq_ignore_ascii_case("json"),
        None => req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("application/json")),
    }
}

impl<B> Service<Request<B>> for LiveTree {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.answer(&req)))
    }
}

#[cfg(test)]
mod tests {
    use super::wants_json;
    use http::Request;

    fn req(uri: &str, accept: Option<&str>) -> Request<()> {
        let mut b = Request::get(uri);
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_format_parameter_wins_over_accept() {
        assert!(!wants_json(&req("/debug/ctx", None)));
        assert!(wants_json(&req("/debug/ctx?format=json", None)));
        assert!(wants_json(&req("/debug/ctx?a=1&format=JSON", None)));
        assert!(wants_json(&req(
            "/debug/ctx",
            Some("text/html, application/json;q=0.9")
        )));
        assert!(!wants_json(&req(
            "/debug/ctx?format=text",
            Some("application/json")
        )));
        assert!(!wants_json(&req("/debug/ctx", Some("text/plain"))));
    }
}
