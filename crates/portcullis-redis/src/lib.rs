//! Redis implementations of the Portcullis stores.
//!
//! - [`RedisSessionStore`]: a [`SessionStore`] for `SessionLayer`, so several
//!   instances share sessions.
//! - [`ReplicatedRevocationStore`]: revocations shared through Redis and
//!   checked against a local mirror on every node (no round trip per
//!   request); [`RedisRevocationStore`] is its writer, asked per check.
//! - [`RedisRefreshStore`]: refresh-token families, rotated atomically.
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

mod refresh;
mod revocation;
mod session;

pub use portcullis_session::SessionStore;
pub use refresh::RedisRefreshStore;
pub use revocation::{
    FeedLossPolicy, MirrorStats, RedisRevocationStore, ReplicatedRevocationStore, ReplicationOptions,
};
pub use session::{RedisOptions, RedisSessionStore};
