//! What the reference stack's suites share: starting the binary, the
//! password grant, and reading a page's CSRF token.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{Method, StatusCode};
use portcullis_tests::Answer;
use portcullis_tests::client::{Body, Client};
use portcullis_tests::example::Example;

/// A request header saying it came from the stack's own pages.
pub const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

/// The secrets every test instance on a shared store uses unless its
/// `env` names others (the stack refuses a shared store without them).
pub const TEST_SECRETS: &str = "dGVzdC1zZWNyZXRzLW9mLXRoZS1yZWZlcmVuY2Utc3RhY2stc3VpdGVz";

/// Starts the binary over plain HTTP with `env` (and [`TEST_SECRETS`]
/// unless `env` sets `PORTCULLIS_SECRETS`).
pub async fn start(env: &[(&str, &str)]) -> Example {
    let mut all = vec![("PORTCULLIS_INSECURE_HTTP", "1")];
    if !env.iter().any(|(name, _)| *name == "PORTCULLIS_SECRETS") {
        all.push(("PORTCULLIS_SECRETS", TEST_SECRETS));
    }
    all.extend_from_slice(env);
    Example::start(env!("CARGO_BIN_EXE_reference-stack"), &all).await
}

/// `grant_type=password` for `user`.
pub async fn password_grant(addr: SocketAddr, user: &str, password: &str) -> Answer {
    let form = format!("grant_type=password&username={user}&password={password}");
    Client::default()
        .call(addr, Method::POST, "/oauth/token", Body::Form(&form), &[])
        .await
}

/// The CSRF token in a page's form.
pub fn csrf_token_of(page: &Answer) -> String {
    page.body
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a CSRF token in the form: {}", page.body))
        .to_owned()
}

/// The stack trusting a second issuer (`https://idp.test`, same audience)
/// through a JWKS file in a fresh directory named after `tag`: the stack,
/// that issuer (to mint its tokens), and the directory (remove it after).
pub async fn start_with_external_issuer(tag: &str) -> (Example, portcullis::JwtIssuer, PathBuf) {
    let dir = std::env::temp_dir().join(format!("portcullis-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let jwks_path = dir.join("jwks.json");
    let external = portcullis::JwtIssuer::new(
        portcullis::SigningKey::generate_ed25519().expect("key"),
        "https://idp.test",
        "reference-stack",
    );
    std::fs::write(&jwks_path, external.jwks().to_string()).expect("write jwks");
    let path = jwks_path.display().to_string();
    let stack = start(&[
        ("PORTCULLIS_EXTERNAL_ISSUER", "https://idp.test"),
        ("PORTCULLIS_EXTERNAL_JWKS", path.as_str()),
    ])
    .await;
    (stack, external, dir)
}

/// Waits (at most 10 s) until `/healthz` answers 200.
pub async fn wait_until_healthy(addr: SocketAddr) {
    let mut health = Client::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while health.call(addr, Method::GET, "/healthz", Body::None, &[]).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs `browser` in as `user` through the login page's form, as a
/// browser does (same origin, with the page's token): the login answer and
/// the token.
pub async fn form_login(browser: &mut Client, addr: SocketAddr, user: &str, password: &str) -> (Answer, String) {
    let page = browser.call(addr, Method::GET, "/", Body::None, &[]).await;
    let token = csrf_token_of(&page);
    let login = browser
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Form(&format!("username={user}&password={password}&csrf_token={token}")),
            &[SAME_ORIGIN],
        )
        .await;
    (login, token)
}

/// A fresh P-256 private key, PKCS#8 PEM (what an operator would mount).
pub fn p256_pem() -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use base64::Engine;
    let document =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &aws_lc_rs::rand::SystemRandom::new())
            .expect("generate");
    let body = base64::engine::general_purpose::STANDARD.encode(document.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}
