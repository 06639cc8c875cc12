//! Both backends enabled, and the one line first: everything works,
//! Portcullis and the application's own jsonwebtoken calls alike.

#[test]
fn install_then_verify_mint_and_decode() {
    portcullis_jwt::install_crypto_provider().expect("the first install in this process");
    assert_eq!(both_jwt_backends::round_trip().expect("round trip"), "alice");

    // The application's own jsonwebtoken use works on the same provider.
    let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
    let claims = serde_json::json!({"sub": "bob", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("encode");
    let decoded = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(&[7; 32]),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("decode");
    assert_eq!(decoded.claims["sub"], "bob");

    // A second call is harmless.
    portcullis_jwt::install_crypto_provider().expect("already ours");
}
