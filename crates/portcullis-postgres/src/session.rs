use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{Principal, epoch_millis};
use portcullis_session::{Changes, SessionKey, SessionRecord, SessionStore, StoreError, StoreFuture, StoreKind};
use tokio_postgres::Row;

use crate::session_feed::{CachedReads, Feed, SessionCacheOptions};
use crate::{Pool, PostgresOptions, with_client};
use portcullis_session::CacheStats;

/// Sessions in PostgreSQL, correct by construction:
///
/// - The primary key is the session key (a keyed hash of the id), never
///   the id.
/// - A create is `INSERT … ON CONFLICT DO NOTHING` with a row count check;
///   every later change is `UPDATE … WHERE` or `DELETE`, never an upsert,
///   so a session deleted meanwhile (a logout) stays deleted.
/// - An update merges its keys into the `jsonb` data in the row
///   (`data - removed || set`), so concurrent requests writing different
///   keys keep every write.
/// - A rotation with its grace alias is one transaction that locks the
///   live row first.
/// - Reads filter on both deadlines — the expiry the layer sets from the
///   idle deadline (refreshed with it) and the absolute deadline, which
///   never moves — so nothing depends on the sweep;
///   [`sweep`](PostgresSessionStore::sweep) deletes expired rows in
///   batches that several nodes can run at once (`FOR UPDATE SKIP
///   LOCKED`).
///
/// The idle deadline is refreshed at most once per fraction of the idle
/// window (the layer decides; an ordinary read writes nothing).
///
/// [`with_cache`](PostgresSessionStore::with_cache) puts a bounded local
/// read cache in front (opt in): a trigger (schema migration 4) announces
/// every session row updated or deleted with `NOTIFY`, at commit, and each
/// caching node drops its copy on hearing it; a node that loses its
/// `LISTEN` connection, or hears nothing (not even its own heartbeat) for
/// [`CacheOptions::max_staleness`](portcullis_session::CacheOptions::max_staleness),
/// reads the database until it listens again and has emptied its cache.
#[derive(Clone)]
pub struct PostgresSessionStore {
    pool: Pool,
    sql: Arc<Sql>,
    timeout: Duration,
    cached: Option<Arc<CachedReads>>,
}

impl fmt::Debug for PostgresSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSessionStore").finish_non_exhaustive()
    }
}

/// The statements, with the schema filled in.
struct Sql {
    load: String,
    load_keyed: String,
    create: String,
    update: String,
    resolve_for_update: String,
    delete_row: String,
    insert: String,
    drop_aliases: String,
    alias: String,
    repoint_aliases: String,
    rekey: String,
    delete: String,
    sessions_of: String,
    delete_all_of: String,
    delete_provider_session: String,
    sweep_sessions: String,
    sweep_aliases: String,
}

const COLUMNS: &str = "principal, scopes, created_ms, idle_deadline_ms, absolute_deadline_ms, last_seen_ms, user_agent, \
     data::text, provider_session";

impl Sql {
    fn new(options: &PostgresOptions) -> Self {
        let sessions = options.table("sessions");
        let aliases = options.table("session_aliases");
        // The key a request's key resolves to: the target of its live
        // grace alias, else itself.
        let resolved = format!("coalesce((SELECT target FROM {aliases} WHERE key = $1 AND until_ms > $2), $1)");
        Self {
            load: format!(
                "SELECT {COLUMNS} FROM {sessions} WHERE key = {resolved} AND expires_ms > $2 AND absolute_deadline_ms > $2"
            ),
            // For the cache: the row's own key (another key: found through
            // a grace alias) and when the store forgets it.
            load_keyed: format!(
                "SELECT key, {COLUMNS}, least(expires_ms, absolute_deadline_ms) FROM {sessions} \
                 WHERE key = {resolved} AND expires_ms > $2 AND absolute_deadline_ms > $2"
            ),
            create: format!(
                "INSERT INTO {sessions} (key, principal, scopes, created_ms, idle_deadline_ms, absolute_deadline_ms, \
                 last_seen_ms, user_agent, data, expires_ms, provider_session) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11) ON CONFLICT (key) DO NOTHING"
            ),
            update: format!(
                "UPDATE {sessions} SET data = (data - $3::text[]) || $4::text::jsonb, \
                 idle_deadline_ms = CASE WHEN $5 THEN $6 ELSE idle_deadline_ms END, \
                 last_seen_ms = CASE WHEN $5 THEN $7 ELSE last_seen_ms END, \
                 expires_ms = CASE WHEN $5 THEN $8 ELSE expires_ms END \
                 WHERE key = {resolved} AND expires_ms > $2 AND absolute_deadline_ms > $2"
            ),
            resolve_for_update: format!(
                "SELECT key FROM {sessions} WHERE key = {resolved} AND expires_ms > $2 AND absolute_deadline_ms > $2 \
                 FOR UPDATE"
            ),
            delete_row: format!("DELETE FROM {sessions} WHERE key = $1"),
            insert: format!(
                "INSERT INTO {sessions} (key, principal, scopes, created_ms, idle_deadline_ms, absolute_deadline_ms, \
                 last_seen_ms, user_agent, data, expires_ms, provider_session) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11)"
            ),
            drop_aliases: format!("DELETE FROM {aliases} WHERE key = $1 OR key = $2"),
            alias: format!(
                "INSERT INTO {aliases} (key, target, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET target = excluded.target, until_ms = excluded.until_ms"
            ),
            repoint_aliases: format!("UPDATE {aliases} SET target = $2 WHERE target = $1"),
            // One statement: the row moves under its row lock (a
            // concurrent update either ran first and moved with it, or
            // waits and finds the new key through the alias), its aliases
            // follow it, and a grace alias ($4 > now) takes the old key.
            rekey: format!(
                "WITH moved AS (UPDATE {sessions} SET key = $2 WHERE key = $1 AND expires_ms > $3 \
                 AND absolute_deadline_ms > $3 AND NOT EXISTS (SELECT 1 FROM {sessions} WHERE key = $2) RETURNING key), \
                 repointed AS (UPDATE {aliases} SET target = $2 WHERE target = $1 AND EXISTS (SELECT 1 FROM moved)), \
                 alias AS (INSERT INTO {aliases} (key, target, until_ms) SELECT $1, $2, $4 FROM moved WHERE $4 > $3 \
                 ON CONFLICT (key) DO UPDATE SET target = excluded.target, until_ms = excluded.until_ms) \
                 SELECT count(*) FROM moved"
            ),
            delete: format!(
                "WITH target AS (SELECT {resolved} AS key), \
                 gone AS (DELETE FROM {sessions} WHERE key = (SELECT key FROM target)) \
                 DELETE FROM {aliases} WHERE key = $1 OR target = (SELECT key FROM target)"
            ),
            sessions_of: format!(
                "SELECT key, {COLUMNS} FROM {sessions} WHERE principal = $1 AND expires_ms > $2 \
                 AND absolute_deadline_ms > $2 ORDER BY created_ms"
            ),
            delete_all_of: format!(
                "WITH gone AS (DELETE FROM {sessions} WHERE principal = $1 RETURNING key, expires_ms), \
                 aliases AS (DELETE FROM {aliases} WHERE target IN (SELECT key FROM gone)) \
                 SELECT count(*) FROM gone WHERE expires_ms > $2"
            ),
            delete_provider_session: format!(
                "WITH gone AS (DELETE FROM {sessions} WHERE provider_session = $1 RETURNING key, expires_ms, \
                 absolute_deadline_ms), \
                 aliases AS (DELETE FROM {aliases} WHERE target IN (SELECT key FROM gone)) \
                 SELECT key, expires_ms > $2 AND absolute_deadline_ms > $2 FROM gone"
            ),
            sweep_sessions: format!(
                "DELETE FROM {sessions} WHERE key IN \
                 (SELECT key FROM {sessions} WHERE expires_ms <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            sweep_aliases: format!(
                "DELETE FROM {aliases} WHERE key IN \
                 (SELECT key FROM {aliases} WHERE until_ms <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}

fn now_ms() -> i64 {
    ms_i64(epoch_millis(SystemTime::now()))
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn corrupt(what: impl fmt::Display) -> StoreError {
    StoreError::corrupt(StoreKind::Session, what)
}

/// The row's values, bound in the order of the insert statements.
struct Values {
    principal: Option<String>,
    scopes: String,
    created: i64,
    idle: i64,
    absolute: i64,
    seen: i64,
    user_agent: Option<String>,
    data: String,
    expires: i64,
    provider_session: Option<String>,
}

impl Values {
    /// The insert statements' parameters, for the row under `key`.
    fn params<'a>(&'a self, key: &'a String) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 11] {
        [
            key,
            &self.principal,
            &self.scopes,
            &self.created,
            &self.idle,
            &self.absolute,
            &self.seen,
            &self.user_agent,
            &self.data,
            &self.expires,
            &self.provider_session,
        ]
    }

    fn of(record: &SessionRecord, ttl: Duration) -> Self {
        Self {
            principal: record.principal.as_ref().map(Principal::key),
            scopes: serde_json::to_string(&record.scopes).unwrap_or_else(|_| "[]".into()),
            created: ms_i64(record.created_ms),
            idle: ms_i64(record.idle_deadline_ms),
            absolute: ms_i64(record.absolute_deadline_ms),
            seen: ms_i64(record.last_seen_ms),
            user_agent: record.user_agent.clone(),
            data: serde_json::to_string(&record.data).unwrap_or_else(|_| "{}".into()),
            expires: now_ms().saturating_add(duration_ms(ttl)),
            provider_session: record.provider_session_key(),
        }
    }
}

/// A record from the columns of [`COLUMNS`], starting at `first`.
fn record_of(row: &Row, first: usize) -> Result<SessionRecord, StoreError> {
    let number = |index: usize, name: &str| -> Result<u64, StoreError> {
        let value: i64 = row
            .try_get(first + index)
            .map_err(|_| corrupt(format!("column {name}")))?;
        u64::try_from(value).map_err(|_| corrupt(format!("column {name}")))
    };
    let mut record = SessionRecord::default();
    let principal: Option<String> = row.try_get(first).map_err(|_| corrupt("column principal"))?;
    record.principal = match principal {
        Some(key) => Some(Principal::from_key(&key).ok_or_else(|| corrupt("column principal"))?),
        None => None,
    };
    let scopes: String = row.try_get(first + 1).map_err(|_| corrupt("column scopes"))?;
    record.scopes = serde_json::from_str(&scopes).map_err(|_| corrupt("column scopes"))?;
    record.created_ms = number(2, "created_ms")?;
    record.idle_deadline_ms = number(3, "idle_deadline_ms")?;
    record.absolute_deadline_ms = number(4, "absolute_deadline_ms")?;
    record.last_seen_ms = number(5, "last_seen_ms")?;
    record.user_agent = row.try_get(first + 6).map_err(|_| corrupt("column user_agent"))?;
    let data: String = row.try_get(first + 7).map_err(|_| corrupt("column data"))?;
    record.data = serde_json::from_str::<BTreeMap<String, String>>(&data).map_err(|_| corrupt("column data"))?;
    // Stored as the (issuer, sid) index key; the issuer is the principal's.
    let provider_session: Option<String> = row.try_get(first + 8).map_err(|_| corrupt("column provider_session"))?;
    record.provider_session = match provider_session {
        Some(key) => Some(
            Principal::from_key(&key)
                .ok_or_else(|| corrupt("column provider_session"))?
                .subject()
                .to_owned(),
        ),
        None => None,
    };
    Ok(record)
}

impl PostgresSessionStore {
    /// Sessions on `pool` (from [`connect`](crate::connect)), in the
    /// options' schema (apply it first with [`migrate`](crate::migrate)).
    pub fn new(pool: Pool, options: &PostgresOptions) -> Self {
        Self {
            pool,
            sql: Arc::new(Sql::new(options)),
            timeout: options.statement_timeout,
            cached: None,
        }
    }

    /// This store with the local read cache in front (see the type's
    /// documentation): LISTENs on `url` (or the options' `feed_url`) before
    /// it returns, and follows the feed in a task on the current tokio
    /// runtime for as long as a clone of the store lives. `options` are
    /// the ones the store was made with.
    ///
    /// ```no_run
    /// use portcullis_postgres::{PostgresOptions, PostgresSessionStore, SessionCacheOptions};
    ///
    /// # async fn demo() -> Result<(), portcullis_session::StoreError> {
    /// let url = "postgres://app@127.0.0.1/app";
    /// let options = PostgresOptions::default();
    /// let pool = portcullis_postgres::connect(url, &options)?;
    /// portcullis_postgres::migrate(&pool, &options).await?;
    /// let store = PostgresSessionStore::new(pool, &options)
    ///     .with_cache(url, &options, SessionCacheOptions::default())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_cache(
        mut self,
        url: &str,
        options: &PostgresOptions,
        cache_options: SessionCacheOptions,
    ) -> Result<Self, StoreError> {
        let cache = Arc::new(portcullis_session::SessionCache::new(cache_options.cache));
        let feed = Feed {
            url: cache_options.feed_url.unwrap_or_else(|| url.to_owned()),
            options: options.clone(),
            heartbeat: cache_options.heartbeat,
            pool: self.pool.clone(),
        };
        let cached = feed
            .start(cache)
            .await
            .map_err(|error| StoreError::unavailable(StoreKind::Session, format!("session cache feed: {error}")))?;
        self.cached = Some(Arc::new(cached));
        Ok(self)
    }

    /// The local cache's counters and health, when it is on.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cached.as_ref().map(|cached| cached.cache.stats())
    }

    /// Drops this node's copy of `key` (a write to it, whatever its
    /// outcome).
    fn forget(&self, key: &SessionKey) {
        if let Some(cached) = &self.cached {
            cached.cache.invalidate(key);
        }
    }

    /// [`SessionStore::rotate`] in one transaction (the cache is told
    /// afterwards).
    async fn rotate_rows(
        &self,
        old: String,
        new: String,
        values: Values,
        grace: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql.clone();
        with_client(&self.pool, self.timeout, StoreKind::Session, |mut client| async move {
            let transaction = client.transaction().await?;
            let now = now_ms();
            // The live record `old` resolves to, locked: a logout
            // meanwhile either finished (no row: nothing is written) or
            // waits for us.
            let Some(live) = transaction.query_opt(&sql.resolve_for_update, &[&old, &now]).await? else {
                return Ok(false);
            };
            let live: String = live.get(0);
            transaction.execute(&sql.delete_row, &[&live]).await?;
            transaction.execute(&sql.insert, &values.params(&new)).await?;
            transaction.execute(&sql.drop_aliases, &[&old, &live]).await?;
            if let Some(grace) = grace {
                let until = now.saturating_add(duration_ms(grace));
                for key in [&old, &live] {
                    transaction.execute(&sql.alias, &[key, &new, &until]).await?;
                }
            }
            // Any other alias of the old record follows it: one live
            // session, never two.
            transaction.execute(&sql.repoint_aliases, &[&live, &new]).await?;
            transaction.commit().await?;
            Ok(true)
        })
        .await
    }

    /// A read for the cache: the record, and how long the store keeps it,
    /// or `None` for a record not to cache (found through an alias).
    async fn load_for_cache(
        &self,
        key: &SessionKey,
    ) -> Result<(Option<Arc<SessionRecord>>, Option<Duration>), StoreError> {
        let hex = key.to_hex();
        let now = now_ms();
        let hex_ref = &hex;
        let row = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
            let statement = client.prepare_cached(&self.sql.load_keyed).await?;
            client.query_opt(&statement, &[hex_ref, &now]).await
        })
        .await?;
        let Some(row) = row else {
            return Ok((None, None));
        };
        let own: String = row.try_get(0).map_err(|_| corrupt("column key"))?;
        let record = Arc::new(record_of(&row, 1)?);
        let until: i64 = row.try_get(10).map_err(|_| corrupt("column expires_ms"))?;
        let kept_for = Duration::from_millis(u64::try_from(until.saturating_sub(now)).unwrap_or(0));
        Ok((Some(record), (own == hex).then_some(kept_for)))
    }

    /// Deletes up to `batch` expired sessions and `batch` expired grace
    /// aliases; returns how many rows went. Several nodes may sweep at
    /// once: each skips the rows another is deleting.
    pub async fn sweep(&self, batch: i64) -> Result<u64, StoreError> {
        let sql = self.sql.clone();
        with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
            let now = now_ms();
            let sessions = client.execute(&sql.sweep_sessions, &[&now, &batch]).await?;
            let aliases = client.execute(&sql.sweep_aliases, &[&now, &batch]).await?;
            Ok(sessions + aliases)
        })
        .await
    }
}

impl SessionStore for PostgresSessionStore {
    fn load(&self, key: &SessionKey) -> StoreFuture<'_, Option<Arc<SessionRecord>>> {
        if let Some(cached) = &self.cached {
            let key = *key;
            return Box::pin(async move {
                if let Some(hit) = cached.cache.get(&key) {
                    return Ok(Some(hit));
                }
                let ticket = cached.cache.begin_load(&key);
                let loaded = self.load_for_cache(&key).await;
                match &loaded {
                    Ok((Some(record), Some(kept_for))) => cached.cache.finish_load(ticket, Some((record, *kept_for))),
                    _ => cached.cache.finish_load(ticket, None),
                }
                loaded.map(|(record, _)| record)
            });
        }
        let key = key.to_hex();
        Box::pin(async move {
            let row = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.load).await?;
                client.query_opt(&statement, &[&key, &now_ms()]).await
            })
            .await?;
            row.map(|row| record_of(&row, 0).map(Arc::new)).transpose()
        })
    }

    fn create(&self, key: &SessionKey, record: &SessionRecord, ttl: Duration) -> StoreFuture<'_, ()> {
        let key = key.to_hex();
        let values = Values::of(record, ttl);
        Box::pin(async move {
            let inserted = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.create).await?;
                client.execute(&statement, &values.params(&key)).await
            })
            .await?;
            if inserted == 1 {
                Ok(())
            } else {
                // 240 random bits never collide: a second create of one key
                // is a bug, and it must not overwrite the first.
                Err(corrupt("a session with this key already exists"))
            }
        })
    }

    fn update(&self, key: &SessionKey, changes: &Changes) -> StoreFuture<'_, bool> {
        let session_key = *key;
        let key = key.to_hex();
        let removed: Vec<String> = changes.removed.clone();
        let set = serde_json::to_string(&changes.set).unwrap_or_else(|_| "{}".into());
        let touch = changes.touch;
        Box::pin(async move {
            let updated = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.update).await?;
                let (touched, idle, seen, expires) = match touch {
                    Some(touch) => (
                        true,
                        ms_i64(touch.idle_deadline_ms),
                        ms_i64(touch.last_seen_ms),
                        now_ms().saturating_add(duration_ms(touch.ttl)),
                    ),
                    None => (false, 0, 0, 0),
                };
                client
                    .execute(
                        &statement,
                        &[&key, &now_ms(), &removed, &set, &touched, &idle, &seen, &expires],
                    )
                    .await
            })
            .await;
            self.forget(&session_key);
            Ok(updated? == 1)
        })
    }

    fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        record: &SessionRecord,
        ttl: Duration,
        grace: Option<Duration>,
    ) -> StoreFuture<'_, bool> {
        let (old_key, new_key) = (*old, *new);
        let (old, new) = (old.to_hex(), new.to_hex());
        let values = Values::of(record, ttl);
        Box::pin(async move {
            let rotated = self.rotate_rows(old, new, values, grace).await;
            self.forget(&old_key);
            self.forget(&new_key);
            rotated
        })
    }

    fn rekey(&self, old: &SessionKey, new: &SessionKey, grace: Option<Duration>) -> StoreFuture<'_, bool> {
        let (old_key, new_key) = (*old, *new);
        let (old, new) = (old.to_hex(), new.to_hex());
        Box::pin(async move {
            if old == new {
                return Ok(false);
            }
            let row = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.rekey).await?;
                let now = now_ms();
                let until = grace.map_or(0, |grace| now.saturating_add(duration_ms(grace)));
                client.query_one(&statement, &[&old, &new, &now, &until]).await
            })
            .await;
            self.forget(&old_key);
            self.forget(&new_key);
            let moved: i64 = row?.try_get(0).map_err(|_| corrupt("count"))?;
            Ok(moved == 1)
        })
    }

    fn delete(&self, key: &SessionKey) -> StoreFuture<'_, ()> {
        let session_key = *key;
        let key = key.to_hex();
        Box::pin(async move {
            let deleted = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.delete).await?;
                client.execute(&statement, &[&key, &now_ms()]).await
            })
            .await;
            self.forget(&session_key);
            deleted?;
            Ok(())
        })
    }

    fn sessions_of(&self, principal: &Principal) -> StoreFuture<'_, Vec<(SessionKey, SessionRecord)>> {
        let principal = principal.key();
        Box::pin(async move {
            let rows = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.sessions_of).await?;
                client.query(&statement, &[&principal, &now_ms()]).await
            })
            .await?;
            rows.iter()
                .map(|row| {
                    let key: String = row.try_get(0).map_err(|_| corrupt("column key"))?;
                    let key = SessionKey::from_hex(&key).ok_or_else(|| corrupt("column key"))?;
                    Ok((key, record_of(row, 1)?))
                })
                .collect()
        })
    }

    fn delete_all_of(&self, principal: &Principal) -> StoreFuture<'_, usize> {
        let principal = principal.key();
        Box::pin(async move {
            let principal_ref = &principal;
            let row = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                let statement = client.prepare_cached(&self.sql.delete_all_of).await?;
                client.query_one(&statement, &[principal_ref, &now_ms()]).await
            })
            .await;
            if let Some(cached) = &self.cached {
                cached.cache.invalidate_principal(&principal);
            }
            let ended: i64 = row?.try_get(0).map_err(|_| corrupt("count"))?;
            Ok(usize::try_from(ended).unwrap_or(0))
        })
    }

    fn delete_provider_session(&self, issuer: &str, session: &str) -> StoreFuture<'_, usize> {
        let index_key = portcullis_session::provider_session_key(issuer, session);
        Box::pin(async move {
            let mut ended = 0;
            // Twice: a rotation this statement waited for (it holds the
            // row lock) commits a new row its snapshot cannot see; the
            // second statement, with a new snapshot, does.
            for _ in 0..2 {
                let index_key = &index_key;
                let rows = with_client(&self.pool, self.timeout, StoreKind::Session, |client| async move {
                    let statement = client.prepare_cached(&self.sql.delete_provider_session).await?;
                    client.query(&statement, &[index_key, &now_ms()]).await
                })
                .await?;
                for row in &rows {
                    let key: String = row.try_get(0).map_err(|_| corrupt("column key"))?;
                    if let Some(key) = SessionKey::from_hex(&key) {
                        self.forget(&key);
                    }
                    let live: bool = row.try_get(1).map_err(|_| corrupt("liveness"))?;
                    ended += usize::from(live);
                }
            }
            Ok(ended)
        })
    }
}
