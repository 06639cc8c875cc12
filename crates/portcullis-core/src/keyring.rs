//! [`SecretKeyring`]: the HMAC secrets of one purpose, current first.
//!
//! Every secret a layer keys a MAC or a keyed hash with (session-id
//! hashing, CSRF tokens, refresh-token MACs) is a keyring, so it can
//! rotate without logging anyone out: the **first** secret signs and
//! hashes, **every** secret verifies and finds. A credential found under
//! an older secret is moved to the current one on its next use (re-keyed),
//! so when the old secret is finally removed only what stayed idle through
//! the whole overlap ends.
//!
//! The current secret is the only one that ever signs (the mistake behind
//! Flask's CVE-2025-47278 was signing with a fallback key).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::Fingerprint;

/// An ordered list of secrets: the first is current (signs, hashes), the
/// others are previous ones (verify, find, then re-key). Each is at least
/// [`SecretKeyring::MIN_LEN`] bytes; no two are equal.
///
/// ```
/// use portcullis_core::{KeyringError, SecretKeyring};
///
/// let ring = SecretKeyring::new([[2u8; 32], [1u8; 32]])?;
/// assert_eq!(ring.current(), &[2u8; 32]);
/// assert_eq!(ring.len(), 2);
/// assert_eq!(ring.iter().nth(1), Some(&[1u8; 32][..]));
///
/// // Too short, or twice the same secret: refused, with the position.
/// assert_eq!(
///     SecretKeyring::new([vec![1u8; 32], vec![2u8; 8]]).unwrap_err(),
///     KeyringError::ShortSecret { position: 1, got: 8, needed: 32 }
/// );
/// assert_eq!(
///     SecretKeyring::new([[1u8; 32], [1u8; 32]]).unwrap_err(),
///     KeyringError::Duplicate { position: 1, first: 0 }
/// );
///
/// // The configuration form: base64url, comma-separated, current first.
/// let ring = SecretKeyring::from_base64url_list(
///     "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
/// )?;
/// assert_eq!(ring.current(), &[2u8; 32]);
/// # Ok::<(), KeyringError>(())
/// ```
#[derive(Clone)]
pub struct SecretKeyring {
    secrets: Arc<[Box<[u8]>]>,
}

/// Why a keyring was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// No secret at all.
    #[error("a keyring needs at least one secret")]
    Empty,
    /// A secret shorter than [`SecretKeyring::MIN_LEN`] bytes.
    #[error("secret {position} is too short: {got} bytes, at least {needed} required")]
    ShortSecret {
        /// Its position in the ring (0 is current).
        position: usize,
        /// Its length.
        got: usize,
        /// The minimum length.
        needed: usize,
    },
    /// The same secret twice (a copy-paste slip that would hide a missing
    /// rotation).
    #[error("secret {position} repeats secret {first}")]
    Duplicate {
        /// The repeat's position.
        position: usize,
        /// The first occurrence's position.
        first: usize,
    },
    /// An entry of a configured list that is not base64url.
    #[error("secret {position} is not base64url")]
    NotBase64url {
        /// Its position in the list.
        position: usize,
    },
}

impl SecretKeyring {
    /// The shortest secret accepted: 32 bytes (256 bits).
    pub const MIN_LEN: usize = 32;

    /// A ring of `secrets`, current first.
    pub fn new<I, S>(secrets: I) -> Result<Self, KeyringError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut ring: Vec<Box<[u8]>> = Vec::new();
        for (position, secret) in secrets.into_iter().enumerate() {
            let secret = secret.as_ref();
            if secret.len() < Self::MIN_LEN {
                return Err(KeyringError::ShortSecret {
                    position,
                    got: secret.len(),
                    needed: Self::MIN_LEN,
                });
            }
            // Configuration time, not a request: no timing to guard.
            if let Some(first) = ring.iter().position(|known| **known == *secret) {
                return Err(KeyringError::Duplicate { position, first });
            }
            ring.push(secret.into());
        }
        if ring.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { secrets: ring.into() })
    }

    /// A ring of one secret (the single-key configuration).
    pub fn single(secret: &[u8]) -> Result<Self, KeyringError> {
        Self::new([secret])
    }

    /// Parses `current,previous,…`: base64url (padding optional, spaces
    /// around entries ignored), each decoding to at least
    /// [`MIN_LEN`](SecretKeyring::MIN_LEN) bytes.
    pub fn from_base64url_list(text: &str) -> Result<Self, KeyringError> {
        let mut secrets = Vec::new();
        for (position, entry) in text.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let decoded = URL_SAFE_NO_PAD
                .decode(entry.trim_end_matches('='))
                .map_err(|_| KeyringError::NotBase64url { position })?;
            secrets.push(decoded);
        }
        Self::new(secrets)
    }

    /// The current secret: the only one that signs or hashes anything new.
    pub fn current(&self) -> &[u8] {
        &self.secrets[0]
    }

    /// Every secret, current first: the order verification tries them in.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.secrets.iter().map(|secret| &**secret)
    }

    /// How many secrets the ring holds (at least one).
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Always `false`: a ring holds at least one secret.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A public id of each secret, current first (for audit events and
    /// startup logs): a [`Fingerprint`] of a SHA-256 of the secret, which
    /// says which secret is which and nothing about it.
    pub fn key_ids(&self) -> Vec<Fingerprint> {
        self.iter().map(key_id).collect()
    }

    /// Records the ring's shape as an audit event (which key is current,
    /// how many previous ones verify), under `purpose`.
    pub fn record_in_audit(&self, purpose: &'static str) {
        let ids = self.key_ids();
        let previous: Vec<String> = ids[1..].iter().map(ToString::to_string).collect();
        tracing::info!(
            target: crate::audit::TARGET,
            layer = "keyring",
            purpose,
            current = %ids[0],
            previous = %previous.join(","),
            "secret keyring loaded"
        );
    }
}

fn key_id(secret: &[u8]) -> Fingerprint {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"portcullis key id\0");
    context.update(secret);
    Fingerprint::of(context.finish().as_ref())
}

impl fmt::Debug for SecretKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl PartialEq for SecretKeyring {
    fn eq(&self, other: &Self) -> bool {
        self.key_ids() == other.key_ids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_and_the_first_is_current() {
        let ring = SecretKeyring::new([vec![3u8; 32], vec![2u8; 40], vec![1u8; 64]]).expect("ring");
        let lengths: Vec<usize> = ring.iter().map(<[u8]>::len).collect();
        assert_eq!(lengths, [32, 40, 64]);
        assert_eq!(ring.current(), &[3u8; 32]);
        let ids = ring.key_ids();
        assert_eq!(ids.len(), 3);
        assert_ne!(ids[0], ids[1]);
        let debug = format!("{ring:?}");
        assert!(!debug.contains("3, 3"), "no secret bytes in Debug: {debug}");
    }

    #[test]
    fn empty_short_duplicate_and_non_base64_rings_are_refused_with_their_position() {
        assert_eq!(SecretKeyring::new(Vec::<Vec<u8>>::new()), Err(KeyringError::Empty));
        assert_eq!(SecretKeyring::from_base64url_list(" , "), Err(KeyringError::Empty));
        assert_eq!(
            SecretKeyring::new([vec![1u8; 31]]),
            Err(KeyringError::ShortSecret {
                position: 0,
                got: 31,
                needed: 32
            })
        );
        assert_eq!(
            SecretKeyring::new([[1u8; 32], [2u8; 32], [1u8; 32]]),
            Err(KeyringError::Duplicate { position: 2, first: 0 })
        );
        let good = URL_SAFE_NO_PAD.encode([9u8; 32]);
        assert_eq!(
            SecretKeyring::from_base64url_list(&format!("{good},not*base64")),
            Err(KeyringError::NotBase64url { position: 1 })
        );
        assert_eq!(
            SecretKeyring::from_base64url_list(&format!("{good},{}", URL_SAFE_NO_PAD.encode([1u8; 16]))),
            Err(KeyringError::ShortSecret {
                position: 1,
                got: 16,
                needed: 32
            })
        );
        let padded = base64::engine::general_purpose::URL_SAFE.encode([9u8; 32]);
        assert_eq!(
            SecretKeyring::from_base64url_list(&format!(" {padded} ")).map(|ring| ring.current().to_vec()),
            Ok(vec![9u8; 32]),
            "padding and spaces are tolerated"
        );
    }
}
