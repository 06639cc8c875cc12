//! Rotating every key of the reference stack over HTTP, restarting it
//! between phases: the HMAC secrets (`PORTCULLIS_SECRETS`) on one Redis
//! (sessions outlive the process there), and the signing keys
//! (`PORTCULLIS_SIGNING_KEYS`, `PORTCULLIS_STAGED_SIGNING_KEYS`).
//!
//! After every rotation, what the stack issued is decoded and checked
//! against the *current* key alone (the Flask CVE-2025-47278 failure was
//! signing with a fallback key): the session's store key, the pre-session
//! CSRF token, the refresh token's MAC, the access token's signature.

mod common;

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{SAME_ORIGIN, csrf_token_of, form_login, password_grant, start};
use http::{Method, StatusCode};
use portcullis::jwt::{JwtVerifier, KeySet, Validation};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::example::Example;
use portcullis_tests::redis_cluster::query;
use portcullis_tests::redis_server::RedisServer;
use serde_json::json;

const ISSUER: &str = "https://reference.test";

fn random_secret() -> ([u8; 32], String) {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).expect("random");
    (secret, URL_SAFE_NO_PAD.encode(secret))
}

/// The store key the session layer files session `cookie` under with
/// `secret`: route ‖ SHA-256(SHA-512(secret) ‖ id)[..30], as Redis names
/// it.
fn redis_session_key(cookie: &str, secret: &[u8]) -> String {
    let id = URL_SAFE_NO_PAD.decode(cookie).expect("a session id");
    let block = digest::digest(&digest::SHA512, secret);
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(block.as_ref());
    context.update(&id);
    let hash = context.finish();
    let mut key = id[..2].to_vec();
    key.extend_from_slice(&hash.as_ref()[..30]);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{{portcullis:{}}}s:{hex}", &hex[..4])
}

/// Whether Redis holds a live session record (not a grace alias) at `key`.
fn holds_record(redis: &RedisServer, key: &str) -> bool {
    query(redis.port(), &["HEXISTS", key, "_created"]).expect("redis-cli") == "1"
}

/// Whether `token` (a masked CSRF token of an anonymous visitor whose
/// pre-session cookie holds `visitor_secret`) was made under `secret`.
fn csrf_token_made_with(token: &str, visitor_secret: &str, secret: &[u8]) -> bool {
    let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64url token");
    let (mask, masked) = bytes.split_at(32);
    let unmasked: Vec<u8> = masked.iter().zip(mask).map(|(a, b)| a ^ b).collect();
    let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), visitor_secret.as_bytes());
    unmasked == expected.as_ref()
}

/// Whether refresh token `token`'s MAC was made under `secret`.
fn refresh_token_made_with(token: &str, secret: &[u8]) -> bool {
    let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64url token");
    let (body, mac) = bytes.split_at(bytes.len() - 16);
    let key = digest::digest(&digest::SHA256, &[secret, b"portcullis refresh token mac"].concat());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()), body);
    &tag.as_ref()[..16] == mac
}

async fn instance(redis: &RedisServer, secrets: &str) -> Example {
    let url = redis.url();
    let stack = start(&[
        ("PORTCULLIS_REDIS_URL", url.as_str()),
        ("PORTCULLIS_SECRETS", secrets),
        ("PORTCULLIS_ISSUER", ISSUER),
    ])
    .await;
    assert!(
        stack.printed.iter().any(|line| line.starts_with("secrets: current ")),
        "the stack names its current secret's id: {:?}",
        stack.printed
    );
    stack
}

async fn refresh(addr: std::net::SocketAddr, token: &str) -> portcullis_tests::Answer {
    Client::default()
        .call(
            addr,
            Method::POST,
            "/oauth/token",
            Body::Form(&format!("grant_type=refresh_token&refresh_token={token}")),
            &[],
        )
        .await
}

async fn rekeyed_sessions(addr: std::net::SocketAddr) -> u64 {
    let metrics = Client::default()
        .call(addr, Method::GET, "/metrics", Body::None, &[])
        .await;
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("portcullis_sessions_rekeyed_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("a re-key counter in /metrics: {}", metrics.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_secrets_keeps_active_users_and_ends_idle_ones() {
    let redis = RedisServer::start();
    let ((s1, s1_text), (s2, s2_text)) = (random_secret(), random_secret());

    // Phase 1, SECRETS=s1: a session (cookie), its CSRF token, a refresh
    // token; an idle user; an anonymous visitor with a login form open.
    let phase1 = instance(&redis, &s1_text).await;
    let (mut active, mut idle, mut visitor) = (Client::default(), Client::default(), Client::default());
    let (login, _) = form_login(&mut active, phase1.addr, "alice", "alice-password").await;
    assert!(
        login.status.is_success() || login.status.is_redirection(),
        "{}",
        login.body
    );
    form_login(&mut idle, phase1.addr, "bob", "bob-password").await;
    let csrf_s1 = csrf_token_of(&active.call(phase1.addr, Method::GET, "/", Body::None, &[]).await);
    let refresh_s1 = password_grant(phase1.addr, "alice", "alice-password").await.json()["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let login_form_s1 = csrf_token_of(&visitor.call(phase1.addr, Method::GET, "/", Body::None, &[]).await);
    let cookie = active.cookies["session"].clone();
    assert!(holds_record(&redis, &redis_session_key(&cookie, &s1)), "filed under s1");
    drop(phase1);

    // Phase 2, SECRETS=s2,s1.
    let phase2 = instance(&redis, &format!("{s2_text},{s1_text}")).await;
    let me = active.call(phase2.addr, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "the s1 cookie still works: {}", me.body);
    assert_eq!(me.json()["subject"], "alice");
    assert_eq!(
        active.cookies["session"], cookie,
        "the same cookie: re-keying is invisible"
    );
    assert_eq!(rekeyed_sessions(phase2.addr).await, 1, "one session moved to s2");
    assert!(
        holds_record(&redis, &redis_session_key(&cookie, &s2)),
        "the session is filed under s2 now"
    );
    assert!(
        !holds_record(&redis, &redis_session_key(&cookie, &s1)),
        "and no longer under s1"
    );
    let note = active
        .call(
            phase2.addr,
            Method::POST,
            "/notes",
            Body::Json(json!({"text": "written with an s1 token"})),
            &[SAME_ORIGIN, ("x-csrf-token", &csrf_s1)],
        )
        .await;
    assert!(
        note.status.is_success(),
        "the s1 CSRF token is still accepted: {}",
        note.body
    );
    let rotated = refresh(phase2.addr, &refresh_s1).await;
    assert_eq!(
        rotated.status,
        StatusCode::OK,
        "the s1 refresh token still rotates: {}",
        rotated.body
    );
    let refresh_s2 = rotated.json()["refresh_token"].as_str().expect("refresh").to_owned();
    let login = visitor
        .call(
            phase2.addr,
            Method::POST,
            "/login",
            Body::Form(&format!(
                "username=alice&password=alice-password&csrf_token={login_form_s1}"
            )),
            &[SAME_ORIGIN],
        )
        .await;
    assert!(
        login.status.is_success() || login.status.is_redirection(),
        "a login form opened under s1 still posts: {} {}",
        login.status,
        login.body
    );
    let mut fresh = Client::default();
    let (login, _) = form_login(&mut fresh, phase2.addr, "alice", "alice-password").await;
    assert!(
        login.status.is_success() || login.status.is_redirection(),
        "a new login works"
    );

    // Nothing minted in phase 2 used s1.
    let new_cookie = fresh.cookies["session"].clone();
    assert!(
        holds_record(&redis, &redis_session_key(&new_cookie, &s2)),
        "a new session under s2"
    );
    assert!(!holds_record(&redis, &redis_session_key(&new_cookie, &s1)));
    assert!(refresh_token_made_with(&refresh_s2, &s2), "the successor's MAC is s2's");
    assert!(!refresh_token_made_with(&refresh_s2, &s1), "not s1's");
    let mut anonymous = Client::default();
    let form = csrf_token_of(&anonymous.call(phase2.addr, Method::GET, "/", Body::None, &[]).await);
    let visitor_secret = anonymous.cookies["csrf"].clone();
    assert!(
        csrf_token_made_with(&form, &visitor_secret, &s2),
        "a pre-session token of s2"
    );
    assert!(!csrf_token_made_with(&form, &visitor_secret, &s1), "not of s1");
    drop(phase2);

    // Phase 3, SECRETS=s2: s1 is gone.
    let phase3 = instance(&redis, &s2_text).await;
    let me = active.call(phase3.addr, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the session used in phase 2 survives: {}",
        me.body
    );
    let me = fresh.call(phase3.addr, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "the phase-2 login survives");
    let me = idle.call(phase3.addr, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "idle through the overlap: gone");
    assert_eq!(
        refresh(phase3.addr, &refresh_s2).await.status,
        StatusCode::OK,
        "the s2 family rotates"
    );
    let stale = refresh(phase3.addr, &refresh_s1).await;
    assert_eq!(stale.json()["error"], "invalid_grant", "{}", stale.body);
    assert_eq!(rekeyed_sessions(phase3.addr).await, 0);
}

/// The `kid` in a JWS header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

/// The JWKS and its `Cache-Control`.
async fn jwks(addr: std::net::SocketAddr) -> (serde_json::Value, String) {
    let answer = Client::default()
        .call(addr, Method::GET, "/.well-known/jwks.json", Body::None, &[])
        .await;
    (answer.json(), answer.header("cache-control").to_owned())
}

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Whether `token` verifies under the one published key `kid`.
fn verifies_under(jwks: &serde_json::Value, kid: &str, token: &str) -> bool {
    let only: Vec<&serde_json::Value> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|key| key["kid"] == kid)
        .collect();
    let keys = KeySet::from_jwks_json(&json!({ "keys": only }).to_string()).expect("jwks");
    let verifier =
        JwtVerifier::new(keys, Validation::new().issuer(ISSUER).audience("reference-stack")).expect("verifier");
    verifier.verify(token).is_ok()
}

async fn access_token(addr: std::net::SocketAddr) -> String {
    let grant = password_grant(addr, "alice", "alice-password").await;
    assert_eq!(grant.status, StatusCode::OK, "{}", grant.body);
    grant.json()["access_token"].as_str().expect("access token").to_owned()
}

async fn me_with(addr: std::net::SocketAddr, token: &str) -> portcullis_tests::Answer {
    let mut client = Client {
        bearer: Some(token.to_owned()),
        ..Client::default()
    };
    client.call(addr, Method::GET, "/me", Body::None, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_signing_keys_publishes_first_signs_with_the_active_key_and_retires() {
    let dir = std::env::temp_dir().join(format!("portcullis-signing-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pem = |name: &str| {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, common::p256_pem()).expect("write key");
        path.display().to_string()
    };
    let (k1, k2, k3) = (pem("k1"), pem("k2"), pem("k3"));
    let with = |signing: String, staged: Option<String>| async move {
        let mut env = vec![
            ("PORTCULLIS_SIGNING_KEYS", signing),
            ("PORTCULLIS_ISSUER", ISSUER.to_owned()),
        ];
        if let Some(staged) = staged {
            env.push(("PORTCULLIS_STAGED_SIGNING_KEYS", staged));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        start(&env).await
    };

    // SIGNING_KEYS=k1.
    let one = with(k1.clone(), None).await;
    let t1 = access_token(one.addr).await;
    let (published, cache_control) = jwks(one.addr).await;
    let kid1 = kid_of(&t1);
    assert_eq!(kids(&published), vec![kid1.clone()]);
    assert_eq!(cache_control, "public, max-age=300", "a short, public cache lifetime");
    drop(one);

    // SIGNING_KEYS=k2,k1: k2 signs, both are published, T1 still passes.
    let two = with(format!("{k2},{k1}"), None).await;
    let t2 = access_token(two.addr).await;
    let kid2 = kid_of(&t2);
    assert_ne!(kid2, kid1, "new tokens carry k2's kid");
    let (published, _) = jwks(two.addr).await;
    assert_eq!(
        kids(&published),
        [kid2.clone(), kid1.clone()],
        "both published, active first"
    );
    assert!(verifies_under(&published, &kid2, &t2), "signed by k2");
    assert!(!verifies_under(&published, &kid1, &t2), "not by the retired k1");
    assert_eq!(
        me_with(two.addr, &t1).await.status,
        StatusCode::OK,
        "a token of the retired key lives out its lifetime"
    );
    drop(two);

    // SIGNING_KEYS=k2: k1 dropped, T1 refused with the reason.
    let three = with(k2.clone(), None).await;
    let refused = me_with(three.addr, &t1).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(
        refused.header("www-authenticate").contains("invalid_token"),
        "{}",
        refused.header("www-authenticate")
    );
    assert!(
        refused.header("www-authenticate").contains("unknown key id"),
        "the reason names the key: {}",
        refused.header("www-authenticate")
    );
    assert_eq!(me_with(three.addr, &t2).await.status, StatusCode::OK);
    drop(three);

    // STAGED_SIGNING_KEYS=k3: published ahead, never signing.
    let four = with(k2.clone(), Some(k3)).await;
    let (published, _) = jwks(four.addr).await;
    let t4 = access_token(four.addr).await;
    let listed = kids(&published);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], kid2, "k2 still signs");
    let kid3 = listed[1].clone();
    assert_eq!(kid_of(&t4), kid2, "no token names k3");
    assert!(verifies_under(&published, &kid2, &t4));
    assert!(!verifies_under(&published, &kid3, &t4), "no token is signed by k3");
    assert!(
        four.printed
            .iter()
            .any(|line| line == &format!("signing keys: active {kid2} published {kid2},{kid3}")),
        "{:?}",
        four.printed
    );
    drop(four);
    let _ = std::fs::remove_dir_all(&dir);
}
