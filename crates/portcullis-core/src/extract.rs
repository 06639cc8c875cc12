//! axum extractors (feature `axum`).

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::{
    AuthenticatorRan, DefaultResponder, Identity, Protocol, Rejection, RenderedRejection, RequestContext, Responder,
};

const LAYER: &str = "extractor";

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let headers = http::HeaderMap::new();
        let (method, uri) = (http::Method::GET, http::Uri::from_static("/"));
        let mut context = RequestContext::new(&method, &uri, &headers);
        context.protocol = Protocol::Http;
        DefaultResponder
            .respond(&self, &context)
            .map(axum_core::body::Body::from)
    }
}

/// Sends the rendered rejection.
impl IntoResponse for RenderedRejection {
    fn into_response(self) -> Response {
        RenderedRejection::into_response(self).map(axum_core::body::Body::from)
    }
}

fn identity_from_parts(parts: &Parts) -> Result<Identity, Rejection> {
    if let Some(identity) = parts.extensions.get::<Identity>() {
        return Ok(identity.clone());
    }
    if parts.extensions.get::<AuthenticatorRan>().is_none() {
        return Err(Rejection::misconfigured(
            LAYER,
            "no Portcullis authenticator layer (SessionLayer or JwtLayer) ran before this handler",
        ));
    }
    Err(Rejection::missing_credentials(LAYER, "authentication required"))
}

/// `Identity` as an axum extractor: 401 when the caller is not
/// authenticated, 500 when no authenticator layer is in the stack.
///
/// ```
/// use portcullis_core::Identity;
///
/// async fn me(identity: Identity) -> String {
///     identity.subject().to_owned()
/// }
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = RenderedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        identity_from_parts(parts).map_err(|rejection| RenderedRejection::for_parts(rejection, parts))
    }
}

/// `Option<Identity>`: `None` for anonymous callers, never an error.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}

/// The verified claims of the caller's bearer token, deserialized as `T`.
///
/// Rejects with 401 when the caller has no token (anonymous, or
/// authenticated by session), or when the claims do not fit `T`.
///
/// ```
/// use portcullis_core::Claims;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct TenantClaims {
///     sub: String,
///     tenant: String,
/// }
///
/// async fn tenant(Claims(claims): Claims<TenantClaims>) -> String {
///     format!("{} of {}", claims.sub, claims.tenant)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = RenderedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        claims_from_parts(parts).map_err(|rejection| RenderedRejection::for_parts(rejection, parts))
    }
}

fn claims_from_parts<T: DeserializeOwned>(parts: &Parts) -> Result<Claims<T>, Rejection> {
    let identity = identity_from_parts(parts)?;
    match identity.claims::<T>() {
        Some(Ok(claims)) => Ok(Claims(claims)),
        Some(Err(_)) => Err(Rejection::invalid_credentials(
            LAYER,
            "token claims do not have the expected shape",
        )),
        None => Err(Rejection::missing_credentials(LAYER, "a bearer token is required")),
    }
}
