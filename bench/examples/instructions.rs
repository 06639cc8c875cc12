//! A fixed number of requests through one stack of the session and CSRF
//! benches, for counting instructions under `valgrind --tool=callgrind`
//! (repeatable where wall-clock time on a shared VM is not):
//!
//! ```text
//! cargo build --release --example instructions
//! bench/instructions            # every scenario, instructions per request
//! ```
//!
//! `instructions SCENARIO N` runs N requests of SCENARIO after its setup;
//! the per-request figure is the difference between two runs of different
//! N, divided by their difference, so setup cancels out.
use std::sync::atomic::{AtomicU64, Ordering};

use axum::routing::{get, post};
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::Session;
use portcullis_bench::stacks::{csrf_post, get_request, memory_sessions, seed};
use tower::ServiceExt;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn router() -> axum::Router {
    axum::Router::new()
        .route(
            "/seed",
            get(|s: Session, t: Option<axum::Extension<CsrfToken>>| async move {
                s.login("alice", ["notes:write"]);
                let _ = s.insert("counter", &"0");
                t.and_then(|axum::Extension(t)| t.value().ok()).unwrap_or_default()
            }),
        )
        .route(
            "/read",
            get(|s: Session| async move { s.get::<String>("counter").ok().flatten().unwrap_or_default() }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                let next = NEXT.fetch_add(1, Ordering::Relaxed).to_string();
                s.insert("counter", &next)
                    .map(|_| "ok")
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .route("/notes", post(|| async { "ok" }))
        .route("/plain", get(|| async { "ok" }))
}

/// The keys of one asymmetric scenario from its PKCS#8 PEM: Portcullis's
/// signing key, and jsonwebtoken's decoding key (from the public key's
/// PEM) and encoding key, as a bare caller would build them.
fn asymmetric(
    pem: &str,
    decoding: fn(&[u8]) -> jsonwebtoken::errors::Result<jsonwebtoken::DecodingKey>,
    encoding: fn(&[u8]) -> jsonwebtoken::errors::Result<jsonwebtoken::EncodingKey>,
    algorithm: jsonwebtoken::Algorithm,
) -> (
    portcullis::jwt::SigningKey,
    jsonwebtoken::DecodingKey,
    jsonwebtoken::EncodingKey,
    jsonwebtoken::Algorithm,
) {
    let key = portcullis::jwt::SigningKey::from_pem(pem).expect("signing key");
    let public = key.verifying_key().public_key_pem().expect("public key");
    let decoding = decoding(public.as_bytes()).expect("decoding key");
    let encoding = encoding(pem.as_bytes()).expect("encoding key");
    (key, decoding, encoding, algorithm)
}

/// The JWT scenarios: `jwt_{bare,nocache,cached,revocation}_{ALG}` verify
/// one token per request through an axum router (a bare
/// `jsonwebtoken::decode` in the handler, or `JwtLayer` with its cache off
/// or on, or `JwtLayer` + `RevocationLayer` on a memory store), and
/// `jwt_{encode,mint}_{ALG}` mint one token per iteration (a bare
/// `jsonwebtoken::encode` of the same claims, or `JwtIssuer::mint`).
fn jwt(scenario: &str, n: u32, runtime: &tokio::runtime::Runtime) {
    use http::{HeaderValue, Request, header::AUTHORIZATION};
    use portcullis::jwt::{Algorithm, JwtIssuer, JwtLayer, SigningKey};
    const ISS: &str = "https://auth.bench";
    const AUD: &str = "bench-api";
    const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!";
    portcullis::jwt::install_crypto_provider().expect("provider");
    let (kind, alg) = scenario
        .strip_prefix("jwt_")
        .and_then(|rest| rest.split_once('_'))
        .expect("jwt_KIND_ALG");
    let (key, decoding, encoding, algorithm) = match alg {
        "HS256" => (
            SigningKey::hmac(Algorithm::HS256, SECRET).expect("hs"),
            jsonwebtoken::DecodingKey::from_secret(SECRET),
            jsonwebtoken::EncodingKey::from_secret(SECRET),
            jsonwebtoken::Algorithm::HS256,
        ),
        "ES256" => {
            let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .expect("p256");
            let (decoding, encoding) = (
                jsonwebtoken::DecodingKey::from_ec_pem,
                jsonwebtoken::EncodingKey::from_ec_pem,
            );
            asymmetric(
                &portcullis_bench::pkcs8_pem(pkcs8.as_ref()),
                decoding,
                encoding,
                jsonwebtoken::Algorithm::ES256,
            )
        }
        "EdDSA" => {
            let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .expect("ed25519");
            let (decoding, encoding) = (
                jsonwebtoken::DecodingKey::from_ed_pem,
                jsonwebtoken::EncodingKey::from_ed_pem,
            );
            asymmetric(
                &portcullis_bench::pkcs8_pem(pkcs8.as_ref()),
                decoding,
                encoding,
                jsonwebtoken::Algorithm::EdDSA,
            )
        }
        "RS256" => {
            use aws_lc_rs::encoding::AsDer;
            // RSA key generation takes a random amount of work, which would
            // not cancel between the two runs: generate the key once and
            // keep it for later runs.
            let path = std::env::temp_dir().join("portcullis-bench-rs256.pem");
            let pem = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("rsa der");
                let pem = portcullis_bench::pkcs8_pem(der.as_ref());
                std::fs::write(&path, &pem).expect("keep the key");
                pem
            });
            let (decoding, encoding) = (
                jsonwebtoken::DecodingKey::from_rsa_pem,
                jsonwebtoken::EncodingKey::from_rsa_pem,
            );
            asymmetric(&pem, decoding, encoding, jsonwebtoken::Algorithm::RS256)
        }
        other => panic!("unknown algorithm {other}"),
    };
    let kid = key.kid().map(str::to_owned);
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, ISS, AUD);
    match kind {
        "mint" => {
            for _ in 0..n {
                std::hint::black_box(issuer.mint("alice", ["notes:read"]).expect("mint"));
            }
            return;
        }
        // `encode` signs the same claims with a fixed `jti`; `encodejti`
        // draws a random one per token as `mint` does (16 bytes from
        // aws-lc, base64url), so both rows make an equivalent token.
        "encode" | "encodejti" => {
            use base64::Engine as _;
            let mut header = jsonwebtoken::Header::new(algorithm);
            header.kid = kid;
            header.typ = Some("at+jwt".to_owned());
            let fixed = "x".repeat(22);
            for _ in 0..n {
                let drawn;
                let jti = if kind == "encodejti" {
                    let mut bytes = [0u8; 16];
                    aws_lc_rs::rand::fill(&mut bytes).expect("rng");
                    drawn = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
                    drawn.as_str()
                } else {
                    fixed.as_str()
                };
                let claims = portcullis_bench::MintedClaims::now(ISS, AUD, jti);
                std::hint::black_box(jsonwebtoken::encode(&header, &claims, &encoding).expect("encode"));
            }
            return;
        }
        _ => {}
    }
    let token = issuer.mint("alice", ["notes:read"]).expect("mint");
    let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    let app = match kind {
        "bare" => {
            let mut validation = jsonwebtoken::Validation::new(algorithm);
            validation.set_issuer(&[ISS]);
            validation.set_audience(&[AUD]);
            portcullis_bench::bare_decode_router(decoding, validation)
        }
        _ => {
            let mut layer =
                JwtLayer::new(verifying, portcullis::jwt::Validation::new().issuer(ISS).audience(AUD)).expect("layer");
            if kind == "nocache" {
                layer = layer.without_cache();
            }
            let router = axum::Router::new().route(
                "/",
                get(|identity: portcullis::Identity| async move { identity.subject().to_owned() }),
            );
            if kind == "revocation" {
                let revocations = portcullis::revocation::Revocations::new(std::sync::Arc::new(
                    portcullis::revocation::MemoryRevocationStore::new(),
                ));
                router
                    .layer(portcullis::revocation::RevocationLayer::new(&revocations))
                    .layer(layer)
            } else {
                router.layer(layer)
            }
        }
    };
    let app = served(app);
    runtime.block_on(async {
        for _ in 0..n {
            let mut request = Request::new(axum::body::Body::empty());
            request.headers_mut().insert(AUTHORIZATION, value.clone());
            let response = app.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success(), "{scenario}: {}", response.status());
        }
    });
}

/// `router` as `axum::serve` runs it: `with_state` turns every handler
/// into its route (with the layers on it) once. Without it, each
/// `oneshot` on a `Router<()>` rebuilds the route and its layers, a cost
/// no served request pays.
fn served(router: axum::Router) -> axum::Router {
    router.with_state(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "session_read".into());
    let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    if scenario.starts_with("jwt_") {
        jwt(&scenario, n, &runtime);
        return;
    }
    let app = match scenario.as_str() {
        "router_floor" | "router_floor_post" => router(),
        // Two layers that do nothing, applied as the CSRF scenarios apply
        // theirs: what axum's per-route layering costs any two layers.
        "noop_layers_post" => router()
            .layer(tower::util::MapRequestLayer::new(
                |r: http::Request<axum::body::Body>| r,
            ))
            .layer(tower::util::MapRequestLayer::new(
                |r: http::Request<axum::body::Body>| r,
            )),
        "session_read" | "session_write" | "csrf_floor" => router().layer(memory_sessions()),
        "csrf_token_header" | "csrf_token_form" | "csrf_token_fetch_metadata" => router()
            .layer(CsrfLayer::new().insecure_http())
            .layer(memory_sessions()),
        "csrf_origin_only" => router()
            .layer(CsrfLayer::new().insecure_http().origin_checks_only())
            .layer(memory_sessions()),
        other => panic!("unknown scenario {other}"),
    };
    let app = served(app);
    runtime.block_on(async {
        // The floor has no session layer to seed.
        let (cookie, token) = if scenario.starts_with("router_floor") || scenario == "noop_layers_post" {
            (http::HeaderValue::from_static("none=1"), String::new())
        } else {
            seed(&app).await
        };
        for _ in 0..n {
            let request = match scenario.as_str() {
                "router_floor" => get_request("/plain", &cookie),
                // The CSRF scenarios' request, with made-up credentials.
                "router_floor_post" | "noop_layers_post" => csrf_post(&cookie, Some(&"A".repeat(86)), false),
                "session_read" => get_request("/read", &cookie),
                "session_write" => get_request("/write", &cookie),
                "csrf_floor" | "csrf_origin_only" => csrf_post(&cookie, None, false),
                "csrf_token_header" => csrf_post(&cookie, Some(&token), false),
                // What a current browser sends instead of `Origin` on a
                // same-origin fetch (the load run's request).
                "csrf_token_fetch_metadata" => {
                    let mut request = csrf_post(&cookie, Some(&token), false);
                    request.headers_mut().remove("origin");
                    request
                        .headers_mut()
                        .insert("sec-fetch-site", http::HeaderValue::from_static("same-origin"));
                    request
                }
                _ => csrf_post(&cookie, Some(&token), true),
            };
            let response = app.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success(), "{scenario}: {}", response.status());
        }
    });
}
