//! The checks OpenID Connect adds on top of a verified JWT: the ID token
//! (OIDC Core §3.1.3.7) and the logout token (Back-Channel Logout 1.0 §2.6).

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_jwt::{JwtError, JwtVerifier, KeySet};
use serde::Deserialize;
use serde_json::Value;

use crate::transaction::unix_seconds;

/// The `events` member a logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why an ID token was refused. [`reason`](Self::reason) names the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// The signature, `iss`, `aud`, `exp`, `nbf` or `iat`-in-the-future
    /// check of the JWT layer failed.
    #[error("id token refused: {0}")]
    Jwt(JwtError),
    /// No `sub`, an empty one, or one over 255 characters.
    #[error("id token has no usable sub")]
    Subject,
    /// No `iat`, or one older than the accepted age.
    #[error("id token issued too long ago")]
    IssuedAt,
    /// Several audiences and no `azp`, or an `azp` that is not this client.
    #[error("id token authorized party is not this client")]
    AuthorizedParty,
    /// The `nonce` is missing or not the one this login sent.
    #[error("id token nonce does not match the login")]
    Nonce,
    /// `at_hash` does not match the access token.
    #[error("id token at_hash does not match the access token")]
    AccessTokenHash,
}

impl IdTokenError {
    /// The rule that failed, short and safe to show.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Jwt(error) => jwt_reason(
                error,
                [
                    "id token signature",
                    "id token issuer",
                    "id token audience",
                    "id token expired",
                    "id token malformed",
                ],
            ),
            Self::Subject => "id token subject",
            Self::IssuedAt => "id token issued at",
            Self::AuthorizedParty => "id token authorized party",
            Self::Nonce => "id token nonce",
            Self::AccessTokenHash => "id token at_hash",
        }
    }
}

/// The reason of a JWT-layer refusal of an ID or logout token, from that
/// token's five names: signature, issuer, audience, expired, malformed.
fn jwt_reason(error: &JwtError, [signature, issuer, audience, expired, malformed]: [&'static str; 5]) -> &'static str {
    match error {
        JwtError::InvalidSignature | JwtError::UnknownKeyId | JwtError::AlgorithmMismatch => signature,
        JwtError::IssuerMismatch => issuer,
        JwtError::AudienceMismatch => audience,
        JwtError::Expired | JwtError::NotYetValid | JwtError::IssuedInFuture => expired,
        JwtError::KeysUnavailable { .. } => "provider keys unavailable",
        _ => malformed,
    }
}

/// The claims of an accepted ID token that a relying party uses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// `iss`, exactly the configured issuer.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// The provider's session (`sid`), if it sent one.
    pub session_id: Option<String>,
    /// `iat`, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Every claim, as sent.
    pub raw: serde_json::Map<String, Value>,
}

/// What the ID token of one callback must match.
#[derive(Clone, Copy, Debug)]
pub struct IdTokenExpectations<'a> {
    /// This client's `client_id`.
    pub client_id: &'a str,
    /// The login's `nonce` (`None` only on a refresh whose login had none).
    pub nonce: Option<&'a str>,
    /// An ID token of a refresh (OIDC Core §12.2): the provider may leave
    /// the `nonce` out; one it sends must still be the login's.
    pub refresh: bool,
    /// The access token that came with it, to check `at_hash` against.
    pub access_token: Option<&'a str>,
    /// The oldest accepted `iat`.
    pub max_age: Duration,
    /// Now.
    pub now: SystemTime,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

fn header(token: &str) -> Option<Header> {
    let json = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice(&json).ok()
}

fn claims(verifier: &JwtVerifier, token: &str) -> Result<serde_json::Map<String, Value>, JwtError> {
    let identity = verifier.verify(token)?;
    let json = identity.claims_json().ok_or(JwtError::Malformed("no claims"))?;
    serde_json::from_str(json).map_err(|_| JwtError::Malformed("claims are not a JSON object"))
}

fn string<'a>(claims: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

/// Validates an ID token: the signature, `iss` (exact), `aud`, `exp` and
/// `nbf` through `verifier` (configured with the provider's keys, its
/// issuer and this client as audience), then what OIDC Core §3.1.3.7 adds:
/// `azp` when present or when there are several audiences, `iat` present
/// and recent, `nonce` equal to the login's, `at_hash` when present, and a
/// usable `sub`.
pub fn validate_id_token(
    verifier: &JwtVerifier,
    token: &str,
    expect: &IdTokenExpectations<'_>,
) -> Result<IdTokenClaims, IdTokenError> {
    let raw = claims(verifier, token).map_err(|error| match error {
        JwtError::MissingClaim(claim) if claim == "sub" => IdTokenError::Subject,
        error => IdTokenError::Jwt(error),
    })?;
    let subject = string(&raw, "sub")
        .filter(|sub| !sub.is_empty() && sub.len() <= 255)
        .ok_or(IdTokenError::Subject)?
        .to_owned();
    let several_audiences = raw
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|aud| aud.len() > 1);
    match string(&raw, "azp") {
        Some(azp) if azp != expect.client_id => return Err(IdTokenError::AuthorizedParty),
        None if several_audiences => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    let issued_at = raw.get("iat").and_then(Value::as_u64).ok_or(IdTokenError::IssuedAt)?;
    if issued_at + expect.max_age.as_secs() < unix_seconds(expect.now) {
        return Err(IdTokenError::IssuedAt);
    }
    match (expect.nonce, string(&raw, "nonce")) {
        (Some(expected), Some(sent)) if constant_time_eq(expected, sent) => {}
        (_, None) if expect.refresh => {}
        _ => return Err(IdTokenError::Nonce),
    }
    if let (Some(access_token), Some(sent)) = (expect.access_token, string(&raw, "at_hash")) {
        let alg = header(token).map(|header| header.alg).unwrap_or_default();
        if !access_token_hash(&alg, access_token).is_some_and(|hash| constant_time_eq(&hash, sent)) {
            return Err(IdTokenError::AccessTokenHash);
        }
    }
    Ok(IdTokenClaims {
        issuer: string(&raw, "iss").unwrap_or_default().to_owned(),
        subject,
        session_id: string(&raw, "sid").map(str::to_owned),
        issued_at,
        raw,
    })
}

/// `at_hash`: the left half of the access token's hash under the hash of
/// the ID token's `alg` (SHA-512 for EdDSA), base64url.
pub(crate) fn access_token_hash(alg: &str, access_token: &str) -> Option<String> {
    let algorithm = match alg {
        "RS256" | "PS256" | "ES256" | "HS256" => &digest::SHA256,
        "RS384" | "PS384" | "ES384" | "HS384" => &digest::SHA384,
        "RS512" | "PS512" | "ES512" | "HS512" | "EdDSA" | "Ed25519" => &digest::SHA512,
        _ => return None,
    };
    let hash = digest::digest(algorithm, access_token.as_bytes());
    let half = &hash.as_ref()[..hash.as_ref().len() / 2];
    Some(URL_SAFE_NO_PAD.encode(half))
}

/// Why a logout token was refused (a 400 from the back-channel endpoint).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutTokenError {
    /// The signature, `iss`, `aud` or `exp` check failed.
    #[error("logout token refused: {0}")]
    Jwt(JwtError),
    /// A `typ` header other than `logout+jwt`.
    #[error("logout token has another type")]
    Type,
    /// No `events` member naming the back-channel logout event.
    #[error("logout token has no back-channel logout event")]
    Events,
    /// A `nonce`: an ID token, not a logout token.
    #[error("logout token carries a nonce")]
    Nonce,
    /// Neither `sid` nor `sub`.
    #[error("logout token names no session and no subject")]
    NoTarget,
    /// No `jti` or no `iat`.
    #[error("logout token has no jti or no iat")]
    Identity,
    /// Its `jti` was seen before.
    #[error("logout token replayed")]
    Replayed,
}

impl LogoutTokenError {
    /// The rule that failed, short and safe to show.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Jwt(error) => jwt_reason(
                error,
                [
                    "logout token signature",
                    "logout token issuer",
                    "logout token audience",
                    "logout token expired",
                    "logout token malformed",
                ],
            ),
            Self::Type => "logout token type",
            Self::Events => "logout token events",
            Self::Nonce => "logout token nonce",
            Self::NoTarget => "logout token names no session",
            Self::Identity => "logout token jti or iat",
            Self::Replayed => "logout token replayed",
        }
    }
}

/// An accepted logout token: whom to log out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogoutToken {
    /// `iss`.
    pub issuer: String,
    /// `sub`, if sent.
    pub subject: Option<String>,
    /// `sid`, if sent.
    pub session_id: Option<String>,
    /// `jti`, single-use.
    pub token_id: String,
    /// `exp`, seconds since the Unix epoch: how long the `jti` must be remembered.
    pub expires_at: u64,
}

/// What a logout token must match.
#[derive(Clone, Copy, Debug)]
pub struct LogoutTokenExpectations<'a> {
    /// The provider's issuer, exactly.
    pub issuer: &'a str,
    /// This client's `client_id`, one of the audiences.
    pub client_id: &'a str,
    /// Now.
    pub now: SystemTime,
    /// Clock skew allowed on `exp` and `iat`.
    pub leeway: Duration,
}

/// Validates a logout token (Back-Channel Logout 1.0 §2.6) except its
/// replay, which needs the shared cache ([`crate::ReplayCache`]): the
/// signature under `keys` (the provider's), `iss` exactly, `aud`
/// including this client, `exp`; a `typ` header,
/// when present, of `logout+jwt`; `iat` and `jti`; `events` holding the
/// back-channel logout event as a JSON object; `sid` and/or `sub`; and no
/// `nonce`.
pub fn validate_logout_token(
    keys: &KeySet,
    token: &str,
    expect: &LogoutTokenExpectations<'_>,
) -> Result<LogoutToken, LogoutTokenError> {
    // Not `JwtVerifier`: a logout token may carry `sid` without `sub`, and
    // the verifier requires `sub`. Signature and header policy are the
    // same code (`verify_jws`); the claim checks follow here.
    let payload = portcullis_jwt::verify_jws(token, keys).map_err(LogoutTokenError::Jwt)?;
    let raw: serde_json::Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|_| LogoutTokenError::Jwt(JwtError::Malformed("claims are not a JSON object")))?;
    if string(&raw, "iss") != Some(expect.issuer) {
        return Err(LogoutTokenError::Jwt(JwtError::IssuerMismatch));
    }
    let for_us = match raw.get("aud") {
        Some(Value::String(aud)) => aud == expect.client_id,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(expect.client_id)),
        _ => false,
    };
    if !for_us {
        return Err(LogoutTokenError::Jwt(JwtError::AudienceMismatch));
    }
    let now = unix_seconds(expect.now);
    let leeway = expect.leeway.as_secs();
    let expires_at = raw.get("exp").and_then(Value::as_u64);
    if expires_at.is_none_or(|exp| exp + leeway <= now) {
        return Err(LogoutTokenError::Jwt(JwtError::Expired));
    }
    if raw
        .get("iat")
        .and_then(Value::as_u64)
        .is_some_and(|iat| iat > now + leeway)
    {
        return Err(LogoutTokenError::Jwt(JwtError::IssuedInFuture));
    }
    if let Some(typ) = header(token).and_then(|header| header.typ) {
        let typ = typ.to_ascii_lowercase();
        if typ != "logout+jwt" && typ != "application/logout+jwt" {
            return Err(LogoutTokenError::Type);
        }
    }
    if raw.contains_key("nonce") {
        return Err(LogoutTokenError::Nonce);
    }
    let event = raw
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(LogoutTokenError::Events);
    }
    let subject = string(&raw, "sub").filter(|s| !s.is_empty()).map(str::to_owned);
    let session_id = string(&raw, "sid").filter(|s| !s.is_empty()).map(str::to_owned);
    if subject.is_none() && session_id.is_none() {
        return Err(LogoutTokenError::NoTarget);
    }
    let token_id = string(&raw, "jti").filter(|s| !s.is_empty() && s.len() <= 256);
    let (Some(token_id), Some(_)) = (token_id, raw.get("iat").and_then(Value::as_u64)) else {
        return Err(LogoutTokenError::Identity);
    };
    Ok(LogoutToken {
        issuer: string(&raw, "iss").unwrap_or_default().to_owned(),
        subject,
        session_id,
        token_id: token_id.to_owned(),
        expires_at: expires_at.unwrap_or_default(),
    })
}
