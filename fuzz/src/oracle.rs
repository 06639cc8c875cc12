//! The previous, hand-written JWS verifier of `portcullis-jwt` (before
//! jsonwebtoken became its engine), kept here only as the oracle of the
//! `jwt_differential` target: copied from `crates/portcullis-jwt/src/token.rs`
//! and `key.rs` at commit 1938382, trimmed to what the target configures (an
//! HS256 and an Ed25519 key with kids, one issuer, one audience, optional
//! `typ`). Its verdicts are compared with the new verifier's.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ED25519, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The old `JwtError`s this path could return, with the same messages.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    TooLarge,
    Malformed(&'static str),
    AlgNone,
    UnsupportedAlgorithm,
    KeyReferenceHeader(&'static str),
    CriticalHeader,
    UnknownKeyId,
    AlgorithmMismatch,
    InvalidSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingClaim(String),
    InvalidClaim(&'static str),
    IssuerMismatch,
    AudienceMismatch,
    TypeMismatch,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => write!(f, "token too large"),
            Self::Malformed(what) => write!(f, "malformed token: {what}"),
            Self::AlgNone => write!(f, "alg none is not accepted"),
            Self::UnsupportedAlgorithm => write!(f, "unsupported algorithm"),
            Self::KeyReferenceHeader(name) => write!(f, "token header {name} is not accepted"),
            Self::CriticalHeader => write!(f, "unsupported critical header"),
            Self::UnknownKeyId => write!(f, "unknown key id"),
            Self::AlgorithmMismatch => write!(f, "algorithm not allowed for this key"),
            Self::InvalidSignature => write!(f, "invalid signature"),
            Self::Expired => write!(f, "token expired"),
            Self::NotYetValid => write!(f, "token not yet valid"),
            Self::IssuedInFuture => write!(f, "token issued in the future"),
            Self::MissingClaim(name) => write!(f, "missing claim {name}"),
            Self::InvalidClaim(name) => write!(f, "malformed claim {name}"),
            Self::IssuerMismatch => write!(f, "issuer not accepted"),
            Self::AudienceMismatch => write!(f, "audience not accepted"),
            Self::TypeMismatch => write!(f, "unexpected token type"),
        }
    }
}

/// What an accepted token said.
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    pub subject: String,
    pub issuer: Option<String>,
    pub token_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: SystemTime,
}

/// The old `Validation`, as the target configures it.
pub struct OracleValidation {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub token_type: Option<String>,
    pub required_claims: Vec<String>,
    pub max_token_bytes: usize,
}

/// The old key set: an HS256 secret and an Ed25519 public key, each with a
/// kid, verified as the old `KeySet::verify` did.
pub struct OracleKeys {
    pub hs256: (String, hmac::Key),
    pub ed25519: (String, ParsedPublicKey),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    EdDSA,
    /// Any other RFC 7518 name: known, but no key here is pinned to it.
    Other,
}

impl Algorithm {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Self::HS256,
            "EdDSA" => Self::EdDSA,
            "HS384" | "HS512" | "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" => {
                Self::Other
            }
            _ => return None,
        })
    }
}

impl OracleKeys {
    pub fn new(hs256_kid: &str, secret: &[u8], ed_kid: &str, ed_public: &[u8]) -> Self {
        Self {
            hs256: (hs256_kid.to_owned(), hmac::Key::new(hmac::HMAC_SHA256, secret)),
            ed25519: (
                ed_kid.to_owned(),
                ParsedPublicKey::new(&ED25519, ed_public).expect("an Ed25519 public key"),
            ),
        }
    }

    fn verify(&self, kid: Option<&str>, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), Refused> {
        let (mut kid_known, mut algorithm_allowed) = (false, false);
        let entries: [(&str, Algorithm); 2] = [(&self.hs256.0, Algorithm::HS256), (&self.ed25519.0, Algorithm::EdDSA)];
        for (key_kid, key_algorithm) in entries {
            if let Some(kid) = kid {
                if key_kid != kid {
                    continue;
                }
                kid_known = true;
            }
            if key_algorithm != algorithm {
                continue;
            }
            algorithm_allowed = true;
            let valid = match key_algorithm {
                Algorithm::HS256 => hmac::verify(&self.hs256.1, message, signature).is_ok(),
                _ => self.ed25519.1.verify_sig(message, signature).is_ok(),
            };
            if valid {
                return Ok(());
            }
        }
        Err(if kid.is_some() && !kid_known {
            Refused::UnknownKeyId
        } else if !algorithm_allowed {
            Refused::AlgorithmMismatch
        } else {
            Refused::InvalidSignature
        })
    }
}

/// The old `token::verify`.
pub fn verify(
    token: &str,
    keys: &OracleKeys,
    validation: &OracleValidation,
    now: SystemTime,
) -> Result<Accepted, Refused> {
    let payload = verify_jws(
        token,
        keys,
        validation.max_token_bytes,
        validation.token_type.as_deref(),
    )?;
    let payload = String::from_utf8(payload).map_err(|_| Refused::Malformed("payload is not UTF-8"))?;
    check_claims(&payload, validation, now)
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    // Present at all, `null` included: an `Option` would read `null` as
    // absent and let the member through.
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// `true` for a member that is there, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The registered claims, each kept raw so that a bad one is named.
#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow)]
    sub: Option<&'a RawValue>,
    #[serde(borrow)]
    iss: Option<&'a RawValue>,
    #[serde(borrow)]
    aud: Option<&'a RawValue>,
    #[serde(borrow)]
    exp: Option<&'a RawValue>,
    #[serde(borrow)]
    nbf: Option<&'a RawValue>,
    #[serde(borrow)]
    iat: Option<&'a RawValue>,
    #[serde(borrow)]
    jti: Option<&'a RawValue>,
    #[serde(borrow)]
    scope: Option<&'a RawValue>,
    #[serde(borrow)]
    scp: Option<&'a RawValue>,
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, Refused> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Refused::Malformed(what))
}

/// The JWS layer of [`verify`]: size, compact shape, header policy (no
/// `none`, no key references, no `crit`, `null` included), the algorithm
/// pinned by the key, the signature, and `typ` when one is expected.
/// Returns the decoded payload, signed by a trusted key.
pub fn verify_jws(
    token: &str,
    keys: &OracleKeys,
    max_token_bytes: usize,
    token_type: Option<&str>,
) -> Result<Vec<u8>, Refused> {
    if token.len() > max_token_bytes {
        return Err(Refused::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Refused::Malformed("expected three dot-separated parts"));
    };
    if parts.next().is_some() {
        return Err(Refused::Malformed(
            "expected three dot-separated parts (encrypted tokens are not supported)",
        ));
    }

    let header_json = decode_part(header_b64, "header is not base64url")?;
    let header: Header<'_> =
        serde_json::from_slice(&header_json).map_err(|_| Refused::Malformed("header is not a JSON object"))?;
    let alg = header.alg.ok_or(Refused::Malformed("header has no alg"))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(Refused::AlgNone);
    }
    let algorithm = Algorithm::from_name(&alg).ok_or(Refused::UnsupportedAlgorithm)?;
    for (present, name) in [
        (header.jku, "jku"),
        (header.x5u, "x5u"),
        (header.jwk, "jwk"),
        (header.x5c, "x5c"),
    ] {
        if present {
            return Err(Refused::KeyReferenceHeader(name));
        }
    }
    if header.crit {
        return Err(Refused::CriticalHeader);
    }

    let signature = decode_part(signature_b64, "signature is not base64url")?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    keys.verify(header.kid.as_deref(), algorithm, signing_input.as_bytes(), &signature)?;

    // Signed by a trusted key from here on.
    if let Some(expected) = token_type {
        let typ = header.typ.as_deref().ok_or(Refused::TypeMismatch)?;
        if !type_matches(typ, expected) {
            return Err(Refused::TypeMismatch);
        }
    }
    decode_part(payload_b64, "payload is not base64url")
}

/// RFC 9068 §4: `typ` compares case-insensitively, and an `application/`
/// prefix may be left out.
fn type_matches(typ: &str, expected: &str) -> bool {
    let strip = |t: &str| -> String {
        let lower = t.to_ascii_lowercase();
        lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
    };
    strip(typ) == strip(expected)
}

fn check_claims(payload: &str, validation: &OracleValidation, now: SystemTime) -> Result<Accepted, Refused> {
    let claims: RawClaims<'_> =
        serde_json::from_str(payload).map_err(|_| Refused::Malformed("claims are not a JSON object"))?;
    let leeway = validation.leeway;

    let exp = numeric_date(claims.exp, "exp")?.ok_or_else(|| Refused::MissingClaim("exp".into()))?;
    if now > exp + leeway {
        return Err(Refused::Expired);
    }
    if let Some(nbf) = numeric_date(claims.nbf, "nbf")?
        && nbf > now + leeway
    {
        return Err(Refused::NotYetValid);
    }
    let iat = numeric_date(claims.iat, "iat")?;
    if let Some(iat) = iat
        && iat > now + leeway
    {
        return Err(Refused::IssuedInFuture);
    }

    let iss = string_claim(claims.iss, "iss")?;
    if !validation.issuers.is_empty() {
        let iss = iss.as_deref().ok_or_else(|| Refused::MissingClaim("iss".into()))?;
        if !validation.issuers.iter().any(|accepted| accepted == iss) {
            return Err(Refused::IssuerMismatch);
        }
    }
    if !validation.audiences.is_empty() {
        let raw = claims.aud.ok_or_else(|| Refused::MissingClaim("aud".into()))?;
        let audiences = string_or_list(raw, "aud")?;
        if !audiences
            .iter()
            .any(|aud| validation.audiences.iter().any(|accepted| accepted == aud))
        {
            return Err(Refused::AudienceMismatch);
        }
    }
    if !validation.required_claims.is_empty() {
        let present: std::collections::HashMap<Cow<'_, str>, IgnoredAny> =
            serde_json::from_str(payload).map_err(|_| Refused::Malformed("claims are not a JSON object"))?;
        for name in validation.required_claims.iter() {
            if !present.contains_key(name.as_str()) {
                return Err(Refused::MissingClaim(name.clone()));
            }
        }
    }

    let subject = string_claim(claims.sub, "sub")?.ok_or_else(|| Refused::MissingClaim("sub".into()))?;
    let jti = string_claim(claims.jti, "jti")?;
    let mut scopes: Vec<String> = Vec::new();
    if let Some(scope) = string_claim(claims.scope, "scope")? {
        scopes.extend(scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    if let Some(scp) = claims.scp {
        for entry in string_or_list(scp, "scp")? {
            scopes.extend(entry.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
        }
    }

    let _ = iat;
    Ok(Accepted {
        subject: subject.into_owned(),
        issuer: iss.map(Cow::into_owned),
        token_id: jti.map(Cow::into_owned),
        scopes,
        expires_at: exp,
    })
}

fn string_claim<'a>(raw: Option<&'a RawValue>, name: &'static str) -> Result<Option<Cow<'a, str>>, Refused> {
    raw.map(|raw| {
        // `Cow<str>` borrows unless the JSON string has escapes.
        let value: Cow<'a, str> = serde_json::from_str(raw.get()).map_err(|_| Refused::InvalidClaim(name))?;
        Ok(value)
    })
    .transpose()
}

fn string_or_list<'a>(raw: &'a RawValue, name: &'static str) -> Result<Vec<Cow<'a, str>>, Refused> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<'a> {
        #[serde(borrow)]
        One(Cow<'a, str>),
        Many(Vec<Cow<'a, str>>),
    }
    match serde_json::from_str::<OneOrMany<'a>>(raw.get()).map_err(|_| Refused::InvalidClaim(name))? {
        OneOrMany::One(one) => Ok(vec![one]),
        OneOrMany::Many(many) => Ok(many),
    }
}

/// RFC 7519 NumericDate: seconds since the epoch, integer or not.
fn numeric_date(raw: Option<&RawValue>, name: &'static str) -> Result<Option<SystemTime>, Refused> {
    let Some(raw) = raw else { return Ok(None) };
    let seconds: f64 = serde_json::from_str(raw.get()).map_err(|_| Refused::InvalidClaim(name))?;
    // Beyond 2^53 s a float is no longer an exact second, and far past any
    // real token lifetime.
    if !seconds.is_finite() || !(0.0..=9_007_199_254_740_992.0).contains(&seconds) {
        return Err(Refused::InvalidClaim(name));
    }
    Ok(Some(UNIX_EPOCH + Duration::from_secs(seconds.floor() as u64)))
}
