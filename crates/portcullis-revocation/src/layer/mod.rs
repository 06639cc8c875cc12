//! `RevocationLayer`: a guard that rejects revoked bearer tokens.

mod service;

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Responder, SharedResponder};
use tower_layer::Layer;

pub use service::{CheckWait, RevocationCheck, RevocationService};

use crate::store::{RevocationStore, Revocations};

/// Rejects requests whose bearer token is revoked: 401 with reason
/// `token revoked` (gRPC `UNAUTHENTICATED`), or 503 (`UNAVAILABLE`) when
/// the store cannot answer.
///
/// Put it after the authenticator (`JwtLayer`): it reads the `Identity`
/// that layer inserted. Requests with no identity, or one from a session
/// cookie (revoked in the session store itself), pass untouched; a guard
/// such as `RequireAuthLayer` decides about unauthenticated ones. A request
/// that no authenticator saw is a misconfigured stack: 500
/// (`misconfigured`), never a silent pass.
///
/// With [`MemoryRevocationStore`](crate::MemoryRevocationStore) or a
/// replicated store from `portcullis-redis`, the check is a local lookup:
/// no future is allocated and no network is touched per request.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_revocation::{MemoryRevocationStore, RevocationLayer, Revocations};
/// use tower::ServiceBuilder;
///
/// let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
/// let stack = ServiceBuilder::new()
///     // .layer(jwt_layer)
///     .layer(RevocationLayer::new(&revocations));
/// # let _ = stack;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RevocationLayer {
    pub(crate) store: Arc<dyn RevocationStore>,
    pub(crate) responder: Option<SharedResponder>,
    pub(crate) horizon: Duration,
}

impl RevocationLayer {
    /// A layer checking the store behind `revocations`, with its
    /// revocation horizon.
    pub fn new(revocations: &Revocations) -> Self {
        Self {
            horizon: revocations.horizon(),
            ..Self::with_store(revocations.store().clone())
        }
    }

    /// A layer checking `store`, with the default horizon
    /// ([`DEFAULT_KEEP_CUTOFFS_FOR`](crate::DEFAULT_KEEP_CUTOFFS_FOR)).
    pub fn with_store(store: Arc<dyn RevocationStore>) -> Self {
        Self {
            store,
            responder: None,
            horizon: crate::DEFAULT_KEEP_CUTOFFS_FOR,
        }
    }

    /// Renders rejections with `responder` instead of the stack's or the
    /// default.
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }
}

impl<S> Layer<S> for RevocationLayer {
    type Service = RevocationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RevocationService::new(self.clone(), inner)
    }
}
