//! Configuration from the environment (the reference stack's contract).

use std::time::Duration;

use portcullis::SecretKeyring;
use portcullis::redis::RedisServers;

/// Everything the stack reads from its environment.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) addr: String,
    /// Where the Redis stores live, when they do.
    pub(crate) redis: Option<RedisServers>,
    /// Every store on PostgreSQL, when set.
    pub(crate) database_url: Option<String>,
    /// A private CA (PEM file) for `sslmode=require` database URLs.
    pub(crate) database_ca: Option<String>,
    /// Replicas a durable Redis write waits for (0: none).
    pub(crate) redis_replica_acks: u32,
    /// The local session cache in front of Redis (`PORTCULLIS_SESSION_CACHE=on`).
    pub(crate) session_cache: bool,
    /// Where the cache hears of changes, if not the Redis servers
    /// themselves (a replica, a proxy).
    pub(crate) session_cache_feed: Option<String>,
    /// PEM files: the first signs, the rest are retired (published, never
    /// signing). Empty: an ephemeral key.
    pub(crate) signing_keys: Vec<String>,
    /// PEM files published ahead of their promotion, never signing.
    pub(crate) staged_signing_keys: Vec<String>,
    /// The HMAC secrets (sessions, CSRF, refresh), current first.
    pub(crate) secrets: Option<SecretKeyring>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: String,
    pub(crate) external_issuer: Option<String>,
    pub(crate) external_jwks: Option<String>,
    pub(crate) insecure_http: bool,
    pub(crate) session_idle: Duration,
    pub(crate) session_absolute: Duration,
    pub(crate) access_ttl: Duration,
    pub(crate) refresh_ttl: Duration,
    pub(crate) refresh_grace: Duration,
    /// Sign-in with an OpenID provider, when configured.
    pub(crate) oidc: Option<OidcSettings>,
}

/// `PORTCULLIS_OIDC_ISSUER`, `PORTCULLIS_OIDC_CLIENT_ID` and
/// `PORTCULLIS_OIDC_CLIENT_SECRET`: all three or none.
pub(crate) struct OidcSettings {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn paths(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn seconds(name: &str, default: u64) -> Result<Duration, String> {
    match var(name) {
        None => Ok(Duration::from_secs(default)),
        Some(text) => text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{name} must be a whole number of seconds, got {text:?}")),
    }
}

/// `PORTCULLIS_REDIS_URL` (one node), `PORTCULLIS_REDIS_CLUSTER` (seed
/// nodes, comma-separated) or `PORTCULLIS_REDIS_SENTINEL` (Sentinels,
/// comma-separated) with `PORTCULLIS_REDIS_SENTINEL_MASTER`: at most one.
fn redis_servers() -> Result<Option<RedisServers>, String> {
    let list = |text: String| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let single = var("PORTCULLIS_REDIS_URL");
    let cluster = var("PORTCULLIS_REDIS_CLUSTER").map(list);
    let sentinel = var("PORTCULLIS_REDIS_SENTINEL").map(list);
    let master = var("PORTCULLIS_REDIS_SENTINEL_MASTER");
    match (single, cluster, sentinel, master) {
        (None, None, None, None) => Ok(None),
        (Some(url), None, None, None) => Ok(Some(RedisServers::single(url))),
        (None, Some(seeds), None, None) if !seeds.is_empty() => Ok(Some(RedisServers::cluster(seeds))),
        (None, None, Some(sentinels), Some(master)) if !sentinels.is_empty() => {
            Ok(Some(RedisServers::sentinel(sentinels, master)))
        }
        (None, None, Some(_), None) | (None, None, None, Some(_)) => {
            Err("PORTCULLIS_REDIS_SENTINEL and PORTCULLIS_REDIS_SENTINEL_MASTER go together".into())
        }
        _ => Err(
            "set one of PORTCULLIS_REDIS_URL, PORTCULLIS_REDIS_CLUSTER or PORTCULLIS_REDIS_SENTINEL (each with at least one address)"
                .into(),
        ),
    }
}

impl Config {
    pub(crate) fn from_env() -> Result<Self, String> {
        let external_issuer = var("PORTCULLIS_EXTERNAL_ISSUER");
        let external_jwks = var("PORTCULLIS_EXTERNAL_JWKS");
        if external_issuer.is_some() != external_jwks.is_some() {
            return Err("PORTCULLIS_EXTERNAL_ISSUER and PORTCULLIS_EXTERNAL_JWKS go together".into());
        }
        let redis = redis_servers()?;
        let replicated = matches!(redis, Some(RedisServers::Cluster(_) | RedisServers::Sentinel { .. }));
        let redis_replica_acks = match var("PORTCULLIS_REDIS_REPLICA_ACKS") {
            None => u32::from(replicated),
            Some(text) => text
                .parse()
                .map_err(|_| format!("PORTCULLIS_REDIS_REPLICA_ACKS must be a whole number, got {text:?}"))?,
        };
        let session_cache = match var("PORTCULLIS_SESSION_CACHE").as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => return Err(format!("PORTCULLIS_SESSION_CACHE must be on or off, got {other:?}")),
        };
        let session_cache_feed = var("PORTCULLIS_SESSION_CACHE_FEED_URL");
        if session_cache_feed.is_some() && !session_cache {
            return Err("PORTCULLIS_SESSION_CACHE_FEED_URL needs PORTCULLIS_SESSION_CACHE=on".into());
        }
        let database_url = var("PORTCULLIS_DATABASE_URL");
        if session_cache && redis.is_none() && database_url.is_none() {
            return Err(
                "PORTCULLIS_SESSION_CACHE=on needs a shared session store (PORTCULLIS_REDIS_* or PORTCULLIS_DATABASE_URL)"
                    .into(),
            );
        }
        if database_url.is_some() && redis.is_some() {
            return Err("PORTCULLIS_DATABASE_URL and the PORTCULLIS_REDIS_* settings are exclusive: pick one".into());
        }
        // The list form, with the single-key variable as its one-element case.
        let signing_keys = match (var("PORTCULLIS_SIGNING_KEYS"), var("PORTCULLIS_SIGNING_KEY")) {
            (Some(_), Some(_)) => {
                return Err("PORTCULLIS_SIGNING_KEYS and PORTCULLIS_SIGNING_KEY are exclusive: pick one".into());
            }
            (Some(list), None) => paths(&list),
            (None, Some(one)) => vec![one],
            (None, None) => Vec::new(),
        };
        let staged_signing_keys = var("PORTCULLIS_STAGED_SIGNING_KEYS")
            .map(|list| paths(&list))
            .unwrap_or_default();
        if signing_keys.is_empty() && !staged_signing_keys.is_empty() {
            return Err(
                "PORTCULLIS_STAGED_SIGNING_KEYS needs PORTCULLIS_SIGNING_KEYS (a key that signs meanwhile)".into(),
            );
        }
        let secrets = match var("PORTCULLIS_SECRETS") {
            Some(list) => Some(
                SecretKeyring::from_base64url_list(&list).map_err(|error| format!("PORTCULLIS_SECRETS: {error}"))?,
            ),
            None => None,
        };
        if secrets.is_none() && (redis.is_some() || database_url.is_some()) {
            // Random secrets would log everyone out on every restart and
            // make instances refuse each other's cookies and tokens.
            return Err(
                "PORTCULLIS_SECRETS is required with a shared store: every instance needs the same \
                        secrets (base64url, at least 32 bytes each; e.g. `openssl rand 32 | basenc --base64url`)"
                    .into(),
            );
        }
        let oidc = match (
            var("PORTCULLIS_OIDC_ISSUER"),
            var("PORTCULLIS_OIDC_CLIENT_ID"),
            var("PORTCULLIS_OIDC_CLIENT_SECRET"),
        ) {
            (Some(issuer), Some(client_id), Some(client_secret)) => Some(OidcSettings {
                issuer,
                client_id,
                client_secret,
            }),
            (None, None, None) => None,
            _ => {
                return Err(
                    "PORTCULLIS_OIDC_ISSUER, PORTCULLIS_OIDC_CLIENT_ID and PORTCULLIS_OIDC_CLIENT_SECRET \
                            go together: set all three, or none"
                        .into(),
                );
            }
        };
        Ok(Self {
            oidc,
            addr: var("PORTCULLIS_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into()),
            redis,
            database_url,
            database_ca: var("PORTCULLIS_DATABASE_CA"),
            redis_replica_acks,
            session_cache,
            session_cache_feed,
            signing_keys,
            staged_signing_keys,
            secrets,
            issuer: var("PORTCULLIS_ISSUER"),
            audience: var("PORTCULLIS_AUDIENCE").unwrap_or_else(|| "reference-stack".into()),
            external_issuer,
            external_jwks,
            insecure_http: var("PORTCULLIS_INSECURE_HTTP").as_deref() == Some("1"),
            session_idle: seconds("PORTCULLIS_SESSION_IDLE_SECS", 30 * 60)?,
            session_absolute: seconds("PORTCULLIS_SESSION_ABSOLUTE_SECS", 12 * 3600)?,
            access_ttl: seconds("PORTCULLIS_ACCESS_TTL_SECS", 15 * 60)?,
            refresh_ttl: seconds("PORTCULLIS_REFRESH_TTL_SECS", 14 * 24 * 3600)?,
            refresh_grace: seconds("PORTCULLIS_REFRESH_GRACE_SECS", 5)?,
        })
    }
}
