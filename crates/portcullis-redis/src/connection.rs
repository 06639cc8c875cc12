//! What every Redis store shares: its options and how it connects.

use std::time::Duration;

use portcullis_core::{StoreError, StoreKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Connection options of the Redis stores.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key the store writes (default `portcullis:`).
    pub prefix: String,
    /// How long a command may take before the request gets a 503
    /// (default 1 s).
    pub response_timeout: Duration,
    /// How long a (re)connection attempt may take (default 1 s).
    pub connection_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "portcullis:".into(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
        }
    }
}

/// The one way every store connects: a reconnecting connection with the
/// options' timeouts. While Redis is down, commands fail fast (a 503) and
/// the manager reconnects in the background. A failure to connect now is
/// `store`'s `Unavailable` error.
#[cfg_attr(
    not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
    allow(dead_code)
)]
pub(crate) async fn connect(
    url: &str,
    options: &RedisOptions,
    store: StoreKind,
) -> Result<ConnectionManager, StoreError> {
    let unavailable = |error: redis::RedisError| StoreError::unavailable(store, error);
    let client = redis::Client::open(url).map_err(unavailable)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(options.response_timeout))
        .set_connection_timeout(Some(options.connection_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(unavailable)
}
