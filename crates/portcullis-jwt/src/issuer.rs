use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use aws_lc_rs::{hmac, rsa};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{SharedClock, SystemClock};
use serde_json::{Map, Value, json};

use crate::algorithm::Family;
use crate::{Algorithm, Jwk, KeyError, VerifyingKey};

/// A private key that signs tokens, pinned to one [`Algorithm`].
///
/// Its `kid` defaults to the RFC 7638 thumbprint of its public key, so
/// every instance that loads the same key names it the same way.
///
/// ```
/// use portcullis_jwt::{Algorithm, SigningKey};
///
/// let key = SigningKey::generate_p256()?;
/// assert_eq!(key.algorithm(), Algorithm::ES256);
/// assert_eq!(key.public_jwk().unwrap().crv.as_deref(), Some("P-256"));
/// # Ok::<(), portcullis_jwt::KeyError>(())
/// ```
pub struct SigningKey {
    kid: Option<Arc<str>>,
    algorithm: Algorithm,
    material: Material,
}

enum Material {
    Hmac { key: Box<hmac::Key>, secret: Box<[u8]> },
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(rsa::KeyPair),
}

impl SigningKey {
    /// A fresh Ed25519 key (EdDSA).
    pub fn generate_ed25519() -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::InvalidKey("Ed25519 generation"))?;
        Ok(Self::new(Algorithm::EdDSA, Material::Ed25519(pair)))
    }

    /// A fresh P-256 key (ES256).
    pub fn generate_p256() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeyError::InvalidKey("P-256 generation"))?;
        Ok(Self::new(Algorithm::ES256, Material::Ecdsa(pair)))
    }

    /// A fresh P-384 key (ES384).
    pub fn generate_p384() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|_| KeyError::InvalidKey("P-384 generation"))?;
        Ok(Self::new(Algorithm::ES384, Material::Ecdsa(pair)))
    }

    /// A fresh 2048-bit RSA key, for `algorithm` (RS* or PS*).
    pub fn generate_rsa(algorithm: Algorithm) -> Result<Self, KeyError> {
        if algorithm.family() != Family::Rsa {
            return Err(KeyError::AlgorithmMismatch(algorithm));
        }
        let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(|_| KeyError::InvalidKey("RSA generation"))?;
        Ok(Self::new(algorithm, Material::Rsa(pair)))
    }

    /// An HMAC key (HS256/384/512). The secret must be at least as long as
    /// the hash output. HMAC keys are never published in a JWKS.
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        // Reuse the verifying key's checks on algorithm and length.
        VerifyingKey::hmac(algorithm, secret)?;
        let hmac_algorithm = algorithm.hmac().ok_or(KeyError::AlgorithmMismatch(algorithm))?;
        Ok(Self {
            kid: None,
            algorithm,
            material: Material::Hmac {
                key: Box::new(hmac::Key::new(hmac_algorithm, secret)),
                secret: secret.into(),
            },
        })
    }

    /// A private key from PEM: `PRIVATE KEY` (PKCS#8: Ed25519, P-256, P-384
    /// or RSA), `EC PRIVATE KEY` (SEC1) or `RSA PRIVATE KEY` (PKCS#1). An
    /// RSA key signs RS256 unless [`SigningKey::with_algorithm`] says
    /// otherwise.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let block = pem::parse(pem.as_ref()).map_err(|_| KeyError::InvalidPem)?;
        let der = block.contents();
        match block.tag() {
            "PRIVATE KEY" => {
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(Self::new(Algorithm::EdDSA, Material::Ed25519(pair)));
                }
                Self::from_ec_der(der).or_else(|_| {
                    rsa::KeyPair::from_pkcs8(der)
                        .map(|pair| Self::new(Algorithm::RS256, Material::Rsa(pair)))
                        .map_err(|_| KeyError::InvalidKey("unsupported PKCS#8 private key"))
                })
            }
            "EC PRIVATE KEY" => Self::from_ec_der(der),
            "RSA PRIVATE KEY" => rsa::KeyPair::from_der(der)
                .map(|pair| Self::new(Algorithm::RS256, Material::Rsa(pair)))
                .map_err(|_| KeyError::InvalidKey("RSA private key")),
            other => Err(KeyError::UnexpectedPemLabel(other.to_owned())),
        }
    }

    fn from_ec_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(pair) = EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(Self::new(Algorithm::ES256, Material::Ecdsa(pair)));
        }
        EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map(|pair| Self::new(Algorithm::ES384, Material::Ecdsa(pair)))
            .map_err(|_| KeyError::InvalidKey("EC private key"))
    }

    fn new(algorithm: Algorithm, material: Material) -> Self {
        let mut key = Self {
            kid: None,
            algorithm,
            material,
        };
        key.kid = key.thumbprint().map(Arc::from);
        key
    }

    /// Names the key (the `kid` of the tokens it signs and of its JWK).
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Pins an RSA key to another RSA algorithm (RS384, PS256, …).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Result<Self, KeyError> {
        if algorithm == self.algorithm {
            return Ok(self);
        }
        if !(matches!(self.material, Material::Rsa(_)) && algorithm.family() == Family::Rsa) {
            return Err(KeyError::AlgorithmMismatch(algorithm));
        }
        self.algorithm = algorithm;
        Ok(self)
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Hmac { key, .. } => Ok(hmac::sign(key, message).as_ref().to_vec()),
            Material::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::SigningFailed),
            Material::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Material::Rsa(pair) => {
                let encoding: &'static dyn sig::RsaEncoding = match self.algorithm {
                    Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_SHA512,
                    other => return Err(KeyError::AlgorithmMismatch(other)),
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, message, &mut signature)
                    .map_err(|_| KeyError::SigningFailed)?;
                Ok(signature)
            }
        }
    }

    /// The key that verifies this key's signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        let key = match &self.material {
            Material::Hmac { secret, .. } => VerifyingKey::hmac(self.algorithm, secret),
            Material::Ecdsa(pair) => VerifyingKey::public(self.algorithm, pair.public_key().as_ref()),
            Material::Ed25519(pair) => VerifyingKey::public(self.algorithm, pair.public_key().as_ref()),
            Material::Rsa(pair) => VerifyingKey::public(self.algorithm, pair.public_key().as_ref()),
        };
        // A key we hold was valid when loaded; its public half parses.
        let key = key.unwrap_or_else(|error| unreachable!("public half of a loaded key: {error}"));
        match &self.kid {
            Some(kid) => key.with_kid(kid.clone()),
            None => key,
        }
    }

    /// The public key as a JWK, with `kid`, `alg` and `use: sig`. `None`
    /// for HMAC keys, which are secret.
    pub fn public_jwk(&self) -> Option<Jwk> {
        let mut jwk = self.bare_jwk()?;
        jwk.kid = self.kid.as_deref().map(str::to_owned);
        jwk.alg = Some(self.algorithm.name().to_owned());
        jwk.key_use = Some("sig".to_owned());
        Some(jwk)
    }

    fn bare_jwk(&self) -> Option<Jwk> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        Some(match &self.material {
            Material::Hmac { .. } => return None,
            Material::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                Jwk {
                    kty: "EC".into(),
                    crv: Some(
                        if self.algorithm == Algorithm::ES256 {
                            "P-256"
                        } else {
                            "P-384"
                        }
                        .into(),
                    ),
                    x: Some(b64(&point[1..=half])),
                    y: Some(b64(&point[1 + half..])),
                    ..Jwk::default()
                }
            }
            Material::Ed25519(pair) => Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64(pair.public_key().as_ref())),
                ..Jwk::default()
            },
            Material::Rsa(pair) => Jwk {
                kty: "RSA".into(),
                n: Some(b64(pair.public_key().modulus().big_endian_without_leading_zero())),
                e: Some(b64(pair.public_key().exponent().big_endian_without_leading_zero())),
                ..Jwk::default()
            },
        })
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order.
    fn thumbprint(&self) -> Option<String> {
        let jwk = self.bare_jwk()?;
        let canonical = match jwk.kty.as_str() {
            "EC" => json!({"crv": jwk.crv, "kty": "EC", "x": jwk.x, "y": jwk.y}),
            "OKP" => json!({"crv": jwk.crv, "kty": "OKP", "x": jwk.x}),
            _ => json!({"e": jwk.e, "kty": "RSA", "n": jwk.n}),
        };
        // serde_json's map is ordered by key, which is what RFC 7638 wants.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
        Some(URL_SAFE_NO_PAD.encode(digest.as_ref()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// An extra claim would override a claim the issuer sets.
    #[error("claim {0} is set by the issuer and cannot be overridden")]
    ReservedClaim(String),
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Mints access tokens and publishes the public keys that verify them.
///
/// Tokens carry `iss`, `sub`, `aud`, `iat`, `exp` (15 minutes by default),
/// a random 128-bit `jti`, `scope`, and a header with `typ: at+jwt`
/// (RFC 9068) and the key's `kid`.
///
/// ```
/// use portcullis_jwt::{JwtIssuer, SigningKey};
///
/// let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, "https://auth.example", "notes-api");
/// let token = issuer.mint("alice", ["notes:read", "notes:write"])?;
/// assert_eq!(token.split('.').count(), 3);
/// let jwks = issuer.jwks();
/// assert_eq!(jwks["keys"][0]["kty"], "OKP");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct JwtIssuer {
    key: Arc<SigningKey>,
    issuer: Arc<str>,
    audience: Arc<str>,
    ttl: Duration,
    token_type: Option<Arc<str>>,
    clock: SharedClock,
    also_published: Arc<[Jwk]>,
}

const RESERVED: [&str; 7] = ["iss", "sub", "aud", "iat", "exp", "jti", "scope"];

impl JwtIssuer {
    /// An issuer named `issuer` minting for `audience` with `key`.
    pub fn new(key: SigningKey, issuer: impl Into<Arc<str>>, audience: impl Into<Arc<str>>) -> Self {
        Self {
            key: Arc::new(key),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl: Duration::from_secs(15 * 60),
            token_type: Some("at+jwt".into()),
            clock: Arc::new(SystemClock),
            also_published: Arc::from(Vec::new()),
        }
    }

    /// The lifetime of minted tokens (default 15 minutes).
    #[must_use]
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The lifetime of minted tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The header `typ` (default `at+jwt`); `None` leaves it out.
    #[must_use]
    pub fn token_type(mut self, typ: Option<&str>) -> Self {
        self.token_type = typ.map(Arc::from);
        self
    }

    /// The clock that stamps `iat` and `exp`.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Also publishes `jwk` in [`JwtIssuer::jwks`] (the previous key during
    /// a rotation, so tokens it signed keep verifying).
    #[must_use]
    pub fn also_publish(mut self, jwk: Jwk) -> Self {
        let mut published = self.also_published.to_vec();
        published.push(jwk);
        self.also_published = published.into();
        self
    }

    /// Mints a token for `subject` with `scopes`.
    pub fn mint<I, S>(&self, subject: &str, scopes: I) -> Result<String, IssueError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.mint_with(subject, scopes, Map::new())
    }

    /// Mints a token with further claims. `extra` may not set the claims
    /// the issuer owns (`iss`, `sub`, `aud`, `iat`, `exp`, `jti`, `scope`).
    pub fn mint_with<I, S>(&self, subject: &str, scopes: I, extra: Map<String, Value>) -> Result<String, IssueError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let inner = self;
        if let Some(reserved) = extra.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(IssueError::ReservedClaim(reserved.clone()));
        }
        let now = inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let scope = scopes
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut claims = extra;
        claims.insert("iss".into(), inner.issuer.as_ref().into());
        claims.insert("sub".into(), subject.into());
        claims.insert("aud".into(), inner.audience.as_ref().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + inner.ttl.as_secs()).into());
        claims.insert("jti".into(), random_id().into());
        if !scope.is_empty() {
            claims.insert("scope".into(), scope.into());
        }
        let mut header = Map::new();
        header.insert("alg".into(), inner.key.algorithm.name().into());
        if let Some(typ) = &inner.token_type {
            header.insert("typ".into(), typ.as_ref().into());
        }
        if let Some(kid) = inner.key.kid() {
            header.insert("kid".into(), kid.into());
        }
        Ok(sign_compact(
            &inner.key,
            &Value::Object(header),
            &Value::Object(claims),
        )?)
    }

    /// The JWKS document (`{"keys": […]}`) of the public keys that verify
    /// this issuer's tokens. Empty for an HMAC issuer.
    pub fn jwks(&self) -> Value {
        let mut keys: Vec<Value> = self
            .key
            .public_jwk()
            .into_iter()
            .chain(self.also_published.iter().cloned())
            .filter_map(|jwk| serde_json::to_value(jwk).ok())
            .collect();
        keys.dedup();
        json!({ "keys": keys })
    }

    /// The key that verifies this issuer's tokens.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The issuer name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience (`aud`).
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// Signs a compact JWS of `header` and `claims` with `key`. Tests use it to
/// craft tokens with arbitrary headers; the header's `alg` is taken as given.
pub fn sign_compact(key: &SigningKey, header: &Value, claims: &Value) -> Result<String, KeyError> {
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG failing is unrecoverable for a token issuer.
    aws_lc_rs::rand::fill(&mut bytes).unwrap_or_else(|_| unreachable!("system RNG failure"));
    URL_SAFE_NO_PAD.encode(bytes)
}
