//! Single-use identifiers in PostgreSQL, shared by every node.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{ReplayCache, StoreFuture, StoreKind, epoch_millis};

use crate::{Pool, PostgresOptions, with_client};

/// A [`ReplayCache`] in PostgreSQL: an OIDC login's `state` and a logout
/// token's `jti` count once across every node. One statement decides: the
/// insert wins, or takes over a row that has expired; a row still live
/// means a replay.
#[derive(Clone)]
pub struct PostgresReplayCache {
    pool: Pool,
    first_use: Arc<str>,
    sweep: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for PostgresReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReplayCache").finish_non_exhaustive()
    }
}

impl PostgresReplayCache {
    /// Identifiers on `pool`, in the options' schema (apply it first with
    /// [`migrate`](crate::migrate)).
    pub fn new(pool: Pool, options: &PostgresOptions) -> Self {
        let table = options.table("replay");
        Self {
            pool,
            // $1 namespace, $2 id, $3 until, $4 now.
            first_use: format!(
                "INSERT INTO {table} (namespace, id, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (namespace, id) DO UPDATE SET until_ms = EXCLUDED.until_ms \
                 WHERE {table}.until_ms <= $4 RETURNING 1"
            )
            .into(),
            sweep: format!("DELETE FROM {table} WHERE until_ms <= $1").into(),
            timeout: options.statement_timeout,
        }
    }

    /// Deletes expired identifiers (any instance may; reads ignore them
    /// anyway). Returns how many went.
    pub async fn sweep(&self) -> Result<u64, portcullis_core::StoreError> {
        let now = i64::try_from(epoch_millis(SystemTime::now())).unwrap_or(i64::MAX);
        let sweep = self.sweep.clone();
        with_client(&self.pool, self.timeout, StoreKind::Replay, |client| async move {
            let statement = client.prepare_cached(&sweep).await?;
            client.execute(&statement, &[&now]).await
        })
        .await
    }
}

impl ReplayCache for PostgresReplayCache {
    fn first_use<'a>(&'a self, namespace: &'a str, id: &'a str, until: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if id.len() > 512 || namespace.len() > 64 {
                return Ok(false);
            }
            let now = i64::try_from(epoch_millis(SystemTime::now())).unwrap_or(i64::MAX);
            let until = i64::try_from(epoch_millis(until)).unwrap_or(i64::MAX).max(now + 1);
            let (namespace, id) = (namespace.to_owned(), id.to_owned());
            let first_use = self.first_use.clone();
            let row = with_client(&self.pool, self.timeout, StoreKind::Replay, |client| async move {
                let statement = client.prepare_cached(&first_use).await?;
                client.query_opt(&statement, &[&namespace, &id, &until, &now]).await
            })
            .await?;
            Ok(row.is_some())
        })
    }
}
