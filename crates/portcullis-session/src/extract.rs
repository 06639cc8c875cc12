use axum_core::extract::FromRequestParts;
use http::request::Parts;
use portcullis_core::{Rejection, RenderedRejection};

use crate::Session;

/// `Session` as an axum extractor; a clear 500 when `SessionLayer` is not
/// in the stack.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = RenderedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            let rejection = Rejection::misconfigured(crate::LAYER, "no SessionLayer ran before this handler");
            RenderedRejection::for_parts(rejection, parts)
        })
    }
}
