//! The reference stack: every Portcullis layer on one server, the hybrid a
//! real product runs. Browsers log in with a form and get an opaque
//! session cookie (CSRF-protected); API clients get short-lived access
//! tokens with rotating refresh tokens; both reach the same handlers as one
//! `Identity`. In memory by default; on Redis with `PORTCULLIS_REDIS_URL`,
//! on a Redis Cluster with `PORTCULLIS_REDIS_CLUSTER`, or on Sentinel with
//! `PORTCULLIS_REDIS_SENTINEL` (several instances then share every store).
//!
//! ```text
//! PORTCULLIS_INSECURE_HTTP=1 cargo run -p reference-stack
//! curl -s -X POST -d grant_type=password -d username=alice -d password=alice-password \
//!      http://127.0.0.1:3000/oauth/token
//! ```
//!
//! The environment and routes are documented in this example's README.

mod config;
mod data;
mod grpc;
mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis::csrf::CsrfLayer;
use portcullis::jwt::remote::{RemoteKeys, RemoteOptions};
use portcullis::jwt::{CacheLimits, JwtVerifier, Keys, Validation};
use portcullis::oidc::{ClientConfig, OidcClient};
use portcullis::postgres::{
    PostgresOptions, PostgresRefreshStore, PostgresReplayCache, PostgresRevocationStore, PostgresSessionStore,
    ReplicationOptions as PgReplication,
};
use portcullis::redis::RedisReplayCache;
use portcullis::redis::{
    RedisConnection, RedisOptions, RedisRefreshStore, RedisServers, RedisSessionStore, ReplicaAcks,
    ReplicatedRevocationStore, ReplicationOptions, SessionCacheOptions,
};
use portcullis::revocation::{MemoryRefreshStore, MemoryRevocationStore, RefreshTokens, RevocationLayer, Revocations};
use portcullis::session::{MemoryStore, SessionLayer, SessionStore};
use portcullis::{
    JwtIssuer, JwtLayer, MemoryReplayCache, ReplayCache, SecretKeyring, SigningKey, SigningKeyring, SystemClock,
};
use tower::ServiceBuilder;

use crate::config::Config;
use crate::data::{Notes, Users};
use crate::routes::App;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Sessions, revocations, refresh tokens, notes, the Redis connection
/// (for the health check) when there is one, and the session cache's
/// counters when it is on.
type Stores = (
    Arc<dyn SessionStore>,
    Arc<dyn portcullis::revocation::RevocationStore>,
    Arc<dyn portcullis::revocation::RefreshStore>,
    Notes,
    Option<RedisConnection>,
    Option<crate::routes::CacheStatsSource>,
);

/// Reads a PEM signing key (its `kid` is its RFC 7638 thumbprint, the
/// same on every instance).
fn signing_key(path: &str, variable: &str) -> Result<SigningKey, Error> {
    let pem = std::fs::read(path).map_err(|error| format!("{variable} {path}: {error}"))?;
    Ok(SigningKey::from_pem(pem).map_err(|error| format!("{variable} {path}: {error}"))?)
}

async fn build(config: &Config) -> Result<(axum::Router, String), Error> {
    let listener_addr = config.addr.clone();
    let signing = match config.signing_keys.as_slice() {
        [] => vec![SigningKey::generate_ed25519()?],
        paths => paths
            .iter()
            .map(|path| signing_key(path, "PORTCULLIS_SIGNING_KEYS"))
            .collect::<Result<_, _>>()?,
    };
    let staged: Vec<SigningKey> = config
        .staged_signing_keys
        .iter()
        .map(|path| signing_key(path, "PORTCULLIS_STAGED_SIGNING_KEYS"))
        .collect::<Result<_, _>>()?;
    // Retired keys stay published for an access token's lifetime plus a
    // minute of leeway from this start.
    let keyring = SigningKeyring::from_keys(signing, staged)?.retention(config.access_ttl + Duration::from_secs(60));
    let issuer_name = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{listener_addr}"));
    let issuer = JwtIssuer::with_keyring(keyring, issuer_name.clone(), config.audience.clone())
        .access_token_ttl(config.access_ttl);
    // What an operator checks after a rotation (key ids only, no secret).
    println!(
        "signing keys: active {} published {}",
        issuer.keyring().active_kid().unwrap_or_default(),
        issuer
            .keyring()
            .published_kids_at(std::time::SystemTime::now())
            .join(",")
    );
    // One keyring for every HMAC secret; each layer derives its own key
    // from it (domain-separated), so the three never share a key.
    let secrets = match &config.secrets {
        Some(secrets) => secrets.clone(),
        None => {
            // One instance on its own memory: a fresh secret per start.
            use argon2::password_hash::rand_core::{OsRng, RngCore};
            let mut secret = [0u8; 32];
            OsRng.fill_bytes(&mut secret);
            SecretKeyring::single(&secret)?
        }
    };
    secrets.record_in_audit("sessions, csrf, refresh");
    let ids: Vec<String> = secrets.key_ids().iter().map(ToString::to_string).collect();
    println!("secrets: current {} previous {}", ids[0], ids[1..].join(","));

    // Stores: Redis when configured, else in process.
    let (session_store, revocation_store, refresh_store, notes, redis, cache_stats): Stores = match &config.redis {
        Some(servers) => {
            let mut options = RedisOptions::default();
            // On a Cluster or Sentinel, logins, logouts, refresh spends and
            // revocations wait for a replica, so a failover keeps them.
            // A write waits up to 1 s for its replica; the command timeout
            // leaves room for that wait on top of the script itself.
            if config.redis_replica_acks > 0 {
                options.replica_acks = Some(ReplicaAcks {
                    replicas: config.redis_replica_acks,
                    timeout: std::time::Duration::from_secs(1),
                });
                options.response_timeout = std::time::Duration::from_secs(2);
            }
            let mut replication = ReplicationOptions::default();
            replication.redis = options.clone();
            let connection = RedisConnection::connect(servers, &options).await?;
            let sessions = if config.session_cache {
                let mut cache = SessionCacheOptions::default();
                cache.feed = config.session_cache_feed.clone().map(RedisServers::single);
                RedisSessionStore::connect_cached(servers.clone(), options.clone(), cache).await?
            } else {
                RedisSessionStore::connect_with(servers.clone(), options.clone()).await?
            };
            println!("session cache: {}", if config.session_cache { "on" } else { "off" });
            let stats = sessions.clone();
            let cache_stats: Option<crate::routes::CacheStatsSource> = config
                .session_cache
                .then(|| Arc::new(move || stats.cache_stats()) as crate::routes::CacheStatsSource);
            (
                Arc::new(sessions),
                Arc::new(ReplicatedRevocationStore::start(servers.clone(), replication).await?),
                Arc::new(RedisRefreshStore::connect_with(servers.clone(), options).await?),
                Notes::Redis(connection.clone()),
                Some(connection),
                cache_stats,
            )
        }
        None if config.database_url.is_some() => {
            let url = config.database_url.as_deref().unwrap_or_default();
            let mut options = PostgresOptions::default();
            if let Some(path) = &config.database_ca {
                let pem = std::fs::read(path).map_err(|error| format!("PORTCULLIS_DATABASE_CA {path}: {error}"))?;
                options.tls = portcullis::postgres::PostgresTls::roots_from_pem(&pem)
                    .map_err(|error| format!("PORTCULLIS_DATABASE_CA {path}: {error}"))?;
            }
            let pool = portcullis::postgres::connect(url, &options)?;
            portcullis::postgres::migrate(&pool, &options).await?;
            pool.get()
                .await
                .map_err(|error| format!("PORTCULLIS_DATABASE_URL: {error}"))?
                .batch_execute(crate::data::NOTES_TABLE)
                .await?;
            let mut sessions = PostgresSessionStore::new(pool.clone(), &options);
            if config.session_cache {
                let mut cache = portcullis::postgres::SessionCacheOptions::default();
                cache.feed_url = config.session_cache_feed.clone();
                sessions = sessions.with_cache(url, &options, cache).await?;
            }
            println!("session cache: {}", if config.session_cache { "on" } else { "off" });
            let stats = sessions.clone();
            let cache_stats: Option<crate::routes::CacheStatsSource> = config
                .session_cache
                .then(|| Arc::new(move || stats.cache_stats()) as crate::routes::CacheStatsSource);
            // Reads ignore expired rows; the sweep only reclaims their space
            // (several instances may sweep at once).
            let sweeper = sessions.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    let _ = sweeper.sweep(1_000).await;
                }
            });
            (
                Arc::new(sessions),
                Arc::new(
                    PostgresRevocationStore::start(url, {
                        let mut replication = PgReplication::default();
                        replication.postgres = options.clone();
                        replication
                    })
                    .await?,
                ),
                Arc::new(PostgresRefreshStore::new(pool.clone(), &options)),
                Notes::Postgres(pool.clone()),
                None,
                cache_stats,
            )
        }
        None => (
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryRevocationStore::new()),
            Arc::new(MemoryRefreshStore::new()),
            Notes::Memory(Mutex::new(HashMap::new())),
            None,
            None,
        ),
    };

    let app_database = match &notes {
        Notes::Postgres(pool) => Some(pool.clone()),
        _ => None,
    };

    // Local logins are principals of our own issuer: one user whether they
    // come by cookie or by access token.
    let mut sessions = SessionLayer::new(session_store)
        .issuer(issuer_name.as_str())
        .secrets(&secrets)?
        .timeouts(config.session_idle, config.session_absolute)?;
    let mut csrf = CsrfLayer::new().secrets(&secrets);
    if config.insecure_http {
        sessions = sessions.insecure_http();
        csrf = csrf.insecure_http();
    }
    let revocations = Revocations::new(revocation_store);
    let tokens = RefreshTokens::builder(refresh_store, issuer.clone(), secrets.current())
        .secrets(&secrets)
        .revocations(&revocations)
        .grace(config.refresh_grace)
        .idle(config.refresh_ttl)
        .absolute(config.refresh_ttl.max(config.refresh_ttl * 2))
        .build()?;

    // Our own tokens, and optionally an external issuer's (same audience).
    // Every published key verifies: the active one, the retired ones
    // (tokens they signed live on) and the staged ones (ready for their
    // promotion).
    let own = JwtVerifier::new(
        issuer.verifying_keys(),
        Validation::new()
            .issuer(issuer_name.as_str())
            .audience(config.audience.as_str()),
    )?;
    let (verifier, remote) = match (&config.external_issuer, &config.external_jwks) {
        (Some(external), Some(jwks)) => {
            let remote = if jwks.starts_with("http://") || jwks.starts_with("https://") {
                RemoteKeys::jwks_url(jwks.as_str(), RemoteOptions::default())
            } else {
                RemoteKeys::file(jwks.as_str(), RemoteOptions::default())
            };
            let theirs = JwtVerifier::with_keys(
                Keys::from(remote.clone()),
                Validation::new()
                    .issuer(external.as_str())
                    .audience(config.audience.as_str()),
                Arc::new(SystemClock),
                Some(CacheLimits::default()),
            )?;
            (JwtVerifier::for_issuers([own, theirs])?, Some(remote))
        }
        _ => (own, None),
    };
    let jwt = JwtLayer::with_verifier(verifier.clone()).optional();

    // Sign-in with an OpenID provider: discovered at start (a provider that
    // cannot be discovered stops the start, loudly). Its callback and
    // logout return here, under our issuer URL.
    let oidc = match &config.oidc {
        Some(settings) => {
            let client = ClientConfig::new(
                settings.client_id.as_str(),
                settings.client_secret.as_str(),
                format!("{issuer_name}/login/oidc/callback"),
            );
            // Single-use states and logout-token ids, shared by every
            // instance on the same store.
            let replay: Arc<dyn ReplayCache> = match (&config.redis, &app_database) {
                (Some(servers), _) => {
                    Arc::new(RedisReplayCache::connect_with(servers.clone(), RedisOptions::default()).await?)
                }
                (None, Some(pool)) => Arc::new(PostgresReplayCache::new(pool.clone(), &PostgresOptions::default())),
                (None, None) => Arc::new(MemoryReplayCache::default()),
            };
            let oidc = OidcClient::discover(&settings.issuer, client, &secrets, replay)
                .await
                .map_err(|error| format!("PORTCULLIS_OIDC_ISSUER: {error}"))?;
            println!("oidc: {}", settings.issuer);
            csrf = csrf.insecure_exempt(crate::routes::BACKCHANNEL_LOGOUT)?;
            Some(oidc)
        }
        None => None,
    };

    let app = Arc::new(App {
        oidc,
        users: Users::demo()?,
        notes,
        sessions: sessions.sessions().clone(),
        tokens,
        revocations: revocations.clone(),
        verifier,
        issuer,
        remote,
        database: app_database,
        redis,
        cache_stats,
    });
    let stack = ServiceBuilder::new()
        .layer(sessions)
        .layer(jwt)
        .layer(RevocationLayer::new(&revocations))
        .layer(csrf);
    Ok((routes::router(app).layer(stack), listener_addr))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    let (app, addr) = build(&config).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
