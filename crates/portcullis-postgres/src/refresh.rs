//! Refresh-token families in PostgreSQL: one row per family, whatever its
//! number of rotations; a spend is one statement (a single-row
//! compare-and-set under the row lock).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{StoreError, StoreFuture, StoreKind, duration_millis};
use portcullis_refresh::{Family, RefreshStore, Spend, SpendRules};
use tokio_postgres::Row;

use crate::{Pool, PostgresOptions, with_client};

/// Refresh-token families in PostgreSQL, so every instance rotates the
/// same tokens. The store never sees a token: a token names its family and
/// its number and carries a MAC, so the row holds the family's id, subject,
/// scopes, deadlines, the live token's number and when it became live. A
/// spend locks the row and decides in one statement, so two instances
/// spending one token at once never both rotate; a reuse revokes the
/// family in the same statement.
#[derive(Clone)]
pub struct PostgresRefreshStore {
    pool: Pool,
    sql: Arc<Sql>,
    timeout: Duration,
}

impl fmt::Debug for PostgresRefreshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresRefreshStore").finish_non_exhaustive()
    }
}

struct Sql {
    create: String,
    spend: String,
    family: String,
    revoke_family: String,
    revoke_subject: String,
}

const FAMILY_COLUMNS: &str = "id, subject, scopes, created_ms, absolute_deadline_ms";

impl Sql {
    fn new(options: &PostgresOptions) -> Self {
        let families = options.table("refresh_families");
        Self {
            create: format!(
                "INSERT INTO {families} (id, subject, scopes, created_ms, absolute_deadline_ms, live_since_ms, idle_deadline_ms) \
                 VALUES ($1, $2, $3, $4, $5, $4, $6) ON CONFLICT (id) DO NOTHING"
            ),
            // $1 id, $2 seq, $3 now, $4 grace, $5 idle, $6 min interval.
            // The outcome is decided on the locked row; only a rotation
            // or a reuse writes.
            spend: format!(
                "WITH f AS (SELECT * FROM {families} WHERE id = $1 FOR UPDATE), \
                 decision AS (SELECT f.*, CASE \
                   WHEN f.revoked OR f.absolute_deadline_ms <= $3 THEN 'ended' \
                   WHEN $2 = f.live_seq AND f.idle_deadline_ms <= $3 THEN 'ended' \
                   WHEN $2 = f.live_seq AND greatest($3 - f.live_since_ms, 0) < $6 THEN 'throttled' \
                   WHEN $2 = f.live_seq THEN 'rotated' \
                   WHEN $2 + 1 = f.live_seq AND greatest($3 - f.live_since_ms, 0) < $4 THEN 'retry' \
                   ELSE 'reused' END AS outcome FROM f), \
                 written AS (UPDATE {families} r SET \
                   live_seq = CASE WHEN d.outcome = 'rotated' THEN r.live_seq + 1 ELSE r.live_seq END, \
                   live_since_ms = CASE WHEN d.outcome = 'rotated' THEN $3 ELSE r.live_since_ms END, \
                   idle_deadline_ms = CASE WHEN d.outcome = 'rotated' THEN least($3 + $5, r.absolute_deadline_ms) ELSE r.idle_deadline_ms END, \
                   revoked = r.revoked OR d.outcome = 'reused' \
                   FROM decision d WHERE r.id = d.id AND d.outcome IN ('rotated', 'reused')) \
                 SELECT outcome, {FAMILY_COLUMNS} FROM decision"
            ),
            family: format!("SELECT {FAMILY_COLUMNS} FROM {families} WHERE id = $1"),
            revoke_family: format!("UPDATE {families} SET revoked = true WHERE id = $1 RETURNING {FAMILY_COLUMNS}"),
            revoke_subject: format!(
                "UPDATE {families} SET revoked = true WHERE subject = $1 AND NOT revoked \
                 AND absolute_deadline_ms > $2 AND idle_deadline_ms > $2 RETURNING id"
            ),
        }
    }
}

fn i64_of(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    i64_of(portcullis_core::epoch_millis(std::time::SystemTime::now()))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::corrupt(StoreKind::Refresh, format!("column {what}"))
}

/// A family from [`FAMILY_COLUMNS`], starting at `first`.
fn family_of(row: &Row, first: usize) -> Result<Family, StoreError> {
    let number = |index: usize, name: &str| -> Result<u64, StoreError> {
        let value: i64 = row.try_get(first + index).map_err(|_| corrupt(name))?;
        u64::try_from(value).map_err(|_| corrupt(name))
    };
    let scopes: String = row.try_get(first + 2).map_err(|_| corrupt("scopes"))?;
    Ok(Family {
        id: row.try_get(first).map_err(|_| corrupt("id"))?,
        subject: row.try_get(first + 1).map_err(|_| corrupt("subject"))?,
        scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        created_ms: number(3, "created_ms")?,
        absolute_deadline_ms: number(4, "absolute_deadline_ms")?,
    })
}

impl PostgresRefreshStore {
    /// Families on `pool`, in the options' schema (apply it first with
    /// [`migrate`](crate::migrate)).
    pub fn new(pool: Pool, options: &PostgresOptions) -> Self {
        Self {
            pool,
            sql: Arc::new(Sql::new(options)),
            timeout: options.statement_timeout,
        }
    }

    async fn one_family(&self, statement: &str, id: &str) -> Result<Option<Family>, StoreError> {
        let id = id.to_owned();
        let row = with_client(&self.pool, self.timeout, StoreKind::Refresh, |client| async move {
            let statement = client.prepare_cached(statement).await?;
            client.query_opt(&statement, &[&id]).await
        })
        .await?;
        row.map(|row| family_of(&row, 0)).transpose()
    }
}

impl RefreshStore for PostgresRefreshStore {
    fn create(&self, family: &Family, idle: Duration) -> StoreFuture<'_, ()> {
        let family = family.clone();
        Box::pin(async move {
            let idle_deadline = family
                .created_ms
                .saturating_add(duration_millis(idle))
                .min(family.absolute_deadline_ms);
            let inserted = with_client(&self.pool, self.timeout, StoreKind::Refresh, |client| async move {
                let statement = client.prepare_cached(&self.sql.create).await?;
                client
                    .execute(
                        &statement,
                        &[
                            &family.id,
                            &family.subject,
                            &family.scopes.join(" "),
                            &i64_of(family.created_ms),
                            &i64_of(family.absolute_deadline_ms),
                            &i64_of(idle_deadline),
                        ],
                    )
                    .await
            })
            .await?;
            if inserted == 1 {
                Ok(())
            } else {
                Err(StoreError::corrupt(
                    StoreKind::Refresh,
                    "a family with this id already exists",
                ))
            }
        })
    }

    fn spend(&self, id: &str, seq: u64, now_ms: u64, rules: SpendRules) -> StoreFuture<'_, Spend> {
        let id = id.to_owned();
        Box::pin(async move {
            let row = with_client(&self.pool, self.timeout, StoreKind::Refresh, |client| async move {
                let statement = client.prepare_cached(&self.sql.spend).await?;
                client
                    .query_opt(
                        &statement,
                        &[
                            &id,
                            &i64_of(seq),
                            &i64_of(now_ms),
                            &i64_of(duration_millis(rules.grace)),
                            &i64_of(duration_millis(rules.idle)),
                            &i64_of(duration_millis(rules.min_interval)),
                        ],
                    )
                    .await
            })
            .await?;
            let Some(row) = row else {
                return Ok(Spend::Unknown);
            };
            let outcome: String = row.try_get(0).map_err(|_| corrupt("outcome"))?;
            Ok(match outcome.as_str() {
                "rotated" => Spend::Rotated(family_of(&row, 1)?),
                "retry" => Spend::Retry(family_of(&row, 1)?),
                "reused" => Spend::Reused(family_of(&row, 1)?),
                "throttled" => Spend::Throttled,
                _ => Spend::Ended,
            })
        })
    }

    fn family(&self, id: &str) -> StoreFuture<'_, Option<Family>> {
        let id = id.to_owned();
        Box::pin(async move { self.one_family(&self.sql.family, &id).await })
    }

    fn revoke_family(&self, id: &str) -> StoreFuture<'_, Option<Family>> {
        let id = id.to_owned();
        Box::pin(async move { self.one_family(&self.sql.revoke_family, &id).await })
    }

    fn revoke_subject(&self, subject: &str) -> StoreFuture<'_, Vec<String>> {
        let subject = subject.to_owned();
        Box::pin(async move {
            let rows = with_client(&self.pool, self.timeout, StoreKind::Refresh, |client| async move {
                let statement = client.prepare_cached(&self.sql.revoke_subject).await?;
                client.query(&statement, &[&subject, &now_ms()]).await
            })
            .await?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0).map_err(|_| corrupt("id")))
                .collect()
        })
    }
}
