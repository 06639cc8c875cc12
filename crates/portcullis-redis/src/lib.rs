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
//! Every store runs on one Redis, on a Redis Cluster, or on the primary a
//! set of Sentinels names ([`RedisServers`]), with the same guarantees.
//! The client is `redis` 1.x: on one node its `ConnectionManager`, on a
//! Cluster its cluster connection (which follows `MOVED`/`ASK`, slot
//! migrations and failovers), on Sentinel a connection that asks the
//! Sentinels again after a failover. Each reconnects by itself after an
//! outage, so the layer recovers without an application restart; while
//! Redis is down, commands fail within the configured timeouts (a 503).
//! We chose `redis` over `fred` for its smaller build and because it gives
//! exactly the behaviour we need, with per-command timeouts we set.
//!
//! Every multi-step change is one Lua script (atomic on the server, one
//! round trip); a read-only request costs one round trip. Scripts are
//! called by hash and sent again after `NOSCRIPT` (a restarted or newly
//! promoted node).
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
//! Every key a script touches is passed in `KEYS`, and the keys of one
//! script share a hash slot: everything of one principal (their
//! sessions, the index of them, their refresh families, their "log out
//! everywhere" generation) lives under the hash tag `{prefix + route}`,
//! where the route ([`portcullis_core::Route`]) is carried by the session
//! id and the family id, so a store finds the slot without a lookup. The
//! revocation denylist and its feed share one tag. A test fails the build
//! if a script names a key any other way.
//!
//! ```no_run
//! use portcullis_redis::{RedisOptions, RedisServers, RedisSessionStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = RedisServers::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
//! let store = RedisSessionStore::connect_with(cluster, RedisOptions::default()).await?;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod connection;
#[cfg(feature = "refresh")]
mod refresh;
mod replay;
#[cfg(feature = "revocation")]
mod revocation;
#[cfg(feature = "sessions")]
mod session;
#[cfg(feature = "sessions")]
mod session_feed;

pub use connection::{RedisConnection, RedisOptions, RedisServers, ReplicaAcks};
#[cfg(feature = "revocation")]
pub use portcullis_revocation::FeedLossPolicy;
#[cfg(feature = "revocation")]
pub use portcullis_revocation::store_support::MirrorStats;
#[cfg(feature = "sessions")]
pub use portcullis_session::SessionStore;
#[cfg(feature = "sessions")]
pub use portcullis_session::{CacheOptions, CacheStats};
#[cfg(feature = "refresh")]
pub use refresh::RedisRefreshStore;
pub use replay::RedisReplayCache;
#[cfg(feature = "revocation")]
pub use revocation::{RedisRevocationStore, ReplicatedRevocationStore, ReplicationOptions};
#[cfg(feature = "sessions")]
pub use session::RedisSessionStore;
#[cfg(feature = "sessions")]
pub use session_feed::SessionCacheOptions;

#[cfg(test)]
mod script_keys;
