//! Revocations in Redis: a store that asks Redis on every check, and the
//! replicated store that keeps a local mirror on every node.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::Identity;
use portcullis_core::audit::TARGET as AUDIT;
use portcullis_core::{StoreError, StoreFuture, StoreKind, epoch_millis};
use portcullis_revocation::store_support::{Mirror, MirrorStats, TokenFacts, decode_revocation, encode_target};
use portcullis_revocation::{FeedLossPolicy, Revocation, RevocationStore, Revoked, Target};
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};

use crate::connection::{Call, Connection, Lua, RedisOptions, RedisServers, connect};

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::unavailable(StoreKind::Revocation, error)
}

fn now_ms() -> u64 {
    epoch_millis(SystemTime::now())
}

/// How many feed entries Redis keeps for nodes catching up (older ones
/// are trimmed; a node that missed more resynchronizes from the hash).
const FEED_LENGTH: u32 = 100_000;

// KEYS = entries, expiry, feed; ARGV = field, cutoff, expires_ms, now_ms, feed length
const REVOKE: &str = r"
local cutoff, expires = tonumber(ARGV[2]), tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local c, e = string.match(old, '^(%d+):(%d+)$')
  if c then cutoff = math.max(cutoff, tonumber(c)); expires = math.max(expires, tonumber(e)) end
end
local value = string.format('%.0f:%.0f', cutoff, expires)
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('ZADD', KEYS[2], expires, ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'f', ARGV[1], 'v', value)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 100)
for _, field in ipairs(stale) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
return 1";

/// Every script of the revocation store, for the static key check.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const SCRIPTS: &[(&str, &str)] = &[("revoke", REVOKE)];

/// Revocations in Redis, asked on every check (one `HMGET` round trip).
///
/// Layout, all under the one hash tag `{prefix + "rev"}` (one slot on a
/// Cluster: one shard's throughput is plenty for revocations, and a
/// revocation is one atomic script): `entries` is a hash from a target
/// ([`encode_target`]) to `cutoff:expires`; `expiry` a sorted set of the
/// same targets by expiry (expired ones are dropped as new revocations
/// arrive); `feed` a stream of every revocation, which mirrors follow. A
/// revocation is a durable write ([`RedisOptions::replica_acks`]).
///
/// For the per-request check prefer [`ReplicatedRevocationStore`]: this
/// store is its writer, and the baseline the benchmarks compare it with.
#[derive(Clone)]
pub struct RedisRevocationStore {
    connection: Connection,
    keys: Arc<Keys>,
    options: Arc<RedisOptions>,
}

struct Keys {
    entries: String,
    expiry: String,
    feed: String,
}

impl fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("entries", &self.keys.entries)
            .finish_non_exhaustive()
    }
}

fn script() -> &'static Lua {
    static SCRIPT: std::sync::OnceLock<Lua> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Lua::new(REVOKE))
}

impl RedisRevocationStore {
    /// Connects to one Redis at `url`, failing if it cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `servers` with explicit options.
    pub async fn connect_with(servers: impl Into<RedisServers>, options: RedisOptions) -> Result<Self, StoreError> {
        let servers = servers.into();
        let connection = connect(&servers, &options, StoreKind::Revocation, None).await?;
        let tag = options.shared_tag("rev");
        let legacy = format!("{}rev:entries", options.prefix);
        let store = Self {
            connection,
            keys: Arc::new(Keys {
                entries: format!("{tag}entries"),
                expiry: format!("{tag}expiry"),
                feed: format!("{tag}feed"),
            }),
            options: Arc::new(options),
        };
        if matches!(servers, RedisServers::Single(_)) {
            store.adopt_legacy_entries(&legacy).await?;
        }
        Ok(store)
    }

    /// Revocations written by a version before the Cluster-safe layout
    /// (`{prefix}rev:entries`, one node only) are merged into this one at
    /// connect, so an upgrade never accepts a token that was revoked
    /// before it. Merging is idempotent and the old hash is left for nodes
    /// still on the old version; sessions and refresh families of the old
    /// layout are not carried over (an upgrade logs their holders out once,
    /// the safe direction).
    async fn adopt_legacy_entries(&self, legacy: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let flat: Vec<(String, String)> = connection.hgetall(legacy).await.map_err(unavailable)?;
        let now = now_ms();
        for revocation in flat
            .iter()
            .filter_map(|(target, value)| decode_revocation(target, value))
            .filter(|revocation| revocation.expires_ms > now)
        {
            self.revoke(revocation).await?;
        }
        Ok(())
    }

    async fn all(&self) -> Result<Vec<Revocation>, StoreError> {
        let mut connection = self.connection.clone();
        let flat: Vec<(String, String)> = connection.hgetall(&self.keys.entries).await.map_err(unavailable)?;
        let now = now_ms();
        Ok(flat
            .iter()
            .filter_map(|(target, value)| decode_revocation(target, value))
            .filter(|revocation| revocation.expires_ms > now)
            .collect())
    }
}

fn parse_value(value: Option<&str>) -> Option<(u64, u64)> {
    let (cutoff, expires) = value?.split_once(':')?;
    Some((cutoff.parse().ok()?, expires.parse().ok()?))
}

impl RevocationStore for RedisRevocationStore {
    fn revoke(&self, revocation: Revocation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let _: i64 = Call::new(script())
                .key(&self.keys.entries)
                .key(&self.keys.expiry)
                .key(&self.keys.feed)
                .arg(encode_target(&revocation.target))
                .arg(revocation.cutoff_secs)
                .arg(revocation.expires_ms)
                .arg(now_ms())
                .arg(FEED_LENGTH)
                .run_durable(&mut connection, self.options.replica_acks)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn check(&self, identity: Identity) -> StoreFuture<'_, Option<Revoked>> {
        Box::pin(async move {
            let Some(facts) = TokenFacts::of(&identity) else {
                return Ok(None);
            };
            let token = match (facts.issuer, facts.jti) {
                (Some(issuer), Some(jti)) => encode_target(&Target::Token {
                    issuer: issuer.to_owned(),
                    jti: jti.to_owned(),
                }),
                // No field can match it; keeps the reply's shape fixed.
                _ => String::new(),
            };
            let subject = encode_target(&Target::Subject(facts.principal.clone()));
            let session = match facts.session_id() {
                Ok(sid) => sid.map(|sid| encode_target(&Target::Session(sid))).unwrap_or_default(),
                Err(unreadable) => return Ok(Some(unreadable)),
            };
            let mut connection = self.connection.clone();
            let values: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&self.keys.entries)
                .arg(token)
                .arg(subject)
                .arg(session)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            let now = now_ms();
            let cut = |value: Option<&String>| {
                parse_value(value.map(String::as_str))
                    .is_some_and(|(cutoff, expires)| facts.cut_off_by(cutoff, expires, now))
            };
            if parse_value(values.first().and_then(Option::as_deref)).is_some_and(|(_, expires)| expires > now) {
                return Ok(Some(Revoked::Token));
            }
            if cut(values.get(1).and_then(Option::as_ref)) {
                return Ok(Some(Revoked::Subject));
            }
            if cut(values.get(2).and_then(Option::as_ref)) {
                return Ok(Some(Revoked::Session));
            }
            Ok(None)
        })
    }

    fn entries(&self) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(self.all())
    }
}

/// Options of [`ReplicatedRevocationStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplicationOptions {
    /// Connection options (prefix, timeouts) of the writer.
    pub redis: RedisOptions,
    /// How stale the mirror may get before the policy applies (default 3 s).
    pub max_staleness: Duration,
    /// What to do past it (default fail closed).
    pub policy: FeedLossPolicy,
    /// How long one read of the feed waits for news (default 250 ms): a
    /// heartbeat that bounds how stale a healthy mirror can look.
    pub heartbeat: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        Self {
            redis: RedisOptions::default(),
            max_staleness: Duration::from_secs(3),
            policy: FeedLossPolicy::FailClosed,
            heartbeat: Duration::from_millis(250),
        }
    }
}

struct Shared {
    mirror: Mirror,
    writer: RedisRevocationStore,
    options: ReplicationOptions,
}

/// Revocations shared through Redis, checked against a local mirror: the
/// per-request check is an in-process lookup (no round trip), and a
/// revocation made on any node reaches every node's mirror within
/// milliseconds.
///
/// How: the writer appends every revocation to a Redis stream besides the
/// hash that holds them all. Each node loads the hash at start (before
/// [`start`](ReplicatedRevocationStore::start) returns: a node is not
/// ready without its denylist), then follows the stream with blocking
/// reads. A stream, not pub/sub, because it has no gap: a node reads on
/// from the last entry it saw. After a lost connection (a restart, a
/// Cluster or Sentinel failover) the node reads on from that entry when the
/// stream still holds everything after it; when it does not (trimmed past
/// it, or a new primary that lost writes) it reloads the hash, then
/// follows the stream from its end as it was before the reload, so nothing
/// revoked meanwhile is missed. The mirror merges and never
/// drops an unexpired entry, even one Redis has lost (a restart without
/// persistence).
///
/// Staleness (time since the mirror last heard from Redis; a healthy feed
/// answers every heartbeat) is in [`stats`](ReplicatedRevocationStore::stats),
/// and past `max_staleness` the [`FeedLossPolicy`] applies. Feed loss and
/// recovery are audit events; each applied revocation emits a
/// `portcullis::metrics` event with its propagation delay.
///
/// ```no_run
/// use std::sync::Arc;
/// use portcullis_redis::{ReplicatedRevocationStore, ReplicationOptions};
/// use portcullis_revocation::{RevocationLayer, Revocations};
///
/// # async fn demo() -> Result<(), portcullis_revocation::StoreError> {
/// let store = ReplicatedRevocationStore::start("redis://127.0.0.1:6379", ReplicationOptions::default()).await?;
/// let revocations = Revocations::new(Arc::new(store));
/// let layer = RevocationLayer::new(&revocations);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReplicatedRevocationStore {
    shared: Arc<Shared>,
    _feed: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for ReplicatedRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicatedRevocationStore")
            .field("entries", &self.shared.writer.keys.entries)
            .field("policy", &self.shared.options.policy)
            .finish_non_exhaustive()
    }
}

/// The feed's own connection: its reads block, so it shares nothing.
struct Feed {
    connection: Connection,
    last_id: String,
}

/// A stream entry id, `ms-seq`, as a pair that orders like the stream.
fn entry_id(text: &str) -> Option<(u64, u64)> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Feed {
    async fn connect(servers: &RedisServers, options: &ReplicationOptions) -> Result<Self, StoreError> {
        let connection = connect(
            servers,
            &options.redis,
            StoreKind::Revocation,
            Some(options.heartbeat + options.redis.response_timeout),
        )
        .await?;
        Ok(Self {
            connection,
            last_id: "0-0".into(),
        })
    }

    /// Loads every revocation, remembering where the stream stood first so
    /// that nothing added during the load is missed.
    async fn resync(&mut self, shared: &Shared) -> Result<(), redis::RedisError> {
        let keys = &shared.writer.keys;
        let newest: StreamRangeReply = self.connection.xrevrange_count(&keys.feed, "+", "-", 1).await?;
        self.last_id = newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
        // In batches (HSCAN), so a large denylist never makes one reply
        // outgrow the command timeout. Duplicates merge harmlessly, and an
        // entry added meanwhile is on the stream past `last_id`.
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&keys.entries)
                .arg(cursor)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.connection)
                .await?;
            let now = now_ms();
            for (target, value) in &flat {
                if let Some(revocation) = decode_revocation(target, value) {
                    shared.mirror.denylist.insert(&revocation, now);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        shared.mirror.resynced();
        Ok(())
    }

    /// After a lost connection (a restart, a failover): reads on from the
    /// last entry seen when the stream still holds everything after it,
    /// else resynchronizes from the hash. The stream still holds everything
    /// after that entry exactly when it still holds the entry itself:
    /// trimming drops the oldest entries first. An entry gone — trimmed
    /// past, or never replicated to a new primary, or the stream itself
    /// lost — is a gap. Before any entry was seen, a gap is an entry added
    /// and trimmed since (`entries-added` above the length).
    async fn recover(&mut self, shared: &Shared, last_id: String) -> Result<(), redis::RedisError> {
        self.last_id = last_id;
        let feed = &shared.writer.keys.feed;
        let gap = if entry_id(&self.last_id).is_none_or(|seen| seen == (0, 0)) {
            let info: Result<std::collections::HashMap<String, Value>, redis::RedisError> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(feed)
                .query_async(&mut self.connection)
                .await;
            match info {
                Ok(info) => {
                    let number = |name: &str| {
                        info.get(name)
                            .and_then(|value| redis::from_redis_value_ref::<u64>(value).ok())
                    };
                    number("entries-added") != number("length")
                }
                Err(error) if error.to_string().contains("no such key") => false,
                Err(error) => return Err(error),
            }
        } else {
            let still_there: StreamRangeReply = self
                .connection
                .xrange_count(feed, &self.last_id, &self.last_id, 1)
                .await?;
            still_there.ids.is_empty()
        };
        if gap {
            shared.mirror.found_gap();
            return self.resync(shared).await;
        }
        shared.mirror.caught_up();
        Ok(())
    }

    /// Waits up to one heartbeat for new revocations and applies them.
    async fn follow(&mut self, shared: &Shared) -> Result<(), redis::RedisError> {
        let heartbeat_ms = usize::try_from(shared.options.heartbeat.as_millis()).unwrap_or(usize::MAX);
        let options = StreamReadOptions::default().block(heartbeat_ms).count(1_000);
        let reply: Option<StreamReadReply> = self
            .connection
            .xread_options(&[&shared.writer.keys.feed], &[&self.last_id], &options)
            .await?;
        let now = now_ms();
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in key.ids {
                apply(shared, &entry, now);
                self.last_id = entry.id;
            }
        }
        shared.mirror.heard_from_store();
        Ok(())
    }
}

fn apply(shared: &Shared, entry: &StreamId, now: u64) {
    let field: Option<String> = entry.get("f");
    let value: Option<String> = entry.get("v");
    let Some(revocation) = field.zip(value).and_then(|(f, v)| decode_revocation(&f, &v)) else {
        return;
    };
    // The entry id starts with Redis's clock, in ms, when it was added.
    let added_ms = entry.id.split('-').next().and_then(|ms| ms.parse::<u64>().ok());
    let delay = added_ms.map(|added_ms| Duration::from_millis(now.saturating_sub(added_ms)));
    shared.mirror.applied(&revocation, delay);
}

async fn run_feed(mut feed: Feed, servers: RedisServers, shared: Arc<Shared>) {
    loop {
        if let Err(error) = feed.follow(&shared).await {
            shared.mirror.lost_feed();
            tracing::warn!(target: AUDIT, layer = "revocation", error = %error, "revocation feed lost; reconnecting");
            let last_id = std::mem::take(&mut feed.last_id);
            let mut backoff = Duration::from_millis(50);
            feed = loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                let Ok(mut fresh) = Feed::connect(&servers, &shared.options).await else {
                    continue;
                };
                if fresh.recover(&shared, last_id.clone()).await.is_ok() {
                    break fresh;
                }
            };
            tracing::warn!(target: AUDIT, layer = "revocation", "revocation feed restored; mirror caught up");
        }
    }
}

impl ReplicatedRevocationStore {
    /// Connects, loads every revocation into the local mirror, and starts
    /// following the feed (a task on the current tokio runtime). Fails if
    /// Redis cannot be reached now: a node without its denylist is not
    /// ready.
    pub async fn start(servers: impl Into<RedisServers>, options: ReplicationOptions) -> Result<Self, StoreError> {
        let servers = servers.into();
        let writer = RedisRevocationStore::connect_with(servers.clone(), options.redis.clone()).await?;
        let shared = Arc::new(Shared {
            mirror: Mirror::new(options.max_staleness, options.policy),
            writer,
            options,
        });
        let mut feed = Feed::connect(&servers, &shared.options).await?;
        feed.resync(&shared).await.map_err(unavailable)?;
        let task = tokio::spawn(run_feed(feed, servers, shared.clone()));
        Ok(Self {
            shared,
            _feed: Arc::new(AbortOnDrop(task)),
        })
    }

    /// The mirror's health now.
    pub fn stats(&self) -> MirrorStats {
        self.shared.mirror.stats()
    }
}

impl RevocationStore for ReplicatedRevocationStore {
    fn revoke(&self, revocation: Revocation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // This node sees its own revocation at once, whatever Redis says.
            self.shared.mirror.denylist.insert(&revocation, now_ms());
            self.shared.writer.revoke(revocation).await
        })
    }

    fn check(&self, identity: Identity) -> StoreFuture<'_, Option<Revoked>> {
        Box::pin(std::future::ready(self.shared.mirror.verdict(&identity)))
    }

    fn check_now(&self, identity: &Identity) -> Option<Result<Option<Revoked>, StoreError>> {
        Some(self.shared.mirror.verdict(identity))
    }

    fn entries(&self) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(std::future::ready(Ok(self.shared.mirror.denylist.entries(now_ms()))))
    }
}
