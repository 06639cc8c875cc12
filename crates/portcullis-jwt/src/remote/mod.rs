//! Remote key sets (feature `remote`): a JWKS URL, an issuer's OIDC
//! discovery document, or a JWKS file, kept current in the background.

mod client;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

use http::Request;
use http::header::CACHE_CONTROL;
use tower::ServiceExt;

pub use client::{ClientLimits, HttpClient, default_client};

use crate::KeySet;

/// Where a remote key set comes from.
#[derive(Clone, Debug)]
enum Source {
    Jwks(String),
    Discovery { issuer: String },
    File(PathBuf),
}

/// The lifecycle of a [`RemoteKeys`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// How often keys are refreshed when the provider says nothing
    /// (default 10 min). A `Cache-Control: max-age` is honoured within
    /// `[min_refresh, max_refresh]`.
    pub refresh_every: Duration,
    /// The shortest refresh interval, whatever the provider says (default 1 min).
    pub min_refresh: Duration,
    /// The longest refresh interval, whatever the provider says (default 1 h).
    pub max_refresh: Duration,
    /// After a fetch for an unknown `kid`, how long before another may
    /// happen (default 30 s): a flood of forged `kid`s costs at most one
    /// fetch per cooldown.
    pub unknown_kid_cooldown: Duration,
    /// The longest a request waits for keys being fetched (default 1 s).
    pub request_wait: Duration,
    /// How long the last good keys keep serving while the provider is down
    /// (default 1 h); after that, requests get 503.
    pub serve_stale_for: Duration,
    /// How often a JWKS file is checked for changes (default 1 s).
    pub file_poll: Duration,
    /// **Insecure**: fetch keys over plain `http://` from hosts other than
    /// loopback (default `false`). Key sources are HTTPS-only otherwise
    /// (loopback excepted, for local development and tests): over plain
    /// HTTP, anyone on the path can inject a key and mint tokens.
    pub insecure_allow_http: bool,
    /// Accept symmetric (`oct`) keys from a network JWKS (default
    /// `false`). A shared secret published over the network is readable by
    /// whoever fetches it, and anyone who can read it can forge tokens.
    pub insecure_allow_symmetric_keys: bool,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(600),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(30),
            request_wait: Duration::from_secs(1),
            serve_stale_for: Duration::from_secs(3600),
            file_poll: Duration::from_secs(1),
            insecure_allow_http: false,
            insecure_allow_symmetric_keys: false,
        }
    }
}

/// Why remote keys cannot be used now. Requests meeting it get a 503,
/// never a 401: the token may be fine.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// No key set has been loaded yet.
    #[error("signing keys not loaded yet: {0}")]
    NotLoaded(String),
    /// The provider has been failing for longer than keys may be served stale.
    #[error("signing keys stale for {age:?}: {reason}")]
    Stale {
        /// Time since the last successful fetch.
        age: Duration,
        /// The last failure.
        reason: String,
    },
    /// A fetch failed (the previous keys, if any, stay in use).
    #[error("fetching signing keys failed: {0}")]
    Fetch(String),
}

/// Whether `url` may carry keys: `https`, or `http` to a loopback host
/// (127.0.0.0/8, `::1`, `localhost`), or `http` anywhere with the insecure
/// opt-in.
fn check_transport(url: &str, insecure_allow_http: bool) -> Result<(), KeySourceError> {
    let refuse = |why: &str| Err(KeySourceError::Fetch(format!("{url}: {why}")));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return refuse("not a URL: key sources must be https");
    };
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if insecure_allow_http || uri.host().is_some_and(portcullis_core::is_loopback_host) => Ok(()),
        Some("http") => refuse("key sources must be https (loopback and insecure_allow_http excepted)"),
        _ => refuse("key sources must be https"),
    }
}

impl KeySourceError {
    /// What failed, without where or why (no URL, no transport error): what
    /// a response body may say.
    pub fn public_reason(&self) -> &'static str {
        match self {
            Self::NotLoaded(_) => "signing keys not loaded yet",
            Self::Stale { .. } => "signing keys stale",
            Self::Fetch(_) => "signing keys unavailable",
        }
    }
}

#[derive(Default)]
struct State {
    keys: Option<KeySet>,
    /// Bumped with every new key set (cached verifications are per key set).
    key_generation: u64,
    loaded_at: Option<Instant>,
    last_error: Option<String>,
    last_unknown_kid_fetch: Option<Instant>,
    file_modified: Option<SystemTime>,
}

struct Shared {
    source: Source,
    client: HttpClient,
    options: RemoteOptions,
    state: RwLock<State>,
    /// One fetch at a time; waiters reuse its result.
    flight: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    fetches: AtomicU64,
    ready: tokio::sync::watch::Sender<bool>,
}

/// A key set fetched from a provider and kept current: loaded in the
/// background from the moment it is built (call it inside a tokio
/// runtime), refreshed ahead of expiry (honouring `Cache-Control:
/// max-age` within bounds), re-fetched at most once per cooldown when a
/// token names an unknown `kid` (one fetch at a time, the others wait at
/// most `request_wait`), and on provider outage served stale for a bounded
/// time, then refused with 503.
///
/// Keys in the document are honoured as JWKs: `use`, `key_ops` and `alg`
/// decide what a key may verify; unusable or unsupported keys are skipped
/// with a warning; a malformed document, or one with no usable key, is
/// refused and the good keys stay.
///
/// Hand it to [`JwtLayer::new`](crate::JwtLayer::new) like a static [`KeySet`], and wire
/// [`ready`](RemoteKeys::ready) into your health check.
///
/// # Security
/// - Key sources are HTTPS-only: a JWKS URL, a discovery URL and the
///   discovery document's `jwks_uri` must be `https://` (plain `http://` to
///   a loopback host excepted, and anything with
///   [`RemoteOptions::insecure_allow_http`]); others are refused before a
///   request is sent. Redirects stay on the same host and never go from
///   HTTPS to HTTP.
/// - Symmetric (`oct`) keys in a network JWKS are skipped unless
///   [`RemoteOptions::insecure_allow_symmetric_keys`]: a published secret
///   forges tokens. A JWKS file may hold them.
///
/// ```no_run
/// use portcullis_jwt::{JwtLayer, Validation, remote::{RemoteKeys, RemoteOptions}};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = RemoteKeys::discover("https://login.example.com/realms/main", RemoteOptions::default());
/// keys.ready(std::time::Duration::from_secs(10)).await?; // before serving
/// let validation = Validation::new()
///     .issuer("https://login.example.com/realms/main")
///     .audience("notes-api");
/// let jwt = JwtLayer::new(keys, validation)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteKeys {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("source", &self.shared.source)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

fn read(state: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(PoisonError::into_inner)
}

/// `max-age` of a `Cache-Control` header, if any.
fn max_age(response: &http::Response<bytes::Bytes>) -> Option<Duration> {
    let value = response.headers().get(CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

impl RemoteKeys {
    /// Keys from a JWKS URL.
    pub fn jwks_url(url: impl Into<String>, options: RemoteOptions) -> Self {
        Self::start(
            Source::Jwks(url.into()),
            default_client(ClientLimits::default()),
            options,
        )
    }

    /// Keys of an OpenID provider: `issuer/.well-known/openid-configuration`
    /// gives the `jwks_uri`, and its `issuer` must be exactly `issuer`.
    pub fn discover(issuer: impl Into<String>, options: RemoteOptions) -> Self {
        let issuer = issuer.into();
        Self::start(
            Source::Discovery { issuer },
            default_client(ClientLimits::default()),
            options,
        )
    }

    /// Keys from a JWKS file, re-read whenever it changes.
    pub fn file(path: impl Into<PathBuf>, options: RemoteOptions) -> Self {
        Self::start(
            Source::File(path.into()),
            default_client(ClientLimits::default()),
            options,
        )
    }

    /// Keys from a JWKS URL, fetched with your own client.
    pub fn jwks_url_with_client(url: impl Into<String>, client: HttpClient, options: RemoteOptions) -> Self {
        Self::start(Source::Jwks(url.into()), client, options)
    }

    /// Keys of an OpenID provider, fetched with your own client.
    pub fn discover_with_client(issuer: impl Into<String>, client: HttpClient, options: RemoteOptions) -> Self {
        Self::start(Source::Discovery { issuer: issuer.into() }, client, options)
    }

    fn start(source: Source, client: HttpClient, options: RemoteOptions) -> Self {
        let (ready, _) = tokio::sync::watch::channel(false);
        let keys = Self {
            shared: Arc::new(Shared {
                source,
                client,
                options,
                state: RwLock::default(),
                flight: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                ready,
            }),
        };
        let weak = Arc::downgrade(&keys.shared);
        tokio::spawn(async move {
            let mut wait = Duration::ZERO;
            loop {
                tokio::time::sleep(wait).await;
                // The task ends with the last handle.
                let Some(shared) = weak.upgrade() else { return };
                let keys = Self { shared };
                wait = keys.background_round().await;
            }
        });
        keys
    }

    /// One round of the background loop; returns how long to sleep.
    async fn background_round(&self) -> Duration {
        let options = &self.shared.options;
        if let Source::File(path) = &self.shared.source {
            let modified = tokio::fs::metadata(path).await.and_then(|m| m.modified()).ok();
            if modified.is_none() || modified != read(&self.shared.state).file_modified {
                let _ = self.refresh().await;
            }
            return options.file_poll;
        }
        match self.refresh().await {
            Ok(next) => next,
            // Retry soon while nothing is loaded, then at the floor.
            Err(_) if !self.is_ready() => Duration::from_millis(500),
            Err(_) => options.min_refresh.min(Duration::from_secs(5)),
        }
    }

    /// Whether a key set is loaded and fresh enough to serve.
    pub fn is_ready(&self) -> bool {
        self.current().is_ok()
    }

    /// Waits until the first key set is loaded (for a readiness check
    /// before serving); after `timeout`, the reason it is not.
    pub async fn ready(&self, timeout: Duration) -> Result<(), KeySourceError> {
        let mut receiver = self.shared.ready.subscribe();
        let waited = tokio::time::timeout(timeout, receiver.wait_for(|ready| *ready)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(KeySourceError::NotLoaded(
                read(&self.shared.state)
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no answer from the key provider yet".into()),
            )),
        }
    }

    /// The lifecycle options.
    pub fn options(&self) -> &RemoteOptions {
        &self.shared.options
    }

    /// How many fetches were made (discovery and JWKS each count).
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// The keys to verify with now, or why there are none.
    pub fn current(&self) -> Result<KeySet, KeySourceError> {
        self.current_with_generation().map(|(keys, _)| keys)
    }

    /// The keys and their generation (which changes with every new key
    /// set), read together.
    pub(crate) fn current_with_generation(&self) -> Result<(KeySet, u64), KeySourceError> {
        let state = read(&self.shared.state);
        let reason = || state.last_error.clone().unwrap_or_default();
        match (&state.keys, state.loaded_at) {
            (Some(keys), Some(loaded_at)) => {
                let age = loaded_at.elapsed();
                if state.last_error.is_some() && age > self.shared.options.serve_stale_for {
                    Err(KeySourceError::Stale { age, reason: reason() })
                } else {
                    Ok((keys.clone(), state.key_generation))
                }
            }
            _ => Err(KeySourceError::NotLoaded(
                state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "first fetch in progress".into()),
            )),
        }
    }

    /// After a token named a `kid` the keys lack: fetches again unless one
    /// happened within the cooldown; joins a fetch already in flight.
    /// Returns whether new keys may be there (worth verifying again).
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let generation = self.shared.generation.load(Ordering::Acquire);
        {
            let state = read(&self.shared.state);
            if state
                .last_unknown_kid_fetch
                .is_some_and(|at| at.elapsed() < self.shared.options.unknown_kid_cooldown)
            {
                return false;
            }
        }
        let _flight = self.shared.flight.lock().await;
        if self.shared.generation.load(Ordering::Acquire) != generation {
            return true; // someone fetched while we waited
        }
        {
            let mut state = self.shared.state.write().unwrap_or_else(PoisonError::into_inner);
            if state
                .last_unknown_kid_fetch
                .is_some_and(|at| at.elapsed() < self.shared.options.unknown_kid_cooldown)
            {
                return false;
            }
            state.last_unknown_kid_fetch = Some(Instant::now());
        }
        self.fetch_and_store().await.is_ok()
    }

    /// Fetches now (one at a time), returning when to refresh next.
    async fn refresh(&self) -> Result<Duration, KeySourceError> {
        let _flight = self.shared.flight.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<Duration, KeySourceError> {
        let result = self.fetch().await;
        let mut state = self.shared.state.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok((keys, next, modified)) => {
                state.keys = Some(keys);
                state.key_generation += 1;
                state.loaded_at = Some(Instant::now());
                state.last_error = None;
                state.file_modified = modified;
                drop(state);
                self.shared.generation.fetch_add(1, Ordering::Release);
                self.shared.ready.send_replace(true);
                Ok(next)
            }
            Err(error) => {
                tracing::warn!(target: portcullis_core::audit::TARGET, layer = crate::LAYER, error = %error, "key set refresh failed; keeping the previous keys");
                state.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    async fn get(&self, url: &str) -> Result<http::Response<bytes::Bytes>, KeySourceError> {
        // Refused before any byte goes out: a key fetched over plain HTTP
        // is a key anyone on the path can choose.
        check_transport(url, self.shared.options.insecure_allow_http)?;
        self.shared.fetches.fetch_add(1, Ordering::Relaxed);
        let request = Request::get(url)
            .body(())
            .map_err(|error| KeySourceError::Fetch(format!("bad URL {url}: {error}")))?;
        let response = self
            .shared
            .client
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| KeySourceError::Fetch(format!("{url}: {error}")))?;
        if !response.status().is_success() {
            return Err(KeySourceError::Fetch(format!("{url}: status {}", response.status())));
        }
        Ok(response)
    }

    fn parse(&self, document: &[u8], origin: &str) -> Result<KeySet, KeySourceError> {
        let text = std::str::from_utf8(document)
            .map_err(|_| KeySourceError::Fetch(format!("{origin}: the JWKS is not UTF-8")))?;
        let from_network = !matches!(self.shared.source, Source::File(_));
        let keys = if from_network && !self.shared.options.insecure_allow_symmetric_keys {
            // Symmetric keys go before the set is built: a published secret
            // forges tokens, and what is left is judged on its own.
            let mut document: serde_json::Value = serde_json::from_str(text)
                .map_err(|error| KeySourceError::Fetch(format!("{origin}: malformed JWKS: {error}")))?;
            if let Some(entries) = document.get_mut("keys").and_then(serde_json::Value::as_array_mut) {
                let before = entries.len();
                entries.retain(|entry| entry.get("kty").and_then(serde_json::Value::as_str) != Some("oct"));
                if entries.len() != before {
                    tracing::warn!(
                        target: "portcullis::jwt",
                        origin,
                        "skipping symmetric (oct) keys from a network JWKS: a published secret forges tokens"
                    );
                }
            }
            KeySet::from_jwks_json(&document.to_string())
        } else {
            KeySet::from_jwks_json(text)
        }
        .map_err(|error| KeySourceError::Fetch(format!("{origin}: malformed JWKS: {error}")))?;
        if keys.is_empty() {
            return Err(KeySourceError::Fetch(format!("{origin}: the JWKS has no usable key")));
        }
        Ok(keys)
    }

    fn clamp(&self, max_age: Option<Duration>) -> Duration {
        let options = &self.shared.options;
        max_age
            .unwrap_or(options.refresh_every)
            .clamp(options.min_refresh, options.max_refresh.max(options.min_refresh))
    }

    async fn fetch(&self) -> Result<(KeySet, Duration, Option<SystemTime>), KeySourceError> {
        match &self.shared.source {
            Source::Jwks(url) => {
                let response = self.get(url).await?;
                let keys = self.parse(response.body(), url)?;
                Ok((keys, self.clamp(max_age(&response)), None))
            }
            Source::Discovery { issuer } => {
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let response = self.get(&url).await?;
                #[derive(serde::Deserialize)]
                struct Configuration {
                    issuer: String,
                    jwks_uri: String,
                }
                let configuration: Configuration = serde_json::from_slice(response.body())
                    .map_err(|error| KeySourceError::Fetch(format!("{url}: malformed discovery document: {error}")))?;
                if configuration.issuer != *issuer {
                    return Err(KeySourceError::Fetch(format!(
                        "{url}: the document names issuer {:?}, not {issuer:?}",
                        configuration.issuer
                    )));
                }
                let jwks = self.get(&configuration.jwks_uri).await?;
                let keys = self.parse(jwks.body(), &configuration.jwks_uri)?;
                Ok((keys, self.clamp(max_age(&jwks)), None))
            }
            Source::File(path) => {
                self.shared.fetches.fetch_add(1, Ordering::Relaxed);
                let origin = path.display().to_string();
                let modified = tokio::fs::metadata(path).await.and_then(|m| m.modified()).ok();
                let document = tokio::fs::read(path)
                    .await
                    .map_err(|error| KeySourceError::Fetch(format!("{origin}: {error}")))?;
                let keys = self.parse(&document, &origin)?;
                Ok((keys, self.shared.options.file_poll, modified))
            }
        }
    }
}
