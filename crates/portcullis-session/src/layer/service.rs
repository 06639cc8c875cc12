use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::ResponseBody;
use tower_service::Service;

use super::SessionLayer;
use super::future::ResponseFuture;

/// The service of [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    pub(super) inner: S,
    pub(super) layer: SessionLayer,
}

impl<S, B, ResBody> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture::start(&mut self.inner, &self.layer, request)
    }
}
