//! Redis implementations of the Portcullis stores, one feature per store
//! family (all three by default):
//!
//! | feature | stores | brings in |
//! |---|---|---|
//! | `sessions` | [`RedisSessionStore`]: a `SessionStore` for `SessionLayer`, so several instances share sessions | `portcullis-session` |
//! | `revocation` | [`ReplicatedRevocationStore`]: revocations shared through Redis and checked against a local mirror on every node (no round trip per request); [`RedisRevocationStore`] is its writer, asked per check | `portcullis-revocation`, tokio |
//! | `refresh` | [`RedisRefreshStore`]: refresh-token families, rotated atomically | `portcullis-refresh`, so `portcullis-jwt` |
//!
//! Redis sessions alone compile no JWT code:
//! `portcullis-redis = { version = "0.1", default-features = false, features = ["sessions"] }`.
//!
//! The client is `redis` 1.x with its `ConnectionManager`: one multiplexed
//! connection per store that reconnects by itself after an outage, so the
//! layer recovers without an application restart. We chose it over `fred`
//! for its smaller build and because the manager gives exactly the
//! behaviour we need (fail fast while down, reconnect in the background),
//! with per-command timeouts we set.
//!
//! Every multi-step change is one Lua script (atomic on the server, one
//! round trip); a read-only request costs one round trip.
//!
//! ```no_run
//! use std::sync::Arc;
//! use portcullis_redis::RedisSessionStore;
//! use portcullis_session::SessionLayer;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisSessionStore::connect("redis://127.0.0.1:6379").await?;
//! let layer = SessionLayer::new(Arc::new(store)).secret(b"the same 32+ byte secret on every instance")?;
//! # Ok(()) }
//! ```
//!
//! # Redis Cluster
//!
//! The scripts address a session's rotation target and its subject index
//! by name, which Redis Cluster does not allow across slots; this store is
//! for a single Redis (or a primary with replicas) for now.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod connection;
#[cfg(feature = "refresh")]
mod refresh;
#[cfg(feature = "revocation")]
mod revocation;
#[cfg(feature = "sessions")]
mod session;

pub use connection::RedisOptions;
#[cfg(feature = "sessions")]
pub use portcullis_session::SessionStore;
#[cfg(feature = "refresh")]
pub use refresh::RedisRefreshStore;
#[cfg(feature = "revocation")]
pub use revocation::{
    FeedLossPolicy, MirrorStats, RedisRevocationStore, ReplicatedRevocationStore, ReplicationOptions,
};
#[cfg(feature = "sessions")]
pub use session::RedisSessionStore;
