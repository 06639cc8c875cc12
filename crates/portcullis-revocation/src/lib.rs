//! Revocation for signed tokens, checked without a network round trip.
//!
//! - [`RevocationLayer`]: after `JwtLayer`, rejects a bearer token whose
//!   `(iss, jti)` is denylisted or whose subject or `sid` was cut off after
//!   it was issued (401 `token revoked`; gRPC `UNAUTHENTICATED`).
//! - [`Revocations`]: the handle that revokes (one token, a subject, a
//!   `sid`), over a [`RevocationStore`]: [`MemoryRevocationStore`] here, or
//!   the replicated Redis store of `portcullis-redis`, which keeps a local
//!   mirror on every node.
//!
//! Refresh-token rotation and the OAuth endpoints live in
//! `portcullis-refresh`, which builds on this crate; this one depends on
//! `portcullis-core` alone.
//!
//! Revocation keys come only from verified claims, never from a token's
//! bytes: ECDSA signatures are malleable, so two byte strings can carry one
//! valid token.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use portcullis_core::{AuthMethod, Identity};
//! use portcullis_revocation::{MemoryRevocationStore, RevocationStore, Revocations, Revoked};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Arc::new(MemoryRevocationStore::new());
//! let revocations = Revocations::new(store.clone());
//! let token = Identity::builder("alice", AuthMethod::bearer(Some("jti-1".into()), Some("https://iss".into())))
//!     .issued_at(SystemTime::now() - Duration::from_secs(5))
//!     .expires_at(SystemTime::now() + Duration::from_secs(600))
//!     .build();
//! assert_eq!(store.check(token.clone()).await?, None);
//! revocations.revoke_identity(&token).await?;
//! assert_eq!(store.check(token).await?, Some(Revoked::Token));
//! # Ok::<(), portcullis_revocation::StoreError>(())
//! # }).unwrap();
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
pub mod conformance;
mod denylist;
mod layer;
mod memory;
mod store;
pub mod store_support;

pub use denylist::{Revocation, Revoked, Target};
pub use layer::{CheckWait, RevocationCheck, RevocationLayer, RevocationService};
pub use memory::MemoryRevocationStore;
pub use store::{
    DEFAULT_CLOCK_SKEW, DEFAULT_KEEP_CUTOFFS_FOR, FeedLossPolicy, RevocationStore, Revocations, StoreError,
    StoreFuture, StoreKind,
};

pub(crate) const LAYER: &str = "revocation";
