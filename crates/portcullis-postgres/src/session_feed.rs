//! The invalidation feed of the PostgreSQL session cache: a trigger on the
//! sessions table (schema migration 4) sends `NOTIFY` with the key of
//! every session row updated or deleted, at commit; each caching node
//! LISTENs, drops its copies of what changed, and hears its own heartbeat
//! (a `NOTIFY` it sends) to know the feed is alive.

use std::sync::Arc;
use std::time::Duration;

use portcullis_session::{CacheOptions, FeedHeartbeat, SessionCache};

use crate::{Pool, PostgresOptions};

/// Options of [`PostgresSessionStore::with_cache`](crate::PostgresSessionStore::with_cache).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionCacheOptions {
    /// The cache's bounds and fail policy.
    pub cache: CacheOptions,
    /// How often a node sends its heartbeat on the feed (default 200 ms);
    /// keep it well below [`CacheOptions::max_staleness`].
    pub heartbeat: Duration,
    /// Where to LISTEN, if not the store's own database URL (a pooler
    /// that does not pass `LISTEN` through, a proxy).
    pub feed_url: Option<String>,
}

impl Default for SessionCacheOptions {
    fn default() -> Self {
        Self {
            cache: CacheOptions::default(),
            heartbeat: Duration::from_millis(200),
            feed_url: None,
        }
    }
}

/// The channel the trigger notifies: `portcullis_sessions_{schema}`.
pub(crate) fn channel(options: &PostgresOptions) -> String {
    format!("portcullis_sessions_{}", options.schema)
}

/// A store's cache with the task that keeps it current (stopped when the
/// last clone of the store goes).
pub(crate) struct CachedReads {
    pub(crate) cache: Arc<SessionCache>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CachedReads {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A LISTEN connection whose notifications go to `sender`.
async fn listen(
    url: &str,
    options: &PostgresOptions,
    channel: &str,
    sender: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    crate::listen(url, options, channel, move |payload| {
        sender.send(payload.to_owned()).is_ok()
    })
    .await
}

/// The feed's settings.
pub(crate) struct Feed {
    pub(crate) url: String,
    pub(crate) options: PostgresOptions,
    pub(crate) heartbeat: Duration,
    /// Sends the heartbeat (the store's own pool: a heartbeat heard proves
    /// the path a write's notification takes).
    pub(crate) pool: Pool,
}

impl Feed {
    /// LISTENs now (the store is not ready without its feed), then follows
    /// the feed in a task for as long as the returned handle lives.
    pub(crate) async fn start(self, cache: Arc<SessionCache>) -> Result<CachedReads, String> {
        let channel = channel(&self.options);
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let first = listen(&self.url, &self.options, &channel, sender).await?;
        let task = tokio::spawn(self.run(channel, first, receiver, cache.clone()));
        Ok(CachedReads { cache, task })
    }

    async fn run(
        self,
        channel: String,
        first: (tokio_postgres::Client, tokio::task::JoinHandle<()>),
        first_receiver: tokio::sync::mpsc::UnboundedReceiver<String>,
        cache: Arc<SessionCache>,
    ) {
        let heartbeat = FeedHeartbeat::new();
        let mut listening = Some((first, first_receiver));
        let mut backoff = Duration::from_millis(50);
        loop {
            let ((client, driver), receiver) = match listening.take() {
                Some(live) => live,
                None => {
                    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                    match listen(&self.url, &self.options, &channel, sender).await {
                        Ok(live) => (live, receiver),
                        Err(_) => {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                            continue;
                        }
                    }
                }
            };
            backoff = Duration::from_millis(50);
            // Listening: whatever changed before is unknown; start empty.
            cache.feed_following();
            tracing::info!(target: "portcullis::audit", layer = "session", "session cache feed followed; cache emptied");
            self.follow(receiver, &channel, &cache, &heartbeat).await;
            cache.feed_lost();
            tracing::warn!(target: "portcullis::audit", layer = "session", "session cache feed lost; reads go to PostgreSQL");
            drop(client);
            driver.abort();
        }
    }

    /// Applies notifications and sends heartbeats until the connection
    /// ends or falls silent past the cache's bound.
    async fn follow(
        &self,
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<String>,
        channel: &str,
        cache: &SessionCache,
        heartbeat: &FeedHeartbeat,
    ) {
        let silence_bound = u64::try_from(cache.options().max_staleness.as_millis()).unwrap_or(u64::MAX);
        let mut next_beat = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout_at(next_beat, receiver.recv()).await {
                Ok(Some(payload)) => cache.apply_feed_message(&payload, heartbeat),
                // The connection's driver ended: the connection is lost.
                Ok(None) => return,
                Err(_) => {
                    next_beat += self.heartbeat;
                    if cache.stats().feed_silence_ms > silence_bound {
                        // A half-open connection: nothing arrives, nothing fails.
                        return;
                    }
                    let (pool, channel, ping) = (self.pool.clone(), channel.to_owned(), heartbeat.message());
                    let timeout = self.options.statement_timeout;
                    // Not awaited here: a slow database must not hold up the feed.
                    tokio::spawn(async move {
                        let send = async {
                            let client = pool.get().await.ok()?;
                            client
                                .execute("SELECT pg_notify($1, $2)", &[&channel, &ping])
                                .await
                                .ok()
                        };
                        let _ = tokio::time::timeout(timeout, send).await;
                    });
                }
            }
        }
    }
}
