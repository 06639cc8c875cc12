use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyOperations, PublicKeyUse};
use serde::Deserialize;

use crate::algorithm::Family;
use crate::engine::{ProviderMissing, guarded};
use crate::{Algorithm, KeyError};

/// A JSON Web Key (RFC 7517), as jsonwebtoken reads and writes it.
pub use jsonwebtoken::jwk::Jwk;

/// A key that verifies tokens, pinned to exactly one [`Algorithm`].
///
/// The key's type decides the algorithm: an EC key's curve picks ES256 or
/// ES384, an Ed25519 key EdDSA, an HMAC secret the HS variant it was
/// created for, and an RSA key RS256 unless [`VerifyingKey::with_algorithm`]
/// picks another RSA algorithm. A token's `alg` header never picks the key
/// type: a token whose `alg` differs from its key's is refused. That is the
/// defence against algorithm confusion (an RS256 public key used as an
/// HS256 secret).
///
/// The key is held as a jsonwebtoken `DecodingKey`, which does the
/// verification; a public key is also parsed once when it is loaded, so a
/// bad key is refused at configuration, not at the first token.
///
/// ```
/// use portcullis_jwt::{Algorithm, VerifyingKey};
///
/// let key = VerifyingKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef")?.with_kid("k1");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert_eq!(key.kid(), Some("k1"));
/// // Short secrets are refused (RFC 7518 §3.2).
/// assert!(VerifyingKey::hmac(Algorithm::HS256, b"short").is_err());
/// # Ok::<(), portcullis_jwt::KeyError>(())
/// ```
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    algorithm: Algorithm,
    material: Arc<Material>,
}

struct Material {
    /// What the engine verifies with.
    decoding: DecodingKey,
    /// The SubjectPublicKeyInfo of a public key (`None`: an HMAC secret).
    spki: Option<Box<[u8]>>,
}

impl VerifyingKey {
    /// An HMAC key. The secret must be at least as long as the hash output
    /// (32, 48 or 64 bytes).
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        let needed = algorithm
            .min_secret_len()
            .ok_or(KeyError::AlgorithmMismatch(algorithm))?;
        if secret.len() < needed {
            return Err(KeyError::ShortSecret {
                got: secret.len(),
                needed,
            });
        }
        Ok(Self {
            kid: None,
            algorithm,
            material: Arc::new(Material {
                decoding: DecodingKey::from_secret(secret),
                spki: None,
            }),
        })
    }

    /// A public key from PEM: `PUBLIC KEY` (SubjectPublicKeyInfo, for RSA,
    /// P-256, P-384 or Ed25519) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let block = pem::parse(pem.as_ref()).map_err(|_| KeyError::InvalidPem)?;
        match block.tag() {
            "PUBLIC KEY" => Self::from_der(block.contents()),
            "RSA PUBLIC KEY" => Self::public(Algorithm::RS256, block.contents()),
            other => Err(KeyError::UnexpectedPemLabel(other.to_owned())),
        }
    }

    /// A public key from a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::public(spki_algorithm(der)?, der)
    }

    /// A public key from its SubjectPublicKeyInfo, or its raw SEC1 /
    /// Ed25519 / PKCS#1 encoding, for `algorithm`.
    pub(crate) fn public(algorithm: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let spki = canonical_spki(algorithm, der)?;
        // aws-lc reads a SubjectPublicKeyInfo or the raw key alike, but
        // jsonwebtoken hands its bytes to aws-lc on every verification:
        // given the raw key (as jsonwebtoken's own PEM readers give it),
        // aws-lc skips an ASN.1 parse per token.
        let raw = subject_public_key(&spki).unwrap_or(der);
        let decoding = match algorithm.family() {
            Family::Rsa => DecodingKey::from_rsa_der(raw),
            Family::Ec => DecodingKey::from_ec_der(raw),
            Family::Ed => DecodingKey::from_ed_der(raw),
            Family::Hmac => return Err(KeyError::AlgorithmMismatch(algorithm)),
        };
        Ok(Self::from_parts(algorithm, spki, decoding))
    }

    /// Checks a public key once (it must parse for `algorithm`) and keeps
    /// its SubjectPublicKeyInfo for [`VerifyingKey::public_key_pem`].
    fn with_decoding(algorithm: Algorithm, der: &[u8], decoding: DecodingKey) -> Result<Self, KeyError> {
        Ok(Self::from_parts(algorithm, canonical_spki(algorithm, der)?, decoding))
    }

    fn from_parts(algorithm: Algorithm, spki: Box<[u8]>, decoding: DecodingKey) -> Self {
        Self {
            kid: None,
            algorithm,
            material: Arc::new(Material {
                decoding,
                spki: Some(spki),
            }),
        }
    }

    /// A key from a JSON Web Key (RFC 7517).
    ///
    /// `kid` and `alg` are taken from the JWK. A key marked for encryption
    /// (`use: enc`, or `key_ops` without `verify`) is refused. An RSA key
    /// without `alg` is pinned to RS256; an `oct` key needs `alg`. An RSA
    /// modulus with the ROCA fingerprint is refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let common = &jwk.common;
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return Err(KeyError::WrongKeyUse);
        }
        if let Some(ops) = &common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err(KeyError::WrongKeyUse);
        }
        let declared = match common.key_algorithm {
            Some(alg) => Some(Algorithm::from_name(&alg.to_string()).ok_or(KeyError::UnsupportedAlgorithm)?),
            None => None,
        };
        let field = |text: &str, name: &'static str| -> Result<Vec<u8>, KeyError> {
            URL_SAFE_NO_PAD.decode(text).map_err(|_| KeyError::InvalidKey(name))
        };
        let engine_key = || DecodingKey::from_jwk(jwk).map_err(|_| KeyError::InvalidKey("JWK"));
        let key = match &jwk.algorithm {
            AlgorithmParameters::OctetKey(params) => {
                let algorithm = declared.ok_or(KeyError::InvalidKey("oct key without alg"))?;
                Self::hmac(algorithm, &field(&params.value, "k")?)?
            }
            AlgorithmParameters::RSA(params) => {
                let algorithm = declared.unwrap_or(Algorithm::RS256);
                if algorithm.family() != Family::Rsa {
                    return Err(KeyError::AlgorithmMismatch(algorithm));
                }
                let (n, e) = (field(&params.n, "n")?, field(&params.e, "e")?);
                if has_roca_fingerprint(&n) {
                    return Err(KeyError::InvalidKey(
                        "RSA modulus with the ROCA fingerprint (CVE-2017-15361): its private key can be recovered",
                    ));
                }
                Self::with_decoding(algorithm, &rsa_pkcs1_der(&n, &e), engine_key()?)?
            }
            AlgorithmParameters::EllipticCurve(params) => {
                let algorithm = match params.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => return Err(KeyError::InvalidKey("unsupported EC curve")),
                };
                if declared.is_some_and(|d| d != algorithm) {
                    return Err(KeyError::AlgorithmMismatch(algorithm));
                }
                let mut point = vec![0x04];
                point.extend(field(&params.x, "x")?);
                point.extend(field(&params.y, "y")?);
                Self::with_decoding(algorithm, &point, engine_key()?)?
            }
            AlgorithmParameters::OctetKeyPair(params) => {
                if params.curve != EllipticCurve::Ed25519 {
                    return Err(KeyError::InvalidKey("unsupported OKP curve"));
                }
                if declared.is_some_and(|d| d != Algorithm::EdDSA) {
                    return Err(KeyError::AlgorithmMismatch(Algorithm::EdDSA));
                }
                Self::with_decoding(Algorithm::EdDSA, &field(&params.x, "x")?, engine_key()?)?
            }
            _ => return Err(KeyError::InvalidKey("unsupported key type")),
        };
        Ok(match &common.key_id {
            Some(kid) => key.with_kid(kid.as_str()),
            None => key,
        })
    }

    /// Names the key; tokens select it by their `kid` header.
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
        if self.algorithm.family() != Family::Rsa || algorithm.family() != Family::Rsa {
            return Err(KeyError::AlgorithmMismatch(algorithm));
        }
        self.algorithm = algorithm;
        Ok(self)
    }

    /// The key's name, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether this is an HMAC secret.
    pub(crate) fn is_symmetric(&self) -> bool {
        self.material.spki.is_none()
    }

    /// The key as the engine holds it.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.material.decoding
    }

    /// The public key as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM block, to
    /// hand to a peer. `None` for an HMAC key, which is secret.
    pub fn public_key_pem(&self) -> Option<String> {
        let spki = self.material.spki.as_deref()?;
        Some(pem::encode(&pem::Pem::new("PUBLIC KEY", spki)))
    }

    /// Whether `signature` is a valid signature of `message` under this key
    /// (jsonwebtoken's verifier for the key's algorithm; HMAC tags are
    /// compared in constant time). `false` too when jsonwebtoken has no
    /// crypto provider to call (see
    /// [`install_crypto_provider`](crate::install_crypto_provider)).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_encoded(message, &URL_SAFE_NO_PAD.encode(signature))
            .unwrap_or(false)
    }

    /// [`VerifyingKey::verify`] of a base64url signature, as it stands in a
    /// compact JWS.
    pub(crate) fn verify_encoded(&self, message: &[u8], signature_b64: &str) -> Result<bool, ProviderMissing> {
        let engine = self.algorithm.engine();
        guarded(|| jsonwebtoken::crypto::verify(signature_b64, message, &self.material.decoding, engine))
            .map(|verdict| verdict.unwrap_or(false))
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material: an HMAC key is a secret.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The algorithm a SubjectPublicKeyInfo's key type implies. The OIDs sit in
/// the AlgorithmIdentifier at the start; the parse that follows (aws-lc)
/// validates the whole structure for that algorithm.
fn spki_algorithm(der: &[u8]) -> Result<Algorithm, KeyError> {
    let head = &der[..der.len().min(32)];
    if contains(head, OID_RSA_ENCRYPTION) {
        Ok(Algorithm::RS256)
    } else if contains(head, OID_EC_PUBLIC_KEY) {
        if contains(head, OID_P256) {
            Ok(Algorithm::ES256)
        } else if contains(head, OID_P384) {
            Ok(Algorithm::ES384)
        } else {
            Err(KeyError::InvalidKey("unsupported EC curve"))
        }
    } else if contains(head, OID_ED25519) {
        Ok(Algorithm::EdDSA)
    } else {
        Err(KeyError::InvalidKey("unsupported public key type"))
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
/// Whether an RSA modulus (big-endian) has the fingerprint of the keys
/// Infineon's library generated (ROCA, CVE-2017-15361), whose primes are
/// `k·M + (65537^a mod M)`: such a modulus is, modulo every small prime
/// `p` below, a power of 65537. A random modulus fails that for some `p`
/// with overwhelming probability, so false positives are negligible.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107,
        109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &byte| (r * 256 + u32::from(byte)) % p);
        // The subgroup 65537 generates modulo p.
        let generator = 65537 % p;
        let mut power = 1;
        for _ in 0..p {
            if power == residue {
                return true;
            }
            power = power * generator % p;
        }
        false
    })
}

fn rsa_pkcs1_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: &[u8] = {
            let start = bytes
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(bytes.len().saturating_sub(1));
            &bytes[start.min(bytes.len())..]
        };
        let mut content = Vec::with_capacity(trimmed.len() + 1);
        if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend_from_slice(trimmed);
        tlv(0x02, &content)
    }
    let mut body = integer(n);
    body.extend(integer(e));
    tlv(0x30, &body)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The keys a layer verifies with. Cheap to clone.
///
/// With several keys, a token's `kid` selects one (an unknown `kid` is
/// refused); a token without `kid` is tried against each key pinned to its
/// `alg`.
///
/// ```
/// use portcullis_jwt::{Algorithm, KeySet, VerifyingKey};
///
/// let keys = KeySet::new([
///     VerifyingKey::hmac(Algorithm::HS256, &[7u8; 32])?.with_kid("2025"),
///     VerifyingKey::hmac(Algorithm::HS256, &[8u8; 32])?.with_kid("2026"),
/// ]);
/// assert_eq!(keys.len(), 2);
/// # Ok::<(), portcullis_jwt::KeyError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Arc<[VerifyingKey]>,
}

impl KeySet {
    /// A set of `keys`.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// Parses a JWKS document (`{"keys": […]}`), keeping every key it can
    /// use and skipping (with a warning) the ones it cannot: an unsupported
    /// key type does not fail the whole set. An ambiguous set is refused
    /// whole: two signing keys under one `kid`, or symmetric and asymmetric
    /// keys mixed in one set.
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_str(json).map_err(|_| KeyError::InvalidKey("JWKS document"))?;
        // Ambiguous sets are refused whole (Wycheproof's DuplicateKid and
        // MixedKeySet): which key a token means must never be a guess. Kids
        // count over every signing key the document declares, usable here
        // or not: two of them under one kid is ambiguous whatever we read.
        let mut kids: Vec<&str> = document
            .keys
            .iter()
            .filter(|value| value.get("use").and_then(serde_json::Value::as_str) != Some("enc"))
            .filter_map(|value| value.get("kid").and_then(serde_json::Value::as_str))
            .collect();
        kids.sort_unstable();
        if kids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(KeyError::InvalidKey("two keys of the JWKS share a kid"));
        }
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(document.keys.len());
        for value in document.keys {
            // Each key through jsonwebtoken's JWK type on its own, so one key
            // it cannot read does not fail the whole set.
            let parsed = serde_json::from_value::<Jwk>(value)
                .map_err(|_| KeyError::InvalidKey("JWK"))
                .and_then(|jwk| VerifyingKey::from_jwk(&jwk));
            match parsed {
                Ok(key) => keys.push(key),
                Err(error) => {
                    tracing::warn!(target: "portcullis::jwt", %error, "skipping a JWK this library cannot use")
                }
            }
        }
        let symmetric = keys.iter().filter(|key| key.is_symmetric()).count();
        if symmetric > 0 && symmetric < keys.len() {
            return Err(KeyError::InvalidKey("a JWKS mixing symmetric and asymmetric keys"));
        }
        Ok(Self::new(keys))
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The keys a token naming `kid` (or none) with `algorithm` may have
    /// been signed by: with a `kid`, only that key, and only if it is pinned
    /// to `algorithm`; without one, each key pinned to `algorithm`.
    pub(crate) fn candidates(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<impl Iterator<Item = &VerifyingKey>, crate::JwtError> {
        let named = move |key: &&VerifyingKey| kid.is_none_or(|kid| key.kid() == Some(kid));
        if kid.is_some() && !self.keys.iter().any(|key| named(&key)) {
            return Err(crate::JwtError::UnknownKeyId);
        }
        if !self.keys.iter().filter(named).any(|key| key.algorithm() == algorithm) {
            return Err(crate::JwtError::AlgorithmMismatch);
        }
        Ok(self
            .keys
            .iter()
            .filter(named)
            .filter(move |key| key.algorithm() == algorithm))
    }
}

impl From<VerifyingKey> for KeySet {
    fn from(key: VerifyingKey) -> Self {
        Self::new([key])
    }
}

impl FromIterator<VerifyingKey> for KeySet {
    fn from_iter<T: IntoIterator<Item = VerifyingKey>>(iter: T) -> Self {
        Self::new(iter)
    }
}

/// Where a verifier's keys come from: a static [`KeySet`], or (feature
/// `remote`) a [`RemoteKeys`](crate::remote::RemoteKeys) kept current from
/// a provider.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Keys {
    /// Keys fixed at start.
    Static(KeySet),
    /// Keys fetched and refreshed from a provider.
    #[cfg(feature = "remote")]
    Remote(crate::remote::RemoteKeys),
}

impl From<KeySet> for Keys {
    fn from(keys: KeySet) -> Self {
        Self::Static(keys)
    }
}

impl From<VerifyingKey> for Keys {
    fn from(key: VerifyingKey) -> Self {
        Self::Static(key.into())
    }
}

#[cfg(feature = "remote")]
impl From<crate::remote::RemoteKeys> for Keys {
    fn from(keys: crate::remote::RemoteKeys) -> Self {
        Self::Remote(keys)
    }
}

/// Parses a public key (a SubjectPublicKeyInfo or the raw key) for
/// `algorithm`, and gives its canonical SubjectPublicKeyInfo.
fn canonical_spki(algorithm: Algorithm, der: &[u8]) -> Result<Box<[u8]>, KeyError> {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    let verification = algorithm.verification().ok_or(KeyError::AlgorithmMismatch(algorithm))?;
    let parsed = ParsedPublicKey::new(verification, der).map_err(|_| KeyError::InvalidKey("public key"))?;
    let spki: PublicKeyX509Der<'static> = parsed.as_der().map_err(|_| KeyError::InvalidKey("public key"))?;
    Ok(spki.as_ref().into())
}

/// The contents of a SubjectPublicKeyInfo's `subjectPublicKey` BIT STRING
/// (a SEC1 point, an Ed25519 key, a PKCS#1 RSA key), from the canonical
/// DER aws-lc writes; `None` if it is not of that shape.
fn subject_public_key(spki: &[u8]) -> Option<&[u8]> {
    /// Splits one DER element with tag `tag` off `input`: (contents, rest).
    fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, input) = input.split_first()?;
        let (&first, input) = input.split_first()?;
        let (length, input) = match first {
            0..=0x7f => (usize::from(first), input),
            0x81 => (usize::from(*input.first()?), input.get(1..)?),
            0x82 => (
                usize::from(*input.first()?) << 8 | usize::from(*input.get(1)?),
                input.get(2..)?,
            ),
            _ => return None,
        };
        (found == tag).then_some(())?;
        let contents = input.get(..length)?;
        Some((contents, input.get(length..)?))
    }
    let (info, rest) = element(spki, 0x30)?;
    let (_algorithm, info) = element(info, 0x30)?;
    let (bits, after) = element(info, 0x03)?;
    let (&unused_bits, key) = bits.split_first()?;
    (rest.is_empty() && after.is_empty() && unused_bits == 0 && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod spki_tests {
    use super::*;
    use crate::SigningKey;

    #[test]
    fn the_raw_key_is_found_in_every_family_spki() {
        for (key, raw_length) in [
            (SigningKey::generate_p256().expect("p256"), 65),
            (SigningKey::generate_ed25519().expect("ed25519"), 32),
        ] {
            let pem = key.verifying_key().public_key_pem().expect("pem");
            let der = pem::parse(pem).expect("pem").into_contents();
            let raw = subject_public_key(&der).expect("a SubjectPublicKeyInfo");
            assert_eq!(raw.len(), raw_length);
            assert!(der.ends_with(raw));
        }
        let rsa = SigningKey::generate_rsa(Algorithm::RS256).expect("rsa");
        let der = pem::parse(rsa.verifying_key().public_key_pem().expect("pem"))
            .expect("pem")
            .into_contents();
        let raw = subject_public_key(&der).expect("a SubjectPublicKeyInfo");
        assert_eq!(raw.first(), Some(&0x30), "a PKCS#1 RSAPublicKey sequence");
        for bad in [
            &[][..],
            &[0x30, 0x03, 0x30, 0x00, 0x03][..],
            &[0x31, 0x00][..],
            &der[..der.len() - 1],
        ] {
            assert_eq!(subject_public_key(bad), None, "{bad:?}");
        }
    }
}
