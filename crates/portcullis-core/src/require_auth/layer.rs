use std::sync::Arc;

use tower_layer::Layer;

use super::RequireAuth;
use crate::{Responder, SharedResponder};

/// Refuses requests without an [`Identity`](crate::Identity), or without the
/// configured scopes. See the [module docs](crate::require_auth).
#[derive(Clone, Debug)]
#[must_use]
pub struct RequireAuthLayer {
    pub(crate) scopes: Arc<[String]>,
    pub(crate) responder: Option<SharedResponder>,
}

impl Default for RequireAuthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequireAuthLayer {
    /// Requires an identity, with no particular scope.
    pub fn new() -> Self {
        Self {
            scopes: Arc::from(Vec::new()),
            responder: None,
        }
    }

    /// Also requires `scope`. Call again to require several (all of them).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let mut scopes = self.scopes.to_vec();
        scopes.push(scope.into());
        self.scopes = Arc::from(scopes);
        self
    }

    /// Replaces how rejections are rendered.
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }
}

impl<S> Layer<S> for RequireAuthLayer {
    type Service = RequireAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuth::new(self.clone(), inner)
    }
}
