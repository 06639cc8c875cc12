//! What such an application does with Portcullis: mint a token and verify
//! it, and decode it with jsonwebtoken directly too.

use portcullis_jwt::{ConfigError, JwtIssuer, JwtVerifier, SigningKey, Validation};

/// Mints a token for `alice` and verifies it with a fresh verifier;
/// returns the subject the verifier saw.
pub fn round_trip() -> Result<String, Box<dyn std::error::Error>> {
    let issuer = JwtIssuer::new(SigningKey::generate_p256()?, "https://auth.example", "api");
    let verifier = verifier_for(&issuer)?;
    let token = issuer.mint("alice", ["read"])?;
    Ok(verifier.verify(&token)?.subject().to_owned())
}

/// A verifier for `issuer`'s tokens.
pub fn verifier_for(issuer: &JwtIssuer) -> Result<JwtVerifier, ConfigError> {
    JwtVerifier::new(
        issuer.verifying_key().into(),
        Validation::new().issuer(issuer.issuer()).audience(issuer.audience()),
    )
}
