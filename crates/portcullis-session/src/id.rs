//! Session ids (the secret in the cookie) and store keys (what the store
//! sees: a keyed hash of the id).

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::Route;
use portcullis_core::audit::Fingerprint;

/// A session id: 32 bytes, base64url in the cookie. The first two are the
/// [`Route`] of the session's principal (random for an anonymous session),
/// so a partitioned store finds its shard from the id alone; the other 240
/// bits come from the system CSPRNG. It is the caller's secret: it never
/// reaches the store or a log.
#[derive(Clone)]
pub(crate) struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh id routed to `route`.
    pub(crate) fn generate(route: Route) -> Self {
        let mut bytes: [u8; 32] = portcullis_core::random_bytes();
        bytes[..2].copy_from_slice(&route.to_bytes());
        Self(bytes)
    }

    /// Parses a cookie value, as the bytes that came (nothing validates
    /// them before: any byte outside base64url is refused here). Anything
    /// but 43 base64url characters decoding to 32 bytes is not an id we
    /// issued.
    pub(crate) fn parse(text: impl AsRef<[u8]>) -> Option<Self> {
        // Only the canonical spelling of an id decodes (non-zero trailing
        // bits are refused): one id, one cookie value.
        portcullis_core::base64url::decode_exact::<32>(text).map(Self)
    }

    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.fingerprint())
    }
}

/// The secret session ids are hashed under: a SHA-256 state that has
/// absorbed one 64-byte block derived from the user's secret.
#[derive(Clone)]
pub(crate) struct IdHasher(digest::Context);

impl IdHasher {
    /// Derives the 64-byte key block as SHA-512 of `secret` (itself at
    /// least 32 bytes) and absorbs it.
    pub(crate) fn new(secret: &[u8]) -> Self {
        let block = digest::digest(&digest::SHA512, secret);
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(block.as_ref());
        Self(context)
    }
}

/// What a store keys a session by: a keyed hash of the session id,
/// SHA-256(K ‖ id) with K a secret 64-byte block. A leaked store dump yields
/// no usable cookie.
///
/// Why not HMAC: the input is always exactly 32 bytes, so the length
/// extension that HMAC's second pass guards against cannot produce another
/// valid input, and keyed this way (the key fills the first block) the
/// construction is a PRF; it costs one compression per request where
/// aws-lc's HMAC costs a 1.2 KiB context copy and two (≈150 ns saved).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub(crate) fn derive(hasher: &IdHasher, id: &SessionId) -> Self {
        let mut context = hasher.0.clone();
        context.update(&id.0);
        let mut key = [0u8; 32];
        // The route travels in the clear (it is no secret: see `Route`);
        // 240 bits of the hash remain.
        key[..2].copy_from_slice(&id.0[..2]);
        key[2..].copy_from_slice(&context.finish().as_ref()[..30]);
        Self(key)
    }

    /// The shard tag this session was issued under: its principal's
    /// [`Route::of`] for a logged-in session, random for an anonymous one.
    pub fn route(&self) -> Route {
        Route::from_bytes([self.0[0], self.0[1]])
    }

    /// The key as 64 lowercase hex characters (for stores keyed by text).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses [`SessionKey::to_hex`] output.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, out) in key.iter_mut().enumerate() {
            *out = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(key))
    }

    /// A short public handle for this session (for "list my devices" and
    /// "end that one"): the first 8 bytes, hex.
    pub fn handle(&self) -> String {
        hex(&self.0[..8])
    }

    /// A key from raw bytes; for store tests (feature `test-util`, or
    /// `conformance`).
    #[cfg(any(feature = "test-util", feature = "conformance"))]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// This key with its route replaced; for store tests (feature
    /// `test-util`, or `conformance`).
    #[cfg(any(feature = "test-util", feature = "conformance"))]
    pub fn with_route(mut self, route: Route) -> Self {
        self.0[..2].copy_from_slice(&route.to_bytes());
        self
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.handle())
    }
}

/// Hashes a [`SessionKey`] by its own bits, for the in-process maps keyed
/// by it. A session key is already a keyed hash (HMAC-SHA-256 of the id):
/// uniform, and unpredictable to a client without the secret, so the
/// HashDoS defence of the default SipHash buys nothing here and costs
/// about 170 instructions a lookup. The two route bytes are skipped (they
/// are a principal's, shared by all their sessions).
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let take = bytes.len().saturating_sub(2).min(8);
        word[..take].copy_from_slice(&bytes[2.min(bytes.len())..2.min(bytes.len()) + take]);
        self.0 ^= u64::from_le_bytes(word);
    }

    // The slice's length prefix says nothing: every key is 32 bytes.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The hasher builder of the maps keyed by [`SessionKey`].
pub(crate) type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

/// Lowercase hex of `bytes`, by table: every request names its session's
/// handle, and a Redis store every key, so this stays off `fmt`'s path.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_only_canonical_text_parses() {
        let id = SessionId::generate(Route::random());
        let text = id.encode();
        assert_eq!(text.len(), 43);
        assert_eq!(SessionId::parse(&text).map(|p| p.0), Some(id.0));
        assert!(SessionId::parse(&text[..42]).is_none());
        assert!(SessionId::parse(format!("{text}=")).is_none());
        assert!(SessionId::parse("!".repeat(43)).is_none());
        assert!(SessionId::parse("").is_none());
        // Same bytes, different trailing bits: not the canonical spelling.
        let mut tweaked = text.clone().into_bytes();
        let last = tweaked[42];
        tweaked[42] = if last == b'A' { b'B' } else { b'A' };
        let tweaked = String::from_utf8(tweaked).expect("ascii");
        if let Some(parsed) = SessionId::parse(&tweaked) {
            assert_ne!(parsed.0, id.0, "a different spelling never maps to the same id");
        }
    }

    #[test]
    fn two_ids_differ_and_keys_depend_on_the_secret() {
        let (a, b) = (
            SessionId::generate(Route::random()),
            SessionId::generate(Route::random()),
        );
        assert_ne!(a.0, b.0);
        let k1 = IdHasher::new(&[1; 32]);
        let k2 = IdHasher::new(&[2; 32]);
        assert_ne!(SessionKey::derive(&k1, &a), SessionKey::derive(&k2, &a));
        assert_eq!(SessionKey::derive(&k1, &a), SessionKey::derive(&k1, &a));
        let key = SessionKey::derive(&k1, &a);
        assert_eq!(SessionKey::from_hex(&key.to_hex()), Some(key));
        assert_ne!(key.to_hex(), a.encode(), "the store never sees the id");
    }

    #[test]
    fn the_key_carries_the_route_of_the_id() {
        let alice = portcullis_core::Principal::new("https://app.test", "alice");
        let hasher = IdHasher::new(&[1; 32]);
        let (one, two) = (
            SessionId::generate(Route::of(&alice)),
            SessionId::generate(Route::of(&alice)),
        );
        let (k1, k2) = (SessionKey::derive(&hasher, &one), SessionKey::derive(&hasher, &two));
        assert_eq!(k1.route(), Route::of(&alice));
        assert_eq!(k2.route(), Route::of(&alice));
        assert_ne!(k1, k2, "same route, different sessions");
        assert_ne!(one.0[2..], two.0[2..], "the rest of the id is random");
        assert_eq!(
            &k1.to_hex()[..4],
            Route::of(&alice).to_string(),
            "the hex form starts with the route"
        );
    }
}
