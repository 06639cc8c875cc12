use std::sync::Arc;

use portcullis_core::{Responder, SharedClock, SharedResponder};
use tower_layer::Layer;

use super::JwtService;
use crate::cache::CacheLimits;
use crate::{ConfigError, JwtVerifier, Keys, Validation};

/// Authenticates requests by their bearer token (JWT) and puts the caller's
/// [`Identity`](portcullis_core::Identity) into the request's extensions.
///
/// The layer is its own builder, as every Portcullis layer: a constructor,
/// then setters; only the constructor can fail. What a token must satisfy
/// (issuer, audience, leeway, `typ`, required claims, size) is the
/// [`Validation`]; how it is checked (clock, cache) can be set here or on
/// the [`JwtVerifier`]. See the [crate docs](crate) for the security
/// properties.
///
/// ```
/// use portcullis_jwt::{JwtIssuer, JwtLayer, SigningKey, Validation};
///
/// let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://auth.example", "notes-api");
/// let layer = JwtLayer::new(
///     issuer.verifying_key(),
///     Validation::new().issuer("https://auth.example").audience("notes-api"),
/// )?
/// .optional()
/// .cookie("access_token");
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Settings that belong to the validation cannot be made on the layer, so
/// none is ever silently ignored:
///
/// ```compile_fail
/// # use portcullis_jwt::{JwtLayer, JwtVerifier};
/// # fn demo(verifier: JwtVerifier) {
/// let layer = JwtLayer::with_verifier(verifier).issuer("https://other.example");
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct JwtLayer {
    pub(crate) verifier: JwtVerifier,
    pub(crate) required: bool,
    pub(crate) cookie: Option<Arc<str>>,
    pub(crate) responder: Option<SharedResponder>,
}

impl JwtLayer {
    /// A layer that verifies tokens with `keys` under `validation`, with the
    /// default cache and the system clock. A token is required (see
    /// [`optional`](Self::optional)).
    ///
    /// # Errors
    /// [`ConfigError`] when the key set is empty, or no audience or issuer
    /// is configured and none was explicitly waived.
    pub fn new(keys: impl Into<Keys>, validation: Validation) -> Result<Self, ConfigError> {
        let verifier = JwtVerifier::with_keys(
            keys.into(),
            validation,
            Arc::new(portcullis_core::SystemClock),
            Some(CacheLimits::default()),
        )?;
        Ok(Self::with_verifier(verifier))
    }

    /// A layer around a ready verifier, e.g. a multi-issuer one from
    /// [`JwtVerifier::for_issuers`].
    pub fn with_verifier(verifier: JwtVerifier) -> Self {
        Self {
            verifier,
            required: true,
            cookie: None,
            responder: None,
        }
    }

    /// The verifier inside the layer.
    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
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

    /// Bounds the verified-token cache: [`JwtVerifier::cache`].
    pub fn cache(mut self, limits: CacheLimits) -> Self {
        self.verifier = self.verifier.cache(limits);
        self
    }

    /// Turns the verified-token cache off: [`JwtVerifier::without_cache`].
    pub fn without_cache(mut self) -> Self {
        self.verifier = self.verifier.without_cache();
        self
    }

    /// The clock for `exp`/`nbf`/`iat`: [`JwtVerifier::clock`].
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.verifier = self.verifier.clock(clock);
        self
    }

    /// Replaces how rejections are rendered.
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }
}

impl<S> Layer<S> for JwtLayer {
    type Service = JwtService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtService::new(self.clone(), inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    #[test]
    fn clock_and_cache_set_on_a_layer_apply_to_its_verifier() {
        let key = SigningKey::generate_ed25519().expect("key");
        let validation = Validation::new().issuer("https://a.test").audience("api");
        let verifier = JwtVerifier::new(key.verifying_key().into(), validation).expect("verifier");
        let token = crate::JwtIssuer::new(key, "https://a.test", "api")
            .mint("alice", ["x"])
            .expect("mint");
        let later =
            portcullis_core::ManualClock::new(std::time::SystemTime::now() + std::time::Duration::from_secs(3600));
        let layer = JwtLayer::with_verifier(verifier.clone()).clock(Arc::new(later));
        assert!(verifier.verify(&token).is_ok(), "the original verifier is untouched");
        assert_eq!(
            layer.verifier().verify(&token).err(),
            Some(crate::JwtError::Expired),
            "the layer's verifier reads the layer's clock"
        );
    }
}
