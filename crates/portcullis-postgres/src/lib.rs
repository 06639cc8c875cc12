//! PostgreSQL implementations of the Portcullis stores, one feature per
//! store family (all three by default):
//!
//! | feature | stores |
//! |---|---|
//! | `sessions` | [`PostgresSessionStore`]: a `SessionStore` for `SessionLayer` |
//! | `revocation` | [`PostgresRevocationStore`]: revocations in a table, checked against a local mirror on every node (no round trip per request) |
//! | `refresh` | [`PostgresRefreshStore`]: refresh-token families, spent by a single-row compare-and-set |
//!
//! The driver is `tokio-postgres` with a `deadpool-postgres` pool: no
//! macros, no compile-time database, a small build on two cores (sqlx's
//! postgres feature alone compiles about twice the code). Every statement
//! runs under the options' timeout, so a database that is down or slow is
//! a bounded `StoreError::Unavailable` (a 503), and the pool replaces
//! broken connections by itself.
//!
//! TLS is rustls (the aws-lc-rs provider every Portcullis crate uses),
//! when the URL asks for it: `sslmode=require` verifies the server's
//! certificate against [`PostgresOptions::tls`] (the Mozilla roots by
//! default, or a private CA) and its host name, and never falls back to
//! plaintext. Without `sslmode`, or with `sslmode=prefer` — which protects
//! against nobody, since an attacker can refuse TLS — the connection is
//! plaintext, for a database on the same host or network.
//!
//! The schema ships with the crate and is applied by [`migrate`], under
//! an advisory lock so several instances may start at once:
//!
//! ```no_run
//! use std::sync::Arc;
//! use portcullis_postgres::{PostgresOptions, PostgresSessionStore, connect, migrate};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = PostgresOptions::default();
//! let pool = connect("postgres://app@127.0.0.1/app", &options)?;
//! migrate(&pool, &options).await?;
//! let sessions = PostgresSessionStore::new(pool, &options);
//! # let _ = Arc::new(sessions);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "refresh")]
mod refresh;
mod replay;
#[cfg(feature = "revocation")]
mod revocation;
mod schema;
#[cfg(feature = "sessions")]
mod session;
#[cfg(feature = "sessions")]
mod session_feed;
mod tls;

use std::time::Duration;

pub use deadpool_postgres::Pool;
use portcullis_core::{StoreError, StoreKind};
pub use replay::PostgresReplayCache;
pub use schema::migrate;
pub use tls::PostgresTls;

#[cfg(feature = "revocation")]
pub use portcullis_revocation::{FeedLossPolicy, store_support::MirrorStats};
#[cfg(feature = "sessions")]
pub use portcullis_session::{CacheOptions, CacheStats};
#[cfg(feature = "refresh")]
pub use refresh::PostgresRefreshStore;
#[cfg(feature = "revocation")]
pub use revocation::{PostgresRevocationStore, ReplicationOptions};
#[cfg(feature = "sessions")]
pub use session::PostgresSessionStore;
#[cfg(feature = "sessions")]
pub use session_feed::SessionCacheOptions;

/// Options of the PostgreSQL stores.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema the tables live in (default `portcullis`): lowercase
    /// letters, digits and `_`, starting with a letter.
    pub schema: String,
    /// How long one store operation may take, waiting for a pooled
    /// connection included, before the request gets a 503 (default 1 s).
    pub statement_timeout: Duration,
    /// How long opening a connection may take (default 1 s).
    pub connect_timeout: Duration,
    /// Connections in the pool (default 16).
    pub pool_size: usize,
    /// The certificates trusted when the URL says `sslmode=require`.
    pub tls: PostgresTls,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "portcullis".into(),
            statement_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_size: 16,
            tls: PostgresTls::default(),
        }
    }
}

impl PostgresOptions {
    /// `schema.name`, the schema checked to be a plain identifier.
    #[cfg_attr(
        not(any(feature = "sessions", feature = "revocation", feature = "refresh")),
        allow(dead_code)
    )]
    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    fn check(&self) -> Result<(), String> {
        let mut chars = self.schema.chars();
        let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && self.schema.len() <= 48;
        if plain {
            Ok(())
        } else {
            Err(format!(
                "schema {:?} is not a plain identifier (lowercase letters, digits, `_`)",
                self.schema
            ))
        }
    }
}

/// A pool of connections to `url` (`postgres://user@host:port/db`). No
/// connection is opened yet: the first store call opens one, and a
/// database that is down then is an `Unavailable` error, not a hang.
pub fn connect(url: &str, options: &PostgresOptions) -> Result<Pool, StoreError> {
    let invalid = |reason: String| StoreError::unavailable(StoreKind::Session, reason);
    options.check().map_err(invalid)?;
    let (config, tls) = parse(url, options).map_err(invalid)?;
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => deadpool_postgres::Manager::from_config(config, tls, manager_config),
        None => deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(options.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(options.statement_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|error| invalid(error.to_string()))
}

/// The driver's configuration for `url`, and the TLS connector when the
/// URL requires TLS. `sslmode=prefer` (the driver's default) becomes
/// plaintext: a preference an attacker can refuse protects nobody, and a
/// failed certificate check must not be papered over.
pub(crate) fn parse(
    url: &str,
    options: &PostgresOptions,
) -> Result<(tokio_postgres::Config, Option<tls::RustlsConnect>), String> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|error: tokio_postgres::Error| format!("invalid database URL: {error}"))?;
    config.connect_timeout(options.connect_timeout);
    // The server gives up on a statement when the client does: a request
    // answered 503 leaves no statement running on behind it.
    let timeout_ms = options.statement_timeout.as_millis().max(1);
    let session_options = match config.get_options() {
        Some(existing) => format!("{existing} -c statement_timeout={timeout_ms}"),
        None => format!("-c statement_timeout={timeout_ms}"),
    };
    config.options(&session_options);
    let tls = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Require => Some(options.tls.connector()?),
        _ => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
    };
    Ok((config, tls))
}

/// A connection that LISTENs on `channel` and hands the payload of every
/// notification to `on_notification` (which answers `false` to stop); the
/// task driving the connection ends when the connection is lost. One way
/// for every feed (the revocation mirror's, the session cache's); the
/// `LISTEN` itself is bounded by the connect timeout.
#[cfg(any(feature = "sessions", feature = "revocation"))]
pub(crate) async fn listen(
    url: &str,
    options: &PostgresOptions,
    channel: &str,
    on_notification: impl FnMut(&str) -> bool + Send + 'static,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    let (config, tls) = parse(url, options)?;
    let connected = match tls {
        Some(tls) => listen_with(&config, tls, on_notification).await,
        None => listen_with(&config, tokio_postgres::NoTls, on_notification).await,
    };
    let (client, driver) = connected.map_err(|error| error.to_string())?;
    let statement = format!("LISTEN {channel}");
    match tokio::time::timeout(options.connect_timeout, client.batch_execute(&statement)).await {
        Ok(Ok(())) => Ok((client, driver)),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("LISTEN timed out".into()),
    }
}

#[cfg(any(feature = "sessions", feature = "revocation"))]
async fn listen_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
    mut on_notification: impl FnMut(&str) -> bool + Send + 'static,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(notification)) => {
                    if !on_notification(notification.payload()) {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok((client, driver))
}

/// Runs `work` with a pooled connection, bounded by the statement timeout:
/// every failure (no connection, a driver error, too slow) is `store`'s
/// `Unavailable` error.
#[cfg_attr(not(any(feature = "sessions", feature = "refresh")), allow(dead_code))]
pub(crate) async fn with_client<T, F>(
    pool: &Pool,
    timeout: Duration,
    store: StoreKind,
    work: impl FnOnce(deadpool_postgres::Object) -> F,
) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let unavailable = |reason: String| StoreError::unavailable(store, reason);
    let run = async {
        let client = pool.get().await.map_err(|error| unavailable(error.to_string()))?;
        work(client).await.map_err(|error| unavailable(error.to_string()))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| unavailable(format!("no answer within {timeout:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_schema_names_are_accepted() {
        for good in ["portcullis", "app_auth", "a1"] {
            let options = PostgresOptions {
                schema: good.into(),
                ..PostgresOptions::default()
            };
            assert!(options.check().is_ok(), "{good}");
        }
        for bad in ["", "1app", "App", "a-b", "a;drop", "a.b", "\"x\""] {
            let options = PostgresOptions {
                schema: bad.into(),
                ..PostgresOptions::default()
            };
            let error = options.check().expect_err(bad);
            assert!(error.contains("not a plain identifier"), "{error}");
        }
    }

    #[test]
    fn only_sslmode_require_makes_tls_and_prefer_is_not_a_silent_downgrade_path() {
        let options = PostgresOptions::default();
        let (config, tls) = parse("postgres://u@127.0.0.1/db?sslmode=require", &options).expect("parse");
        assert!(tls.is_some(), "require: TLS, verified");
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert!(
            config
                .get_options()
                .is_some_and(|o| o.contains("statement_timeout=1000")),
            "the server gives up when the client does: {:?}",
            config.get_options()
        );
        for url in ["postgres://u@127.0.0.1/db", "postgres://u@127.0.0.1/db?sslmode=prefer"] {
            let (config, tls) = parse(url, &options).expect("parse");
            assert!(tls.is_none(), "{url}: plaintext, said plainly");
            assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable, "{url}");
        }
    }

    #[test]
    fn a_bad_url_is_a_clear_error() {
        let error = connect("not a url", &PostgresOptions::default()).expect_err("refused");
        assert!(error.to_string().contains("invalid database URL"), "{error}");
    }
}
