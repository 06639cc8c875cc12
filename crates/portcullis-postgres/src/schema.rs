//! The schema, versioned, and the one way it is applied.

use portcullis_core::{StoreError, StoreKind};

use crate::{Pool, PostgresOptions};

/// The migrations, in order; `{s}` is the schema. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, grace aliases, refresh families, revocations.
    r"
CREATE TABLE {s}.sessions (
    key text PRIMARY KEY,                -- SessionKey hex: a keyed hash of the id, never the id
    principal text,                      -- Principal::key(); NULL while anonymous
    scopes text NOT NULL,                -- JSON array
    created_ms bigint NOT NULL,
    idle_deadline_ms bigint NOT NULL,
    absolute_deadline_ms bigint NOT NULL,
    last_seen_ms bigint NOT NULL,
    user_agent text,
    data jsonb NOT NULL DEFAULT '{}',    -- name -> JSON text (as a string, so it round-trips exactly)
    expires_ms bigint NOT NULL           -- when the store may forget it (the layer's TTL)
);
CREATE INDEX sessions_by_principal ON {s}.sessions (principal) WHERE principal IS NOT NULL;
CREATE INDEX sessions_by_expiry ON {s}.sessions (expires_ms);
CREATE INDEX sessions_by_absolute_deadline ON {s}.sessions (absolute_deadline_ms);
CREATE TABLE {s}.session_aliases (
    key text PRIMARY KEY,                -- a rotated-away key, for its grace period
    target text NOT NULL,
    until_ms bigint NOT NULL
);
CREATE INDEX session_aliases_by_target ON {s}.session_aliases (target);
CREATE INDEX session_aliases_by_expiry ON {s}.session_aliases (until_ms);
CREATE TABLE {s}.refresh_families (
    id text PRIMARY KEY,
    subject text NOT NULL,
    scopes text NOT NULL,                -- space-separated
    created_ms bigint NOT NULL,
    absolute_deadline_ms bigint NOT NULL,
    revoked boolean NOT NULL DEFAULT false,
    live_seq bigint NOT NULL DEFAULT 0,  -- the live token's number (tokens identify themselves)
    live_since_ms bigint NOT NULL,
    idle_deadline_ms bigint NOT NULL
);
CREATE INDEX refresh_families_by_subject ON {s}.refresh_families (subject);
CREATE INDEX refresh_families_by_idle_deadline ON {s}.refresh_families (idle_deadline_ms);
CREATE SEQUENCE {s}.revocation_seq;
CREATE TABLE {s}.revocations (
    target text PRIMARY KEY,             -- store_support::encode_target
    cutoff_secs bigint NOT NULL,
    expires_ms bigint NOT NULL,
    seq bigint NOT NULL,                 -- from revocation_seq: mirrors read on from the last one seen
    revoked_at_ms bigint NOT NULL        -- the database's clock at the write, for propagation delays
);
CREATE INDEX revocations_by_seq ON {s}.revocations (seq);
CREATE INDEX revocations_by_expiry ON {s}.revocations (expires_ms);
",
    // 2: single-use identifiers (OIDC `state`s, logout-token `jti`s).
    r"
CREATE TABLE {s}.replay (
    namespace text NOT NULL,
    id text NOT NULL,
    until_ms bigint NOT NULL,            -- forgotten after this (a later first use may take the row)
    PRIMARY KEY (namespace, id)
);
CREATE INDEX replay_by_expiry ON {s}.replay (until_ms);
",
    // 3: the identity provider's session a login came from (OIDC `sid`),
    // indexed for back-channel logout.
    r"
ALTER TABLE {s}.sessions ADD COLUMN provider_session text; -- provider_session_key(): (issuer, sid); NULL otherwise
CREATE INDEX sessions_by_provider_session ON {s}.sessions (provider_session) WHERE provider_session IS NOT NULL;
",
    // 4: the session cache's feed: every session row updated or deleted
    // is announced, at commit, on `portcullis_sessions_{s}`.
    r"
CREATE FUNCTION {s}.session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('portcullis_sessions_{s}', OLD.key);
  RETURN NULL;
END
$$;
CREATE TRIGGER sessions_changed AFTER UPDATE OR DELETE ON {s}.sessions
  FOR EACH ROW EXECUTE FUNCTION {s}.session_changed();
",
];

/// Applies every migration not yet applied, in one transaction under an
/// advisory lock (instances starting at once apply each exactly once; the
/// others wait, then find nothing to do). Returns the schema version.
pub async fn migrate(pool: &Pool, options: &PostgresOptions) -> Result<usize, StoreError> {
    let unavailable = |error: String| StoreError::unavailable(StoreKind::Session, format!("migration: {error}"));
    options.check().map_err(unavailable)?;
    let mut client = pool.get().await.map_err(|error| unavailable(error.to_string()))?;
    let transaction = client
        .transaction()
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    let schema = &options.schema;
    let run = async {
        // Waiting for another instance's migration, and the DDL itself,
        // may take longer than a request may.
        transaction.batch_execute("SET LOCAL statement_timeout = 0").await?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('portcullis-migrate:' || $1::text))",
                &[schema],
            )
            .await?;
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
            ))
            .await?;
        let applied: i32 = transaction
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_version"),
                &[],
            )
            .await?
            .get(0);
        let applied = usize::try_from(applied).unwrap_or(0);
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            transaction.batch_execute(&migration.replace("{s}", schema)).await?;
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            transaction
                .execute(
                    &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
                    &[&version],
                )
                .await?;
        }
        Ok::<usize, tokio_postgres::Error>(MIGRATIONS.len())
    };
    let version = run.await.map_err(|error| unavailable(error.to_string()))?;
    transaction
        .commit()
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    Ok(version)
}
