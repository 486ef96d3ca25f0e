//! The Rust side of `peers/hop.proto`: its messages, a server for `ctxkit.peers.Hop` wrapping an
//! async function, a client call, and a loopback gRPC server with `ServerLayer` in front of
//! tonic's routes. Shared by the peer tests and the `grpc_deadline` example (`#[path]` module).
//!
//! The layer goes in front of `tonic::service::Routes` served by hyper, not inside
//! `tonic::transport::Server`: that server runs its own `grpc-timeout` timer outside every layer,
//! racing the layer's, and when it wins answers a passed deadline with CANCELLED.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use ctxkit::Context;
use ctxkit::propagation::Accept;
use ctxkit::tower::{Client, ClientLayer, ServerLayer};
use http::uri::PathAndQuery;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

/// `ctxkit.peers.HopRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HopRequest {
    /// How long the callee works before answering, in milliseconds.
    #[prost(uint32, tag = "1")]
    pub sleep_ms: u32,
    /// Free text passed along.
    #[prost(string, tag = "2")]
    pub note: String,
}

/// `ctxkit.peers.HopReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HopReply {
    /// What the callee observed.
    #[prost(string, tag = "1")]
    pub report: String,
}

pub const PATH: &str = "/ctxkit.peers.Hop/Call";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Handler =
    Arc<dyn Fn(Request<HopRequest>) -> BoxFuture<Result<Response<HopReply>, Status>> + Send + Sync>;

/// A `ctxkit.peers.Hop` server calling `handler` for each `Call`.
#[derive(Clone)]
pub struct HopServer {
    handler: Handler,
}

impl HopServer {
    pub fn new<F, Fut>(handler: F) -> HopServer
    where
        F: Fn(Request<HopRequest>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<HopReply>, Status>> + Send + 'static,
    {
        HopServer {
            handler: Arc::new(move |req| Box::pin(handler(req))),
        }
    }
}

impl NamedService for HopServer {
    const NAME: &'static str = "ctxkit.peers.Hop";
}

impl<B> Service<http::Request<B>> for HopServer
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
        let handler = self.handler.clone();
        Box::pin(async move {
            if req.uri().path() != PATH {
                return Ok(Status::unimplemented(req.uri().path().to_owned()).into_http());
            }
            let method = tower::service_fn(move |r: Request<HopRequest>| handler(r));
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// Serves `server` on `127.0.0.1:0` over HTTP/2 with a [`ServerLayer`] in front: requests are
/// children of `root`; the accept loop stops when `root` is done.
pub async fn serve(root: Context, accept: Accept, server: HopServer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = tonic::service::Routes::new(server).prepare();
    let svc = ServerLayer::new(root.clone(), accept).layer(routes);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => return,
                },
                () = root.done() => return,
            };
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A channel to `addr` behind a [`ClientLayer`].
pub async fn connect(addr: SocketAddr) -> Client<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ClientLayer::new().layer(channel)
}

/// One `Call` under the current context, as a handler makes it: a failure comes back as tonic
/// reports it (through [`ClientLayer`], a call that failed because the context ended says
/// DEADLINE_EXCEEDED or CANCELLED).
pub async fn call(client: &Client<Channel>, req: HopRequest) -> Result<HopReply, Status> {
    let mut grpc = tonic::client::Grpc::new(client.clone());
    grpc.ready().await.map_err(Status::from_error)?;
    let resp = grpc
        .unary(
            Request::new(req),
            PathAndQuery::from_static(PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await?;
    Ok(resp.into_inner())
}

/// One `Call` of `job` sent raw over a fresh HTTP/2 connection, with extra `headers` (e.g. a
/// malformed `grpc-timeout` no gRPC client would send): the answer's `grpc-status` and
/// `grpc-message` (percent-decoded), from its headers or trailers.
pub async fn raw_call(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    job: &HopRequest,
) -> (String, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // One length-prefixed, uncompressed message.
    let msg = prost::Message::encode_to_vec(job);
    let mut frame = vec![0];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let mut req = http::Request::post(format!("http://{addr}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let (parts, body) = sender.send_request(req).await.unwrap().into_parts();
    let trailers = body
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let get = |name: &str| {
        let v = parts.headers.get(name).or(trailers.get(name));
        let v = v
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        percent_encoding::percent_decode_str(&v)
            .decode_utf8_lossy()
            .into_owned()
    };
    (get("grpc-status"), get("grpc-message"))
}
