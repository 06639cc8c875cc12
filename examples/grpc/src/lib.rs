//! `example.v1.Identity/WhoAmI` (`proto/identity.proto`): the messages, the
//! server and a client call, written out as `tonic-build` would generate
//! them so the example builds without `protoc`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis::Identity;
use tonic::codegen::http::uri::PathAndQuery;

/// `WhoAmIRequest` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIRequest {}

/// `WhoAmIReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WhoAmIReply {
    /// The caller's subject.
    #[prost(string, tag = "1")]
    pub subject: String,
    /// `bearer`.
    #[prost(string, tag = "2")]
    pub method: String,
    /// Granted scopes.
    #[prost(string, repeated, tag = "3")]
    pub scopes: Vec<String>,
}

/// The method's path.
pub const WHO_AM_I: &str = "/example.v1.Identity/WhoAmI";

struct WhoAmI;

impl tonic::server::UnaryService<WhoAmIRequest> for WhoAmI {
    type Response = WhoAmIReply;
    type Future = std::future::Ready<Result<tonic::Response<WhoAmIReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<WhoAmIRequest>) -> Self::Future {
        // JwtLayer (required mode) lets no call through without one.
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

/// The `Identity` service.
#[derive(Clone, Debug, Default)]
pub struct IdentityServer;

impl tonic::server::NamedService for IdentityServer {
    const NAME: &'static str = "example.v1.Identity";
}

impl tower::Service<Request<tonic::body::Body>> for IdentityServer {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() == WHO_AM_I {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(WhoAmI, request).await)
            } else {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            }
        })
    }
}

/// Calls `WhoAmI` at `endpoint` (`http://…`), with a bearer token if given.
pub async fn who_am_i(endpoint: &str, bearer: Option<&str>) -> Result<WhoAmIReply, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut request = tonic::Request::new(WhoAmIRequest {});
    if let Some(token) = bearer {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("a token is ASCII"))?;
        request.metadata_mut().insert("authorization", value);
    }
    client
        .unary(
            request,
            PathAndQuery::from_static(WHO_AM_I),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}
