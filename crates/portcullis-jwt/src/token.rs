//! Parsing and checking a compact JWS, step by step, cheapest first.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{AuthMethod, Identity, TokenTransport};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use jsonwebtoken::errors::ErrorKind;

use crate::engine::ProviderMissing;
use crate::{Algorithm, JwtError, KeySet, Validation};

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

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed(what))
}

/// A compact JWS split into its parts, its header through the policy.
struct Parts<'t, 'h> {
    header_b64: &'t str,
    payload_b64: &'t str,
    signature_b64: &'t str,
    algorithm: Algorithm,
    // Borrowed from the caller's decoded-header buffer: no copy per request.
    kid: Option<Cow<'h, str>>,
    typ: Option<Cow<'h, str>>,
}

impl<'t> Parts<'t, '_> {
    /// The signing input: `header.payload`.
    fn signing_input(&self, token: &'t str) -> &'t str {
        &token[..self.header_b64.len() + 1 + self.payload_b64.len()]
    }
}

/// Size, compact shape and the header policy, before any key is touched:
/// no `none`, no key references (`jku`, `x5u`, `jwk`, `x5c`) and no `crit`,
/// present at all, `null` included — jsonwebtoken reads a `null` member as
/// absent and would let it through. The header is decoded into
/// `header_json`, which the returned parts borrow from.
fn split<'t, 'h>(
    token: &'t str,
    max_token_bytes: usize,
    header_json: &'h mut Vec<u8>,
) -> Result<Parts<'t, 'h>, JwtError> {
    if token.len() > max_token_bytes {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    if parts.next().is_some() {
        return Err(JwtError::Malformed(
            "expected three dot-separated parts (encrypted tokens are not supported)",
        ));
    }
    URL_SAFE_NO_PAD
        .decode_vec(header_b64, header_json)
        .map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header_json: &'h [u8] = header_json;
    let header: Header<'h> =
        serde_json::from_slice(header_json).map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
    let alg = header.alg.ok_or(JwtError::Malformed("header has no alg"))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgNone);
    }
    let algorithm = Algorithm::from_name(&alg).ok_or(JwtError::UnsupportedAlgorithm)?;
    for (present, name) in [
        (header.jku, "jku"),
        (header.x5u, "x5u"),
        (header.jwk, "jwk"),
        (header.x5c, "x5c"),
    ] {
        if present {
            return Err(JwtError::KeyReferenceHeader(name));
        }
    }
    if header.crit {
        return Err(JwtError::CriticalHeader);
    }
    Ok(Parts {
        header_b64,
        payload_b64,
        signature_b64,
        algorithm,
        kid: header.kid,
        typ: header.typ,
    })
}

/// `typ`, when one is expected; checked once the signature holds.
fn check_type(parts: &Parts<'_, '_>, token_type: Option<&str>) -> Result<(), JwtError> {
    if let Some(expected) = token_type {
        let typ = parts.typ.as_deref().ok_or(JwtError::TypeMismatch)?;
        if !type_matches(typ, expected) {
            return Err(JwtError::TypeMismatch);
        }
    }
    Ok(())
}

fn provider_missing(_: ProviderMissing) -> JwtError {
    JwtError::CryptoProvider
}

/// The engine's half of a claims check: jsonwebtoken's `Validation` for
/// each algorithm (its own checks of `exp` presence, `iss` and `aud`), built
/// once per verifier. Time is not the engine's to judge: it reads the
/// system clock, and a verifier's clock is configurable, so `exp`, `nbf`
/// and `iat` are Portcullis's checks alone.
#[derive(Clone, Debug)]
pub(crate) struct EngineRules {
    by_algorithm: Arc<[jsonwebtoken::Validation]>,
}

impl EngineRules {
    pub(crate) fn new(validation: &Validation) -> Self {
        let by_algorithm = Algorithm::ALL
            .iter()
            .map(|algorithm| {
                let mut rules = jsonwebtoken::Validation::new(algorithm.engine());
                rules.validate_exp = false;
                rules.validate_nbf = false;
                let mut required = vec!["exp"];
                if !validation.issuers.is_empty() {
                    rules.set_issuer(&validation.issuers);
                    required.push("iss");
                }
                if validation.audiences.is_empty() {
                    rules.validate_aud = false;
                } else {
                    rules.set_audience(&validation.audiences);
                    required.push("aud");
                }
                rules.set_required_spec_claims(&required);
                rules
            })
            .collect();
        Self { by_algorithm }
    }

    fn get(&self, algorithm: Algorithm) -> &jsonwebtoken::Validation {
        &self.by_algorithm[algorithm.index()]
    }
}

/// Verifies `token` against `keys` and `validation` at `now`, and builds the
/// caller's identity from its claims.
///
/// jsonwebtoken decodes and verifies the token (signature, algorithm, its
/// claim checks); Portcullis's policy stands before it (size, header, key
/// selection) and after it (time on the verifier's clock, `typ`, strict
/// claim types, required claims). When the engine refuses a token whose
/// signature holds, the policy names the reason.
pub(crate) fn verify(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    rules: &EngineRules,
    now: SystemTime,
    transport: TokenTransport,
) -> Result<(Identity, SystemTime), JwtError> {
    let mut header_json = Vec::new();
    let parts = split(token, validation.max_token_bytes, &mut header_json)?;
    let engine_rules = rules.get(parts.algorithm);
    let mut engine_refusal = None;
    let mut verified = None;
    for key in keys.candidates(parts.kid.as_deref(), parts.algorithm)? {
        let decoded =
            crate::engine::guarded(|| jsonwebtoken::decode::<Box<RawValue>>(token, key.decoding(), engine_rules))
                .map_err(provider_missing)?;
        match decoded {
            Ok(data) => {
                verified = Some(data.claims);
                break;
            }
            Err(error) if *error.kind() == ErrorKind::InvalidSignature => continue,
            // Refused for something else: the policy below names it, once
            // the signature is known to hold.
            Err(error) => {
                if key
                    .verify_encoded(parts.signing_input(token).as_bytes(), parts.signature_b64)
                    .map_err(provider_missing)?
                {
                    engine_refusal = Some(error);
                    break;
                }
            }
        }
    }
    if verified.is_none() && engine_refusal.is_none() {
        return Err(JwtError::InvalidSignature);
    }
    // Signed by a trusted key from here on.
    check_type(&parts, validation.token_type.as_deref())?;
    let payload = match &verified {
        Some(claims) => Cow::Borrowed(claims.get()),
        None => {
            let bytes = decode_part(parts.payload_b64, "payload is not base64url")?;
            Cow::Owned(String::from_utf8(bytes).map_err(|_| JwtError::Malformed("payload is not UTF-8"))?)
        }
    };
    let checked = check_claims(&payload, validation, now, transport)?;
    match engine_refusal {
        None => Ok(checked),
        // The engine refused what the policy accepts: refused all the same.
        Some(error) => Err(JwtError::EngineRefused(engine_reason(error.kind()))),
    }
}

/// The engine's refusal, named for a rejection without its detail.
fn engine_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidIssuer => "issuer not accepted",
        ErrorKind::InvalidAudience => "audience not accepted",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidClaimFormat(_) => "a claim is malformed",
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::Base64(_) => "the token does not decode",
        _ => "the token is not valid",
    }
}

/// The JWS layer alone: size, compact shape, header policy, the algorithm
/// pinned by the key, the signature (jsonwebtoken's verifier), and `typ`
/// when one is expected. Returns the decoded payload, signed by a trusted
/// key.
pub(crate) fn verify_jws(
    token: &str,
    keys: &KeySet,
    max_token_bytes: usize,
    token_type: Option<&str>,
) -> Result<Vec<u8>, JwtError> {
    let mut header_json = Vec::new();
    let parts = split(token, max_token_bytes, &mut header_json)?;
    let signing_input = parts.signing_input(token).as_bytes();
    let mut signed = false;
    for key in keys.candidates(parts.kid.as_deref(), parts.algorithm)? {
        if key
            .verify_encoded(signing_input, parts.signature_b64)
            .map_err(provider_missing)?
        {
            signed = true;
            break;
        }
    }
    if !signed {
        return Err(JwtError::InvalidSignature);
    }
    check_type(&parts, token_type)?;
    decode_part(parts.payload_b64, "payload is not base64url")
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

fn check_claims(
    payload: &str,
    validation: &Validation,
    now: SystemTime,
    transport: TokenTransport,
) -> Result<(Identity, SystemTime), JwtError> {
    let claims: RawClaims<'_> =
        serde_json::from_str(payload).map_err(|_| JwtError::Malformed("claims are not a JSON object"))?;
    let leeway = validation.leeway;

    let exp = numeric_date(claims.exp, "exp")?.ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
    if now > exp + leeway {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(claims.nbf, "nbf")?
        && nbf > now + leeway
    {
        return Err(JwtError::NotYetValid);
    }
    let iat = numeric_date(claims.iat, "iat")?;
    if let Some(iat) = iat
        && iat > now + leeway
    {
        return Err(JwtError::IssuedInFuture);
    }

    let iss = string_claim(claims.iss, "iss")?;
    if !validation.issuers.is_empty() {
        let iss = iss.as_deref().ok_or_else(|| JwtError::MissingClaim("iss".into()))?;
        if !validation.issuers.iter().any(|accepted| accepted == iss) {
            return Err(JwtError::IssuerMismatch);
        }
    }
    if !validation.audiences.is_empty() {
        let raw = claims.aud.ok_or_else(|| JwtError::MissingClaim("aud".into()))?;
        let audiences = string_or_list(raw, "aud")?;
        if !audiences
            .iter()
            .any(|aud| validation.audiences.iter().any(|accepted| accepted == aud))
        {
            return Err(JwtError::AudienceMismatch);
        }
    }
    if !validation.required_claims.is_empty() {
        let present: std::collections::HashMap<Cow<'_, str>, IgnoredAny> =
            serde_json::from_str(payload).map_err(|_| JwtError::Malformed("claims are not a JSON object"))?;
        for name in validation.required_claims.iter() {
            if !present.contains_key(name.as_str()) {
                return Err(JwtError::MissingClaim(name.clone()));
            }
        }
    }

    let subject = string_claim(claims.sub, "sub")?.ok_or_else(|| JwtError::MissingClaim("sub".into()))?;
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

    // The identity's principal is (iss, sub), from the method's issuer.
    let method = AuthMethod::Bearer {
        token_id: jti.map(|j| Arc::from(j.as_ref())),
        issuer: iss.map(|i| Arc::from(i.as_ref())),
        transport,
    };
    let mut builder = Identity::builder(subject, method)
        .scopes(scopes)
        .expires_at(exp)
        .claims_json(payload);
    if let Some(iat) = iat {
        builder = builder.issued_at(iat);
    }
    Ok((builder.build(), exp + leeway))
}

fn string_claim<'a>(raw: Option<&'a RawValue>, name: &'static str) -> Result<Option<Cow<'a, str>>, JwtError> {
    raw.map(|raw| {
        // The common case without a parser: a raw value is valid JSON with
        // no surrounding space, so a quoted text without escapes is the
        // string itself.
        let text = raw.get();
        if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
            && !inner.contains('\\')
        {
            return Ok(Cow::Borrowed(inner));
        }
        // `Cow<str>` borrows unless the JSON string has escapes.
        let value: Cow<'a, str> = serde_json::from_str(raw.get()).map_err(|_| JwtError::InvalidClaim(name))?;
        Ok(value)
    })
    .transpose()
}

fn string_or_list<'a>(raw: &'a RawValue, name: &'static str) -> Result<Vec<Cow<'a, str>>, JwtError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<'a> {
        #[serde(borrow)]
        One(Cow<'a, str>),
        Many(Vec<Cow<'a, str>>),
    }
    match serde_json::from_str::<OneOrMany<'a>>(raw.get()).map_err(|_| JwtError::InvalidClaim(name))? {
        OneOrMany::One(one) => Ok(vec![one]),
        OneOrMany::Many(many) => Ok(many),
    }
}

/// RFC 7519 NumericDate: seconds since the epoch, integer or not.
fn numeric_date(raw: Option<&RawValue>, name: &'static str) -> Result<Option<SystemTime>, JwtError> {
    let Some(raw) = raw else { return Ok(None) };
    // The common case without a parser: a plain integer (valid JSON, so no
    // sign or leading zero) of at most 15 digits, exact and below 2^53.
    let text = raw.get();
    if (1..=15).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && let Ok(seconds) = text.parse::<u64>()
    {
        return Ok(Some(UNIX_EPOCH + Duration::from_secs(seconds)));
    }
    let seconds: f64 = serde_json::from_str(text).map_err(|_| JwtError::InvalidClaim(name))?;
    // Beyond 2^53 s a float is no longer an exact second, and far past any
    // real token lifetime.
    if !seconds.is_finite() || !(0.0..=9_007_199_254_740_992.0).contains(&seconds) {
        return Err(JwtError::InvalidClaim(name));
    }
    Ok(Some(UNIX_EPOCH + Duration::from_secs(seconds.floor() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    /// The parser-free paths agree with the parser on what they take, and
    /// leave everything else to it.
    #[test]
    fn fast_paths_agree_with_the_parser() {
        for json in [
            "0",
            "7",
            "1700000000",
            "999999999999999",
            "1700000000.9",
            "1e3",
            "-1",
            "9999999999999999",
        ] {
            let value = raw(json);
            let parsed: Option<f64> = serde_json::from_str(json).ok();
            let expected = parsed
                .filter(|s| s.is_finite() && (0.0..=9_007_199_254_740_992.0).contains(s))
                .map(|s| UNIX_EPOCH + Duration::from_secs(s.floor() as u64));
            assert_eq!(numeric_date(Some(&value), "exp").ok().flatten(), expected, "{json}");
        }
        for json in ["\"\"", "\"alice\"", "\"a\\\"b\"", "\"caf\\u00e9\"", "\"a b\""] {
            let value = raw(json);
            let expected: String = serde_json::from_str(json).expect("string");
            let got = string_claim(Some(&value), "sub").expect("string").expect("present");
            assert_eq!(got, expected, "{json}");
        }
        for json in ["5", "null", "[\"a\"]", "{}"] {
            let value = raw(json);
            assert_eq!(
                string_claim(Some(&value), "sub"),
                Err(JwtError::InvalidClaim("sub")),
                "{json}"
            );
        }
    }
}
