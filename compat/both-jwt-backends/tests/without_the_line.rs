//! Both backends enabled and no provider installed: jsonwebtoken cannot
//! choose. Portcullis refuses to build a verifier, with the fix in the
//! error, instead of panicking on a request; minting fails the same way.
//! (Its own test binary: the provider is process-wide.)

use portcullis_jwt::{ConfigError, KeyError, SigningKey};

#[test]
fn a_clear_error_not_a_panic() {
    // Generating a key needs the engine for its thumbprint (kid).
    let error = SigningKey::generate_ed25519().expect_err("no provider to derive the kid with");
    assert_eq!(error, KeyError::CryptoProvider);
    assert!(error.to_string().contains("install_crypto_provider()"), "{error}");

    let key = SigningKey::hmac(portcullis_jwt::Algorithm::HS256, &[9; 32]).expect("an HMAC key needs no engine");
    let issuer = portcullis_jwt::JwtIssuer::new(key, "https://auth.example", "api");
    let error = both_jwt_backends::verifier_for(&issuer).expect_err("no provider");
    assert_eq!(error, ConfigError::CryptoProvider);
    assert!(error.to_string().contains("install_crypto_provider()"), "{error}");

    let error = issuer.mint("alice", ["read"]).expect_err("no provider to sign with");
    assert!(error.to_string().contains("install_crypto_provider()"), "{error}");
}
