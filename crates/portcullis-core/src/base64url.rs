//! Fixed-length base64url (RFC 4648 §5, no padding) decoding for the
//! credentials every request carries: a session id (43 characters) and a
//! masked CSRF token (86). The general decoder of the `base64` crate costs
//! about ten instructions a character on them; a table lookup per
//! character costs a third of that. The rules are the same: only the
//! canonical spelling decodes (unused trailing bits must be zero), so one
//! value has one text.

/// The value of each base64url character, or `INVALID`.
const INVALID: u8 = 0xFF;
static VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut index = 0;
    while index < 64 {
        table[alphabet[index] as usize] = index as u8;
        index += 1;
    }
    table
};

/// Decodes `text` (a `str`, or raw bytes such as a cookie value as it
/// came) as exactly `N` bytes of unpadded base64url; `None` for any other
/// length, a character outside the alphabet (any byte that is not one),
/// or a non-canonical last character.
///
/// ```
/// use portcullis_core::base64url::decode_exact;
///
/// assert_eq!(decode_exact::<3>("AQID"), Some([1, 2, 3]));
/// assert_eq!(decode_exact::<2>("AQI"), Some([1, 2]));
/// assert_eq!(decode_exact::<2>("AQJ"), None, "non-zero trailing bits");
/// assert_eq!(decode_exact::<3>("AQI+"), None, "not the URL-safe alphabet");
/// assert_eq!(decode_exact::<3>("AQI"), None, "too short");
/// assert_eq!(decode_exact::<3>(b"AQID"), Some([1, 2, 3]));
/// assert_eq!(decode_exact::<3>(b"AQ\xc3\xa9"), None, "not ASCII");
/// ```
pub fn decode_exact<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    let text = text.as_ref();
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    let value = |index: usize| VALUES[usize::from(text[index])];
    // Every character's value, or-ed: any INVALID sets the top two bits,
    // which no valid value (below 64) has.
    let mut bad = 0u8;
    let (mut read, mut written) = (0, 0);
    while read + 4 <= text.len() {
        let (a, b, c, d) = (value(read), value(read + 1), value(read + 2), value(read + 3));
        bad |= a | b | c | d;
        let bits = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        out[written] = (bits >> 16) as u8;
        out[written + 1] = (bits >> 8) as u8;
        out[written + 2] = bits as u8;
        read += 4;
        written += 3;
    }
    // The unused low bits of the last character, which must be zero.
    let unused = match text.len() - read {
        0 => 0,
        // Two characters: one byte, the last 4 bits unused.
        2 => {
            let (x, y) = (value(read), value(read + 1));
            bad |= x | y;
            out[written] = x << 2 | y >> 4;
            y & 0x0F
        }
        // Three characters: two bytes, the last 2 bits unused.
        3 => {
            let (x, y, z) = (value(read), value(read + 1), value(read + 2));
            bad |= x | y | z;
            out[written] = x << 2 | y >> 4;
            out[written + 1] = y << 4 | z >> 2;
            z & 0x03
        }
        // No `N` leaves one character over (its length check above).
        _ => return None,
    };
    (bad & 0xC0 == 0 && unused == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::decode_exact;

    /// What the `base64` crate's canonical decoder says of `text`, as `N`
    /// bytes.
    fn reference<const N: usize>(text: &str) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(n) if n == N => Some(out),
            _ => None,
        }
    }

    fn agree<const N: usize>(text: &str) {
        assert_eq!(decode_exact::<N>(text), reference::<N>(text), "{text:?} as {N} bytes");
    }

    #[test]
    fn agrees_with_the_base64_crate_on_random_valid_and_broken_text() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \x00\xff";
        for round in 0..4_000u32 {
            let noise: [u8; 96] = crate::random_bytes();
            // Mostly the alphabet; one round in four may hold other bytes.
            let span = if round % 4 == 0 { ALPHABET.len() } else { 64 };
            let pick = |byte: u8| char::from(ALPHABET[usize::from(byte) % span]);
            let text = |length: usize| -> String { noise[..length].iter().copied().map(pick).collect() };
            agree::<32>(&text(43));
            agree::<64>(&text(86));
            agree::<32>(&text(42));
            agree::<64>(&text(85));
            agree::<32>(&text(44));
            agree::<3>(&text(4));
        }
    }

    #[test]
    fn only_the_canonical_spelling_decodes() {
        for value in [[0u8; 32], [0xFF; 32], crate::random_bytes()] {
            let text = URL_SAFE_NO_PAD.encode(value);
            assert_eq!(decode_exact::<32>(&text), Some(value));
            // The same bits with a non-zero unused tail.
            let last = text.as_bytes()[42];
            let index = super::VALUES[usize::from(last)];
            for unused in 1..4 {
                let other =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[usize::from(index | unused)];
                let spelled = format!("{}{}", &text[..42], char::from(other));
                assert_eq!(decode_exact::<32>(&spelled), None, "{spelled}");
                agree::<32>(&spelled);
            }
        }
        let token = URL_SAFE_NO_PAD.encode([7u8; 64]);
        assert_eq!(decode_exact::<64>(&token), Some([7u8; 64]));
        assert_eq!(decode_exact::<64>(&format!("{token}A")), None);
        assert_eq!(decode_exact::<32>(""), None);
        assert_eq!(decode_exact::<0>(""), Some([]));
    }
}
