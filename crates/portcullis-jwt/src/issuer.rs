use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{PublicKeyUse, ThumbprintHash};
use portcullis_core::{SharedClock, SystemClock};
use serde_json::{Map, Value, json};

use crate::algorithm::Family;
use crate::engine::guarded;
use crate::{Algorithm, Jwk, KeyError, KeySet, SigningKeyring, VerifyingKey};

/// A private key that signs tokens, pinned to one [`Algorithm`].
///
/// Its `kid` defaults to the RFC 7638 thumbprint of its public key, so
/// every instance that loads the same key names it the same way. The key
/// signs through jsonwebtoken (an `EncodingKey`); aws-lc-rs generates keys
/// and checks loaded ones.
///
/// ```
/// use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
/// use portcullis_jwt::{Algorithm, SigningKey};
///
/// let key = SigningKey::generate_p256()?;
/// assert_eq!(key.algorithm(), Algorithm::ES256);
/// let jwk = key.public_jwk().expect("a public key");
/// assert!(matches!(&jwk.algorithm, AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256));
/// assert_eq!(jwk.common.key_id.as_deref(), key.kid());
/// # Ok::<(), portcullis_jwt::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    kid: Option<Arc<str>>,
    algorithm: Algorithm,
    encoding: EncodingKey,
    /// The key that verifies this one's signatures (without the `kid`).
    verifying: VerifyingKey,
}

impl SigningKey {
    /// A fresh Ed25519 key (EdDSA).
    pub fn generate_ed25519() -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::InvalidKey("Ed25519 generation"))?;
        Self::ed25519(&pair)
    }

    /// A fresh P-256 key (ES256).
    pub fn generate_p256() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeyError::InvalidKey("P-256 generation"))?;
        Self::ecdsa(Algorithm::ES256, &pair)
    }

    /// A fresh P-384 key (ES384).
    pub fn generate_p384() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|_| KeyError::InvalidKey("P-384 generation"))?;
        Self::ecdsa(Algorithm::ES384, &pair)
    }

    /// A fresh 2048-bit RSA key, for `algorithm` (RS* or PS*).
    pub fn generate_rsa(algorithm: Algorithm) -> Result<Self, KeyError> {
        if algorithm.family() != Family::Rsa {
            return Err(KeyError::AlgorithmMismatch(algorithm));
        }
        let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).map_err(|_| KeyError::InvalidKey("RSA generation"))?;
        let pkcs8: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::InvalidKey("RSA generation"))?;
        Self::rsa(algorithm, &pair, pkcs8_inner_key(pkcs8.as_ref())?)
    }

    /// An HMAC key (HS256/384/512). The secret must be at least as long as
    /// the hash output. HMAC keys are never published in a JWKS.
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        // The verifying key's checks on algorithm and length.
        let verifying = VerifyingKey::hmac(algorithm, secret)?;
        Ok(Self {
            kid: None,
            algorithm,
            encoding: EncodingKey::from_secret(secret),
            verifying,
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
                    return Self::ed25519(&pair);
                }
                Self::from_ec_der(der).or_else(|_| {
                    let pair = rsa::KeyPair::from_pkcs8(der)
                        .map_err(|_| KeyError::InvalidKey("unsupported PKCS#8 private key"))?;
                    Self::rsa(Algorithm::RS256, &pair, pkcs8_inner_key(der)?)
                })
            }
            "EC PRIVATE KEY" => Self::from_ec_der(der),
            "RSA PRIVATE KEY" => {
                let pair = rsa::KeyPair::from_der(der).map_err(|_| KeyError::InvalidKey("RSA private key"))?;
                Self::rsa(Algorithm::RS256, &pair, der)
            }
            other => Err(KeyError::UnexpectedPemLabel(other.to_owned())),
        }
    }

    fn from_ec_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(pair) = EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Self::ecdsa(Algorithm::ES256, &pair);
        }
        let pair = EcdsaKeyPair::from_private_key_der(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map_err(|_| KeyError::InvalidKey("EC private key"))?;
        Self::ecdsa(Algorithm::ES384, &pair)
    }

    // jsonwebtoken signs EC and Ed25519 keys from PKCS#8 v1 and RSA keys
    // from PKCS#1: each loaded key is handed over in that form.

    fn ed25519(pair: &Ed25519KeyPair) -> Result<Self, KeyError> {
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| KeyError::InvalidKey("Ed25519 private key"))?;
        let verifying = VerifyingKey::public(Algorithm::EdDSA, pair.public_key().as_ref())?;
        Self::new(Algorithm::EdDSA, EncodingKey::from_ed_der(pkcs8.as_ref()), verifying)
    }

    fn ecdsa(algorithm: Algorithm, pair: &EcdsaKeyPair) -> Result<Self, KeyError> {
        let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::InvalidKey("EC private key"))?;
        let verifying = VerifyingKey::public(algorithm, pair.public_key().as_ref())?;
        Self::new(algorithm, EncodingKey::from_ec_der(pkcs8.as_ref()), verifying)
    }

    fn rsa(algorithm: Algorithm, pair: &rsa::KeyPair, pkcs1: &[u8]) -> Result<Self, KeyError> {
        let verifying = VerifyingKey::public(algorithm, pair.public_key().as_ref())?;
        Self::new(algorithm, EncodingKey::from_rsa_der(pkcs1), verifying)
    }

    fn new(algorithm: Algorithm, encoding: EncodingKey, verifying: VerifyingKey) -> Result<Self, KeyError> {
        let mut key = Self {
            kid: None,
            algorithm,
            encoding,
            verifying,
        };
        // Only asymmetric keys come through here: they always have a JWK.
        let jwk = key
            .bare_jwk()?
            .ok_or(KeyError::InvalidKey("public half of the private key"))?;
        key.kid = Some(thumbprint(&jwk)?.into());
        Ok(key)
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
        if !(self.algorithm.family() == Family::Rsa && algorithm.family() == Family::Rsa) {
            return Err(KeyError::AlgorithmMismatch(algorithm));
        }
        self.verifying = self.verifying.with_algorithm(algorithm)?;
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

    /// Signs `message` (jsonwebtoken's signer for the key's algorithm).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signature = self.sign_encoded(message)?;
        URL_SAFE_NO_PAD.decode(signature).map_err(|_| KeyError::SigningFailed)
    }

    /// [`SigningKey::sign`], base64url, as it stands in a compact JWS.
    fn sign_encoded(&self, message: &[u8]) -> Result<String, KeyError> {
        let algorithm = self.algorithm.engine();
        guarded(|| jsonwebtoken::crypto::sign(message, &self.encoding, algorithm))
            .map_err(|_| KeyError::CryptoProvider)?
            .map_err(|_| KeyError::SigningFailed)
    }

    /// The key that verifies this key's signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.kid {
            Some(kid) => self.verifying.clone().with_kid(kid.clone()),
            None => self.verifying.clone(),
        }
    }

    /// The public key as a JWK, with `kid`, `alg` and `use: sig`. `None`
    /// for HMAC keys, which are secret.
    pub fn public_jwk(&self) -> Option<Jwk> {
        let mut jwk = self.bare_jwk().ok()??;
        jwk.common.key_id = self.kid.as_deref().map(str::to_owned);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Some(jwk)
    }

    /// The public JWK without `kid` or `use` (jsonwebtoken derives it from
    /// the private key); `None` for an HMAC secret.
    fn bare_jwk(&self) -> Result<Option<Jwk>, KeyError> {
        if self.algorithm.family() == Family::Hmac {
            return Ok(None);
        }
        let algorithm = self.algorithm.engine();
        guarded(|| Jwk::from_encoding_key(&self.encoding, algorithm))
            .map_err(|_| KeyError::CryptoProvider)?
            .map(Some)
            .map_err(|_| KeyError::InvalidKey("public half of the private key"))
    }
}

/// RFC 7638 SHA-256 thumbprint of a public JWK.
fn thumbprint(jwk: &Jwk) -> Result<String, KeyError> {
    guarded(|| jwk.thumbprint(ThumbprintHash::SHA256))
        .map_err(|_| KeyError::CryptoProvider)?
        .map_err(|_| KeyError::InvalidKey("JWK thumbprint"))
}

/// The private key inside a PKCS#8 `PrivateKeyInfo` (RFC 5208):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key, … }`.
/// For RSA the key is the PKCS#1 `RSAPrivateKey` jsonwebtoken signs with.
/// Only reached for a key aws-lc has already parsed as PKCS#8.
fn pkcs8_inner_key(der: &[u8]) -> Result<&[u8], KeyError> {
    const BAD: KeyError = KeyError::InvalidKey("PKCS#8 private key");
    /// One DER element: (tag, content, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            (bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)), rest)
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, info, _) = element(der).ok_or(BAD)? else {
        return Err(BAD);
    };
    let (0x02, _version, rest) = element(info).ok_or(BAD)? else {
        return Err(BAD);
    };
    let (0x30, _algorithm, rest) = element(rest).ok_or(BAD)? else {
        return Err(BAD);
    };
    let (0x04, key, _) = element(rest).ok_or(BAD)? else {
        return Err(BAD);
    };
    Ok(key)
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
    ring: SigningKeyring,
    issuer: Arc<str>,
    audience: Arc<str>,
    ttl: Duration,
    typ: Option<Arc<str>>,
    /// The base64url JOSE header of the active key (`alg`, `typ`, `kid`
    /// never change per token): encoded once per key, not per mint.
    header: Arc<RwLock<HeaderCache>>,
    clock: SharedClock,
    also_published: Arc<[Jwk]>,
}

#[derive(Debug)]
struct HeaderCache {
    key: Arc<SigningKey>,
    typ: Option<Arc<str>>,
    encoded: Arc<str>,
}

/// The base64url form of the header jsonwebtoken would write for `key`
/// and `typ`.
fn encoded_header(key: &SigningKey, typ: Option<&str>) -> Arc<str> {
    let mut header = jsonwebtoken::Header::new(key.algorithm.engine());
    header.typ = typ.map(str::to_owned);
    header.kid = key.kid().map(str::to_owned);
    let json = serde_json::to_vec(&header).unwrap_or_else(|_| unreachable!("a header of strings always serializes"));
    URL_SAFE_NO_PAD.encode(json).into()
}

const RESERVED: [&str; 7] = ["iss", "sub", "aud", "iat", "exp", "jti", "scope"];

impl JwtIssuer {
    /// An issuer named `issuer` minting for `audience` with `key`.
    pub fn new(key: SigningKey, issuer: impl Into<Arc<str>>, audience: impl Into<Arc<str>>) -> Self {
        Self::with_keyring(SigningKeyring::new(key), issuer, audience)
    }

    /// An issuer signing with the active key of `ring` (a promotion takes
    /// effect on the next mint) and publishing its staged, active and
    /// retired keys.
    pub fn with_keyring(ring: SigningKeyring, issuer: impl Into<Arc<str>>, audience: impl Into<Arc<str>>) -> Self {
        let typ: Option<Arc<str>> = Some("at+jwt".into());
        let key = ring.active();
        let header = HeaderCache {
            encoded: encoded_header(&key, typ.as_deref()),
            key,
            typ: typ.clone(),
        };
        Self {
            ring,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl: Duration::from_secs(15 * 60),
            typ,
            header: Arc::new(RwLock::new(header)),
            clock: Arc::new(SystemClock),
            also_published: Arc::from(Vec::new()),
        }
    }

    /// The signing keyring (to stage and promote keys).
    pub fn keyring(&self) -> &SigningKeyring {
        &self.ring
    }

    /// The active key and the encoded header for it, re-encoded only when
    /// the active key changed.
    fn active_header(&self) -> (Arc<SigningKey>, Arc<str>) {
        let key = self.ring.active();
        {
            let cache = self.header.read().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&cache.key, &key) && cache.typ == self.typ {
                return (key, cache.encoded.clone());
            }
        }
        let encoded = encoded_header(&key, self.typ.as_deref());
        *self.header.write().unwrap_or_else(PoisonError::into_inner) = HeaderCache {
            key: key.clone(),
            typ: self.typ.clone(),
            encoded: encoded.clone(),
        };
        (key, encoded)
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
        self.typ = typ.map(Arc::from);
        // A header cache of its own: clones made before keep theirs.
        let key = self.ring.active();
        self.header = Arc::new(RwLock::new(HeaderCache {
            encoded: encoded_header(&key, self.typ.as_deref()),
            key,
            typ: self.typ.clone(),
        }));
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
        let mut scope = String::new();
        for item in scopes {
            if !scope.is_empty() {
                scope.push(' ');
            }
            scope.push_str(item.as_ref());
        }
        let mut jti = [0u8; 22];
        let claims = MintedClaims {
            iss: &inner.issuer,
            sub: subject,
            aud: &inner.audience,
            iat: now,
            exp: now + inner.ttl.as_secs(),
            jti: random_id(&mut jti),
            scope: &scope,
            extra: &extra,
        };
        // What `jsonwebtoken::encode` does, with the constant header encoded
        // once and the token written into one buffer; jsonwebtoken still
        // signs.
        let json = serde_json::to_vec(&claims).map_err(|_| IssueError::Key(KeyError::SigningFailed))?;
        // Room for the signature too: 342 characters is a 2048-bit RSA one,
        // the longest common; a longer one only makes the buffer grow once.
        let (key, header) = inner.active_header();
        let mut token = String::with_capacity(header.len() + 2 + json.len().div_ceil(3) * 4 + 342);
        token.push_str(&header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let engine = &key.encoding;
        let algorithm = key.algorithm.engine();
        let signature = guarded(|| jsonwebtoken::crypto::sign(token.as_bytes(), engine, algorithm))
            .map_err(|_| KeyError::CryptoProvider)?
            .map_err(|_| IssueError::Key(KeyError::SigningFailed))?;
        token.push('.');
        token.push_str(&signature);
        Ok(token)
    }

    /// The JWKS document (`{"keys": […]}`) of the public keys that verify
    /// this issuer's tokens: the keyring's active, staged and retired
    /// (within retention) keys, then any [`also_publish`](JwtIssuer::also_publish)ed.
    /// Empty for an HMAC issuer. Serve it with
    /// [`jwks_cache_control`](JwtIssuer::jwks_cache_control).
    pub fn jwks(&self) -> Value {
        let mut keys: Vec<Value> = self
            .ring
            .published_at(self.clock.now())
            .into_iter()
            .chain(self.also_published.iter().cloned())
            .filter_map(|jwk| serde_json::to_value(jwk).ok())
            .collect();
        keys.dedup();
        json!({ "keys": keys })
    }

    /// The `Cache-Control` value for the JWKS: public, for the keyring's
    /// publish lead, so a staged key reaches every verifier before it may
    /// sign.
    pub fn jwks_cache_control(&self) -> String {
        format!("public, max-age={}", self.ring.jwks_max_age().as_secs())
    }

    /// The key that verifies the tokens this issuer signs now.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.ring.active().verifying_key()
    }

    /// Every key that verifies this issuer's tokens (active, retired within
    /// retention, staged), for a verifier in this process.
    pub fn verifying_keys(&self) -> KeySet {
        self.ring.verifying_keys()
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
/// craft tokens with arbitrary headers; the header's `alg` is taken as given
/// (feature `test-util`: never for production code).
#[cfg(feature = "test-util")]
pub fn sign_compact(key: &SigningKey, header: &Value, claims: &Value) -> Result<String, KeyError> {
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.sign_encoded(token.as_bytes())?;
    token.push('.');
    token.push_str(&signature);
    Ok(token)
}

/// 16 random bytes, base64url, written into `buffer` (no allocation).
fn random_id(buffer: &mut [u8; 22]) -> &str {
    let bytes: [u8; 16] = portcullis_core::random_bytes();
    let written = URL_SAFE_NO_PAD
        .encode_slice(bytes, buffer)
        .unwrap_or_else(|_| unreachable!("16 bytes are 22 base64url characters"));
    std::str::from_utf8(&buffer[..written]).unwrap_or_else(|_| unreachable!("base64url is ASCII"))
}

/// The claims a minted token carries: the issuer's own, then `extra`
/// (which may not name them). Serialized straight from borrows, with no
/// intermediate map.
#[derive(serde::Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    /// The token `mint` writes by hand around `jsonwebtoken::crypto::sign`
    /// is the one `jsonwebtoken::encode` would write: same header bytes,
    /// and jsonwebtoken's own decoder accepts it.
    #[test]
    fn a_minted_token_is_what_jsonwebtoken_encode_would_write() {
        for (key, typ) in [
            (
                SigningKey::hmac(Algorithm::HS256, &[7; 32]).expect("hmac"),
                Some("at+jwt"),
            ),
            (SigningKey::generate_p256().expect("p256").with_kid("ec-1"), None),
            (
                SigningKey::generate_ed25519().expect("ed25519").with_kid("ed-1"),
                Some("JWT"),
            ),
        ] {
            let algorithm = key.algorithm;
            let decoding = key.verifying_key();
            let issuer = JwtIssuer::new(key, "https://iss.test", "api").token_type(typ);
            let token = issuer.mint("alice", ["a", "b"]).expect("mint");
            let (signed, _) = token.rsplit_once('.').expect("three parts");
            let (header, _) = signed.split_once('.').expect("three parts");

            let mut expected = jsonwebtoken::Header::new(algorithm.engine());
            expected.typ = typ.map(str::to_owned);
            expected.kid = issuer.keyring().active_kid();
            let expected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&expected).expect("json"));
            assert_eq!(header, expected, "{algorithm:?}: the header jsonwebtoken writes");

            let mut validation = jsonwebtoken::Validation::new(algorithm.engine());
            validation.set_issuer(&["https://iss.test"]);
            validation.set_audience(&["api"]);
            let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, decoding.decoding(), &validation)
                .unwrap_or_else(|error| panic!("{algorithm:?}: jsonwebtoken refuses the minted token: {error}"));
            assert_eq!(decoded.claims["sub"], "alice");
            assert_eq!(decoded.claims["scope"], "a b");
            assert_eq!(decoded.header.typ.as_deref(), typ);
        }
    }
}
