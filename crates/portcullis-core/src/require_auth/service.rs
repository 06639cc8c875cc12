use http::Request;

use super::RequireAuthLayer;
use crate::audit::{Decision, Outcome};
use crate::guard::{Check, Guard, GuardService, Resolved};
use crate::{AuthenticatorRan, Identity, Rejection, RejectionKind, SharedResponder};

const LAYER: &str = "require_auth";

/// The service of [`RequireAuthLayer`].
pub type RequireAuth<S> = GuardService<RequireAuthLayer, S>;

impl RequireAuthLayer {
    fn decide<B>(&self, request: &Request<B>) -> Result<(), Rejection> {
        let Some(identity) = request.extensions().get::<Identity>() else {
            if request.extensions().get::<AuthenticatorRan>().is_none() {
                return Err(Rejection::misconfigured(
                    LAYER,
                    "RequireAuth found no authenticator layer (SessionLayer or JwtLayer) before it",
                ));
            }
            return Err(Rejection::missing_credentials(LAYER, "authentication required"));
        };
        for scope in self.scopes.iter() {
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

impl<B> Guard<B> for RequireAuthLayer {
    type Body = B;
    type Finish = ();
    type Pending = std::future::Pending<Resolved<B, ()>>;

    fn check(&self, request: Request<B>) -> Check<B, B, (), Self::Pending> {
        match self.decide(&request) {
            Ok(()) => Check::Pass(request, ()),
            Err(rejection) => {
                if rejection.kind() != RejectionKind::InsufficientScope {
                    Decision::new(LAYER, Outcome::Rejected)
                        .reason(rejection.reason())
                        .record();
                }
                Check::Reject(rejection, request)
            }
        }
    }

    fn responder(&self) -> Option<&SharedResponder> {
        self.responder.as_ref()
    }
}
