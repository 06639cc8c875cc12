//! Session-bound tokens, masked per response.
//!
//! Each session holds a random secret (in its own data, so it survives id
//! rotation). The unmasked token is HMAC-SHA256(layer key, session secret):
//! a token from one session is useless in another, and a leaked session
//! store yields no token without the layer key. What pages carry is
//! `mask ‖ (token ⊕ mask)` with a fresh random mask each time (BREACH: the
//! token is never a fixed string in compressed responses), and every such
//! form stays valid for the whole session (tabs, back button).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::random_bytes as random;
use portcullis_session::Session;

/// The session data key holding the CSRF secret.
pub(crate) const SECRET_KEY: &str = "_portcullis_csrf";

const TOKEN_BYTES: usize = 32;
/// Base64url length of a masked token (64 bytes).
const MASKED_LEN: usize = 86;

pub(crate) fn unmasked(key: &hmac::Key, secret: &str) -> [u8; TOKEN_BYTES] {
    let tag = hmac::sign(key, secret.as_bytes());
    let mut token = [0u8; TOKEN_BYTES];
    token.copy_from_slice(tag.as_ref());
    token
}

pub(crate) fn mask(token: &[u8; TOKEN_BYTES]) -> String {
    let mask: [u8; TOKEN_BYTES] = random();
    let mut out = [0u8; 2 * TOKEN_BYTES];
    out[..TOKEN_BYTES].copy_from_slice(&mask);
    for (index, byte) in token.iter().enumerate() {
        out[TOKEN_BYTES + index] = byte ^ mask[index];
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// The token a masked one carries; `None` for anything malformed
/// (truncated, not base64url).
fn unmask(presented: &str) -> Option<[u8; TOKEN_BYTES]> {
    let presented = presented.trim();
    if presented.len() != MASKED_LEN {
        return None;
    }
    let bytes = portcullis_core::base64url::decode_exact::<{ 2 * TOKEN_BYTES }>(presented)?;
    let (mask, masked) = bytes.split_at(TOKEN_BYTES);
    let mut token = [0u8; TOKEN_BYTES];
    for index in 0..TOKEN_BYTES {
        token[index] = masked[index] ^ mask[index];
    }
    Some(token)
}

/// Whether `presented` (a masked token) unmasks to `expected`, compared in
/// constant time. Anything malformed is `false`.
#[cfg(test)]
pub(crate) fn verify(expected: &[u8; TOKEN_BYTES], presented: &str) -> bool {
    unmask(presented).is_some_and(|token| constant_time::verify_slices_are_equal(&token, expected).is_ok())
}

/// The layer's keys, one per secret of its keyring, current first: the
/// current one alone issues tokens, every one verifies.
pub(crate) type Keys = Arc<[hmac::Key]>;

/// What a request's token must be: the MAC of its binding (a session's or
/// visitor's secret, or a cookie JWT's principal) under one of the
/// layer's keys. The current key's MAC is computed up front, as with a
/// single key; the previous keys' only when a token does not match it.
#[derive(Clone)]
pub(crate) struct Expected {
    current: [u8; TOKEN_BYTES],
    /// With previous keys: them, and what to MAC under each.
    previous: Option<(Keys, Material)>,
}

#[derive(Clone)]
enum Material {
    Secret(String),
    Principal(String),
}

impl Material {
    fn under(&self, key: &hmac::Key) -> [u8; TOKEN_BYTES] {
        match self {
            Self::Secret(secret) => unmasked(key, secret),
            Self::Principal(principal) => for_principal(key, principal),
        }
    }
}

impl Expected {
    fn new(keys: &Keys, material: impl FnOnce() -> Material, current: [u8; TOKEN_BYTES]) -> Self {
        Self {
            current,
            previous: (keys.len() > 1).then(|| (keys.clone(), material())),
        }
    }

    pub(crate) fn secret(keys: &Keys, secret: &str) -> Self {
        Self::new(keys, || Material::Secret(secret.to_owned()), unmasked(&keys[0], secret))
    }

    pub(crate) fn principal(keys: &Keys, principal_key: &str) -> Self {
        Self::new(
            keys,
            || Material::Principal(principal_key.to_owned()),
            for_principal(&keys[0], principal_key),
        )
    }

    /// Whether `presented` is a token of this binding under any key, each
    /// comparison in constant time.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let Some(token) = unmask(presented) else {
            return false;
        };
        if constant_time::verify_slices_are_equal(&token, &self.current).is_ok() {
            return true;
        }
        self.previous.as_ref().is_some_and(|(keys, material)| {
            keys[1..]
                .iter()
                .any(|key| constant_time::verify_slices_are_equal(&token, &material.under(key)).is_ok())
        })
    }
}

/// The session's CSRF secret, if it has one.
pub(crate) fn secret_of(session: &Session) -> Option<String> {
    session.get::<String>(SECRET_KEY).ok().flatten()
}

/// A tag for a new set of layer keys (see `Config::keys_tag`).
pub(crate) fn new_keys_tag() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The token a session's secret expects under `keys`; `None` when it has
/// no secret (or one that is not a JSON string). Derived once per stored
/// record and remembered on it (the MAC and the decoding are the layer's
/// largest per-request costs), never across a change of the secret or of
/// the keys.
pub(crate) fn expected_of(session: &Session, keys: &Keys, keys_tag: u64) -> Option<Expected> {
    // The secrets this layer mints are base64url: their JSON is the text
    // in quotes, with nothing to unescape.
    let remembered = session.derived(SECRET_KEY, keys_tag, |json| {
        json.strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .filter(|secret| is_secret(secret))
            .map(|secret| Expected::secret(keys, secret))
    });
    match remembered {
        Some(Some(expected)) => Some(expected),
        // A secret in another spelling: decoded the long way.
        Some(None) => secret_of(session).map(|secret| Expected::secret(keys, &secret)),
        None => None,
    }
}

/// The CSRF token of the current session, for templates and SPA clients:
/// in the request extensions (and an axum extractor, feature `axum`) of
/// every request that passed `SessionLayer` and `CsrfLayer`.
///
/// [`CsrfToken::value`] returns a freshly masked token each call; put it in
/// a form's hidden `csrf_token` field or send it as the `X-CSRF-Token`
/// header. The first call in a session creates the session's secret, in
/// the session's data, so tokens stay valid across `login`'s id rotation;
/// `logout` ends them with the session.
///
/// An anonymous visitor costs no server state: their secret lives in
/// their own pre-session cookie ([`PRE_SESSION_COOKIE`](crate::PRE_SESSION_COOKIE)),
/// set by the response that first issued a token, and moves into the
/// session when one is stored (a login, a write), so the login form's
/// token keeps working after the login. A form posted with that cookie
/// must carry its token.
#[derive(Clone)]
pub struct CsrfToken {
    binding: Binding,
    keys: Keys,
    issued: Arc<AtomicBool>,
}

/// What a token is bound to.
#[derive(Clone)]
pub(crate) enum Binding {
    /// A session's random secret (kept in its data).
    Session(Session),
    /// An anonymous visitor's secret, kept in their own pre-session cookie
    /// (no server state), moved into the session once one is stored.
    PreSession(Arc<PreSession>),
    /// The principal of a JWT read from a cookie: the token stays valid
    /// across access-token refreshes, and is useless for anyone else.
    Principal(Arc<str>),
}

/// The pre-session secret of an anonymous visitor: the one their cookie
/// presented, or one minted for this response (then set as the cookie).
pub(crate) struct PreSession {
    presented: Option<String>,
    minted: std::sync::OnceLock<String>,
    /// The request's (not yet stored) session, to move the secret into.
    session: Option<Session>,
}

impl PreSession {
    pub(crate) fn new(presented: Option<String>, session: Option<Session>) -> Self {
        Self {
            presented,
            minted: std::sync::OnceLock::new(),
            session,
        }
    }

    /// The secret, minted on first use when the request presented none.
    pub(crate) fn secret(&self) -> &str {
        match &self.presented {
            Some(secret) => secret,
            None => self.minted.get_or_init(new_secret),
        }
    }

    /// Whether the request's session will be stored (the secret then lives
    /// there, and needs no cookie).
    pub(crate) fn stored(&self) -> bool {
        self.session.as_ref().is_some_and(Session::will_be_stored)
    }

    /// The secret minted in this request, which the response must set.
    pub(crate) fn minted(&self) -> Option<&str> {
        self.minted.get().map(String::as_str)
    }

    /// Moves the secret into the session when the response stores one (a
    /// login, a write): tokens issued before it stay valid after it.
    pub(crate) fn carry_over(&self) {
        let secret = self.presented.as_deref().or(self.minted());
        if let (Some(session), Some(secret)) = (&self.session, secret)
            && session.will_be_stored()
            && secret_of(session).is_none()
        {
            // A failed write leaves the session without a secret: its next
            // form gets a fresh one, nothing is accepted that should not be.
            let _ = session.insert(SECRET_KEY, secret);
        }
    }
}

/// A fresh random secret (32 bytes, base64url).
pub(crate) fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(random::<32>())
}

/// Whether `text` is a secret we could have minted (43 base64url
/// characters): anything else in a pre-session cookie is ignored.
pub(crate) fn is_secret(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The unmasked token of a cookie-borne JWT's principal (its canonical
/// key), domain-separated from session secrets.
pub(crate) fn for_principal(key: &hmac::Key, principal_key: &str) -> [u8; TOKEN_BYTES] {
    let mut context = hmac::Context::with_key(key);
    context.update(b"portcullis-csrf/jwt-principal\0");
    context.update(principal_key.as_bytes());
    let mut token = [0u8; TOKEN_BYTES];
    token.copy_from_slice(context.sign().as_ref());
    token
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

impl CsrfToken {
    /// The form field tokens are read from.
    pub const FIELD: &'static str = "csrf_token";
    /// The header tokens are read from.
    pub const HEADER: &'static str = "x-csrf-token";

    pub(crate) fn new(binding: Binding, keys: Keys) -> Self {
        Self {
            binding,
            keys,
            issued: Arc::default(),
        }
    }

    /// Set once a token was issued: the response then varies by cookie.
    pub(crate) fn issued_flag(&self) -> Arc<AtomicBool> {
        self.issued.clone()
    }

    /// A masked token for this session, or for the principal of a JWT
    /// read from a cookie (new mask each call). Fails only if the session
    /// cannot record its new secret.
    pub fn value(&self) -> Result<String, CsrfError> {
        self.issued.store(true, Ordering::Relaxed);
        // Only the current key ever issues a token.
        let current = &self.keys[0];
        let session = match &self.binding {
            Binding::Session(session) => session,
            Binding::Principal(principal) => return Ok(mask(&for_principal(current, principal))),
            // No server state: the secret lives in the visitor's cookie.
            Binding::PreSession(pre) => return Ok(mask(&unmasked(current, pre.secret()))),
        };
        let secret = match secret_of(session) {
            Some(secret) => secret,
            None => {
                let secret = new_secret();
                session
                    .insert(SECRET_KEY, &secret)
                    .map_err(|_| CsrfError::SessionWrite)?;
                secret
            }
        };
        Ok(mask(&unmasked(current, &secret)))
    }
}

/// A token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfError {
    /// The session refused the secret.
    #[error("the session could not store the CSRF secret")]
    SessionWrite,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_yet_verify_and_bind_to_their_secret() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let token = unmasked(&key, "secret-a");
        let (one, two) = (mask(&token), mask(&token));
        assert_ne!(one, two, "a fresh mask each time");
        assert!(verify(&token, &one) && verify(&token, &two), "both stay valid");
        assert!(!verify(&unmasked(&key, "secret-b"), &one), "another session's token");
        assert!(!verify(&token, &one[..MASKED_LEN - 1]), "truncated");
        assert!(!verify(&token, &format!("{one}A")), "too long");
        assert!(!verify(&token, &"!".repeat(MASKED_LEN)), "not base64url");
        assert!(!verify(&token, ""), "empty");
        let other_key = hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]);
        assert!(!verify(&unmasked(&other_key, "secret-a"), &one), "another layer key");
    }
}
