//! The invalidation feed of the Redis session cache: every session write
//! script publishes the key it changed on one channel; each caching node
//! subscribes, drops its copies of what changed, and hears its own
//! heartbeat on the same channel to know the feed is alive.

use std::sync::Arc;
use std::time::Duration;

use portcullis_session::{CacheOptions, FeedHeartbeat, SessionCache};
use redis::AsyncCommands;

use crate::connection::{Connection, RedisServers};

/// Options of [`RedisSessionStore::connect_cached`](crate::RedisSessionStore::connect_cached).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionCacheOptions {
    /// The cache's bounds and fail policy.
    pub cache: CacheOptions,
    /// How often a node publishes its heartbeat on the feed (default
    /// 200 ms); keep it well below [`CacheOptions::max_staleness`].
    pub heartbeat: Duration,
    /// Where to subscribe, if not the servers the store writes to (a
    /// replica, a proxy). Pub/sub messages reach every node of a Cluster
    /// and every replica.
    pub feed: Option<RedisServers>,
}

impl Default for SessionCacheOptions {
    fn default() -> Self {
        Self {
            cache: CacheOptions::default(),
            heartbeat: Duration::from_millis(200),
            feed: None,
        }
    }
}

/// A store's cache with the task that keeps it current (stopped when the
/// last clone of the store goes).
pub(crate) struct CachedReads {
    pub(crate) cache: Arc<SessionCache>,
    task: tokio::task::JoinHandle<()>,
}

impl CachedReads {
    pub(crate) fn new(cache: Arc<SessionCache>, task: tokio::task::JoinHandle<()>) -> Self {
        Self { cache, task }
    }
}

impl Drop for CachedReads {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The channel the store's scripts publish changes on: `{prefix}session-changes`.
pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}session-changes")
}

/// One subscription to the feed, on the first server that takes it.
async fn subscribe(
    servers: &RedisServers,
    channel: &str,
    timeout: Duration,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let clients: Vec<redis::Client> = match servers {
        RedisServers::Single(url) => vec![redis::Client::open(url.as_str())?],
        RedisServers::Cluster(seeds) => seeds
            .iter()
            .map(|seed| redis::Client::open(seed.as_str()))
            .collect::<Result<_, _>>()?,
        RedisServers::Sentinel { sentinels, master } => {
            let mut sentinel = redis::sentinel::SentinelClient::build(
                sentinels.iter().map(String::as_str).collect(),
                master.clone(),
                None,
                redis::sentinel::SentinelServerType::Master,
            )?;
            let primary = tokio::time::timeout(timeout * 2, sentinel.async_get_client())
                .await
                .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
            vec![primary]
        }
    };
    let mut last = None;
    for client in clients {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(error)) => last = Some(error),
            Err(_) => last = Some(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound).into()))
}

/// The feed's state between subscriptions.
pub(crate) struct Feed {
    pub(crate) servers: RedisServers,
    pub(crate) channel: String,
    pub(crate) heartbeat: Duration,
    pub(crate) connect_timeout: Duration,
    /// Publishes the heartbeat (the store's own connection: a heartbeat
    /// heard proves the path a write's invalidation takes).
    pub(crate) publisher: Connection,
}

impl Feed {
    /// Subscribes now (the store is not ready without its feed), then
    /// follows the feed in a task for as long as the returned handle lives.
    pub(crate) async fn start(
        self,
        cache: Arc<SessionCache>,
    ) -> Result<tokio::task::JoinHandle<()>, redis::RedisError> {
        let first = subscribe(&self.servers, &self.channel, self.connect_timeout).await?;
        Ok(tokio::spawn(self.run(first, cache)))
    }

    async fn run(mut self, first: redis::aio::PubSub, cache: Arc<SessionCache>) {
        let heartbeat = FeedHeartbeat::new();
        let mut subscription = Some(first);
        let mut backoff = Duration::from_millis(50);
        loop {
            let pubsub = match subscription.take() {
                Some(pubsub) => pubsub,
                None => match subscribe(&self.servers, &self.channel, self.connect_timeout).await {
                    Ok(pubsub) => pubsub,
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            backoff = Duration::from_millis(50);
            // Subscribed: whatever changed before is unknown; start empty.
            cache.feed_following();
            tracing::info!(target: "portcullis::audit", layer = "session", "session cache feed followed; cache emptied");
            self.follow(pubsub, &cache, &heartbeat).await;
            cache.feed_lost();
            tracing::warn!(target: "portcullis::audit", layer = "session", "session cache feed lost; reads go to Redis");
        }
    }

    /// Applies messages and publishes heartbeats until the subscription
    /// ends or falls silent past the cache's bound.
    async fn follow(&mut self, pubsub: redis::aio::PubSub, cache: &SessionCache, heartbeat: &FeedHeartbeat) {
        let mut messages = pubsub.into_on_message();
        let silence_bound = u64::try_from(cache.options().max_staleness.as_millis()).unwrap_or(u64::MAX);
        let mut next_beat = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout_at(next_beat, next(&mut messages)).await {
                Ok(Some(message)) => {
                    if let Ok(text) = message.get_payload::<String>() {
                        cache.apply_feed_message(&text, heartbeat);
                    }
                }
                // The subscription ended (the connection closed).
                Ok(None) => return,
                Err(_) => {
                    next_beat += self.heartbeat;
                    if cache.stats().feed_silence_ms > silence_bound {
                        // A half-open connection: nothing arrives, nothing fails.
                        return;
                    }
                    let mut publisher = self.publisher.clone();
                    let channel = self.channel.clone();
                    let ping = heartbeat.message();
                    // Not awaited here: a slow publish must not hold up the feed.
                    tokio::spawn(async move {
                        let _: Result<i64, _> = publisher.publish(channel, ping).await;
                    });
                }
            }
        }
    }
}

/// The next item of `stream` (`StreamExt::next`, without the whole of
/// `futures`).
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
