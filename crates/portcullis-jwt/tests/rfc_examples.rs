//! Known answers from the RFCs themselves: RFC 7515 Appendix A.1 (HS256),
//! verified as published and refused when any one byte changes. (RFC 7520
//! §4's examples run with the Wycheproof suite, which carries them.)

use portcullis_jwt::{Jwk, JwtError, KeySet, VerifyingKey, verify_jws};

const A1_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn a1_key() -> KeySet {
    // RFC 7515 A.1's key, as the JWK it publishes (with the `alg` this
    // library requires of an `oct` key).
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "oct",
        "alg": "HS256",
        "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
    }))
    .expect("jwk");
    KeySet::new([VerifyingKey::from_jwk(&jwk).expect("key")])
}

#[test]
fn rfc_7515_a1_verifies_and_every_changed_byte_is_refused() {
    let keys = a1_key();
    let payload = verify_jws(A1_JWS, &keys).expect("the RFC's example verifies");
    assert_eq!(
        payload,
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for index in 0..A1_JWS.len() {
        let mut bytes = A1_JWS.as_bytes().to_vec();
        if bytes[index] == b'.' {
            continue;
        }
        // Another base64url character in this place.
        let position = alphabet.iter().position(|c| *c == bytes[index]).expect("base64url");
        bytes[index] = alphabet[(position + 1) % alphabet.len()];
        let changed = String::from_utf8(bytes).expect("ascii");
        let verdict = verify_jws(&changed, &keys);
        assert!(verdict.is_err(), "byte {index} changed, yet it verified");
        assert!(
            !matches!(verdict, Err(JwtError::TooLarge)),
            "refused for its content, not its size"
        );
    }
}
