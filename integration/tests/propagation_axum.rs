//! The axum extractor `Ctx` behind `ServerLayer`.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use ctxkit::Context;
use ctxkit::axum::{Ctx, CtxRejection};
use ctxkit::propagation::Accept;
use ctxkit::tower::ServerLayer;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn handlers_extract_the_request_context() {
    let handler = tower::service_fn(|req: Request<()>| async move {
        let (mut parts, ()) = req.into_parts();
        let Ctx(ctx) = Ctx::from_request_parts(&mut parts, &()).await.unwrap();
        let left = ctx.deadline().unwrap() - ctxkit::Instant::now();
        Ok::<_, Infallible>(Response::new(Full::from(format!("{}", left.as_millis()))))
    });
    let svc = ServerLayer::new(Context::background(), Accept::new()).layer(handler);
    let req = Request::builder()
        .header("grpc-timeout", "750m")
        .body(())
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"750");
}

#[tokio::test]
async fn without_the_layer_extraction_fails_with_500() {
    let (mut parts, ()) = Request::new(()).into_parts();
    let err = Ctx::from_request_parts(&mut parts, &()).await.unwrap_err();
    assert_eq!(err, CtxRejection::Missing);
    assert!(err.to_string().contains("ServerLayer"));
    assert_eq!(
        err.into_response().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
