//! Authenticated encryption of what the relying party keeps outside its
//! own memory (login transactions in cookies, upstream tokens in the
//! session store), under a [`SecretKeyring`]: the first secret seals,
//! every secret opens.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::SecretKeyring;

/// AES-256-GCM keys, one per secret of a keyring, each derived for one
/// purpose (HKDF-SHA256 with the purpose as `info`): a transaction cookie
/// can never be opened as a sealed token, or the reverse.
pub(crate) struct Sealer {
    keys: Vec<LessSafeKey>,
}

/// Why a sealed value did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unseal {
    /// Not base64url, or too short to hold a nonce and a tag.
    Malformed,
    /// No secret of the ring opens it (tampered, another purpose, or a
    /// secret that has left the ring).
    Forged,
}

struct KeyLength;

impl aws_lc_rs::hkdf::KeyType for KeyLength {
    fn len(&self) -> usize {
        32
    }
}

impl Sealer {
    pub(crate) fn new(ring: &SecretKeyring, purpose: &'static str) -> Self {
        let keys = ring
            .iter()
            .map(|secret| {
                let prk = Salt::new(HKDF_SHA256, b"portcullis-oidc").extract(secret);
                let mut bytes = [0u8; 32];
                prk.expand(&[purpose.as_bytes()], KeyLength)
                    .and_then(|okm| okm.fill(&mut bytes))
                    .expect("32 bytes is a valid HKDF-SHA256 output length");
                LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("32 bytes is an AES-256 key"))
            })
            .collect();
        Self { keys }
    }

    /// `base64url(nonce ‖ ciphertext ‖ tag)`, bound to `context` (which is
    /// authenticated, not stored: the opener must name the same one).
    pub(crate) fn seal(&self, plaintext: &[u8], context: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random generator does not fail");
        let mut sealed = plaintext.to_vec();
        self.keys[0]
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed)
            .expect("AES-GCM seals any length we produce");
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext, if one of the ring's secrets sealed `value` for
    /// `context`.
    pub(crate) fn open(&self, value: &str, context: &[u8]) -> Result<Vec<u8>, Unseal> {
        let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| Unseal::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Unseal::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        for key in &self.keys {
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unseal::Malformed)?;
            let mut buffer = sealed.to_vec();
            if let Ok(plaintext) = key.open_in_place(nonce, Aad::from(context), &mut buffer) {
                return Ok(plaintext.to_vec());
            }
        }
        Err(Unseal::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secrets: &[[u8; 32]]) -> SecretKeyring {
        SecretKeyring::new(secrets.iter().map(|s| s.to_vec())).expect("ring")
    }

    #[test]
    fn a_sealed_value_opens_under_its_context_only() {
        let sealer = Sealer::new(&ring(&[[1; 32]]), "transaction");
        let sealed = sealer.seal(b"hello", b"ctx-a");
        assert_eq!(sealer.open(&sealed, b"ctx-a"), Ok(b"hello".to_vec()));
        assert_eq!(sealer.open(&sealed, b"ctx-b"), Err(Unseal::Forged));
    }

    #[test]
    fn purposes_are_separate_and_tampering_is_refused() {
        let secrets = ring(&[[1; 32]]);
        let transactions = Sealer::new(&secrets, "transaction");
        let tokens = Sealer::new(&secrets, "upstream tokens");
        let sealed = transactions.seal(b"hello", b"ctx");
        assert_eq!(tokens.open(&sealed, b"ctx"), Err(Unseal::Forged));
        let mut tampered = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            transactions.open(&URL_SAFE_NO_PAD.encode(tampered), b"ctx"),
            Err(Unseal::Forged)
        );
        assert_eq!(transactions.open("!!", b"ctx"), Err(Unseal::Malformed));
        assert_eq!(transactions.open("AAAA", b"ctx"), Err(Unseal::Malformed));
    }

    #[test]
    fn the_first_secret_seals_and_every_secret_opens() {
        let old = Sealer::new(&ring(&[[1; 32]]), "transaction");
        let rotated = Sealer::new(&ring(&[[2; 32], [1; 32]]), "transaction");
        let current_only = Sealer::new(&ring(&[[2; 32]]), "transaction");
        let before = old.seal(b"made before the rotation", b"ctx");
        assert!(rotated.open(&before, b"ctx").is_ok(), "the previous secret still opens");
        let after = rotated.seal(b"made after", b"ctx");
        assert!(
            current_only.open(&after, b"ctx").is_ok(),
            "sealed under the current secret alone"
        );
        assert_eq!(old.open(&after, b"ctx"), Err(Unseal::Forged));
    }
}
