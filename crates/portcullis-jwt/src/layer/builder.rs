use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Responder, SharedClock, SharedResponder, SystemClock};
use tower_layer::Layer;

use super::JwtService;
use crate::cache::CacheLimits;
use crate::{ConfigError, JwtVerifier, Keys, Validation};

/// Authenticates requests by their bearer token (JWT) and puts the caller's
/// [`Identity`](portcullis_core::Identity) into the request's extensions.
///
/// Build it with [`JwtLayer::builder`]; see the [crate docs](crate) for an
/// example and the security properties.
#[derive(Clone, Debug)]
#[must_use]
pub struct JwtLayer {
    pub(crate) verifier: JwtVerifier,
    pub(crate) required: bool,
    pub(crate) cookie: Option<Arc<str>>,
    pub(crate) responder: Option<SharedResponder>,
}

impl JwtLayer {
    /// Starts configuring a layer around a ready verifier, e.g. a
    /// multi-issuer one from [`JwtVerifier::for_issuers`]. The verifier's
    /// own keys, validation, cache and clock apply: setting any of them on
    /// the builder (`issuer`, `audience`, `leeway`, `cache`, `clock`, …)
    /// makes [`JwtLayerBuilder::build`] fail rather than be ignored.
    pub fn with_verifier(verifier: JwtVerifier) -> JwtLayerBuilder {
        let mut builder = Self::builder(verifier.keys().clone());
        builder.verifier = Some(verifier);
        builder
    }

    /// Starts configuring a layer that verifies tokens with `keys`.
    pub fn builder(keys: impl Into<Keys>) -> JwtLayerBuilder {
        JwtLayerBuilder {
            verifier: None,
            verifier_setting: None,
            keys: keys.into(),
            validation: Validation::new(),
            required: true,
            cookie: None,
            cache: Some(CacheLimits::default()),
            clock: Arc::new(SystemClock),
            responder: None,
        }
    }

    /// The verifier inside the layer.
    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
    }
}

impl<S> Layer<S> for JwtLayer {
    type Service = JwtService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtService::new(self.clone(), inner)
    }
}

/// Configures a [`JwtLayer`]. Finish with [`JwtLayerBuilder::build`], which
/// refuses an insecure configuration (no audience, no issuer, no keys).
#[derive(Debug)]
#[must_use]
pub struct JwtLayerBuilder {
    verifier: Option<JwtVerifier>,
    /// The first verifier-owned setting made on this builder: refused at
    /// `build` when a ready verifier was given (it would be ignored).
    verifier_setting: Option<&'static str>,
    keys: Keys,
    validation: Validation,
    required: bool,
    cookie: Option<Arc<str>>,
    cache: Option<CacheLimits>,
    clock: SharedClock,
    responder: Option<SharedResponder>,
}

impl JwtLayerBuilder {
    /// Accepts tokens from `issuer`; call again for several.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.touch("issuer");
        self.validation = self.validation.issuer(issuer);
        self
    }

    /// Accepts tokens for `audience`; call again for several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.touch("audience");
        self.validation = self.validation.audience(audience);
        self
    }

    /// Clock skew tolerated on `exp`, `nbf`, `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.touch("leeway");
        self.validation = self.validation.leeway(leeway);
        self
    }

    /// Requires the header `typ`, e.g. `at+jwt` (RFC 9068).
    pub fn token_type(mut self, typ: impl Into<Arc<str>>) -> Self {
        self.touch("token_type");
        self.validation = self.validation.token_type(typ);
        self
    }

    /// Requires a claim to be present.
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.touch("require_claim");
        self.validation = self.validation.require_claim(name);
        self
    }

    /// The largest token accepted, checked before any decoding (default
    /// 8 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.touch("max_token_bytes");
        self.validation = self.validation.max_token_bytes_limit(bytes);
        self
    }

    /// Replaces the whole validation profile.
    pub fn validation(mut self, validation: Validation) -> Self {
        self.touch("validation");
        self.validation = validation;
        self
    }

    /// Accepts any audience. See [`Validation::insecure_accept_any_audience`].
    pub fn insecure_accept_any_audience(mut self) -> Self {
        self.touch("insecure_accept_any_audience");
        self.validation = self.validation.insecure_accept_any_audience();
        self
    }

    /// Accepts any issuer. See [`Validation::insecure_accept_any_issuer`].
    pub fn insecure_accept_any_issuer(mut self) -> Self {
        self.touch("insecure_accept_any_issuer");
        self.validation = self.validation.insecure_accept_any_issuer();
        self
    }

    /// A request without a token is refused with 401 and a bare `Bearer`
    /// challenge. The default.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// A request without a token goes on unauthenticated (a session, or a
    /// later `RequireAuthLayer`, decides). A *bad* token is still refused.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Also reads the token from the cookie `name` when there is no
    /// `Authorization` header.
    ///
    /// # Security
    /// Browsers send cookies on their own: a token read from a cookie needs
    /// CSRF protection like a session cookie. Its identity says so
    /// ([`TokenTransport::Cookie`](portcullis_core::TokenTransport)).
    pub fn cookie(mut self, name: impl Into<Arc<str>>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Bounds the verified-token cache (on by default: 10,000 tokens,
    /// 16 MiB). A hit skips the signature check; an entry never outlives
    /// its token's `exp`. Guards after the layer still run every time.
    pub fn cache(mut self, limits: CacheLimits) -> Self {
        self.touch("cache");
        self.cache = Some(limits);
        self
    }

    /// Turns the verified-token cache off: every request pays a signature
    /// check.
    pub fn without_cache(mut self) -> Self {
        self.touch("without_cache");
        self.cache = None;
        self
    }

    /// The clock for `exp`/`nbf`/`iat` (tests move a `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.touch("clock");
        self.clock = clock;
        self
    }

    /// Replaces how rejections are rendered.
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }

    fn touch(&mut self, setting: &'static str) {
        self.verifier_setting.get_or_insert(setting);
    }

    /// Finishes the layer.
    ///
    /// # Errors
    /// [`ConfigError`] when the key set is empty, or no audience or issuer
    /// is configured and none was explicitly waived; with
    /// [`JwtLayer::with_verifier`], [`ConfigError::SetOnVerifier`] when a
    /// setting that belongs to the verifier was made on the builder (it
    /// would have no effect).
    pub fn build(self) -> Result<JwtLayer, ConfigError> {
        if let (Some(_), Some(setting)) = (&self.verifier, self.verifier_setting) {
            return Err(ConfigError::SetOnVerifier(setting));
        }
        Ok(JwtLayer {
            verifier: match self.verifier {
                Some(verifier) => verifier,
                None => JwtVerifier::with_keys(self.keys, self.validation, self.clock, self.cache)?,
            },
            required: self.required,
            cookie: self.cookie,
            responder: self.responder,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningKey, Validation};

    fn verifier() -> JwtVerifier {
        let key = SigningKey::generate_ed25519().expect("key");
        JwtVerifier::new(
            key.verifying_key().into(),
            Validation::new().issuer("https://a.test").audience("api"),
        )
        .expect("verifier")
    }

    #[test]
    fn with_verifier_refuses_the_settings_it_would_ignore() {
        let ignored = JwtLayer::with_verifier(verifier()).issuer("https://other.test").build();
        assert_eq!(ignored.err(), Some(ConfigError::SetOnVerifier("issuer")));
        let ignored = JwtLayer::with_verifier(verifier()).optional().without_cache().build();
        assert_eq!(ignored.err(), Some(ConfigError::SetOnVerifier("without_cache")));
        // The layer's own settings are fine.
        let layer = JwtLayer::with_verifier(verifier())
            .optional()
            .cookie("access_token")
            .build();
        assert!(layer.is_ok());
    }
}
