//! Revocations in PostgreSQL, checked against a local mirror on every
//! node: a table with a monotonically increasing sequence, `NOTIFY` as a
//! wake-up only, and each node reading on from the last sequence it saw.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use portcullis_core::audit::TARGET as AUDIT;
use portcullis_core::{Identity, StoreError, StoreFuture, StoreKind, epoch_millis};
use portcullis_revocation::store_support::{Mirror, MirrorStats, decode_target, encode_target};
use portcullis_revocation::{FeedLossPolicy, Revocation, RevocationStore, Revoked};

use crate::{Pool, PostgresOptions, connect, with_client};

/// Options of [`PostgresRevocationStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplicationOptions {
    /// Schema, timeouts and pool of the store.
    pub postgres: PostgresOptions,
    /// How stale the mirror may get before the policy applies (default 3 s).
    pub max_staleness: Duration,
    /// What to do past it (default fail closed), as for the Redis mirror.
    pub policy: FeedLossPolicy,
    /// How often the mirror reads on without a wake-up (default 250 ms): a
    /// heartbeat that bounds how stale a healthy mirror can look.
    pub heartbeat: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        Self {
            postgres: PostgresOptions::default(),
            max_staleness: Duration::from_secs(3),
            policy: FeedLossPolicy::FailClosed,
            heartbeat: Duration::from_millis(250),
        }
    }
}

/// Sequence numbers re-read behind the last one seen on every read: a
/// writer takes its number before it commits, so a number can become
/// visible after a higher one did. Re-reading the latest ones (merging is
/// idempotent) catches such a late commit as long as fewer than this many
/// revocations commit while it is in flight.
const LOOKBACK: i64 = 64;

struct Sql {
    revoke: String,
    sweep: String,
    since: String,
    channel: String,
}

impl Sql {
    fn new(options: &PostgresOptions) -> Self {
        let table = options.table("revocations");
        let sequence = options.table("revocation_seq");
        let clock = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
        Self {
            revoke: format!(
                "WITH up AS (INSERT INTO {table} (target, cutoff_secs, expires_ms, seq, revoked_at_ms) \
                 VALUES ($1, $2, $3, nextval('{sequence}'), {clock}) \
                 ON CONFLICT (target) DO UPDATE SET \
                   cutoff_secs = greatest({table}.cutoff_secs, excluded.cutoff_secs), \
                   expires_ms = greatest({table}.expires_ms, excluded.expires_ms), \
                   seq = excluded.seq, revoked_at_ms = excluded.revoked_at_ms \
                 RETURNING seq) \
                 SELECT pg_notify($4, seq::text) FROM up"
            ),
            sweep: format!(
                "DELETE FROM {table} WHERE target IN \
                 (SELECT target FROM {table} WHERE expires_ms <= $1 LIMIT 100 FOR UPDATE SKIP LOCKED)"
            ),
            since: format!(
                "SELECT target, cutoff_secs, expires_ms, seq, {clock} - revoked_at_ms FROM {table} \
                 WHERE seq > $1 AND expires_ms > $2 ORDER BY seq"
            ),
            channel: format!("portcullis_revocations_{}", options.schema),
        }
    }
}

struct Shared {
    mirror: Mirror,
    pool: Pool,
    sql: Sql,
    options: ReplicationOptions,
    /// The highest sequence number seen.
    last_seq: AtomicI64,
}

/// Revocations shared through PostgreSQL, checked against a local mirror:
/// the per-request check is an in-process lookup (no round trip), and a
/// revocation made on any node reaches every node's mirror within
/// milliseconds.
///
/// How: every revocation is a row with a number from one sequence, and a
/// `NOTIFY` that wakes the other nodes. `NOTIFY` is a wake-up only — it
/// has no history — so each node reads `WHERE seq > last` on every wake-up
/// and every heartbeat, and after a reconnect it simply reads on: nothing
/// committed meanwhile is missed. A node loads every live row before
/// [`start`](PostgresRevocationStore::start) returns (a node is not ready
/// without its denylist). Staleness (time since the database last
/// answered) is in [`stats`](PostgresRevocationStore::stats), and past
/// `max_staleness` the same [`FeedLossPolicy`] as the Redis mirror's
/// applies.
#[derive(Clone)]
pub struct PostgresRevocationStore {
    shared: Arc<Shared>,
    _follower: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for PostgresRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresRevocationStore")
            .field("policy", &self.shared.options.policy)
            .finish_non_exhaustive()
    }
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn now_ms() -> u64 {
    epoch_millis(SystemTime::now())
}

impl Shared {
    /// Reads every row past `last_seq - LOOKBACK` into the mirror.
    async fn read_on(&self) -> Result<(), StoreError> {
        let from = self.last_seq.load(Ordering::Acquire).saturating_sub(LOOKBACK);
        let timeout = self.options.postgres.statement_timeout;
        let rows = with_client(&self.pool, timeout, StoreKind::Revocation, |client| async move {
            let statement = client.prepare_cached(&self.sql.since).await?;
            client.query(&statement, &[&from, &i64_of(now_ms())]).await
        })
        .await?;
        for row in rows {
            let (target, cutoff, expires, seq, age): (String, i64, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let Some(target) = decode_target(&target) else {
                continue;
            };
            let revocation = Revocation {
                target,
                cutoff_secs: u64::try_from(cutoff).unwrap_or(0),
                expires_ms: u64::try_from(expires).unwrap_or(0),
            };
            let fresh = seq > self.last_seq.load(Ordering::Acquire);
            if fresh {
                self.last_seq.fetch_max(seq, Ordering::AcqRel);
                self.mirror.applied(
                    &revocation,
                    Some(Duration::from_millis(u64::try_from(age).unwrap_or(0))),
                );
            } else {
                self.mirror.denylist.insert(&revocation, now_ms());
            }
        }
        self.mirror.heard_from_store();
        Ok(())
    }
}

/// Follows the table: a LISTEN connection wakes it, the heartbeat bounds
/// the wait; a lost connection or a failed read marks the feed lost and
/// reconnects with a backoff, then reads on from the last number seen.
async fn follow(url: String, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let wake = Arc::new(tokio::sync::Notify::new());
        let waker = wake.clone();
        let listener = crate::listen(&url, &shared.options.postgres, &shared.sql.channel, move |_| {
            waker.notify_one();
            true
        })
        .await;
        let Ok((client, driver)) = listener else {
            shared.mirror.lost_feed();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        if shared.read_on().await.is_ok() {
            shared.mirror.caught_up();
            backoff = Duration::from_millis(50);
        }
        loop {
            if driver.is_finished() {
                break;
            }
            let _ = tokio::time::timeout(shared.options.heartbeat, wake.notified()).await;
            if let Err(error) = shared.read_on().await {
                tracing::warn!(target: AUDIT, layer = "revocation", error = %error, "revocation feed lost; reconnecting");
                break;
            }
        }
        shared.mirror.lost_feed();
        drop(client);
        driver.abort();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

impl PostgresRevocationStore {
    /// Connects to `url`, loads every live revocation into the local
    /// mirror, and starts following the table (a task on the current tokio
    /// runtime). Fails if the database cannot be reached now: a node
    /// without its denylist is not ready. Apply the schema first
    /// ([`migrate`](crate::migrate)).
    pub async fn start(url: &str, options: ReplicationOptions) -> Result<Self, StoreError> {
        let pool = connect(url, &options.postgres)?;
        let shared = Arc::new(Shared {
            mirror: Mirror::new(options.max_staleness, options.policy),
            pool,
            sql: Sql::new(&options.postgres),
            options,
            last_seq: AtomicI64::new(0),
        });
        shared.read_on().await?;
        shared.mirror.resynced();
        let follower = tokio::spawn(follow(url.to_owned(), shared.clone()));
        Ok(Self {
            shared,
            _follower: Arc::new(AbortOnDrop(follower)),
        })
    }

    /// The mirror's health now.
    pub fn stats(&self) -> MirrorStats {
        self.shared.mirror.stats()
    }
}

impl RevocationStore for PostgresRevocationStore {
    fn revoke(&self, revocation: Revocation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // This node sees its own revocation at once.
            self.shared.mirror.denylist.insert(&revocation, now_ms());
            let shared = &self.shared;
            let target = encode_target(&revocation.target);
            let timeout = shared.options.postgres.statement_timeout;
            with_client(&shared.pool, timeout, StoreKind::Revocation, |client| async move {
                let statement = client.prepare_cached(&shared.sql.revoke).await?;
                client
                    .query(
                        &statement,
                        &[
                            &target,
                            &i64_of(revocation.cutoff_secs),
                            &i64_of(revocation.expires_ms),
                            &shared.sql.channel,
                        ],
                    )
                    .await?;
                let sweep = client.prepare_cached(&shared.sql.sweep).await?;
                client.execute(&sweep, &[&i64_of(now_ms())]).await
            })
            .await?;
            Ok(())
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
