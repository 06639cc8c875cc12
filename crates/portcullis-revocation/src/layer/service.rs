use std::future::Future;
use std::pin::Pin;

use http::Request;
use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::guard::{Check, Deferred, Guard, GuardService, PassUnlessRejected};
use portcullis_core::{AuthenticatorRan, Identity, Rejection, SharedResponder};

use super::RevocationLayer;
use crate::LAYER;
use crate::denylist::{Revoked, TokenFacts};
use crate::store::StoreError;

/// The service of [`RevocationLayer`].
pub type RevocationService<S> = GuardService<RevocationLayer, S>;

/// The rejection for a verdict, with its audit event recorded.
fn rejection(identity: &Identity, verdict: Result<Option<Revoked>, StoreError>) -> Option<Rejection> {
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

/// Resolves to the rejection of a store's verdict, if any.
pub type CheckWait = Pin<Box<dyn Future<Output = Option<Rejection>> + Send>>;

/// The pending check of a [`RevocationLayer`]: a remote store's lookup.
pub type RevocationCheck<B> = Deferred<CheckWait, B, PassUnlessRejected>;

impl<B> Guard<B> for RevocationLayer {
    type Body = B;
    type Finish = ();
    type Pending = RevocationCheck<B>;

    fn check(&self, request: Request<B>) -> Check<B, B, (), RevocationCheck<B>> {
        let Some(identity) = request.extensions().get::<Identity>() else {
            // An anonymous request passes when an authenticator saw it; a
            // request no authenticator saw is a misconfigured stack.
            if request.extensions().get::<AuthenticatorRan>().is_some() {
                return Check::Pass(request, ());
            }
            let reason = "RevocationLayer needs an authenticator (JwtLayer or SessionLayer) before it";
            Decision::new(LAYER, Outcome::Rejected).reason(reason).record();
            return Check::Reject(Rejection::misconfigured(LAYER, reason), request);
        };
        // Session identities are revoked in the session store itself.
        if TokenFacts::of(identity).is_none() {
            return Check::Pass(request, ());
        }
        // A token that outlives the cutoffs' retention could be accepted
        // after a cutoff that revoked it is forgotten.
        if let (Some(issued), Some(expires)) = (identity.issued_at(), identity.expires_at())
            && expires
                .duration_since(issued)
                .is_ok_and(|lifetime| lifetime > self.horizon)
        {
            let reason = "token outlives the revocation horizon";
            Decision::new(LAYER, Outcome::Rejected)
                .reason(reason)
                .subject(identity.subject())
                .record();
            return Check::Reject(Rejection::invalid_credentials(LAYER, reason), request);
        }
        match self.store.check_now(identity) {
            Some(verdict) => match rejection(identity, verdict) {
                None => Check::Pass(request, ()),
                Some(rejection) => Check::Reject(rejection, request),
            },
            None => {
                let identity = identity.clone();
                let store = self.store.clone();
                let wait: CheckWait = Box::pin(async move {
                    let verdict = store.check(identity.clone()).await;
                    rejection(&identity, verdict)
                });
                Check::Pending(Deferred::new(wait, request, PassUnlessRejected))
            }
        }
    }

    fn responder(&self) -> Option<&SharedResponder> {
        self.responder.as_ref()
    }
}
