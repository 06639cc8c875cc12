//! The axum extractor for [`CsrfToken`].

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use portcullis_core::{Rejection, RenderedRejection};

use crate::{CsrfToken, LAYER};

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = RenderedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<CsrfToken>().cloned().ok_or_else(|| {
            let rejection = Rejection::misconfigured(LAYER, "CsrfToken needs SessionLayer and CsrfLayer on this route");
            RenderedRejection::for_parts(rejection, parts)
        })
    }
}
