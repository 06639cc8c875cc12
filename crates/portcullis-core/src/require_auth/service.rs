use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::RequireAuthLayer;
use crate::audit::{Decision, Outcome};
use crate::{AuthenticatorRan, Identity, Rejection, RequestContext, ResponseBody, ResponseFuture};

const LAYER: &str = "require_auth";

/// The service of [`RequireAuthLayer`].
#[derive(Clone, Debug)]
pub struct RequireAuth<S> {
    pub(super) inner: S,
    pub(super) config: RequireAuthLayer,
}

impl<S> RequireAuth<S> {
    fn check<B>(&self, request: &Request<B>) -> Result<(), Rejection> {
        let Some(identity) = request.extensions().get::<Identity>() else {
            if request.extensions().get::<AuthenticatorRan>().is_none() {
                return Err(Rejection::misconfigured(
                    LAYER,
                    "RequireAuth found no authenticator layer (SessionLayer or JwtLayer) before it",
                ));
            }
            return Err(Rejection::missing_credentials(LAYER, "authentication required"));
        };
        for scope in self.config.scopes.iter() {
            if !identity.has_scope(scope) {
                Decision::new(LAYER, Outcome::Rejected)
                    .reason("insufficient scope")
                    .subject(identity.subject())
                    .record();
                return Err(Rejection::insufficient_scope(LAYER, scope.clone()));
            }
        }
        Ok(())
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequireAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.check(&request) {
            Ok(()) => ResponseFuture::called(self.inner.call(request)),
            Err(rejection) => {
                if rejection.kind() != crate::RejectionKind::InsufficientScope {
                    Decision::new(LAYER, Outcome::Rejected)
                        .reason(rejection.reason())
                        .record();
                }
                ResponseFuture::rejected(self.config.responder.respond(&rejection, &RequestContext::of(&request)))
            }
        }
    }
}
