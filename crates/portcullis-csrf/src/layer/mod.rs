//! `CsrfLayer`: its configuration.

mod future;
mod service;

use std::sync::Arc;

use aws_lc_rs::hmac;
use portcullis_core::{Responder, SecretKeyring, SharedResponder};
use tower_layer::Layer;

pub use future::{FormRead, Verdict};
pub use service::CsrfService;

use crate::origin::Origin;

/// Rejects cross-site state changes carried by an ambient credential.
///
/// Applies to unsafe methods (anything but GET, HEAD, OPTIONS, TRACE). Put
/// it after the authenticators (`SessionLayer`, `JwtLayer`): it reads what
/// they left. A `CsrfLayer` with no authenticator before it answers 500
/// (misconfigured), never a silent pass.
///
/// Which requests are checked:
/// - **A live session cookie, or a JWT read from a cookie**
///   ([`JwtLayer::cookie`](https://docs.rs/portcullis-jwt)): the origin
///   rules, then the token rule.
/// - **No credential at all** (a login form): the origin rules. A
///   cross-site form that logs the victim into the attacker's account is
///   login CSRF.
/// - **An `Authorization` header and no cookie credential**: exempt. A
///   browser cannot attach that header cross-site without the target's
///   CORS consent.
///
/// 1. **Origin first**: `Sec-Fetch-Site` (`same-origin` and `none`, a
///    user-typed navigation, pass; `same-site` passes only when allowed;
///    otherwise the `Origin` must be trusted), else `Origin` (the request's
///    own origin or a trusted one; `null` never), else `Referer`. A request
///    with none of them comes from no browser (curl, a mobile app, a
///    server-to-server call such as an OAuth token endpoint or a provider's
///    back-channel logout) and passes the origin rules, as in Go's
///    `CrossOriginProtection` and `tower_http`; the token rule still
///    applies where a cookie credential is present.
/// 2. **Token** (on by default, where a cookie credential is present): a
///    token bound to the session (or to the cookie JWT's principal), from
///    the `X-CSRF-Token` header or the `csrf_token` field of a urlencoded
///    or multipart form (the body is buffered up to 64 KiB and passed on
///    intact), compared in constant time. See [`CsrfToken`](crate::CsrfToken).
///
/// Refusals are 403 with the reason in the problem body and the audit
/// event: `cross-site request`, `untrusted origin`, `missing token`,
/// `token mismatch`. Responses the origin rules looked at carry
/// `Vary: Origin, Sec-Fetch-Site`; responses that issued a token,
/// `Vary: Cookie`.
///
/// Behind a proxy, set [`public_origin`](CsrfLayer::public_origin): the
/// request's own origin is otherwise rebuilt from its `Host` header.
///
/// ```
/// use portcullis_csrf::CsrfLayer;
///
/// let csrf = CsrfLayer::new()
///     .secret(b"the same 32+ byte secret on every instance")?
///     .public_origin("https://app.example.com")?
///     .trusted_origin("https://*.admin.example.com")?;
/// # Ok::<(), portcullis_csrf::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct CsrfLayer {
    pub(crate) config: Arc<Config>,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// One key per secret of the keyring, current first.
    pub(crate) keys: crate::token::Keys,
    /// Names `keys` for the expected tokens remembered on session records
    /// ([`Session::derived`](portcullis_session::Session::derived)): unique
    /// to this process's every set of keys, so a layer never reads a token
    /// another layer's keys made.
    pub(crate) keys_tag: u64,
    pub(crate) public_origin: Option<Origin>,
    pub(crate) trusted: Vec<Origin>,
    pub(crate) allow_same_site: bool,
    pub(crate) tokens: bool,
    pub(crate) report_only: bool,
    pub(crate) exempt: Vec<String>,
    pub(crate) body_limit: usize,
    pub(crate) scheme: &'static str,
    pub(crate) responder: Option<SharedResponder>,
}

/// Invalid configuration of [`CsrfLayer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret is shorter than 32 bytes.
    #[error("the CSRF secret is too short: {got} bytes, at least {needed} required")]
    ShortSecret {
        /// The secret's length.
        got: usize,
        /// The minimum length.
        needed: usize,
    },
    /// The keyring was refused (empty, a short or repeated secret).
    #[error("the CSRF keyring: {0}")]
    Keyring(#[from] portcullis_core::KeyringError),
    /// An origin is not `scheme://host[:port]`.
    #[error("not an origin (scheme://host[:port]): {0}")]
    BadOrigin(String),
    /// An exempt route does not start with `/`.
    #[error("an exempt route must be a path starting with '/': {0}")]
    BadExemptPath(String),
}

impl Default for CsrfLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CsrfLayer {
    /// Origin checks and tokens on, with a random per-process key: set
    /// [`secret`](CsrfLayer::secret) when several instances serve one site
    /// or tokens must survive a restart.
    pub fn new() -> Self {
        let key: [u8; 32] = portcullis_core::random_bytes();
        Self {
            config: Arc::new(Config {
                keys: Arc::new([hmac::Key::new(hmac::HMAC_SHA256, &key)]),
                keys_tag: crate::token::new_keys_tag(),
                public_origin: None,
                trusted: Vec::new(),
                allow_same_site: false,
                tokens: true,
                report_only: false,
                exempt: Vec::new(),
                body_limit: 64 * 1024,
                scheme: "https",
                responder: None,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// The key tokens are derived under (at least 32 bytes; the same on
    /// every instance). The one-secret case of [`secrets`](CsrfLayer::secrets).
    pub fn secret(self, secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < SecretKeyring::MIN_LEN {
            return Err(ConfigError::ShortSecret {
                got: secret.len(),
                needed: SecretKeyring::MIN_LEN,
            });
        }
        Ok(self.secrets(&SecretKeyring::single(secret)?))
    }

    /// The keyring tokens are derived under, current secret first: every
    /// token issued (session, pre-session and cookie-JWT bound alike) is
    /// made with the current secret only; a token made with any secret of
    /// the ring is accepted, so forms open in a browser survive a
    /// rotation. A token of the current secret costs one MAC, as with a
    /// single secret; only an older (or a wrong) one tries the others.
    ///
    /// ```
    /// use portcullis_core::SecretKeyring;
    /// use portcullis_csrf::CsrfLayer;
    ///
    /// let ring = SecretKeyring::new([[2u8; 32], [1u8; 32]])?;
    /// let csrf = CsrfLayer::new().secrets(&ring);
    /// # Ok::<(), portcullis_core::KeyringError>(())
    /// ```
    pub fn secrets(self, ring: &SecretKeyring) -> Self {
        let keys: crate::token::Keys = ring
            .iter()
            .map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret))
            .collect();
        self.with(|config| {
            config.keys = keys;
            config.keys_tag = crate::token::new_keys_tag();
        })
    }

    /// The site's public origin (`https://app.example.com`): the request's
    /// own origin, instead of one rebuilt from its `Host` header.
    pub fn public_origin(self, origin: &str) -> Result<Self, ConfigError> {
        let origin = Origin::parse(origin, false).ok_or_else(|| ConfigError::BadOrigin(origin.into()))?;
        Ok(self.with(|config| config.public_origin = Some(origin)))
    }

    /// Another origin allowed to post here; `https://*.example.com` trusts
    /// every subdomain of `example.com` (not `example.com` itself).
    pub fn trusted_origin(self, origin: &str) -> Result<Self, ConfigError> {
        let origin = Origin::parse(origin, false).ok_or_else(|| ConfigError::BadOrigin(origin.into()))?;
        Ok(self.with(|config| config.trusted.push(origin)))
    }

    /// Lets `Sec-Fetch-Site: same-site` requests (other origins of the
    /// same registrable domain) pass the origin check.
    pub fn allow_same_site(self) -> Self {
        self.with(|config| config.allow_same_site = true)
    }

    /// Origin checks only, no tokens (what `tower_http::csrf` does). Safe
    /// for browsers that send `Sec-Fetch-Site` or `Origin`; the token is
    /// the defence for those that send neither.
    pub fn origin_checks_only(self) -> Self {
        self.with(|config| config.tokens = false)
    }

    /// Logs (audit outcome `would_reject`) what would be refused, and lets
    /// it pass: for rolling the layer out on a live site.
    pub fn report_only(self) -> Self {
        self.with(|config| config.report_only = true)
    }

    /// Exempts requests whose path is `path` or below it, on a path-segment
    /// boundary (`/hooks` covers `/hooks/stripe`, not `/hooksevil`):
    /// webhooks called by other servers. **Insecure**: such a route must protect itself, e.g.
    /// with a signature on the payload.
    pub fn insecure_exempt(self, path: &str) -> Result<Self, ConfigError> {
        if !path.starts_with('/') {
            return Err(ConfigError::BadExemptPath(path.into()));
        }
        let path = path.to_owned();
        Ok(self.with(|config| config.exempt.push(path)))
    }

    /// The most form body bytes buffered to find a token (default 64 KiB).
    /// Larger forms must send the token in the `X-CSRF-Token` header.
    pub fn body_limit(self, bytes: usize) -> Self {
        self.with(|config| config.body_limit = bytes)
    }

    /// **Insecure**, for plain-HTTP development: the request's own origin
    /// rebuilt from `Host` is `http://…` instead of `https://…`.
    pub fn insecure_http(self) -> Self {
        self.with(|config| config.scheme = "http")
    }

    /// Renders refusals with `responder` instead of the default.
    pub fn responder(self, responder: impl Responder) -> Self {
        let responder: SharedResponder = Arc::new(responder);
        self.with(|config| config.responder = Some(responder))
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService::new(self.clone(), inner)
    }
}
