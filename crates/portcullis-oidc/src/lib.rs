//! OpenID Connect relying party for Portcullis: sign users in with an
//! OpenID provider (authorization code + PKCE S256 + `state` + `nonce`)
//! into your own `SessionLayer` session, and log them out again —
//! RP-initiated and back-channel.
//!
//! This release holds the security core that every flow runs through:
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
