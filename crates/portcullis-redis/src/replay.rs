//! Single-use identifiers in Redis, shared by every node: `SET … NX PXAT`.

use std::sync::Arc;
use std::time::SystemTime;

use portcullis_core::{ReplayCache, StoreError, StoreFuture, StoreKind, epoch_millis};
use redis::AsyncCommands;

use crate::connection::{Connection, RedisOptions, RedisServers, connect};

/// A [`ReplayCache`] in Redis (one node, a Cluster or Sentinel): an OIDC
/// login's `state` and a logout token's `jti` count once across every
/// node. Each identifier is one key (`{prefix}replay:{namespace}:{id}`)
/// that expires with it.
///
/// ```no_run
/// use std::time::{Duration, SystemTime};
/// use portcullis_core::ReplayCache;
/// use portcullis_redis::RedisReplayCache;
///
/// # async fn demo() -> Result<(), portcullis_core::StoreError> {
/// let cache = RedisReplayCache::connect("redis://127.0.0.1:6379").await?;
/// let until = SystemTime::now() + Duration::from_secs(120);
/// assert!(cache.first_use("oidc-logout-jti", "abc", until).await?);
/// assert!(!cache.first_use("oidc-logout-jti", "abc", until).await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayCache {
    connection: Connection,
    options: Arc<RedisOptions>,
}

impl std::fmt::Debug for RedisReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayCache")
            .field("prefix", &self.options.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayCache {
    /// Connects to one Redis at `url`, failing if it cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `servers` with explicit options.
    pub async fn connect_with(servers: impl Into<RedisServers>, options: RedisOptions) -> Result<Self, StoreError> {
        let connection = connect(&servers.into(), &options, StoreKind::Replay, None).await?;
        Ok(Self {
            connection,
            options: Arc::new(options),
        })
    }
}

impl ReplayCache for RedisReplayCache {
    fn first_use<'a>(&'a self, namespace: &'a str, id: &'a str, until: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            // Identifiers come from clients: bounded, and never part of a
            // hash tag (a `{` in one would pick the slot).
            if id.len() > 512 || namespace.len() > 64 {
                return Ok(false);
            }
            let key = format!(
                "{}replay:{namespace}:{}",
                self.options.prefix,
                id.replace(['{', '}'], "_")
            );
            let until_ms = epoch_millis(until).max(epoch_millis(SystemTime::now()) + 1);
            let mut connection = self.connection.clone();
            let set: Option<String> = connection
                .set_options(
                    &key,
                    1,
                    redis::SetOptions::default()
                        .conditional_set(redis::ExistenceCheck::NX)
                        .with_expiration(redis::SetExpiry::PXAT(until_ms)),
                )
                .await
                .map_err(|error| StoreError::unavailable(StoreKind::Replay, error))?;
            Ok(set.is_some())
        })
    }
}
