//! Portcullis: composable tower layers that hold the authenticated state of
//! a request.
//!
//! | feature | what it brings | default |
//! |---|---|---|
//! | `jwt` | [`JwtLayer`], [`JwtIssuer`], [`jwt`] key sets and validation | yes |
//! | `remote-keys` | `jwt::remote`: JWKS URLs, OIDC discovery, JWKS files, kept current | no |
//! | `session` | [`SessionLayer`], [`Session`], [`MemoryStore`], [`session`] stores | no |
//! | `csrf` | `CsrfLayer`, `CsrfToken` (needs `session`) | no |
//! | `revocation` | `RevocationLayer`, `Revocations` (`portcullis-revocation`); `RefreshTokens`, the OAuth refresh and revocation endpoints (`portcullis-refresh`) | no |
//! | `redis` | `redis`: Redis implementations of every store, the replicated revocation mirror | no |
//! | `oidc` | `oidc`: OpenID Connect relying party — ID and logout token validation, login transactions, replay cache, return paths (`portcullis-oidc`) | no |
//! | `postgres` | `postgres`: PostgreSQL implementations of every store, the replicated revocation mirror, schema migrations | no |
//! | `redis-sessions` | `redis::RedisSessionStore` alone: Redis sessions with no JWT code compiled | no |
//! | `conformance` | the store conformance suites, for your own stores' tests | no |
//! | `test-util` | test helpers: `jwt::sign_compact` (signs any header), `session::SessionKey::from_bytes` | no |
//! | `axum` | axum extractors: [`Identity`], `Option<Identity>`, `Claims<T>` | no |
//! | `full` | every layer and integration | no |
//!
//! The shared vocabulary — [`Identity`], [`Rejection`], [`audit`],
//! [`Clock`], [`RequireAuthLayer`] — is always there.
//!
//! ```text
//! request ─▶ SessionLayer ─▶ JwtLayer ─▶ RevocationLayer ─▶ CsrfLayer ─▶ RequireAuth ─▶ your service
//!            (cookie → Identity) (bearer → Identity) (deny revoked) (cross-site writes) (policy)
//! ```
//!
//! # The contract between layers
//!
//! What each layer reads and writes, where it must stand, and what happens
//! when it stands elsewhere:
//!
//! | layer | reads (request) | writes (request) | writes (response) | stands | elsewhere |
//! |---|---|---|---|---|---|
//! | `SessionLayer` | its session cookie | `Session`; `Identity` when logged in, else `AuthenticatorRan` | `Set-Cookie` (a new, rotated or cleared id) | first, before every guard | a guard before it sees no authenticator: 500 `misconfigured` |
//! | `JwtLayer` | `Authorization: Bearer`, or its configured cookie | `Identity` (replacing a session's: the bearer token wins); `AuthenticatorRan` when no token and optional | — | after `SessionLayer`, before every guard | as above; before `SessionLayer`, a session's identity replaces the token's |
//! | `RevocationLayer` | `Identity` (bearer tokens only; a session's is revoked in its store), `AuthenticatorRan` | — | — | after the authenticators | no authenticator before it: 500 `misconfigured` |
//! | `CsrfLayer` | `Session`, `Identity`, `AuthenticatorRan`, `Origin`/`Sec-Fetch-Site`/`Referer`, `X-CSRF-Token` or the form field, its pre-session cookie | `CsrfToken`; the body becomes `CsrfBody` (a read form is handed on intact) | `Vary: Origin, Sec-Fetch-Site` (and `Cookie` when a token was issued); the pre-session `Set-Cookie` | after the authenticators, before handlers that change state | no authenticator before it: 500 `misconfigured` on unsafe methods |
//! | `RequireAuthLayer` | `Identity` and its scopes, `AuthenticatorRan` | — | — | last, after the other guards | no authenticator before it: 500 `misconfigured` |
//!
//! Put `ResponderLayer` outermost to render every refusal of the stack, the
//! axum extractors' included, with one `Responder`; a layer given its own
//! keeps it.
//!
//! Every refusal is a response rendered by the layer's `Responder` (RFC 6750
//! challenge and `application/problem+json` for HTTP, a trailers-only status
//! for gRPC) carrying the typed `Rejection` in its extensions, never a
//! service error.
//!
//! Authenticators turn a credential into an [`Identity`] in the request's
//! extensions; guards read it and refuse or pass. Every refusal is a
//! response (RFC 6750 challenge and problem+json for HTTP, a trailers-only
//! status for gRPC), never a service error.
//!
//! ```
//! # #[cfg(feature = "jwt")] {
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use portcullis::{Identity, JwtIssuer, JwtLayer, RequireAuthLayer, SigningKey, Validation};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://auth.example", "notes-api");
//! let validation = Validation::new().issuer("https://auth.example").audience("notes-api");
//! let stack = ServiceBuilder::new()
//!     .layer(JwtLayer::new(issuer.verifying_key(), validation)?.optional())
//!     .layer(RequireAuthLayer::new().scope("notes:write"));
//! let service = stack.service_fn(|request: Request<()>| async move {
//!     let subject = request.extensions().get::<Identity>().map(|i| i.subject().to_owned());
//!     Ok::<_, Infallible>(Response::new(Bytes::from(subject.unwrap_or_default())))
//! });
//!
//! let reader = issuer.mint("bob", ["notes:read"])?;
//! let request = Request::builder().header("authorization", format!("Bearer {reader}")).body(())?;
//! assert_eq!(service.clone().oneshot(request).await?.status(), StatusCode::FORBIDDEN);
//!
//! let writer = issuer.mint("alice", ["notes:read", "notes:write"])?;
//! let request = Request::builder().header("authorization", format!("Bearer {writer}")).body(())?;
//! assert_eq!(service.oneshot(request).await?.status(), StatusCode::OK);
//! # Ok(()) }
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The shared vocabulary, listed: what the facade promises, not whatever
// the core crate happens to export.
#[cfg(feature = "axum")]
pub use portcullis_core::Claims;
pub use portcullis_core::{
    AuthMethod, AuthenticatorRan, Clock, DefaultResponder, Identity, IdentityBuilder, KeyringError, LayerBody,
    ManualClock, MemoryReplayCache, Principal, Protocol, Rejection, RejectionKind, RenderedRejection, ReplayCache,
    RequestContext, RequireAuth, RequireAuthLayer, Responder, ResponderLayer, ResponderService, ResponseBody, Route,
    SecretKeyring, SharedClock, SharedResponder, StackResponder, StoreError, StoreFuture, StoreKind, SystemClock,
    TokenTransport, audit, guard, require_auth, responder_for,
};

/// Bearer-token (JWT) authentication: the whole `portcullis-jwt` crate.
#[cfg(feature = "jwt")]
pub mod jwt {
    pub use portcullis_jwt::*;
}

#[cfg(feature = "jwt")]
pub use portcullis_jwt::{
    JwtIssuer, JwtLayer, JwtVerifier, KeySet, SigningKey, SigningKeyring, Validation, VerifyingKey,
};

/// Server-side sessions: the whole `portcullis-session` crate.
#[cfg(feature = "session")]
pub mod session {
    pub use portcullis_session::*;
}

#[cfg(feature = "session")]
pub use portcullis_session::{MemoryStore, Session, SessionLayer, Sessions};

/// CSRF protection for cookie sessions: the whole `portcullis-csrf` crate.
#[cfg(feature = "csrf")]
pub mod csrf {
    pub use portcullis_csrf::*;
}

#[cfg(feature = "csrf")]
pub use portcullis_csrf::{CsrfLayer, CsrfToken};

/// Token revocation: the whole `portcullis-revocation` crate, and (for the
/// paths that predate the split) the refresh items of `portcullis-refresh`.
#[cfg(feature = "revocation")]
pub mod revocation {
    pub use portcullis_refresh::{
        Family, MemoryRefreshStore, RefreshConfigError, RefreshEndpoint, RefreshError, RefreshStore, RefreshTokens,
        RefreshTokensBuilder, RevocationEndpoint, Spend, SpendRules, TokenPair, generate_secret,
    };
    pub use portcullis_revocation::*;
}

/// Refresh-token rotation and the OAuth endpoints: the whole
/// `portcullis-refresh` crate.
#[cfg(feature = "revocation")]
pub mod refresh {
    pub use portcullis_refresh::*;
}

/// OpenID Connect relying party: the whole `portcullis-oidc` crate.
#[cfg(feature = "oidc")]
pub mod oidc {
    pub use portcullis_oidc::*;
}

#[cfg(feature = "revocation")]
pub use portcullis_refresh::RefreshTokens;
#[cfg(feature = "revocation")]
pub use portcullis_revocation::{RevocationLayer, Revocations};

/// Redis implementations of the stores: the whole `portcullis-redis` crate
/// (the store families the `redis` or `redis-sessions` feature enabled).
#[cfg(any(feature = "redis", feature = "redis-sessions"))]
pub mod redis {
    pub use portcullis_redis::*;
}

/// PostgreSQL implementations of the stores: the whole
/// `portcullis-postgres` crate.
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use portcullis_postgres::*;
}
