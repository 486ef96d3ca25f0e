//! A hello-world service on loopback, in one of six variants:
//!
//! - `http-bare`: an axum route answering `hello`;
//! - `http-layer`: the same behind ctxkit's `ServerLayer`;
//! - `http-cancellable`: behind `ServerLayer`, the handler a `#[cancellable]` fn reading the
//!   travelling key `x-request-id`;
//! - `grpc-bare`, `grpc-layer`, `grpc-cancellable`: the same for a tonic unary method served by
//!   hyper over HTTP/2 (the layer goes in front of tonic's routes, as a ctxkit service does).
//!
//! `e2e-server VARIANT PORT` prints `listening ADDR` once it accepts connections and serves until
//! killed. `WORKERS` (default 1) sets the runtime's worker threads.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use axum::Router;
use axum::routing::get;
use ctxkit::axum::Ctx;
use ctxkit::propagation::Accept;
use ctxkit::tower::ServerLayer;
use ctxkit::{Context, Error};
use ctxkit_e2e::{HelloReply, HelloRequest, PATH, RequestId};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tower::Service;

#[ctxkit::cancellable]
async fn greet(ctx: &Context) -> Result<String, Error> {
    let id = ctx.value::<RequestId>().map_or("", String::as_str);
    let greeting = std::future::ready(format!("hello {id}")).await;
    Ok(greeting)
}

async fn hello() -> &'static str {
    "hello"
}

async fn hello_cancellable(Ctx(ctx): Ctx) -> Result<String, Error> {
    greet(&ctx).await
}

/// The gRPC service: `e2e.Hello/Say`, greeting plainly or through `#[cancellable]`.
#[derive(Clone, Copy)]
struct Hello {
    cancellable: bool,
}

impl NamedService for Hello {
    const NAME: &'static str = "e2e.Hello";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<B> Service<http::Request<B>> for Hello
where
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let cancellable = self.cancellable;
        Box::pin(async move {
            if req.uri().path() != PATH {
                return Ok(tonic::Status::unimplemented(req.uri().path().to_owned()).into_http());
            }
            let method = tower::service_fn(move |r: tonic::Request<HelloRequest>| async move {
                let message = if cancellable {
                    greet(&Context::current())
                        .await
                        .map_err(|e| tonic::Status::cancelled(e.to_string()))?
                } else {
                    format!("hello {}", r.get_ref().name)
                };
                Ok::<_, tonic::Status>(tonic::Response::new(HelloReply { message }))
            });
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// Serves `svc` on every connection `listener` accepts: HTTP/1.1 for the axum variants, HTTP/2
/// for the gRPC ones.
async fn serve<S>(listener: TcpListener, svc: S, h2: bool)
where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let _ = if h2 {
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
            };
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("a free port");
        println!("listening {}", listener.local_addr().expect("an address"));
        let layer = ServerLayer::new(Context::background(), Accept::new().key::<RequestId>());
        // tonic's routes as an axum router: every variant is then the same service type.
        let routes = |cancellable: bool| {
            tonic::service::Routes::new(Hello { cancellable })
                .prepare()
                .into_axum_router()
        };
        match variant.as_str() {
            "http-bare" => serve(listener, Router::new().route("/", get(hello)), false).await,
            "http-layer" => {
                let app = Router::new().route("/", get(hello)).layer(layer);
                serve(listener, app, false).await
            }
            "http-cancellable" => {
                let app = Router::new()
                    .route("/", get(hello_cancellable))
                    .layer(layer);
                serve(listener, app, false).await
            }
            "grpc-bare" => serve(listener, routes(false), true).await,
            "grpc-layer" => serve(listener, routes(false).layer(layer), true).await,
            "grpc-cancellable" => serve(listener, routes(true).layer(layer), true).await,
            other => {
                eprintln!(
                    "unknown variant {other:?}: http-bare, http-layer, http-cancellable, \
                     grpc-bare, grpc-layer or grpc-cancellable"
                );
                std::process::exit(2);
            }
        }
    });
}
