use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::{Identity, Rejection, RequestContext, ResponseBody};
use tower_service::Service;

use super::RevocationLayer;
use super::future::{CheckFuture, ResponseFuture};
use crate::LAYER;
use crate::denylist::{Revoked, TokenFacts};
use crate::store::StoreError;

/// The service of [`RevocationLayer`].
#[derive(Clone, Debug)]
pub struct RevocationService<S> {
    pub(super) inner: S,
    pub(super) layer: RevocationLayer,
}

/// The rejection for a verdict, with its audit event recorded.
pub(super) fn rejection(identity: &Identity, verdict: Result<Option<Revoked>, StoreError>) -> Option<Rejection> {
    match verdict {
        Ok(None) => None,
        Ok(Some(revoked)) => {
            let facts = TokenFacts::of(identity);
            let mut decision = Decision::new(LAYER, Outcome::Rejected)
                .reason(revoked.as_str())
                .subject(identity.subject());
            if let Some(jti) = facts.as_ref().and_then(|f| f.jti) {
                decision = decision.token_id(jti);
            }
            decision.record();
            Some(Rejection::invalid_credentials(LAYER, "token revoked"))
        }
        Err(error) => {
            Decision::new(LAYER, Outcome::Unavailable)
                .reason(error.reason())
                .subject(identity.subject())
                .record();
            Some(Rejection::unavailable(LAYER, "revocation store unavailable").with_source(error))
        }
    }
}

impl<S, B, ResBody> Service<Request<B>> for RevocationService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(identity) = request.extensions().get::<Identity>() else {
            return ResponseFuture::called(self.inner.call(request));
        };
        // Session identities are revoked in the session store itself.
        if TokenFacts::of(identity).is_none() {
            return ResponseFuture::called(self.inner.call(request));
        }
        // A token that outlives the cutoffs' retention could be accepted
        // after a cutoff that revoked it is forgotten.
        if let (Some(issued), Some(expires)) = (identity.issued_at(), identity.expires_at())
            && expires
                .duration_since(issued)
                .is_ok_and(|lifetime| lifetime > self.layer.horizon)
        {
            let reason = "token outlives the revocation horizon";
            Decision::new(LAYER, Outcome::Rejected)
                .reason(reason)
                .subject(identity.subject())
                .record();
            let rejection = Rejection::invalid_credentials(LAYER, reason);
            return ResponseFuture::rejected(self.layer.responder.respond(&rejection, &RequestContext::of(&request)));
        }
        match self.layer.store.check_now(identity) {
            Some(verdict) => match rejection(identity, verdict) {
                None => ResponseFuture::called(self.inner.call(request)),
                Some(rejection) => {
                    ResponseFuture::rejected(self.layer.responder.respond(&rejection, &RequestContext::of(&request)))
                }
            },
            None => {
                let identity = identity.clone();
                let store = self.layer.store.clone();
                let check: CheckFuture = Box::pin(async move {
                    let verdict = store.check(identity.clone()).await;
                    (identity, verdict)
                });
                // The clone polled ready goes into the future; a fresh clone
                // stays (tower-service's rule).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, inner, request, self.layer.responder.clone())
            }
        }
    }
}
