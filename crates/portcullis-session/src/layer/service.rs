use std::task::{Context, Poll};

use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Request, Response};
use portcullis_core::ResponseBody;
use tower_service::Service;

use super::SessionLayer;
use super::cookie::find_cookie;
use super::future::{Incoming, ResponseFuture};
use crate::SessionKey;

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
        let SessionLayer { sessions, config } = self.layer.clone();
        let now = config.clock.now();
        let cookie = find_cookie(request.headers(), &config.cookie_name)
            .map(|id| id.map(|id| (SessionKey::derive(config.current_hasher(), &id), id)));
        // Kept as the raw header (a cheap `Bytes` clone); turned into text
        // only if a session is created.
        let user_agent = request.headers().get(USER_AGENT).cloned();
        // What a responder needs to render a late 503 (the request itself
        // is gone by then): its protocol and content negotiation. Two
        // cheap `Bytes` clones; a header map only if a 503 is rendered.
        let context_headers = [CONTENT_TYPE, ACCEPT].map(|name| request.headers().get(&name).cloned());
        let incoming = Incoming {
            sessions,
            config,
            now,
            cookie,
            user_agent,
            context_headers,
        };
        ResponseFuture::start(&mut self.inner, request, incoming)
    }
}
