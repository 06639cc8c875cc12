//! `reference.v1.Identity/WhoAmI` (see `proto/identity.proto`), served by
//! tonic on the same port as the HTTP routes. The message types and the
//! service are written out by hand, as `tonic-build` would generate them,
//! so the example builds without `protoc`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis::Identity;

/// `WhoAmIRequest` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WhoAmIRequest {}

/// `WhoAmIReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WhoAmIReply {
    #[prost(string, tag = "1")]
    pub(crate) subject: String,
    #[prost(string, tag = "2")]
    pub(crate) method: String,
    #[prost(string, repeated, tag = "3")]
    pub(crate) scopes: Vec<String>,
}

/// The method's path.
pub(crate) const WHO_AM_I: &str = "/reference.v1.Identity/WhoAmI";

struct WhoAmI;

impl tonic::server::UnaryService<WhoAmIRequest> for WhoAmI {
    type Response = WhoAmIReply;
    type Future = std::future::Ready<Result<tonic::Response<WhoAmIReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<WhoAmIRequest>) -> Self::Future {
        // RequireAuthLayer in front answers UNAUTHENTICATED without one.
        std::future::ready(match request.extensions().get::<Identity>() {
            Some(identity) => Ok(tonic::Response::new(WhoAmIReply {
                subject: identity.subject().to_owned(),
                method: identity.method().name().to_owned(),
                scopes: identity.scopes().to_vec(),
            })),
            None => Err(tonic::Status::unauthenticated("authentication required")),
        })
    }
}

/// The `Identity` service, for any request body axum hands it.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdentityService;

impl<B> tower::Service<Request<B>> for IdentityService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let request = request.map(tonic::body::Body::new);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(WhoAmI, request).await)
        })
    }
}
