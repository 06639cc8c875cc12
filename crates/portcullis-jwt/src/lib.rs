//! `JwtLayer`: bearer-token (JWT) authentication for any tower service.
//!
//! The layer reads `Authorization: Bearer …` (and, when configured, a
//! cookie), verifies the token, and puts the caller's
//! [`Identity`](portcullis_core::Identity) into the request's extensions.
//! It wraps an axum `Router`, a tonic server or a bare hyper service alike;
//! a refusal is a 401 with an RFC 6750 challenge naming the reason (gRPC:
//! `UNAUTHENTICATED`).
//!
//! Keys are static ([`KeySet`]: PEM, DER, JWK), or, with the feature
//! `remote`, a [`remote::RemoteKeys`] fetched from a JWKS URL, an issuer's
//! OIDC discovery document or a JWKS file, and kept current (rotation,
//! `Cache-Control`, single-flight refetch on an unknown `kid` with a
//! cooldown, bounded waits, stale keys served for a bounded time, then
//! 503). Several issuers at once: [`JwtVerifier::for_issuers`] and
//! [`JwtLayer::with_verifier`].
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use portcullis_core::{Identity, Rejection};
//! use portcullis_jwt::{JwtError, JwtIssuer, JwtLayer, SigningKey, Validation};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = JwtIssuer::new(SigningKey::generate_p256()?, "https://auth.example", "notes-api");
//! let layer = JwtLayer::new(
//!     issuer.verifying_key(),
//!     Validation::new().issuer("https://auth.example").audience("notes-api"),
//! )?;
//! let service = ServiceBuilder::new().layer(layer).service_fn(|request: Request<()>| async move {
//!     let identity = request.extensions().get::<Identity>().expect("JwtLayer ran");
//!     Ok::<_, Infallible>(Response::new(Bytes::from(identity.subject().to_owned())))
//! });
//!
//! // A valid token reaches the handler with its identity.
//! let token = issuer.mint("alice", ["notes:read"])?;
//! let request = Request::builder().header("authorization", format!("Bearer {token}")).body(())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // A tampered one (mallory's claims under alice's signature) is refused,
//! // and says why.
//! let mallory = issuer.mint("mallory", ["notes:read"])?;
//! let (signed_part, _) = mallory.rsplit_once('.').unwrap();
//! let (_, alice_signature) = token.rsplit_once('.').unwrap();
//! let tampered = format!("{signed_part}.{alice_signature}");
//! let request = Request::builder().header("authorization", format!("Bearer {tampered}")).body(())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer error="invalid_token", error_description="invalid signature""#
//! );
//! let rejection = response.extensions().get::<Rejection>().unwrap();
//! assert_eq!(rejection.source_as::<JwtError>(), Some(&JwtError::InvalidSignature));
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! - **Algorithms are pinned per key.** The key's type decides its
//!   algorithm; a token's `alg` never does. `none` (any spelling) is always
//!   refused, and so is a token whose `alg` differs from its key's (the
//!   RS256-key-as-HS256-secret confusion).
//! - **Key references are never followed.** `kid` selects among the
//!   configured keys only; a token with a `jku`, `x5u`, `jwk` or `x5c`
//!   header is refused outright, as is one with `crit` extensions.
//! - **Claims are required, not just checked when present.** `exp` must be
//!   there; a configured issuer and audience must be present and match
//!   (the builder refuses to build without them unless an `insecure_`
//!   method waives one); `nbf` and `iat` are checked, with a 30 s leeway;
//!   `typ` when configured.
//! - **Size first.** Tokens over 8 KiB are refused before any decoding.
//! - **The verified-token cache** keys on the SHA-256 of the whole token,
//!   holds only tokens whose signature and claims verified, and an entry
//!   never outlives its token's `exp`. Guards after the layer (revocation,
//!   scopes) still run on every request.
//! - **The engine is jsonwebtoken**, on its aws-lc-rs backend only: it
//!   decodes and verifies every token and signs every minted one, and reads
//!   JWKs; the rules above are Portcullis's policy around it, where
//!   jsonwebtoken is silent or lenient (a `null` `jku` it reads as absent,
//!   a missing `iss` it lets pass, time on a configurable clock).
//! - **Its crypto provider never panics a request.** jsonwebtoken picks its
//!   process-level `CryptoProvider` from its enabled backends; when an
//!   application's tree enables both (`aws_lc_rs` and `rust_crypto`), it
//!   cannot pick, and building a verifier fails with
//!   [`ConfigError::CryptoProvider`] instead. The one-line fix, first in
//!   `main`:
//!
//!   ```
//!   portcullis_jwt::install_crypto_provider().expect("no other provider installed first");
//!   ```
//! - Audit events (`portcullis::audit`) carry a fingerprint of the token,
//!   never the token.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod algorithm;
mod cache;
mod engine;
mod error;
mod issuer;
mod key;
mod keyring;
mod layer;
#[cfg(feature = "remote")]
pub mod remote;
mod token;
mod validation;
mod verifier;

pub use algorithm::Algorithm;
pub use cache::CacheLimits;
pub use engine::{CryptoProviderError, install_crypto_provider};
pub use error::{ConfigError, JwtError, KeyError};
#[cfg(feature = "test-util")]
pub use issuer::sign_compact;
pub use issuer::{IssueError, JwtIssuer, SigningKey};
pub use key::{Jwk, KeySet, Keys, VerifyingKey};
pub use keyring::{KeyEntry, KeyStatus, KeyringState, KeyringStateFile, SigningKeyring, SigningKeyringError};
pub use layer::{JwtLayer, JwtService, Refetch, RefetchWait};
pub use validation::Validation;
pub use verifier::JwtVerifier;

/// Verifies a compact JWS alone, without reading its payload as claims:
/// the size limit (8 KiB), the header policy (no `none`, no `jku`, `x5u`,
/// `jwk`, `x5c` or `crit`, present at all, `null` included), the algorithm
/// pinned by the key (never taken from the token), and the signature.
/// Returns the payload. For non-JWT payloads and known-answer tests; a
/// token of claims goes through [`JwtVerifier`].
///
/// ```
/// use portcullis_jwt::{Algorithm, JwtError, KeySet, VerifyingKey, verify_jws};
///
/// let key = VerifyingKey::hmac(Algorithm::HS256, &[7; 32])?;
/// let keys = KeySet::new([key]);
/// assert!(matches!(verify_jws("e30.e30.", &keys), Err(JwtError::Malformed(_))));
/// # Ok::<(), portcullis_jwt::KeyError>(())
/// ```
pub fn verify_jws(token: &str, keys: &KeySet) -> Result<Vec<u8>, JwtError> {
    token::verify_jws(token, keys, Validation::new().max_token_bytes, None)
}

/// The layer name in rejections and audit events.
pub(crate) const LAYER: &str = "jwt";
