use std::sync::Arc;
use std::time::Duration;

/// What a token must satisfy besides its signature.
///
/// Secure by default: `exp` is required; `nbf` and `iat` are checked; a
/// configured issuer or audience must be *present* and match (a token that
/// leaves `iss` or `aud` out is refused, not waved through); the leeway is
/// 30 seconds; tokens over 8 KiB are refused before any decoding.
///
/// ```
/// use std::time::Duration;
/// use portcullis_jwt::Validation;
///
/// let validation = Validation::new()
///     .issuer("https://auth.example.com")
///     .audience("notes-api")
///     .token_type("at+jwt")
///     .require_claim("tenant")
///     .leeway(Duration::from_secs(10));
/// assert_eq!(validation.max_token_bytes(), 8 * 1024);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Validation {
    pub(crate) issuers: Arc<[String]>,
    pub(crate) audiences: Arc<[String]>,
    pub(crate) leeway: Duration,
    pub(crate) token_type: Option<Arc<str>>,
    pub(crate) required_claims: Arc<[String]>,
    pub(crate) max_token_bytes: usize,
    pub(crate) any_issuer: bool,
    pub(crate) any_audience: bool,
}

impl Default for Validation {
    fn default() -> Self {
        Self::new()
    }
}

fn push(list: &Arc<[String]>, item: String) -> Arc<[String]> {
    let mut items = list.to_vec();
    items.push(item);
    items.into()
}

impl Validation {
    /// The default profile, with no issuer or audience yet.
    pub fn new() -> Self {
        Self {
            issuers: Arc::from(Vec::new()),
            audiences: Arc::from(Vec::new()),
            leeway: Duration::from_secs(30),
            token_type: None,
            required_claims: Arc::from(Vec::new()),
            max_token_bytes: 8 * 1024,
            any_issuer: false,
            any_audience: false,
        }
    }

    /// Accepts tokens from `issuer` (`iss`). Call again to accept several.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers = push(&self.issuers, issuer.into());
        self
    }

    /// Accepts tokens for `audience` (one of `aud`). Call again to accept
    /// several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences = push(&self.audiences, audience.into());
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires the header's `typ` (e.g. RFC 9068 `at+jwt`), compared
    /// case-insensitively, with or without `application/`.
    pub fn token_type(mut self, typ: impl Into<Arc<str>>) -> Self {
        self.token_type = Some(typ.into());
        self
    }

    /// Requires a claim to be present.
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required_claims = push(&self.required_claims, name.into());
        self
    }

    /// The largest token accepted, in bytes (default 8 KiB).
    pub fn max_token_bytes_limit(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// The largest token accepted, in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Accepts tokens whatever their audience.
    ///
    /// # Security
    /// Any token the issuer minted for *any* service is then accepted here.
    pub fn insecure_accept_any_audience(mut self) -> Self {
        tracing::warn!(target: "portcullis::jwt", "audience check disabled: tokens for any service are accepted");
        self.any_audience = true;
        self
    }

    /// Accepts tokens whatever their issuer.
    ///
    /// # Security
    /// Any holder of a trusted key can then claim to be any issuer.
    pub fn insecure_accept_any_issuer(mut self) -> Self {
        tracing::warn!(target: "portcullis::jwt", "issuer check disabled");
        self.any_issuer = true;
        self
    }

    pub(crate) fn check(&self) -> Result<(), crate::ConfigError> {
        if self.audiences.is_empty() && !self.any_audience {
            return Err(crate::ConfigError::NoAudience);
        }
        if self.issuers.is_empty() && !self.any_issuer {
            return Err(crate::ConfigError::NoIssuer);
        }
        if self.max_token_bytes == 0 {
            return Err(crate::ConfigError::ZeroTokenSize);
        }
        Ok(())
    }
}
