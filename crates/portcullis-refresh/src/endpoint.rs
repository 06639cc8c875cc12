//! Ready-to-mount OAuth endpoints: token refresh (RFC 6749 §6) and token
//! revocation (RFC 7009), as tower services.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use portcullis_core::audit::{Decision, Outcome};
use portcullis_jwt::JwtVerifier;
use serde_json::json;
use tower_service::Service;

use portcullis_core::StoreError;
use portcullis_revocation::Revocations;

use crate::tokens::{RefreshError, RefreshTokens};

/// The layer name in audit events: the endpoints kept the name they had
/// when they lived in `portcullis-revocation`, so dashboards keep working.
const LAYER: &str = "revocation";

/// The largest request body the endpoints read (a form with one token).
const BODY_LIMIT: usize = 8 * 1024;

type EndpointFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The token endpoint for `grant_type=refresh_token` (RFC 6749 §6): a
/// tower service to mount on a POST route.
///
/// Takes an `application/x-www-form-urlencoded` body with `grant_type` and
/// `refresh_token` (and an optional `scope`, which may only narrow the
/// family's scopes); answers 200 with `access_token`, `token_type`,
/// `expires_in`, `refresh_token` and `scope`, or 400 with an RFC 6749 §5.2
/// error (`invalid_request`, `unsupported_grant_type`, `invalid_grant`,
/// `invalid_scope`), or 503 when a store is unavailable. Responses carry
/// `Cache-Control: no-store`.
///
/// Clients are treated as public (no client authentication): the refresh
/// token is the credential, bound to its family by rotation.
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use portcullis_jwt::{JwtIssuer, SigningKey};
/// use portcullis_refresh::{MemoryRefreshStore, RefreshEndpoint, RefreshTokens};
///
/// let issuer = JwtIssuer::new(SigningKey::generate_ed25519().unwrap(), "https://auth.example", "api");
/// let tokens = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), issuer, &[7; 32]).build().unwrap();
/// let app: Router = Router::new().route_service("/oauth/token", RefreshEndpoint::new(tokens));
/// ```
#[derive(Clone, Debug)]
pub struct RefreshEndpoint {
    tokens: RefreshTokens,
}

impl RefreshEndpoint {
    /// An endpoint rotating through `tokens`.
    pub fn new(tokens: RefreshTokens) -> Self {
        Self { tokens }
    }
}

/// The revocation endpoint (RFC 7009): a tower service to mount on a POST
/// route.
///
/// Takes a form with `token` (and an optional `token_type_hint`). A refresh
/// token revokes its whole family (and cuts off the family's access
/// tokens); an access token that verifies is denylisted by its `(iss, jti)`
/// until it expires. Answers 200 whether or not the token was known (RFC
/// 7009 §2.2), 400 `invalid_request` without a `token`, 503 when a store
/// is unavailable. An access token that does not verify revokes nothing:
/// revocation keys come only from verified claims.
#[derive(Clone, Debug)]
pub struct RevocationEndpoint {
    tokens: RefreshTokens,
    verifier: Option<JwtVerifier>,
    revocations: Revocations,
}

impl RevocationEndpoint {
    /// An endpoint revoking refresh tokens of `tokens` and access tokens
    /// into `revocations`. Access tokens are verified with `verifier` (its
    /// keys, issuer and audience); without one, only refresh tokens are
    /// revoked.
    pub fn new(tokens: RefreshTokens, verifier: Option<JwtVerifier>, revocations: Revocations) -> Self {
        Self {
            tokens,
            verifier,
            revocations,
        }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A 503 that says what failed, never where or why inside: the detail
/// (an address, a driver error) goes to the audit event only.
fn store_unavailable(error: &StoreError) -> Response<Full<Bytes>> {
    Decision::new(LAYER, Outcome::Unavailable)
        .reason(error.reason())
        .record();
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "token store unavailable",
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": error, "error_description": description }))
}

/// Reads a POSTed form, each parameter at most once (RFC 6749 §3.2), or
/// the error response to send.
async fn read_form<B>(request: Request<B>) -> Result<HashMap<String, String>, Response<Full<Bytes>>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.method() != Method::POST {
        let mut response = oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use POST");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return Err(response);
    }
    let form_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = match Limited::new(request.into_body(), BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body is unreadable or larger than 8 KiB",
            ));
        }
    };
    let mut form = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if form.insert(name.clone().into_owned(), value.into_owned()).is_some() {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("parameter {name} repeated"),
            ));
        }
    }
    Ok(form)
}

/// An endpoint that answers a POSTed form: the form is read (and a bad
/// request refused) once, in [`serve`], for every such endpoint.
trait FormEndpoint: Clone + Send + 'static {
    fn answer(self, form: HashMap<String, String>) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

fn serve<E, B>(endpoint: E, request: Request<B>) -> EndpointFuture
where
    E: FormEndpoint,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Box::pin(async move {
        Ok(match read_form(request).await {
            Ok(form) => endpoint.answer(form).await,
            Err(response) => response,
        })
    })
}

/// The tower `Service` of a [`FormEndpoint`]: always ready, any body.
macro_rules! form_service {
    ($endpoint:ty) => {
        impl<B> Service<Request<B>> for $endpoint
        where
            B: Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        {
            type Response = Response<Full<Bytes>>;
            type Error = Infallible;
            type Future = EndpointFuture;

            fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: Request<B>) -> Self::Future {
                serve(self.clone(), request)
            }
        }
    };
}

form_service!(RefreshEndpoint);
form_service!(RevocationEndpoint);

impl FormEndpoint for RefreshEndpoint {
    async fn answer(self, form: HashMap<String, String>) -> Response<Full<Bytes>> {
        let tokens = self.tokens;
        match form.get("grant_type").map(String::as_str) {
            None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
            Some("refresh_token") => {}
            Some(_) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only grant_type=refresh_token is served here",
                );
            }
        }
        let Some(refresh_token) = form.get("refresh_token") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required");
        };
        let scope = form.get("scope").map(String::as_str);
        let pair = match tokens.refresh_with_scope(refresh_token, scope).await {
            Ok(pair) => pair,
            Err(RefreshError::InvalidGrant(reason)) => {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", reason);
            }
            Err(RefreshError::InvalidScope(reason)) => {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", reason);
            }
            Err(RefreshError::Throttled { retry_after }) => {
                // Not invalid_grant: the token is fine, and a client that
                // threw it away would log its user out.
                let mut response = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    "refresh too frequent",
                );
                let seconds = retry_after.as_secs().max(1);
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(http::header::RETRY_AFTER, value);
                }
                return response;
            }
            Err(RefreshError::Unavailable(error)) => {
                return store_unavailable(&error);
            }
            Err(RefreshError::Issue(_)) => {
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the access token could not be signed",
                );
            }
        };
        // A narrower scope may be asked for (RFC 6749 §6); the rotation has
        // happened by then, so a retry within the grace window gets the
        // same successor.
        if let Some(requested) = form.get("scope") {
            let granted: Vec<&str> = pair.scope.split(' ').collect();
            if requested.split(' ').any(|scope| !granted.contains(&scope)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the requested scope exceeds the scope granted at login",
                );
            }
        }
        json_response(
            StatusCode::OK,
            json!({
                "access_token": pair.access_token,
                "token_type": "Bearer",
                "expires_in": pair.expires_in.as_secs(),
                "refresh_token": pair.refresh_token,
                "scope": pair.scope,
            }),
        )
    }
}

impl FormEndpoint for RevocationEndpoint {
    async fn answer(self, form: HashMap<String, String>) -> Response<Full<Bytes>> {
        let Some(token) = form.get("token") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
        };
        let access_first = form.get("token_type_hint").map(String::as_str) == Some("access_token");
        let outcome = if access_first {
            match self.revoke_access(token).await {
                Ok(false) => self.tokens.revoke(token).await.map(|_| ()),
                other => other.map(|_| ()),
            }
        } else {
            match self.tokens.revoke(token).await {
                Ok(false) => self.revoke_access(token).await.map(|_| ()),
                other => other.map(|_| ()),
            }
        };
        match outcome {
            // Known or not, the answer is the same (RFC 7009 §2.2).
            Ok(()) => json_response(StatusCode::OK, json!({})),
            Err(error) => store_unavailable(&error),
        }
    }
}

impl RevocationEndpoint {
    async fn revoke_access(&self, token: &str) -> Result<bool, StoreError> {
        let Some(verifier) = &self.verifier else {
            return Ok(false);
        };
        match verifier.verify(token) {
            Ok(identity) => self.revocations.revoke_identity(&identity).await,
            Err(_) => Ok(false),
        }
    }
}
