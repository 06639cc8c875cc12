//! [`SessionLayer`]: the configuration, and the service it builds.

mod cookie;
mod future;
mod save;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{KeyringError, Responder, SecretKeyring, SharedClock, SharedResponder, SystemClock};
use tower_layer::Layer;

pub use future::ResponseFuture;
pub use service::SessionService;

use crate::{SessionStore, Sessions};

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (the default).
    Lax,
    /// `SameSite=None` (requires `Secure`).
    None,
}

/// Why a session configuration is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The id-hashing secret is shorter than 32 bytes.
    #[error("the session secret is too short: {got} bytes, at least {needed} required")]
    ShortSecret {
        /// The secret's length.
        got: usize,
        /// The minimum length.
        needed: usize,
    },
    /// The keyring was refused (empty, a short or repeated secret).
    #[error("the session keyring: {0}")]
    Keyring(#[from] KeyringError),
    /// A cookie name with the `__Host-` prefix requires `Secure`.
    #[error("a __Host- cookie must be Secure: rename it, or keep Secure on")]
    HostPrefixNeedsSecure,
    /// The idle timeout is longer than the absolute one, or zero.
    #[error("timeouts must be non-zero and idle <= absolute")]
    Timeouts,
}

pub(crate) struct Config {
    pub(crate) cookie_name: Arc<str>,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    pub(crate) refresh_fraction: f64,
    pub(crate) rotation_grace: Duration,
    pub(crate) max_per_subject: Option<usize>,
    pub(crate) keep_on_login: Vec<String>,
    /// One hasher per secret of the keyring, current first.
    pub(crate) hashers: Arc<[crate::id::IdHasher]>,
    pub(crate) clock: SharedClock,
    pub(crate) responder: Option<SharedResponder>,
}

impl Config {
    /// The hasher of the current secret: every new key is made with it.
    pub(crate) fn current_hasher(&self) -> &crate::id::IdHasher {
        &self.hashers[0]
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("cookie_name", &self.cookie_name)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("rotation_grace", &self.rotation_grace)
            .finish_non_exhaustive()
    }
}

/// Server-side sessions behind an opaque cookie. See the [crate docs](crate).
#[derive(Clone, Debug)]
#[must_use]
pub struct SessionLayer {
    pub(crate) sessions: Sessions,
    pub(crate) config: Arc<Config>,
}

/// The default cookie name. The `__Host-` prefix makes the browser refuse
/// it unless `Secure`, `Path=/` and no `Domain`: no subdomain can plant or
/// overwrite it.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-session";

fn random_secret() -> Arc<[crate::id::IdHasher]> {
    let secret: [u8; 32] = portcullis_core::random_bytes();
    Arc::new([crate::id::IdHasher::new(&secret)])
}

impl SessionLayer {
    /// Sessions in `store`, with the secure defaults: cookie
    /// `__Host-session`, `HttpOnly; Secure; SameSite=Lax; Path=/`, 30 min
    /// idle and 12 h absolute timeouts, a 5 s rotation grace, and a random
    /// id-hashing secret (set [`SessionLayer::secret`] when several
    /// instances share a store).
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            sessions: Sessions::new(store),
            config: Arc::new(Config {
                cookie_name: DEFAULT_COOKIE_NAME.into(),
                secure: true,
                same_site: SameSite::Lax,
                idle: Duration::from_secs(30 * 60),
                absolute: Duration::from_secs(12 * 60 * 60),
                refresh_fraction: 0.5,
                rotation_grace: Duration::from_secs(5),
                max_per_subject: None,
                keep_on_login: Vec::new(),
                hashers: random_secret(),
                clock: Arc::new(SystemClock),
                responder: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        // Builder methods run before the layer is shared: `get_mut` holds.
        // A shared layer is copied (the secret included) before the edit.
        let config = match Arc::get_mut(&mut self.config) {
            Some(config) => config,
            None => {
                let c = &self.config;
                self.config = Arc::new(Config {
                    cookie_name: c.cookie_name.clone(),
                    secure: c.secure,
                    same_site: c.same_site,
                    idle: c.idle,
                    absolute: c.absolute,
                    refresh_fraction: c.refresh_fraction,
                    rotation_grace: c.rotation_grace,
                    max_per_subject: c.max_per_subject,
                    keep_on_login: c.keep_on_login.clone(),
                    hashers: c.hashers.clone(),
                    clock: c.clock.clone(),
                    responder: c.responder.clone(),
                });
                Arc::get_mut(&mut self.config).unwrap_or_else(|| unreachable!("fresh Arc"))
            }
        };
        f(config);
        self
    }

    /// The secret the session ids are hashed under (a keyed SHA-256) before
    /// they reach the store. Every instance sharing a store needs the same
    /// one; at least 32 bytes. The one-secret case of
    /// [`secrets`](SessionLayer::secrets).
    pub fn secret(self, secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < SecretKeyring::MIN_LEN {
            return Err(ConfigError::ShortSecret {
                got: secret.len(),
                needed: SecretKeyring::MIN_LEN,
            });
        }
        self.secrets(&SecretKeyring::single(secret)?)
    }

    /// The keyring session ids are hashed under, current secret first.
    /// New sessions are stored under the current secret; a session found
    /// under a previous one is moved to the current one
    /// ([`SessionStore::rekey`]) on its first request, keeping its cookie,
    /// data and deadlines, and counted in
    /// [`Sessions::rekeyed_sessions`]. A lookup costs one store read in
    /// the common case (found under the current secret); only a miss tries
    /// the previous ones.
    ///
    /// To rotate with several instances on one store: add the new secret
    /// *after* the current one everywhere, then move it first everywhere;
    /// once the sessions you want to keep have moved (the metric levels
    /// off, or after the idle timeout), drop the old one. Sessions left
    /// idle through the whole overlap end then.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use portcullis_core::SecretKeyring;
    /// use portcullis_session::{MemoryStore, SessionLayer};
    ///
    /// let ring = SecretKeyring::new([[2u8; 32], [1u8; 32]])?;
    /// let layer = SessionLayer::new(Arc::new(MemoryStore::new())).secrets(&ring)?;
    /// assert_eq!(layer.sessions().rekeyed_sessions(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn secrets(self, ring: &SecretKeyring) -> Result<Self, ConfigError> {
        let hashers: Arc<[crate::id::IdHasher]> = ring.iter().map(crate::id::IdHasher::new).collect();
        Ok(self.edit(|c| c.hashers = hashers))
    }

    /// The cookie's name.
    pub fn cookie_name(self, name: impl Into<Arc<str>>) -> Result<Self, ConfigError> {
        let name = name.into();
        if name.starts_with("__Host-") && !self.config.secure {
            return Err(ConfigError::HostPrefixNeedsSecure);
        }
        Ok(self.edit(|c| c.cookie_name = name))
    }

    /// The cookie's `SameSite` attribute (default `Lax`).
    pub fn same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.same_site = same_site)
    }

    /// Drops `Secure` and the `__Host-` prefix (cookie `session`), for
    /// plain-HTTP local development.
    ///
    /// # Security
    /// The cookie then travels in clear text and can be planted by a
    /// sibling subdomain. Never in production.
    pub fn insecure_http(self) -> Self {
        tracing::warn!(target: "portcullis::session", "insecure_http: session cookie without Secure or __Host-");
        self.edit(|c| {
            c.secure = false;
            if c.cookie_name.starts_with("__Host-") {
                c.cookie_name = "session".into();
            }
        })
    }

    /// Idle and absolute timeouts (defaults 30 min and 12 h).
    pub fn timeouts(self, idle: Duration, absolute: Duration) -> Result<Self, ConfigError> {
        if idle.is_zero() || absolute.is_zero() || idle > absolute {
            return Err(ConfigError::Timeouts);
        }
        Ok(self.edit(|c| {
            c.idle = idle;
            c.absolute = absolute;
        }))
    }

    /// How long a rotated-away id keeps working for requests already in
    /// flight (default 5 s). Applies to [`Session::cycle_id`](crate::Session::cycle_id)
    /// of a logged-in session; a login that changes who is logged in never
    /// leaves the old id usable (that would reopen fixation).
    pub fn rotation_grace(self, grace: Duration) -> Self {
        self.edit(|c| c.rotation_grace = grace)
    }

    /// The issuer local logins belong to ([`Session::login`](crate::Session::login)):
    /// every session identity's principal is `(issuer, subject)`. Use the
    /// `iss` of your own access tokens, so a user is one principal whether
    /// they come by cookie or by token. Default [`DEFAULT_ISSUER`](crate::DEFAULT_ISSUER).
    pub fn issuer(mut self, issuer: impl Into<Arc<str>>) -> Self {
        self.sessions.set_issuer(issuer.into());
        self
    }

    /// Session data keys that carry over when a login replaces another
    /// principal on the same session (a shopping cart, a language).
    /// Everything else, the CSRF secret included, is dropped then: one
    /// person's session data never becomes another's. A login on an
    /// anonymous session keeps its data (the visitor's own).
    pub fn keep_on_login<I, S>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        self.edit(|c| c.keep_on_login = keys)
    }

    /// At most `n` sessions per subject: a login beyond it ends the oldest.
    pub fn max_sessions_per_subject(self, n: usize) -> Self {
        self.edit(|c| c.max_per_subject = Some(n.max(1)))
    }

    /// The clock for the timeouts (tests move a `ManualClock`).
    pub fn clock(self, clock: SharedClock) -> Self {
        self.edit(|c| c.clock = clock)
    }

    /// Replaces how rejections (503 on a store outage) are rendered.
    pub fn responder(self, responder: impl Responder) -> Self {
        let responder: SharedResponder = Arc::new(responder);
        self.edit(|c| c.responder = Some(responder))
    }

    /// The subject-level operations over this layer's store.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}
