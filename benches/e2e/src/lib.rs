//! What the end-to-end server and load client share: the gRPC service's messages and path, and
//! the travelling key the `cancellable` variants read.

use ctxkit::ContextKey;

/// `e2e.Hello/Say`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `e2e.Hello/Say`'s reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The one method of the gRPC service.
pub const PATH: &str = "/e2e.Hello/Say";

/// A request id travelling in the `x-request-id` header, which the `cancellable` variants read.
#[derive(ContextKey)]
#[context_key(value = String, header = "x-request-id")]
pub struct RequestId;
