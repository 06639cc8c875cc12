use std::fmt;
use std::sync::Arc;

use portcullis_core::{Identity, SharedClock, SystemClock, TokenTransport};

use crate::cache::{CacheLimits, TokenCache};
use crate::token::EngineRules;
use crate::{ConfigError, JwtError, KeySet, Keys, Validation};

/// Verifies bearer tokens: the engine inside [`JwtLayer`](crate::JwtLayer),
/// usable on its own (a token-introspection endpoint, a WebSocket
/// handshake, a test).
///
/// ```
/// use portcullis_jwt::{JwtIssuer, JwtVerifier, SigningKey, Validation};
///
/// let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://auth.example", "notes-api");
/// let verifier = JwtVerifier::new(
///     issuer.verifying_key().into(),
///     Validation::new().issuer("https://auth.example").audience("notes-api"),
/// )?;
/// let token = issuer.mint("alice", ["notes:read"])?;
/// let identity = verifier.verify(&token)?;
/// assert_eq!(identity.subject(), "alice");
/// assert!(identity.has_scope("notes:read"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtVerifier(Arc<Inner>);

struct Inner {
    keys: Keys,
    validation: Validation,
    /// The same rules as jsonwebtoken's `Validation`s, built once.
    rules: EngineRules,
    clock: SharedClock,
    cache: Option<TokenCache>,
    /// Several issuers, each with its own keys and audience: a token goes
    /// to the verifier of its `iss` (and that verifier checks it again).
    tenants: Option<Box<[(String, JwtVerifier)]>>,
}

impl JwtVerifier {
    /// A verifier with the default cache and the system clock.
    pub fn new(keys: KeySet, validation: Validation) -> Result<Self, ConfigError> {
        Self::with_options(keys, validation, Arc::new(SystemClock), Some(CacheLimits::default()))
    }

    /// A verifier with an explicit clock and cache (`None` turns the cache
    /// off).
    pub fn with_options(
        keys: KeySet,
        validation: Validation,
        clock: SharedClock,
        cache: Option<CacheLimits>,
    ) -> Result<Self, ConfigError> {
        Self::with_keys(Keys::Static(keys), validation, clock, cache)
    }

    /// A verifier over any [`Keys`] source (a remote key set, feature
    /// `remote`), with an explicit clock and cache.
    pub fn with_keys(
        keys: Keys,
        validation: Validation,
        clock: SharedClock,
        cache: Option<CacheLimits>,
    ) -> Result<Self, ConfigError> {
        if let Keys::Static(keys) = &keys
            && keys.is_empty()
        {
            return Err(ConfigError::NoKeys);
        }
        validation.check()?;
        crate::engine::check_provider()?;
        Ok(Self(Arc::new(Inner {
            rules: EngineRules::new(&validation),
            keys,
            validation,
            clock,
            cache: cache.map(TokenCache::new),
            tenants: None,
        })))
    }

    /// The clock `exp`, `nbf` and `iat` are checked against (tests move a
    /// `ManualClock`); for a multi-issuer verifier, every issuer's. The
    /// verified-token cache starts empty.
    pub fn clock(self, clock: SharedClock) -> Self {
        self.rebuilt(Some(&clock), None)
    }

    /// Bounds the verified-token cache (on by default: 10,000 tokens,
    /// 16 MiB). A hit skips the signature check; an entry never outlives
    /// its token's `exp`. Guards after the verifier still run every time.
    pub fn cache(self, limits: CacheLimits) -> Self {
        self.rebuilt(None, Some(Some(limits)))
    }

    /// Turns the verified-token cache off: every token pays a signature
    /// check.
    pub fn without_cache(self) -> Self {
        self.rebuilt(None, Some(None))
    }

    /// The same verifier with another clock or cache (`None`: keep it);
    /// multi-issuer verifiers pass the change to every issuer's verifier.
    fn rebuilt(&self, clock: Option<&SharedClock>, cache: Option<Option<CacheLimits>>) -> Self {
        let inner = &self.0;
        let tenants = inner.tenants.as_ref().map(|tenants| {
            tenants
                .iter()
                .map(|(issuer, verifier)| (issuer.clone(), verifier.rebuilt(clock, cache)))
                .collect()
        });
        let cache = match cache {
            Some(limits) => limits,
            None => inner.cache.as_ref().map(TokenCache::limits),
        };
        Self(Arc::new(Inner {
            keys: inner.keys.clone(),
            validation: inner.validation.clone(),
            rules: inner.rules.clone(),
            clock: clock.cloned().unwrap_or_else(|| inner.clock.clone()),
            // A multi-issuer verifier caches in its issuers' verifiers.
            cache: if tenants.is_some() {
                None
            } else {
                cache.map(TokenCache::new)
            },
            tenants,
        }))
    }

    /// One verifier for several issuers (multi-tenant), each with its own
    /// keys, audience and validation: a token is routed by its `iss` claim
    /// to that issuer's verifier, which checks everything, `iss` included,
    /// with that issuer's keys only. A token from any other issuer is
    /// refused (`issuer not accepted`).
    ///
    /// ```
    /// use portcullis_jwt::{JwtIssuer, JwtVerifier, SigningKey, Validation};
    ///
    /// let a = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://a.example", "api");
    /// let b = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://b.example", "api-b");
    /// let verifier = JwtVerifier::for_issuers([
    ///     JwtVerifier::new(a.verifying_key().into(), Validation::new().issuer("https://a.example").audience("api"))?,
    ///     JwtVerifier::new(b.verifying_key().into(), Validation::new().issuer("https://b.example").audience("api-b"))?,
    /// ])?;
    /// assert_eq!(verifier.verify(&b.mint("bob", ["x"])?)?.subject(), "bob");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_issuers(verifiers: impl IntoIterator<Item = JwtVerifier>) -> Result<Self, ConfigError> {
        let mut tenants: Vec<(String, JwtVerifier)> = Vec::new();
        for verifier in verifiers {
            let validation = &verifier.0.validation;
            let [issuer] = &validation.issuers[..] else {
                return Err(ConfigError::Issuers("each verifier needs exactly one issuer".into()));
            };
            if validation.any_issuer || verifier.0.tenants.is_some() {
                return Err(ConfigError::Issuers("each verifier needs exactly one issuer".into()));
            }
            if tenants.iter().any(|(known, _)| known == issuer) {
                return Err(ConfigError::Issuers(format!("issuer {issuer} given twice")));
            }
            tenants.push((issuer.clone(), verifier));
        }
        if tenants.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let first = &tenants[0].1.0;
        Ok(Self(Arc::new(Inner {
            keys: first.keys.clone(),
            validation: first.validation.clone(),
            rules: first.rules.clone(),
            clock: first.clock.clone(),
            cache: None,
            tenants: Some(tenants.into_boxed_slice()),
        })))
    }

    /// The verifier a token goes to: its issuer's, for a multi-issuer
    /// verifier (`None`: no such issuer).
    fn route(&self, token: &str) -> Option<&JwtVerifier> {
        let Some(tenants) = &self.0.tenants else {
            return Some(self);
        };
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let payload = token.split('.').nth(1)?;
        let json = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
        let iss = serde_json::from_slice::<Iss>(&json).ok()?.iss?;
        tenants
            .iter()
            .find(|(issuer, _)| *issuer == iss)
            .map(|(_, verifier)| verifier)
    }

    /// Verifies a token read from an `Authorization` header.
    pub fn verify(&self, token: &str) -> Result<Identity, JwtError> {
        self.verify_from(token, TokenTransport::AuthorizationHeader)
    }

    /// Verifies a token that came by `transport`.
    pub fn verify_from(&self, token: &str, transport: TokenTransport) -> Result<Identity, JwtError> {
        if self.0.tenants.is_some() {
            if token.len() > self.0.validation.max_token_bytes {
                return Err(JwtError::TooLarge);
            }
            return match self.route(token) {
                Some(tenant) => tenant.verify_from(token, transport),
                None => Err(JwtError::IssuerMismatch),
            };
        }
        let inner = &*self.0;
        // The size limit applies before anything else, hashing included.
        if token.len() > inner.validation.max_token_bytes {
            return Err(JwtError::TooLarge);
        }
        let now = inner.clock.now();
        // Remote keys are checked first: past their staleness bound even a
        // cached token is refused (503), as the keys behind it may be gone.
        // A cached verification is valid only for the key set that made
        // it: a removed key stops verifying as soon as the keys change.
        let (keys, generation) = match &inner.keys {
            Keys::Static(keys) => (std::borrow::Cow::Borrowed(keys), 0),
            #[cfg(feature = "remote")]
            Keys::Remote(remote) => {
                let (keys, generation) =
                    remote
                        .current_with_generation()
                        .map_err(|error| JwtError::KeysUnavailable {
                            reason: error.public_reason(),
                            detail: error.to_string(),
                        })?;
                (std::borrow::Cow::Owned(keys), generation)
            }
        };
        let Some(cache) = &inner.cache else {
            return crate::token::verify(token, &keys, &inner.validation, &inner.rules, now, transport)
                .map(|(id, _)| id);
        };
        let tag = match transport {
            TokenTransport::Cookie => 1,
            _ => 0,
        };
        let key = cache.key(token, tag, generation);
        if let Some(identity) = cache.get(&key, now) {
            return Ok(identity);
        }
        let (identity, valid_until) =
            crate::token::verify(token, &keys, &inner.validation, &inner.rules, now, transport)?;
        cache.insert(key, identity.clone(), valid_until, now);
        Ok(identity)
    }

    /// The keys this verifier trusts.
    pub fn keys(&self) -> &Keys {
        &self.0.keys
    }

    /// The remote key set behind this verifier, if that is where its keys
    /// come from.
    #[cfg(feature = "remote")]
    pub fn remote_keys(&self) -> Option<&crate::remote::RemoteKeys> {
        match &self.0.keys {
            Keys::Remote(remote) if self.0.tenants.is_none() => Some(remote),
            _ => None,
        }
    }

    /// The remote key set `token` would be verified with, if any (for a
    /// multi-issuer verifier, its issuer's).
    #[cfg(feature = "remote")]
    pub fn remote_keys_for(&self, token: &str) -> Option<&crate::remote::RemoteKeys> {
        self.route(token)?.remote_keys()
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.0.keys)
            .field("validation", &self.0.validation)
            .field("cache", &self.0.cache.is_some())
            .finish()
    }
}
