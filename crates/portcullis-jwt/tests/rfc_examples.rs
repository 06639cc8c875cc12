//! Known answers from the RFCs themselves, each verified as published and
//! refused when any one character changes:
//!
//! - RFC 7515 Appendix A.1 (HS256), A.2 (RS256) and A.3 (ES256); A.4
//!   (ES512) and A.5 (unsecured) are refused for their algorithm;
//! - RFC 7520 §4.1 (RS256), §4.2 (PS384) and §4.4 (HS256); §4.3 (ES512) is
//!   refused for its algorithm.
//!
//! The values are the RFCs' (the RFC 7520 ones are also carried by the
//! vendored Wycheproof suite, whose verdicts `wycheproof.rs` asserts).

use portcullis_jwt::{Jwk, JwtError, KeySet, VerifyingKey, verify_jws};

const RFC_7515_PAYLOAD: &[u8] = b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";

const A1_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

const A2_JWS: &str = "eyJhbGciOiJSUzI1NiJ9\
.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2F\
p5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQB\
MHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeY\
I2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/// RFC 7515 A.2's RSA public key (the RFC 7517 A.1 key).
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0B\
m4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5\
z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7\
aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9\
.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/// RFC 7515 A.4's header (`{"alg":"ES512"}`) on A.3's payload and signature:
/// refused for its algorithm before any key is touched.
const A4_HEADER: &str = "eyJhbGciOiJFUzUxMiJ9";

/// RFC 7515 A.5, the unsecured JWS.
const A5_JWS: &str = "eyJhbGciOiJub25lIn0\
.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
.";

/// RFC 7520 §4's payload (Figure 7): a quotation, with U+2019 apostrophes.
const RFC_7520_PAYLOAD: &str = "It\u{2019}s a dangerous business, Frodo, going out your door. You step onto the road, \
and if you don't keep your feet, there\u{2019}s no knowing where you might be swept off to.";

/// RFC 7520 §3.4's RSA public key (Figure 4).
const RFC_7520_N: &str = "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJ\
mSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tp\
e-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vn\
iUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";

const RFC_7520_4_1_JWS: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ\
2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCw\
gYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ\
2h0IGJlIHN3ZXB0IG9mZiB0by4.MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZ\
opdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746i\
YTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLG\
djluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5\
y18kDquDg";

const RFC_7520_4_2_JWS: &str = "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ\
2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCw\
gYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ\
2h0IGJlIHN3ZXB0IG9mZiB0by4.cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2Ip\
N6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsd\
iNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5\
awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8D\
YM-X72Eaw";

const RFC_7520_4_3_JWS: &str = "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ\
2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCw\
gYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ\
2h0IGJlIHN3ZXB0IG9mZiB0by4.AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu\
9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbE\
PX6sFY8OcGDqoRuBomu9xQ2";

const RFC_7520_4_4_JWS: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzI\
GEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGU\
gcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUge\
W91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";

/// RFC 7520 §3.5's symmetric key (Figure 5).
const RFC_7520_HMAC_K: &str = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";

fn key(jwk: serde_json::Value) -> KeySet {
    let jwk: Jwk = serde_json::from_value(jwk).expect("jwk");
    KeySet::new([VerifyingKey::from_jwk(&jwk).expect("key")])
}

fn rsa(n: &str, alg: &str) -> KeySet {
    key(serde_json::json!({ "kty": "RSA", "alg": alg, "n": n, "e": "AQAB" }))
}

/// RFC 7520's RSA key, named as its tokens name it.
fn rfc_7520_rsa(alg: &str) -> KeySet {
    key(serde_json::json!({
        "kty": "RSA",
        "kid": "bilbo.baggins@hobbiton.example",
        "use": "sig",
        "alg": alg,
        "n": RFC_7520_N,
        "e": "AQAB",
    }))
}

/// Verifies `jws` with `keys` to `payload`, then changes each character in
/// turn (to the next base64url character) and asserts that every changed
/// token is refused for its content.
fn verifies_and_every_changed_character_is_refused(name: &str, jws: &str, keys: &KeySet, payload: &[u8]) {
    let verified = verify_jws(jws, keys).unwrap_or_else(|error| panic!("{name} does not verify: {error}"));
    assert_eq!(verified, payload, "{name}: payload");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for index in 0..jws.len() {
        let mut bytes = jws.as_bytes().to_vec();
        if bytes[index] == b'.' {
            continue;
        }
        let position = alphabet.iter().position(|c| *c == bytes[index]).expect("base64url");
        bytes[index] = alphabet[(position + 1) % alphabet.len()];
        let changed = String::from_utf8(bytes).expect("ascii");
        let verdict = verify_jws(&changed, keys);
        assert!(verdict.is_err(), "{name}: character {index} changed, yet it verified");
        assert!(
            !matches!(verdict, Err(JwtError::TooLarge)),
            "{name}: refused for its content, not its size"
        );
    }
}

#[test]
fn rfc_7515_a1_verifies_and_every_changed_byte_is_refused() {
    // RFC 7515 A.1's key, as the JWK it publishes (with the `alg` this
    // library requires of an `oct` key).
    let keys = key(serde_json::json!({
        "kty": "oct",
        "alg": "HS256",
        "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
    }));
    verifies_and_every_changed_character_is_refused("RFC 7515 A.1", A1_JWS, &keys, RFC_7515_PAYLOAD);
}

#[test]
fn rfc_7515_a2_rs256_verifies_and_every_changed_byte_is_refused() {
    let keys = rsa(A2_N, "RS256");
    verifies_and_every_changed_character_is_refused("RFC 7515 A.2", A2_JWS, &keys, RFC_7515_PAYLOAD);
}

#[test]
fn rfc_7515_a3_es256_verifies_and_every_changed_byte_is_refused() {
    let keys = key(serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }));
    verifies_and_every_changed_character_is_refused("RFC 7515 A.3", A3_JWS, &keys, RFC_7515_PAYLOAD);
}

#[test]
fn rfc_7515_a4_and_a5_are_refused_for_their_algorithm() {
    let keys = rsa(A2_N, "RS256");
    let (_, body) = A3_JWS.split_once('.').expect("three parts");
    let es512 = format!("{A4_HEADER}.{body}");
    assert!(matches!(verify_jws(&es512, &keys), Err(JwtError::UnsupportedAlgorithm)));
    assert!(matches!(verify_jws(A5_JWS, &keys), Err(JwtError::AlgNone)));
}

#[test]
fn rfc_7520_4_1_rs256_verifies_and_every_changed_byte_is_refused() {
    let keys = rfc_7520_rsa("RS256");
    verifies_and_every_changed_character_is_refused(
        "RFC 7520 §4.1",
        RFC_7520_4_1_JWS,
        &keys,
        RFC_7520_PAYLOAD.as_bytes(),
    );
}

#[test]
fn rfc_7520_4_2_ps384_verifies_and_every_changed_byte_is_refused() {
    // The key pins the algorithm: §4.2's key verifies PS384 only when it is
    // configured for PS384 (Wycheproof's PS256-pinned twin is refused).
    let keys = rfc_7520_rsa("PS384");
    verifies_and_every_changed_character_is_refused(
        "RFC 7520 §4.2",
        RFC_7520_4_2_JWS,
        &keys,
        RFC_7520_PAYLOAD.as_bytes(),
    );
    let pinned_elsewhere = rfc_7520_rsa("RS256");
    assert!(matches!(
        verify_jws(RFC_7520_4_2_JWS, &pinned_elsewhere),
        Err(JwtError::AlgorithmMismatch)
    ));
}

#[test]
fn rfc_7520_4_3_es512_is_refused_for_its_algorithm() {
    let keys = rfc_7520_rsa("RS256");
    assert!(matches!(
        verify_jws(RFC_7520_4_3_JWS, &keys),
        Err(JwtError::UnsupportedAlgorithm)
    ));
}

#[test]
fn rfc_7520_4_4_hs256_verifies_and_every_changed_byte_is_refused() {
    let keys = key(serde_json::json!({
        "kty": "oct",
        "kid": "018c0ae5-4d9b-471b-bfd6-eef314bc7037",
        "use": "sig",
        "alg": "HS256",
        "k": RFC_7520_HMAC_K,
    }));
    verifies_and_every_changed_character_is_refused(
        "RFC 7520 §4.4",
        RFC_7520_4_4_JWS,
        &keys,
        RFC_7520_PAYLOAD.as_bytes(),
    );
}
