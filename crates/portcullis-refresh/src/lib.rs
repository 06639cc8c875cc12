//! Refresh-token rotation with reuse detection, and the OAuth endpoints
//! that serve it.
//!
//! - [`RefreshTokens`]: opaque refresh tokens in families, rotated on every
//!   use; reuse of a spent token revokes its family (and, if configured,
//!   cuts off its subject) through the [`Revocations`] handle of
//!   `portcullis-revocation`, so the family's access tokens die too.
//! - [`RefreshStore`]: where families live: [`MemoryRefreshStore`] here, or
//!   the Redis store of `portcullis-redis`.
//! - [`RefreshEndpoint`] (RFC 6749 §6) and [`RevocationEndpoint`]
//!   (RFC 7009): tower services to mount at your token and revocation URLs.
//!
//! This crate sits on `portcullis-jwt` (the access tokens it mints) and
//! `portcullis-revocation` (what reuse revokes); `portcullis-revocation`
//! itself needs neither.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_jwt::{JwtIssuer, SigningKey};
//! use portcullis_refresh::{MemoryRefreshStore, RefreshTokens};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://auth.example", "notes-api");
//! let refresh = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), issuer, &[7; 32]).build()?;
//! let login = refresh.issue("alice", ["notes:read"]).await?;
//! let next = refresh.refresh(&login.refresh_token).await?;
//! assert_ne!(next.refresh_token, login.refresh_token, "rotated on every use");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! [`Revocations`]: portcullis_revocation::Revocations

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
pub mod conformance;
mod endpoint;
mod memory;
mod store;
mod tokens;

pub use endpoint::{RefreshEndpoint, RevocationEndpoint};
pub use memory::MemoryRefreshStore;
pub use portcullis_core::{StoreError, StoreFuture, StoreKind};
pub use store::{Family, RefreshStore, Spend, SpendRules};
pub use tokens::{RefreshConfigError, RefreshError, RefreshTokens, RefreshTokensBuilder, TokenPair, generate_secret};
