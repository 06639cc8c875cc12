//! The crypto backend choice: signature verification alone, through
//! jsonwebtoken 11's two providers (aws-lc-rs and RustCrypto) and through
//! Portcullis' own pre-parsed aws-lc-rs keys, side by side.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::crypto::{CryptoProvider, aws_lc, rust_crypto};
use portcullis::jwt::{Algorithm, SigningKey};

fn bench(c: &mut Criterion) {
    // Both jsonwebtoken backends are on in this crate: pick one, once.
    portcullis::jwt::install_crypto_provider().expect("first install");
    let message = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTgwMDAwMDAwMH0";
    let keys = [
        (
            "HS256",
            SigningKey::hmac(Algorithm::HS256, &[7; 32]).expect("hs"),
            jsonwebtoken::Algorithm::HS256,
        ),
        (
            "ES256",
            SigningKey::generate_p256().expect("es"),
            jsonwebtoken::Algorithm::ES256,
        ),
        (
            "EdDSA",
            SigningKey::generate_ed25519().expect("ed"),
            jsonwebtoken::Algorithm::EdDSA,
        ),
        (
            "RS256",
            SigningKey::generate_rsa(Algorithm::RS256).expect("rs"),
            jsonwebtoken::Algorithm::RS256,
        ),
    ];
    for (name, key, algorithm) in keys {
        let signature = key.sign(message).expect("sign");
        let ours = key.verifying_key();
        let decoding = match ours.public_key_pem() {
            None => jsonwebtoken::DecodingKey::from_secret(&[7; 32]),
            Some(pem) => match name {
                "ES256" => jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()),
                "EdDSA" => jsonwebtoken::DecodingKey::from_ed_pem(pem.as_bytes()),
                _ => jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()),
            }
            .expect("pem"),
        };
        let mut group = c.benchmark_group(format!("backend/{name}"));
        let providers: [(&str, &CryptoProvider); 2] = [
            ("jsonwebtoken_aws_lc_rs", &aws_lc::DEFAULT_PROVIDER),
            ("jsonwebtoken_rust_crypto", &rust_crypto::DEFAULT_PROVIDER),
        ];
        for (label, provider) in providers {
            group.bench_function(label, |b| {
                b.iter(|| {
                    let verifier = (provider.verifier_factory)(&algorithm, &decoding).expect("verifier");
                    signature::Verifier::verify(&*verifier, message, &signature).expect("valid");
                })
            });
        }
        group.bench_function("portcullis_via_jsonwebtoken", |b| {
            b.iter(|| assert!(ours.verify(message, &signature)))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
