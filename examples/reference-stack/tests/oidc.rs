//! The reference stack signing users in with a real OpenID provider (panva
//! oidc-provider on loopback) in a real headless Chromium, and logging
//! them out from the provider over the back channel: two instances on one
//! Redis (and on one PostgreSQL), the provider posting its logout token to
//! one of them, the user logged out of both.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use portcullis_tests::oidc_provider::{OidcProvider, ProviderClient, sign_in_at_provider};
use portcullis_tests::postgres_server::PostgresServer;
use portcullis_tests::redis_server::RedisServer;
use portcullis_tests::webdriver::Browser;
use portcullis_tests::{free_port, spawn_axum};

/// One browser at a time: two Chromium and ChromeDriver pairs starting
/// together on a 2-core machine reset each other's connections.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CLIENT_SECRET: &str = "reference-stack-client-secret-for-tests";

/// A loopback relay in front of the stack's back-channel endpoint that
/// keeps a copy of every logout token the provider posts (to replay it).
async fn recording_relay(target: std::net::SocketAddr, seen: Arc<Mutex<Vec<String>>>) -> std::net::SocketAddr {
    use axum::routing::post;
    let router = axum::Router::new().route(
        "/logout/oidc/backchannel",
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(body.clone());
                let answer = post_logout(target, &body).await;
                (answer.status, answer.body)
            }
        }),
    );
    spawn_axum(router).await
}

/// Posts the form `body` to the back-channel logout endpoint of the stack
/// at `addr`.
async fn post_logout(addr: std::net::SocketAddr, body: &str) -> portcullis_tests::Answer {
    portcullis_tests::post_form(addr, "/logout/oidc/backchannel", body).await
}

/// Whether `browser` is signed in as alice on the stack at `base`.
async fn signed_in_as_alice(browser: &Browser, base: &str) -> bool {
    browser.goto(&format!("{base}/me")).await;
    browser.text().await.contains("\"subject\":\"alice\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_login_and_its_back_channel_logout_reach_every_instance_on_one_redis() {
    let redis = RedisServer::start();
    login_then_back_channel_logout_on(("PORTCULLIS_REDIS_URL", redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_login_and_its_back_channel_logout_reach_every_instance_on_one_postgres() {
    let database = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    login_then_back_channel_logout_on(("PORTCULLIS_DATABASE_URL", database.url())).await;
}

/// Two instances on the store `store` names; a browser login through the
/// provider on one, and one on another device; the provider's logout of
/// the first reaching both instances over the back channel and ending that
/// provider session's login only; the replayed, forged and empty logout
/// requests refused.
async fn login_then_back_channel_logout_on(store: (&'static str, String)) {
    let _one_browser = ONE_BROWSER.lock().await;
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let relay = recording_relay(format!("127.0.0.1:{port_a}").parse().expect("addr"), seen.clone()).await;
    // One client for both instances (one public site behind two nodes):
    // both callbacks registered, logout tokens to instance A (via the relay).
    let provider = OidcProvider::start(&[ProviderClient {
        id: "reference-stack".into(),
        secret: CLIENT_SECRET.into(),
        redirect_uris: vec![
            format!("{base_a}/login/oidc/callback"),
            format!("{base_b}/login/oidc/callback"),
        ],
        post_logout_redirect_uris: vec![format!("{base_a}/"), format!("{base_b}/")],
        backchannel_logout_uri: Some(format!("http://{relay}/logout/oidc/backchannel")),
        jwks: None,
    }]);
    let issuer = provider.issuer();
    let env = |addr: &str, own: &str| {
        vec![
            ("PORTCULLIS_ADDR", addr.to_owned()),
            ("PORTCULLIS_ISSUER", own.to_owned()),
            store.clone(),
            ("PORTCULLIS_OIDC_ISSUER", issuer.clone()),
            ("PORTCULLIS_OIDC_CLIENT_ID", "reference-stack".to_owned()),
            ("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ]
    };
    let start = |vars: Vec<(&'static str, String)>| async move {
        let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::start(&borrowed).await
    };
    let stack_a = start(env(&format!("127.0.0.1:{port_a}"), &base_a)).await;
    let stack_b = start(env(&format!("127.0.0.1:{port_b}"), &base_b)).await;
    assert_eq!(stack_a.printed("oidc"), issuer);

    // The full login in a browser, through the provider's pages.
    let browser = Browser::start().await;
    browser.goto(&format!("{base_a}/login/oidc?return=/me")).await;
    let me = sign_in_at_provider(&browser, "alice", "\"subject\"").await;
    assert!(me.contains("\"method\":\"session\""), "{me}");
    assert!(me.contains("\"subject\":\"alice\""), "{me}");
    assert!(me.contains(&format!("\"issuer\":\"{issuer}\"")), "{me}");
    // Cookies ignore the port: instance B reads the same session from Redis.
    browser.goto(&format!("{base_b}/me")).await;
    let me_b = browser.text().await;
    assert!(
        me_b.contains("\"subject\":\"alice\""),
        "instance B shares the session: {me_b}"
    );

    // Alice signs in on another device too: another provider session,
    // which the provider's logout of the first must leave alone.
    let other_device = Browser::start().await;
    other_device.goto(&format!("{base_b}/login/oidc?return=/me")).await;
    let me = sign_in_at_provider(&other_device, "alice", "\"subject\"").await;
    assert!(me.contains("\"subject\":\"alice\""), "{me}");

    // An open-redirect return path is refused by name.
    browser
        .goto(&format!("{base_a}/login/oidc?return=//evil.example"))
        .await;
    let text = browser.text().await;
    assert!(text.contains("the return path names another origin"), "{text}");

    // The user signs out at the provider: it posts a logout token to
    // instance A, which ends the session for both.
    browser.goto(&format!("{issuer}/session/end")).await;
    browser.wait_for_text("sign me out").await;
    let ended_at = Instant::now();
    browser.click("button[name=logout][value=yes]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out_of = Vec::new();
    while out_of.len() < 2 {
        out_of.clear();
        for base in [&base_a, &base_b] {
            browser.goto(&format!("{base}/me")).await;
            if !browser.text().await.contains("\"subject\":\"alice\"") {
                out_of.push(base.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "still signed in on {:?} 10 s after the provider logout",
            [&base_a, &base_b]
                .iter()
                .filter(|b| !out_of.contains(b))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "back-channel logout on {} reached both instances within {:?}",
        store.0,
        ended_at.elapsed()
    );
    // The token named the first device's provider session (`sid`): the
    // other device's session of the same user stays, on both instances.
    for base in [&base_a, &base_b] {
        other_device.goto(&format!("{base}/me")).await;
        let me = other_device.text().await;
        assert!(
            me.contains("\"subject\":\"alice\""),
            "the other device's session outlives the first device's provider logout on {base}: {me}"
        );
    }

    // The provider's real logout token, replayed: refused by both
    // instances (the jti cache is shared through Redis), ending nothing.
    let token = seen
        .lock()
        .expect("lock")
        .first()
        .cloned()
        .expect("the provider posted a logout token");
    assert!(token.starts_with("logout_token="), "{token}");
    for stack in [&stack_a, &stack_b] {
        let answer = post_logout(stack.addr, &token).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(answer.body.contains("logout token replayed"), "{}", answer.body);
    }
    // Logout tokens signed with the provider's own key that break a rule:
    // refused by name, and the other device's session, which each names
    // by `sub`, lives on. (The same token with no rule broken ends it, at
    // the end: the refusals were the rules', not the signature's.)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = |jti: &str| {
        serde_json::json!({"iss": issuer, "aud": "reference-stack", "sub": "alice", "jti": jti,
            "iat": now, "exp": now + 120,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}})
    };
    let mut with_nonce = claims("crafted-nonce");
    with_nonce["nonce"] = "n-1".into();
    let mut without_events = claims("crafted-events");
    without_events.as_object_mut().expect("object").remove("events");
    for (claims, reason) in [
        (with_nonce, "logout token nonce"),
        (without_events, "logout token events"),
    ] {
        let token = provider.sign_logout_token(claims).await;
        let answer = post_logout(stack_b.addr, &format!("logout_token={token}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(answer.body.contains(reason), "{reason}: {}", answer.body);
        assert!(
            signed_in_as_alice(&other_device, &base_a).await,
            "a refused logout token ({reason}) ends nothing"
        );
    }
    // A logout token signed by a key the provider never published.
    let stranger = portcullis::SigningKey::generate_p256().expect("key");
    let forged = portcullis::jwt::sign_compact(
        &stranger,
        &serde_json::json!({"alg": "ES256", "typ": "logout+jwt"}),
        &serde_json::json!({"iss": issuer, "aud": "reference-stack", "sub": "alice", "jti": "forged-1",
            "iat": 1, "exp": 4_000_000_000u64,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    )
    .expect("sign");
    let answer = post_logout(stack_a.addr, &format!("logout_token={forged}")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("logout token signature"), "{}", answer.body);
    assert!(
        signed_in_as_alice(&other_device, &base_a).await,
        "a token of an unknown key ends nothing"
    );
    let answer = post_logout(stack_a.addr, "nothing=here").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("no logout token"), "{}", answer.body);

    // Last, the control: the provider's own key and no rule broken, by
    // `sub` alone, ends every session of alice, on both instances.
    let token = provider.sign_logout_token(claims("crafted-good")).await;
    let answer = post_logout(stack_b.addr, &format!("logout_token={token}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    for base in [&base_a, &base_b] {
        assert!(
            !signed_in_as_alice(&other_device, base).await,
            "a logout token by sub alone ends all of alice's sessions, on {base} too"
        );
    }
}
