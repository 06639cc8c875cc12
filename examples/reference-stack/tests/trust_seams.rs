//! The hybrid's trust seams, over HTTP against the real binary: where one
//! issuer meets another, where a cross-site form meets the login, where a
//! store outage meets the response body.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{SAME_ORIGIN, form_login, password_grant, start, start_with_external_issuer, wait_until_healthy};
use http::{Method, StatusCode};
use portcullis_tests::Answer;
use portcullis_tests::client::{Body, Client};
use portcullis_tests::redis_server::RedisServer;
use serde_json::json;

fn bearer(token: &str) -> Client {
    Client {
        bearer: Some(token.to_owned()),
        ..Client::default()
    }
}

/// Defect: an external issuer's token with `sub: "alice"` was the local
/// alice — her notes, her devices, her "log out everywhere".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_issuers_alice_is_not_the_local_alice() {
    let (stack, external, dir) = start_with_external_issuer("seams").await;
    let addr = stack.addr;
    wait_until_healthy(addr).await;

    // The local alice: a browser session and an API token, and a note.
    let mut browser = Client::default();
    let (login, _) = form_login(&mut browser, addr, "alice", "alice-password").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let local = password_grant(addr, "alice", "alice-password").await.json();
    let local_access = local["access_token"].as_str().expect("access token").to_owned();
    let mut local_api = bearer(&local_access);
    let added = local_api
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Json(json!({"text": "alice's secret"})),
            &[],
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);

    // The external alice: same `sub`, another issuer.
    let theirs = external.mint("alice", ["notes:read", "notes:write"]).expect("mint");
    let mut intruder = bearer(&theirs);
    let me = intruder.call(addr, Method::GET, "/me", Body::None, &[]).await.json();
    assert_eq!(me["subject"], "alice", "/me still reports the raw sub");
    assert_eq!(me["issuer"], "https://idp.test", "and names its issuer");
    let mine = local_api.call(addr, Method::GET, "/me", Body::None, &[]).await.json();
    assert_ne!(mine["issuer"], me["issuer"]);

    let notes = intruder.call(addr, Method::GET, "/notes", Body::None, &[]).await;
    assert_eq!(notes.status, StatusCode::OK, "{}", notes.body);
    assert_eq!(notes.json(), json!([]), "not the local alice's notes: {}", notes.body);
    let devices = intruder.call(addr, Method::GET, "/sessions", Body::None, &[]).await;
    assert_eq!(
        devices.json(),
        json!([]),
        "not the local alice's devices: {}",
        devices.body
    );
    let everywhere = intruder
        .call(addr, Method::POST, "/sessions/logout-everywhere", Body::None, &[])
        .await;
    assert_eq!(everywhere.status, StatusCode::OK, "{}", everywhere.body);
    assert_eq!(
        everywhere.json(),
        json!({"sessions_ended": 0, "refresh_families_revoked": 0}),
        "the external alice ends only her own (none)"
    );

    // The local alice is untouched: her session, her token, her note.
    let still = local_api.call(addr, Method::GET, "/notes", Body::None, &[]).await;
    assert_eq!(
        still.status,
        StatusCode::OK,
        "her token was not cut off: {}",
        still.body
    );
    assert_eq!(still.json()[0]["text"], "alice's secret");
    let page = browser.call(addr, Method::GET, "/", Body::None, &[]).await;
    assert!(page.body.contains("Signed in as alice"), "{}", page.body);
    let refreshed = Client::default()
        .call(
            addr,
            Method::POST,
            "/oauth/token",
            Body::Form(&format!(
                "grant_type=refresh_token&refresh_token={}",
                local["refresh_token"].as_str().expect("refresh token")
            )),
            &[],
        )
        .await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "her refresh family lives: {}",
        refreshed.body
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect: a cross-site form (no cookie under `SameSite=Lax`) logged the
/// victim into the attacker's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_logins_are_refused_for_each_origin_signal() {
    let stack = start(&[]).await;
    let addr = stack.addr;
    let form = "username=bob&password=bob-password";
    let signals: [(&[(&str, &str)], &str); 4] = [
        (&[("sec-fetch-site", "cross-site")], "cross-site request"),
        (
            &[("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
            "cross-site request",
        ),
        (&[("origin", "https://evil.example")], "untrusted origin"),
        (&[("referer", "https://evil.example/lure.html")], "untrusted origin"),
    ];
    for (headers, reason) in signals {
        for body in [
            Body::Form(form),
            Body::Json(json!({"username": "bob", "password": "bob-password"})),
        ] {
            let described = format!("{headers:?} {body:?}");
            let mut victim = Client::default();
            let answer = victim.call(addr, Method::POST, "/login", body, headers).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{described}: {}", answer.body);
            assert!(answer.body.contains(reason), "{described}: the reason: {}", answer.body);
            assert!(
                answer.headers.get("set-cookie").is_none(),
                "{described}: no session was handed out"
            );
            assert!(victim.cookies.is_empty());
        }
    }
    // A same-origin form and a non-browser client (no signal) still log in.
    let mut honest = Client::default();
    let answer = honest
        .call(addr, Method::POST, "/login", Body::Form(form), &[SAME_ORIGIN])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let script = Client::default()
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "bob", "password": "bob-password"})),
            &[],
        )
        .await;
    assert_eq!(script.status, StatusCode::OK, "{}", script.body);
}

/// Defect: outage answers named the failure inside (`broken pipe`, an
/// address). They say what failed; the detail goes to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_bodies_name_no_address_or_driver_error() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let stack = start(&[("PORTCULLIS_REDIS_URL", url.as_str())]).await;
    let addr = stack.addr;

    let mut browser = Client::default();
    let login = browser
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "alice", "password": "alice-password"})),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let pair = password_grant(addr, "alice", "alice-password").await.json();
    let access = pair["access_token"].as_str().expect("access").to_owned();
    let refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();

    redis.kill();
    let port = redis.port().to_string();
    let answers = [
        (
            "session cookie",
            browser.call(addr, Method::GET, "/", Body::None, &[]).await,
        ),
        ("password grant", password_grant(addr, "alice", "alice-password").await),
        (
            "refresh grant",
            Client::default()
                .call(
                    addr,
                    Method::POST,
                    "/oauth/token",
                    Body::Form(&format!("grant_type=refresh_token&refresh_token={refresh}")),
                    &[],
                )
                .await,
        ),
        (
            "notes by token",
            bearer(&access).call(addr, Method::GET, "/notes", Body::None, &[]).await,
        ),
    ];
    for (what, answer) in answers {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            answer.body
        );
        let body = answer.body.to_ascii_lowercase();
        assert!(
            body.contains("unavailable"),
            "{what}: says what failed: {}",
            answer.body
        );
        for leak in [
            "127.0.0.1",
            port.as_str(),
            "redis",
            "refused",
            "broken pipe",
            "os error",
            "io error",
            "connection",
        ] {
            assert!(!body.contains(leak), "{what}: the body names {leak:?}: {}", answer.body);
        }
    }
}

async fn refresh_grant(addr: SocketAddr, refresh_token: &str, scope: Option<&str>) -> Answer {
    let mut form = format!("grant_type=refresh_token&refresh_token={refresh_token}");
    if let Some(scope) = scope {
        form.push_str("&scope=");
        form.push_str(&scope.replace(' ', "+"));
    }
    Client::default()
        .call(addr, Method::POST, "/oauth/token", Body::Form(&form), &[])
        .await
}

/// Defect: `scope=notes:read` on refresh still returned both scopes, and an
/// `invalid_scope` came after the token was spent (its retry was "reuse",
/// and the family died).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_narrows_scope_and_refuses_a_wider_one_before_spending() {
    let stack = start(&[]).await;
    let addr = stack.addr;
    let login = password_grant(addr, "alice", "alice-password").await.json();
    assert_eq!(login["scope"], "notes:read notes:write");

    let narrow = refresh_grant(addr, login["refresh_token"].as_str().expect("rt"), Some("notes:read")).await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.body);
    let narrow = narrow.json();
    assert_eq!(narrow["scope"], "notes:read", "the answer names the narrowed scope");
    let mut reader = bearer(narrow["access_token"].as_str().expect("at"));
    let me = reader.call(addr, Method::GET, "/me", Body::None, &[]).await.json();
    assert_eq!(me["scopes"], json!(["notes:read"]), "the access token carries only it");
    assert_eq!(
        reader.call(addr, Method::GET, "/notes", Body::None, &[]).await.status,
        StatusCode::OK
    );
    let write = reader
        .call(addr, Method::POST, "/notes", Body::Json(json!({"text": "x"})), &[])
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "no notes:write: {}", write.body);

    // Wider than the grant, or malformed: invalid_scope, and nothing spent.
    let next = narrow["refresh_token"].as_str().expect("rt").to_owned();
    for scope in ["notes:read admin", "admin", "", "notes:read  notes:write", "bad\"quote"] {
        let refused = refresh_grant(addr, &next, Some(scope)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{scope:?}: {}", refused.body);
        assert_eq!(refused.json()["error"], "invalid_scope", "{scope:?}: {}", refused.body);
    }
    // The refresh token kept the family's full scope, and still works.
    let retry = refresh_grant(addr, &next, None).await;
    assert_eq!(retry.status, StatusCode::OK, "not reuse: {}", retry.body);
    assert_eq!(retry.json()["scope"], "notes:read notes:write");
}

async fn redis_figures(url: &str) -> (u64, u64) {
    let client = redis::Client::open(url).expect("redis url");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await.expect("DBSIZE");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut connection)
        .await
        .expect("INFO");
    let used = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory");
    (keys, used)
}

/// Defect: every spent refresh token was kept until the family's absolute
/// deadline (3,000 rotations of one family: 3,000 Redis keys, about 1 MB).
/// A family is one record now, and reuse of any earlier token is still
/// caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_rotations_cost_one_family_record() {
    const ROTATIONS: usize = 3_000;
    let redis = RedisServer::start();
    let url = redis.url();
    let stack = start(&[("PORTCULLIS_REDIS_URL", url.as_str())]).await;
    let addr = stack.addr;
    let login = password_grant(addr, "alice", "alice-password").await.json();
    let first = login["refresh_token"].as_str().expect("rt").to_owned();
    let mut current = first.clone();
    let mut early = None;
    let (keys_before, memory_before) = redis_figures(&url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for n in 0..ROTATIONS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation {n} past the time bound"
        );
        let answer = refresh_grant(addr, &current, None).await;
        assert_eq!(answer.status, StatusCode::OK, "rotation {n}: {}", answer.body);
        current = answer.json()["refresh_token"].as_str().expect("rt").to_owned();
        if n == 10 {
            early = Some(current.clone());
        }
    }
    let (keys_after, memory_after) = redis_figures(&url).await;
    println!(
        "after {ROTATIONS} rotations: {keys_before} → {keys_after} keys, used_memory {memory_before} → {memory_after} bytes"
    );
    assert_eq!(keys_after, keys_before, "no key per rotation");
    assert!(
        memory_after.saturating_sub(memory_before) < 64 * 1024,
        "memory grew by {} bytes over {ROTATIONS} rotations",
        memory_after.saturating_sub(memory_before)
    );

    // Reuse of an early token, long spent, is still detected: the family dies.
    let replay = refresh_grant(addr, early.as_deref().expect("kept"), None).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);
    assert_eq!(
        replay.json()["error_description"],
        "refresh token reused; family revoked"
    );
    let newest = refresh_grant(addr, &current, None).await;
    assert_eq!(
        newest.status,
        StatusCode::BAD_REQUEST,
        "the newest token died with its family"
    );
    assert_eq!(newest.json()["error_description"], "refresh token expired or revoked");
}

/// Defect: every cookie-less `GET /` stored a session only to hold a CSRF
/// secret (300 visits, 300 Redis keys). The login form's token now lives
/// in the visitor's own cookie; a session is stored at login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visits_store_nothing_in_redis() {
    const VISITS: usize = 300;
    let redis = RedisServer::start();
    let url = redis.url();
    let stack = start(&[("PORTCULLIS_REDIS_URL", url.as_str())]).await;
    let addr = stack.addr;
    let (keys_before, _) = redis_figures(&url).await;
    for n in 0..VISITS {
        let page = Client::default().call(addr, Method::GET, "/", Body::None, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "visit {n}");
        assert!(page.body.contains("csrf_token"), "the login form has its token");
    }
    let (keys_after, _) = redis_figures(&url).await;
    println!("{VISITS} anonymous visits: DBSIZE {keys_before} → {keys_after}");
    assert_eq!(keys_after, keys_before, "no key per anonymous visitor");

    // The form still logs in, with the token it carried.
    let mut browser = Client::default();
    let (login, token) = form_login(&mut browser, addr, "alice", "alice-password").await;
    assert!(browser.cookies.contains_key("csrf"), "{:?}", browser.cookies);
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let (keys_logged_in, _) = redis_figures(&url).await;
    assert!(keys_logged_in > keys_after, "a login stores its session");
    let note = browser
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Form(&format!("text=hello&csrf_token={token}")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(
        note.status,
        StatusCode::SEE_OTHER,
        "the pre-login token carried over: {}",
        note.body
    );
}
