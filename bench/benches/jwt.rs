//! JwtLayer against its peers, side by side in one run, per algorithm:
//!
//! - `bare_decode`: an axum handler that calls `jsonwebtoken::decode`
//!   itself (the floor: the cryptography plus claim parsing);
//! - `portcullis_nocache`: the handler behind `JwtLayer` with its cache off;
//! - `portcullis_cached`: behind `JwtLayer`, one token repeated (as clients
//!   do for a token's lifetime);
//! - `jwt_authorizer`: the handler behind `jwt-authorizer` (axum 0.7).
//!
//! Each request goes through the whole router in process (`oneshot`), so
//! what differs between rows is the layer's work.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, header::AUTHORIZATION};
use portcullis::Identity;
use portcullis::jwt::{Algorithm, JwtIssuer, JwtLayer, SigningKey, Validation};
use serde::Deserialize;
use tower::ServiceExt;

const ISS: &str = "https://auth.bench";
const AUD: &str = "bench-api";
const HS_SECRET: &str = "bench-secret-bench-secret-bench-secret!";

#[derive(Clone, Debug, Deserialize)]
struct Claims {
    sub: String,
}

struct Case {
    name: &'static str,
    issuer: JwtIssuer,
    decoding: jsonwebtoken::DecodingKey,
    algorithm: jsonwebtoken::Algorithm,
    authorizer: jwt_authorizer::AuthorizerBuilder<Claims>,
}

fn cases() -> Vec<Case> {
    let public_pem = |key: &SigningKey| key.verifying_key().public_key_pem().expect("public key");
    let mut cases = Vec::new();

    let hs = SigningKey::hmac(Algorithm::HS256, HS_SECRET.as_bytes()).expect("hs256");
    cases.push(Case {
        name: "HS256",
        decoding: jsonwebtoken::DecodingKey::from_secret(HS_SECRET.as_bytes()),
        algorithm: jsonwebtoken::Algorithm::HS256,
        authorizer: jwt_authorizer::JwtAuthorizer::from_secret(HS_SECRET),
        issuer: JwtIssuer::new(hs, ISS, AUD),
    });
    let es = SigningKey::generate_p256().expect("es256");
    let pem = public_pem(&es);
    cases.push(Case {
        name: "ES256",
        decoding: jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).expect("ec pem"),
        algorithm: jsonwebtoken::Algorithm::ES256,
        authorizer: jwt_authorizer::JwtAuthorizer::from_ec_pem_text(&pem),
        issuer: JwtIssuer::new(es, ISS, AUD),
    });
    let ed = SigningKey::generate_ed25519().expect("ed25519");
    let pem = public_pem(&ed);
    cases.push(Case {
        name: "EdDSA",
        decoding: jsonwebtoken::DecodingKey::from_ed_pem(pem.as_bytes()).expect("ed pem"),
        algorithm: jsonwebtoken::Algorithm::EdDSA,
        authorizer: jwt_authorizer::JwtAuthorizer::from_ed_pem_text(&pem),
        issuer: JwtIssuer::new(ed, ISS, AUD),
    });
    let rs = SigningKey::generate_rsa(Algorithm::RS256).expect("rs256");
    let pem = public_pem(&rs);
    cases.push(Case {
        name: "RS256",
        decoding: jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa pem"),
        algorithm: jsonwebtoken::Algorithm::RS256,
        authorizer: jwt_authorizer::JwtAuthorizer::from_rsa_pem_text(&pem),
        issuer: JwtIssuer::new(rs, ISS, AUD),
    });
    cases
}

fn request(value: &HeaderValue) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    request.headers_mut().insert(AUTHORIZATION, value.clone());
    request
}

fn bench(c: &mut Criterion) {
    // This crate enables both of jsonwebtoken's backends (for the backend
    // bench): the clash a user's build can hit, fixed by the one line.
    portcullis::jwt::install_crypto_provider().expect("first install");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    for case in cases() {
        let token = case.issuer.mint("alice", ["notes:read"]).expect("mint");
        let header = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        let mut group = c.benchmark_group(format!("jwt/{}", case.name));

        // The router alone, no authentication at all: what every row pays.
        let open = axum::Router::new().route("/", get(|| async { "alice" }));
        group.bench_function("no_auth_router_floor", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = open.clone().oneshot(request(&header)).await.expect("response");
                assert!(response.status().is_success());
            })
        });

        // The verifier alone, cache hit: the layer's own work on a hit.
        let verifier = JwtLayer::new(case.issuer.verifying_key(), Validation::new().issuer(ISS).audience(AUD))
            .expect("layer")
            .verifier()
            .clone();
        group.bench_function("verifier_cache_hit", |b| {
            b.iter(|| verifier.verify(std::hint::black_box(&token)).expect("valid"))
        });

        // The floor: decode in the handler.
        let mut validation = jsonwebtoken::Validation::new(case.algorithm);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        let bare = portcullis_bench::bare_decode_router(case.decoding.clone(), validation);
        group.bench_function("bare_decode", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = bare.clone().oneshot(request(&header)).await.expect("response");
                assert!(response.status().is_success());
            })
        });

        let handler = || get(|identity: Identity| async move { identity.subject().to_owned() });
        for (label, cached) in [("portcullis_nocache", false), ("portcullis_cached", true)] {
            let mut layer =
                JwtLayer::new(case.issuer.verifying_key(), Validation::new().issuer(ISS).audience(AUD)).expect("layer");
            if !cached {
                layer = layer.without_cache();
            }
            let app = axum::Router::new().route("/", handler()).layer(layer);
            group.bench_function(label, |b| {
                b.to_async(&runtime).iter(|| async {
                    let response = app.clone().oneshot(request(&header)).await.expect("response");
                    assert!(response.status().is_success());
                })
            });
        }

        let authorizer = runtime
            .block_on(
                case.authorizer
                    .validation(jwt_authorizer::Validation::new().iss(&[ISS]).aud(&[AUD]))
                    .build(),
            )
            .expect("jwt-authorizer");
        use jwt_authorizer::IntoLayer;
        let peer = axum07::Router::new()
            .route(
                "/",
                axum07::routing::get(
                    |jwt_authorizer::JwtClaims(claims): jwt_authorizer::JwtClaims<Claims>| async move { claims.sub },
                ),
            )
            .layer(authorizer.into_layer());
        group.bench_function("jwt_authorizer", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = peer.clone().oneshot(request07(&header)).await.expect("response");
                assert!(response.status().is_success());
            })
        });
        group.finish();
    }
}

fn request07(value: &HeaderValue) -> Request<axum07::body::Body> {
    let mut request = Request::new(axum07::body::Body::empty());
    request.headers_mut().insert(AUTHORIZATION, value.clone());
    request
}

/// Minting: `JwtIssuer::mint` against a bare `jsonwebtoken::encode` of the
/// same claims (a fixed `jti` of the same length; ours draws a random one)
/// with the same private key, per algorithm.
fn bench_mint(c: &mut Criterion) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    // Idempotent: `bench` may have installed it already.
    portcullis::jwt::install_crypto_provider().expect("install");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let es = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("p256");
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");
    let rs = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let rs_der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rs).expect("rsa der");
    let es_pem = portcullis_bench::pkcs8_pem(es.as_ref());
    let ed_pem = portcullis_bench::pkcs8_pem(ed.as_ref());
    let rs_pem = portcullis_bench::pkcs8_pem(rs_der.as_ref());
    let cases = [
        (
            "HS256",
            SigningKey::hmac(Algorithm::HS256, HS_SECRET.as_bytes()).expect("hs"),
            jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        ),
        (
            "ES256",
            SigningKey::from_pem(&es_pem).expect("es"),
            jsonwebtoken::EncodingKey::from_ec_pem(es_pem.as_bytes()).expect("es pem"),
            jsonwebtoken::Algorithm::ES256,
        ),
        (
            "EdDSA",
            SigningKey::from_pem(&ed_pem).expect("ed"),
            jsonwebtoken::EncodingKey::from_ed_pem(ed_pem.as_bytes()).expect("ed pem"),
            jsonwebtoken::Algorithm::EdDSA,
        ),
        (
            "RS256",
            SigningKey::from_pem(&rs_pem).expect("rs"),
            jsonwebtoken::EncodingKey::from_rsa_pem(rs_pem.as_bytes()).expect("rs pem"),
            jsonwebtoken::Algorithm::RS256,
        ),
    ];
    for (name, key, encoding, algorithm) in cases {
        let kid = key.kid().map(str::to_owned);
        let issuer = JwtIssuer::new(key, ISS, AUD);
        // The same shape of token on both rows: header (alg, typ, kid) and
        // claims, so the rows differ only by the issuer's own work.
        let minted = issuer.mint("alice", ["notes:read"]).expect("mint");
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = kid;
        header.typ = Some("at+jwt".to_owned());
        let jti = "x".repeat(22);
        let mut group = c.benchmark_group(format!("jwt_mint/{name}"));
        group.bench_function("bare_encode", |b| {
            b.iter(|| {
                let claims = portcullis_bench::MintedClaims::now(ISS, AUD, &jti);
                jsonwebtoken::encode(&header, &claims, &encoding).expect("encode")
            })
        });
        group.bench_function("portcullis_mint", |b| {
            b.iter(|| {
                issuer
                    .mint(std::hint::black_box("alice"), ["notes:read"])
                    .expect("mint")
            })
        });
        group.finish();
        // Same length within the jti's and signature's slack: the rows
        // compare like with like.
        let bare = jsonwebtoken::encode(
            &header,
            &portcullis_bench::MintedClaims {
                iss: ISS,
                sub: "alice",
                aud: AUD,
                iat: 0,
                exp: 600,
                jti: &jti,
                scope: "notes:read",
            },
            &encoding,
        )
        .expect("encode");
        assert!(minted.len().abs_diff(bare.len()) < 40, "{name}: {minted} vs {bare}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench, bench_mint
}
criterion_main!(benches);
