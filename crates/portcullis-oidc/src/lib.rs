//! OpenID Connect relying party for Portcullis: sign users in with an
//! OpenID provider (authorization code + PKCE S256 + `state` + `nonce`)
//! into your own `SessionLayer` session, and log them out again —
//! RP-initiated and back-channel.
//!
//! [`OidcClient`] is the relying party: [`OidcClient::discover`], then
//! [`begin_login`](OidcClient::begin_login) in the login route,
//! [`complete_login`](OidcClient::complete_login) and
//! [`log_in`](OidcClient::log_in) in the callback route,
//! [`end_session`](OidcClient::end_session) for RP-initiated logout and
//! [`backchannel_logout`](OidcClient::backchannel_logout) for the
//! provider's logout tokens (it ends the sessions of the token's provider
//! session on every node, through the `(issuer, sid)` index the session
//! stores keep beside the subject index). The reference stack wires all
//! four routes. With [`ClientConfig::keep_upstream_tokens`], the
//! provider's access and refresh tokens are kept sealed in the session
//! store, and [`access_token`](OidcClient::access_token) hands out a
//! current access token, refreshing it once per session however many
//! requests ask at once. Underneath, the security core every flow runs
//! through:
//!
//! - [`validate_id_token`]: every rule of OIDC Core §3.1.3.7 on top of the
//!   JWT layer's signature, issuer, audience and lifetime checks;
//! - [`validate_logout_token`]: Back-Channel Logout 1.0 §2.6 (no `nonce`,
//!   the `events` member, `sid` and/or `sub`, `jti`);
//! - [`ReplayCache`]: single-use `state`s and `jti`s shared by every node;
//! - [`ReturnPath`]: same-origin return paths only (no open redirect);
//! - login transactions, one per `state`, each sealed (AES-256-GCM, keyed
//!   from a [`SecretKeyring`](portcullis_core::SecretKeyring)) into a
//!   short-lived cookie of its own, so logins in several tabs never
//!   overwrite each other.
//!
//! # Bridge to tokens: your own access token from an OIDC session
//!
//! A first-party page signed in through the provider holds a session; its
//! API calls (or a mobile app it hands off to) want a short-lived token
//! of *your* issuer. Mint it from the session's principal — never with
//! the provider's bare `sub`, which your issuer would read as a local
//! user of that name: use the principal's unambiguous key as `sub` and
//! name the provider in a claim.
//!
//! ```
//! use portcullis_core::Principal;
//! use portcullis_jwt::{JwtIssuer, JwtVerifier, SigningKey, Validation};
//!
//! let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://app.example", "app-api");
//! // What `Identity::principal()` holds for a session made by `OidcClient::log_in`.
//! let signed_in = Principal::new("https://accounts.example", "alice");
//! let mut claims = serde_json::Map::new();
//! claims.insert("idp".into(), signed_in.issuer().into());
//! let token = issuer.mint_with(&signed_in.key(), ["notes:read"], claims)?;
//!
//! let verifier = JwtVerifier::new(
//!     issuer.verifying_keys(),
//!     Validation::new().issuer("https://app.example").audience("app-api"),
//! )?;
//! let identity = verifier.verify(&token)?;
//! assert_ne!(identity.subject(), "alice", "not the local user alice");
//! assert_eq!(Principal::from_key(identity.subject()), Some(signed_in));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security
//!
//! - The provider's `iss` must equal the configured issuer exactly.
//! - An ID token is accepted only with the `nonce` of the login that
//!   started it; a logout token is refused if it carries one.
//! - Secrets never leave the server unencrypted: transactions are sealed,
//!   not just signed (the PKCE verifier and nonce are not readable by the
//!   browser).

mod claims;
mod client;
mod http;
mod return_path;
mod seal;
mod transaction;
mod upstream;

pub use claims::{
    BACKCHANNEL_LOGOUT_EVENT, IdTokenClaims, IdTokenError, IdTokenExpectations, LogoutToken, LogoutTokenError,
    LogoutTokenExpectations, validate_id_token, validate_logout_token,
};
pub use client::{
    BackchannelError, CallbackError, ClientAuth, ClientConfig, CompletedLogin, DiscoveryError, LoginRedirect,
    OidcClient, ProviderMetadata,
};
pub use http::{HttpClient, default_client};
pub use portcullis_core::{MemoryReplayCache, ReplayCache};
pub use return_path::{ReturnPath, ReturnPathError};
pub use transaction::{LoginTransactions, PendingLogin, TakenTransaction, TransactionError};
pub use upstream::{UpstreamAccessToken, UpstreamTokenError};
