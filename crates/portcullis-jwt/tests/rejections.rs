//! Every reason JwtLayer refuses a token, each checked for status, RFC 6750
//! challenge and typed reason.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use portcullis_core::{Identity, ManualClock, Rejection, RejectionKind, ResponseBody};
use portcullis_jwt::{
    Algorithm, JwtError, JwtIssuer, JwtLayer, KeySet, SigningKey, Validation, VerifyingKey, sign_compact,
};
use serde_json::{Value, json};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

const ISS: &str = "https://auth.test";
const AUD: &str = "notes-api";
const NOW: u64 = 1_800_000_000;

fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOW))
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": NOW, "exp": NOW + 600, "jti": "t-1", "scope": "notes:read"})
}

fn header(key: &SigningKey) -> Value {
    json!({"alg": key.algorithm().name(), "kid": key.kid(), "typ": "at+jwt"})
}

struct Fixture {
    key: SigningKey,
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Self {
        Self {
            key: SigningKey::generate_ed25519().expect("key").with_kid("ed-1"),
            clock: clock(),
        }
    }

    /// The layer under test's validation: this issuer and audience.
    fn validation(&self) -> Validation {
        Validation::new().issuer(ISS).audience(AUD)
    }

    /// A layer with `validation`, on the fixture's clock.
    fn layer_with(&self, validation: Validation) -> JwtLayer {
        JwtLayer::new(self.key.verifying_key(), validation)
            .expect("layer")
            .clock(Arc::new(self.clock.clone()))
    }

    fn layer(&self) -> JwtLayer {
        self.layer_with(self.validation())
    }

    fn token(&self, header: Value, claims: Value) -> String {
        sign_compact(&self.key, &header, &claims).expect("sign")
    }

    fn good(&self) -> String {
        self.token(header(&self.key), claims())
    }
}

type Svc = Box<
    dyn Fn(Request<()>) -> std::pin::Pin<Box<dyn Future<Output = Response<ResponseBody<String>>> + Send>> + Send + Sync,
>;

fn service(layer: JwtLayer) -> Svc {
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|request: Request<()>| async move {
            let identity = request.extensions().get::<Identity>().map(|i| i.subject().to_owned());
            Ok::<_, Infallible>(Response::new(identity.unwrap_or_else(|| "anonymous".into())))
        });
    Box::new(move |request| {
        let mut service = service.clone();
        Box::pin(async move {
            service
                .ready()
                .await
                .expect("ready")
                .call(request)
                .await
                .expect("infallible")
        })
    })
}

fn bearer(token: &str) -> Request<()> {
    Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request")
}

async fn body_text(response: Response<ResponseBody<String>>) -> Result<String, BoxError> {
    use http_body_util::BodyExt;
    let bytes: Bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|never| match never {})?
        .to_bytes();
    Ok(String::from_utf8(bytes.to_vec())?)
}

/// Sends `token` through a default layer and asserts a 401 for `expected`.
async fn assert_rejected(layer: JwtLayer, token: &str, expected: JwtError) {
    let response = service(layer)(bearer(token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{expected:?}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        challenge,
        format!(r#"Bearer error="invalid_token", error_description="{expected}""#),
    );
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .expect("typed rejection")
        .clone();
    assert_eq!(rejection.kind(), RejectionKind::InvalidCredentials);
    assert_eq!(rejection.layer(), "jwt");
    assert_eq!(rejection.source_as::<JwtError>(), Some(&expected));
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = serde_json::from_str(&body_text(response).await.expect("body")).expect("json");
    assert_eq!(body["detail"], expected.to_string());
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler() {
    let fixture = Fixture::new();
    let response = service(fixture.layer())(bearer(&fixture.good())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await.expect("body"), "alice");
}

#[tokio::test]
async fn expired() {
    let fixture = Fixture::new();
    let token = fixture.good();
    fixture.clock.advance(Duration::from_secs(600 + 31));
    assert_rejected(fixture.layer(), &token, JwtError::Expired).await;
}

#[tokio::test]
async fn expiry_within_the_leeway_passes() {
    let fixture = Fixture::new();
    let token = fixture.good();
    fixture.clock.advance(Duration::from_secs(600 + 29));
    let response = service(fixture.layer().without_cache())(bearer(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let fixture = Fixture::new();
    let token = fixture.good();
    let svc = service(fixture.layer());
    assert_eq!(svc(bearer(&token)).await.status(), StatusCode::OK);
    fixture.clock.advance(Duration::from_secs(600 + 31));
    let response = svc(bearer(&token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let rejection = response.extensions().get::<Rejection>().expect("rejection");
    assert_eq!(rejection.source_as::<JwtError>(), Some(&JwtError::Expired));
}

#[tokio::test]
async fn missing_exp() {
    let fixture = Fixture::new();
    let mut c = claims();
    c.as_object_mut().expect("object").remove("exp");
    let token = fixture.token(header(&fixture.key), c);
    assert_rejected(fixture.layer(), &token, JwtError::MissingClaim("exp".into())).await;
}

#[tokio::test]
async fn not_yet_valid() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["nbf"] = json!(NOW + 120);
    let token = fixture.token(header(&fixture.key), c);
    assert_rejected(fixture.layer(), &token, JwtError::NotYetValid).await;
}

#[tokio::test]
async fn issued_in_the_future() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["iat"] = json!(NOW + 120);
    let token = fixture.token(header(&fixture.key), c);
    assert_rejected(fixture.layer(), &token, JwtError::IssuedInFuture).await;
}

#[tokio::test]
async fn wrong_and_missing_issuer() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    let token = fixture.token(header(&fixture.key), c.clone());
    assert_rejected(fixture.layer(), &token, JwtError::IssuerMismatch).await;
    c.as_object_mut().expect("object").remove("iss");
    let token = fixture.token(header(&fixture.key), c);
    assert_rejected(fixture.layer(), &token, JwtError::MissingClaim("iss".into())).await;
}

#[tokio::test]
async fn wrong_and_missing_audience() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["aud"] = json!(["billing", "admin"]);
    let token = fixture.token(header(&fixture.key), c.clone());
    assert_rejected(fixture.layer(), &token, JwtError::AudienceMismatch).await;
    c.as_object_mut().expect("object").remove("aud");
    let token = fixture.token(header(&fixture.key), c);
    assert_rejected(fixture.layer(), &token, JwtError::MissingClaim("aud".into())).await;
}

#[tokio::test]
async fn an_audience_list_containing_ours_passes() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["aud"] = json!(["billing", AUD]);
    let token = fixture.token(header(&fixture.key), c);
    let response = service(fixture.layer())(bearer(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_and_missing_type() {
    let fixture = Fixture::new();
    let layer = || fixture.layer_with(fixture.validation().token_type("at+jwt"));
    let mut h = header(&fixture.key);
    h["typ"] = json!("JWT");
    assert_rejected(layer(), &fixture.token(h.clone(), claims()), JwtError::TypeMismatch).await;
    h.as_object_mut().expect("object").remove("typ");
    assert_rejected(layer(), &fixture.token(h.clone(), claims()), JwtError::TypeMismatch).await;
    h["typ"] = json!("application/AT+JWT");
    let response = service(layer())(bearer(&fixture.token(h, claims()))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "RFC 9068 allows the application/ prefix, any case"
    );
}

#[tokio::test]
async fn a_required_claim_must_be_present() {
    let fixture = Fixture::new();
    let layer = fixture.layer_with(fixture.validation().require_claim("tenant"));
    assert_rejected(layer, &fixture.good(), JwtError::MissingClaim("tenant".into())).await;
}

#[tokio::test]
async fn alg_none_in_every_spelling() {
    let fixture = Fixture::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "at+jwt"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}.c2ln")] {
            assert_rejected(fixture.layer(), &token, JwtError::AlgNone).await;
        }
    }
}

/// Generates an RSA key with aws-lc directly, and returns it as the PEM a
/// user would load: the private key as PKCS#8, the public key as SPKI.
fn rsa_pems() -> (String, String) {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let private = pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pair)
            .expect("der")
            .as_ref(),
    ));
    let public = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        aws_lc_rs::signature::KeyPair::public_key(&pair)
            .as_der()
            .expect("der")
            .as_ref(),
    ));
    (private, public)
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let (private_pem, public_pem) = rsa_pems();
    let rsa = VerifyingKey::from_pem(&public_pem).expect("public pem");
    assert_eq!(rsa.algorithm(), Algorithm::RS256);
    let layer = || {
        JwtLayer::new(rsa.clone(), Validation::new().issuer(ISS).audience(AUD))
            .expect("layer")
            .clock(Arc::new(clock()))
    };
    // The attack: the public key, which is public, used as an HMAC secret.
    let forger = SigningKey::hmac(Algorithm::HS256, public_pem.as_bytes()).expect("hmac");
    let forged = sign_compact(&forger, &json!({"alg": "HS256", "typ": "at+jwt"}), &claims()).expect("sign");
    assert_rejected(layer(), &forged, JwtError::AlgorithmMismatch).await;

    // The honest RS256 token from the matching private key passes.
    let signer = SigningKey::from_pem(&private_pem).expect("private pem");
    let honest = sign_compact(&signer, &json!({"alg": "RS256", "typ": "at+jwt"}), &claims()).expect("sign");
    assert_eq!(service(layer())(bearer(&honest)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_kid() {
    let fixture = Fixture::new();
    let mut h = header(&fixture.key);
    h["kid"] = json!("not-a-key-we-have");
    assert_rejected(fixture.layer(), &fixture.token(h, claims()), JwtError::UnknownKeyId).await;
}

#[tokio::test]
async fn tampered_payload() {
    let fixture = Fixture::new();
    let token = fixture.good();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
    assert_rejected(fixture.layer(), &parts.join("."), JwtError::InvalidSignature).await;
}

#[tokio::test]
async fn truncated_and_garbage_tokens() {
    let fixture = Fixture::new();
    let good = fixture.good();
    let layer = || fixture.layer();
    let (signed, _) = good.rsplit_once('.').expect("three parts");
    assert_rejected(
        layer(),
        signed,
        JwtError::Malformed("expected three dot-separated parts"),
    )
    .await;
    let short_signature = &good[..good.len() - 10];
    let response = service(layer())(bearer(short_signature)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let rejection = response.extensions().get::<Rejection>().expect("rejection");
    assert!(
        matches!(
            rejection.source_as::<JwtError>(),
            Some(JwtError::InvalidSignature | JwtError::Malformed(_))
        ),
        "{rejection:?}"
    );
    assert_rejected(
        layer(),
        "garbage",
        JwtError::Malformed("expected three dot-separated parts"),
    )
    .await;
    assert_rejected(layer(), "a.b.c", JwtError::Malformed("header is not base64url")).await;
    assert_rejected(layer(), "e30.e30.e30", JwtError::Malformed("header has no alg")).await;
    assert_rejected(
        layer(),
        "bm90IGpzb24.e30.e30",
        JwtError::Malformed("header is not a JSON object"),
    )
    .await;
    assert_rejected(
        layer(),
        "a.b.c.d.e",
        JwtError::Malformed("expected three dot-separated parts (encrypted tokens are not supported)"),
    )
    .await;
}

#[tokio::test]
async fn malformed_claim_types_are_named() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    assert_rejected(
        fixture.layer(),
        &fixture.token(header(&fixture.key), c),
        JwtError::InvalidClaim("exp"),
    )
    .await;
    let mut c = claims();
    c["sub"] = json!(42);
    assert_rejected(
        fixture.layer(),
        &fixture.token(header(&fixture.key), c),
        JwtError::InvalidClaim("sub"),
    )
    .await;
}

#[tokio::test]
async fn oversized_token() {
    let fixture = Fixture::new();
    let mut c = claims();
    c["padding"] = json!("x".repeat(9_000));
    let token = fixture.token(header(&fixture.key), c);
    assert!(token.len() > 8 * 1024);
    assert_rejected(fixture.layer(), &token, JwtError::TooLarge).await;
    // The limit is configurable.
    let small = fixture.layer_with(fixture.validation().max_token_bytes_limit(100));
    assert_rejected(small, &fixture.good(), JwtError::TooLarge).await;
}

#[tokio::test]
async fn key_reference_headers_are_never_followed() {
    let fixture = Fixture::new();
    let attacker = SigningKey::generate_ed25519().expect("key");
    let attacker_jwk = serde_json::to_value(attacker.public_jwk().expect("jwk")).expect("json");
    for (name, value) in [
        ("jku", json!("https://evil.test/jwks.json")),
        ("x5u", json!("https://evil.test/cert.pem")),
        ("jwk", attacker_jwk.clone()),
        ("x5c", json!(["MIIB"])),
    ] {
        // Signed by the attacker's key, pointing at it…
        let mut h = json!({"alg": "EdDSA", "typ": "at+jwt"});
        h[name] = value.clone();
        let token = sign_compact(&attacker, &h, &claims()).expect("sign");
        assert_rejected(fixture.layer(), &token, JwtError::KeyReferenceHeader(name)).await;
        // …and even signed by our own key, the header is refused.
        let mut h = header(&fixture.key);
        h[name] = value;
        assert_rejected(
            fixture.layer(),
            &fixture.token(h, claims()),
            JwtError::KeyReferenceHeader(name),
        )
        .await;
    }
}

/// Defect: `"jku": null` (and the others) read as absent and passed.
#[tokio::test]
async fn key_reference_and_crit_headers_are_refused_even_when_null() {
    let fixture = Fixture::new();
    for name in ["jku", "x5u", "jwk", "x5c", "crit"] {
        let mut h = header(&fixture.key);
        h[name] = serde_json::Value::Null;
        let expected = if name == "crit" {
            JwtError::CriticalHeader
        } else {
            JwtError::KeyReferenceHeader(name)
        };
        assert_rejected(fixture.layer(), &fixture.token(h, claims()), expected).await;
    }
}

#[tokio::test]
async fn critical_headers_are_refused() {
    let fixture = Fixture::new();
    let mut h = header(&fixture.key);
    h["crit"] = json!(["exp"]);
    assert_rejected(fixture.layer(), &fixture.token(h, claims()), JwtError::CriticalHeader).await;
}

#[tokio::test]
async fn an_unsupported_algorithm_is_refused() {
    let fixture = Fixture::new();
    let mut h = header(&fixture.key);
    h["alg"] = json!("ES512");
    assert_rejected(
        fixture.layer(),
        &fixture.token(h, claims()),
        JwtError::UnsupportedAlgorithm,
    )
    .await;
    let mut h = header(&fixture.key);
    h["alg"] = json!("eddsa");
    assert_rejected(
        fixture.layer(),
        &fixture.token(h, claims()),
        JwtError::UnsupportedAlgorithm,
    )
    .await;
}

#[tokio::test]
async fn required_mode_sends_a_bare_challenge() {
    let fixture = Fixture::new();
    let response = service(fixture.layer())(Request::new(())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let rejection = response.extensions().get::<Rejection>().expect("rejection");
    assert_eq!(rejection.kind(), RejectionKind::MissingCredentials);
    assert_eq!(rejection.reason(), "bearer token required");
}

#[tokio::test]
async fn optional_mode_passes_anonymous_requests_but_not_bad_tokens() {
    let fixture = Fixture::new();
    let svc = service(fixture.layer().optional());
    let response = svc(Request::new(())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await.expect("body"), "anonymous");
    let response = svc(bearer("garbage")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_algorithm_verifies_with_its_pinned_key_only() {
    let (rsa_private, _) = rsa_pems();
    let keys = [
        SigningKey::hmac(Algorithm::HS256, &[1; 32]).expect("hs256"),
        SigningKey::hmac(Algorithm::HS384, &[2; 48]).expect("hs384"),
        SigningKey::hmac(Algorithm::HS512, &[3; 64]).expect("hs512"),
        SigningKey::from_pem(&rsa_private).expect("rsa"),
        SigningKey::from_pem(&rsa_private)
            .expect("rsa")
            .with_algorithm(Algorithm::RS384)
            .expect("rs384"),
        SigningKey::from_pem(&rsa_private)
            .expect("rsa")
            .with_algorithm(Algorithm::RS512)
            .expect("rs512"),
        SigningKey::from_pem(&rsa_private)
            .expect("rsa")
            .with_algorithm(Algorithm::PS256)
            .expect("ps256"),
        SigningKey::from_pem(&rsa_private)
            .expect("rsa")
            .with_algorithm(Algorithm::PS384)
            .expect("ps384"),
        SigningKey::from_pem(&rsa_private)
            .expect("rsa")
            .with_algorithm(Algorithm::PS512)
            .expect("ps512"),
        SigningKey::generate_p256().expect("p256"),
        SigningKey::generate_p384().expect("p384"),
        SigningKey::generate_ed25519().expect("ed25519"),
    ];
    for key in &keys {
        let keyset = KeySet::new([key.verifying_key()]);
        let layer = JwtLayer::new(keyset, Validation::new().issuer(ISS).audience(AUD))
            .expect("layer")
            .clock(Arc::new(clock()));
        let token = sign_compact(key, &json!({"alg": key.algorithm().name()}), &claims()).expect("sign");
        let response = service(layer.clone())(bearer(&token)).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", key.algorithm());
        // The same key refuses every other algorithm's name in the header.
        let mut relabelled = json!({"alg": "HS256"});
        if key.algorithm() == Algorithm::HS256 {
            relabelled = json!({"alg": "HS384"});
        }
        let token = sign_compact(key, &relabelled, &claims()).expect("sign");
        assert_rejected(layer, &token, JwtError::AlgorithmMismatch).await;
    }
}

#[tokio::test]
async fn the_builder_refuses_insecure_configurations() {
    let key = SigningKey::generate_ed25519().expect("key").verifying_key();
    assert_eq!(
        JwtLayer::new(key.clone(), Validation::new().issuer(ISS)).err(),
        Some(portcullis_jwt::ConfigError::NoAudience)
    );
    assert_eq!(
        JwtLayer::new(key.clone(), Validation::new().audience(AUD)).err(),
        Some(portcullis_jwt::ConfigError::NoIssuer)
    );
    assert_eq!(
        JwtLayer::new(KeySet::default(), Validation::new().issuer(ISS).audience(AUD)).err(),
        Some(portcullis_jwt::ConfigError::NoKeys)
    );
    assert!(
        JwtLayer::new(
            key,
            Validation::new()
                .insecure_accept_any_audience()
                .insecure_accept_any_issuer()
        )
        .is_ok()
    );
}

#[tokio::test]
async fn an_issued_token_carries_the_secure_defaults() {
    let clock = clock();
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), ISS, AUD).clock(Arc::new(clock.clone()));
    let token = issuer.mint("alice", ["notes:read"]).expect("mint");
    let [header, payload, _] = token.split('.').collect::<Vec<_>>()[..] else {
        panic!("three parts")
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(
        payload["exp"].as_u64().expect("exp") - payload["iat"].as_u64().expect("iat"),
        15 * 60
    );
    assert_eq!(
        payload["jti"].as_str().expect("jti").len(),
        22,
        "128 random bits, base64url"
    );
    let other = issuer.mint("alice", ["notes:read"]).expect("mint");
    assert_ne!(token, other, "jti differs per token");
    // The published JWKS verifies the tokens.
    let keys = KeySet::from_jwks_json(&issuer.jwks().to_string()).expect("jwks");
    let layer = JwtLayer::new(keys, Validation::new().issuer(ISS).audience(AUD).token_type("at+jwt"))
        .expect("layer")
        .clock(Arc::new(clock));
    assert_eq!(service(layer)(bearer(&token)).await.status(), StatusCode::OK);
    let _ = SystemTime::now();
}

#[test]
fn public_keys_round_trip_through_pem() {
    for key in [
        SigningKey::generate_ed25519().expect("ed25519"),
        SigningKey::generate_p256().expect("p256"),
        SigningKey::generate_p384().expect("p384"),
    ] {
        let pem = key.verifying_key().public_key_pem().expect("public key");
        let reloaded = VerifyingKey::from_pem(&pem).expect("reload");
        assert_eq!(reloaded.algorithm(), key.algorithm());
        let message = b"signed message";
        assert!(reloaded.verify(message, &key.sign(message).expect("sign")));
    }
    assert!(
        VerifyingKey::hmac(Algorithm::HS256, &[1; 32])
            .expect("hmac")
            .public_key_pem()
            .is_none()
    );
}
