//! Soak: the reference stack under mixed traffic (logins, reads, writes,
//! refreshes, revocations) for a bounded time. No answer outside the
//! expected ones, and memory stays flat (RSS reported at start and end).
//!
//! 10 s in the normal test run; `PORTCULLIS_SOAK_SECS=300 cargo test -p
//! reference-stack --test soak -- --nocapture` for a long one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::example::Example;
use portcullis_tests::post_form;
use serde_json::json;

type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(tally: &Tally, what: &str, status: StatusCode, expected: &[StatusCode]) {
    assert!(expected.contains(&status), "{what}: unexpected {status}");
    *tally
        .lock()
        .expect("lock")
        .entry(format!("{what} {}", status.as_u16()))
        .or_default() += 1;
}

async fn round(addr: std::net::SocketAddr, tally: &Tally, n: u64) {
    // API client: grant, read, write, refresh, revoke.
    let grant = post_form(
        addr,
        "/oauth/token",
        "grant_type=password&username=alice&password=alice-password",
    )
    .await;
    count(tally, "grant", grant.status, &[StatusCode::OK]);
    let access = grant.json()["access_token"].as_str().expect("access").to_owned();
    let refresh = grant.json()["refresh_token"].as_str().expect("refresh").to_owned();
    let mut api = Client {
        bearer: Some(access.clone()),
        ..Client::default()
    };
    let read = api.call(addr, Method::GET, "/notes", Body::None, &[]).await;
    count(tally, "read", read.status, &[StatusCode::OK]);
    let write = api
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Json(json!({"text": format!("note {n}")})),
            &[],
        )
        .await;
    count(tally, "write", write.status, &[StatusCode::CREATED]);
    let rotated = post_form(
        addr,
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    count(tally, "refresh", rotated.status, &[StatusCode::OK]);
    let revoke = post_form(addr, "/oauth/revoke", &format!("token={access}")).await;
    count(tally, "revoke", revoke.status, &[StatusCode::OK]);
    let after = api.call(addr, Method::GET, "/me", Body::None, &[]).await;
    count(tally, "revoked read", after.status, &[StatusCode::UNAUTHORIZED]);

    // Browser: login, CSRF-protected write, a refused forgery, logout.
    let mut browser = Client::default();
    let login = browser
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "bob", "password": "bob-password"})),
            &[],
        )
        .await;
    count(tally, "login", login.status, &[StatusCode::OK]);
    let csrf = login.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let me = browser.call(addr, Method::GET, "/me", Body::None, &[]).await;
    count(tally, "session read", me.status, &[StatusCode::OK]);
    let forged = browser
        .call(
            addr,
            Method::POST,
            "/logout",
            Body::None,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    count(tally, "forged logout", forged.status, &[StatusCode::FORBIDDEN]);
    let logout = browser
        .call(
            addr,
            Method::POST,
            "/logout",
            Body::None,
            &[("sec-fetch-site", "same-origin"), ("x-csrf-token", &csrf)],
        )
        .await;
    count(tally, "logout", logout.status, &[StatusCode::NO_CONTENT]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_for_a_bounded_time() {
    let seconds: u64 = std::env::var("PORTCULLIS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let stack = Example::start(
        env!("CARGO_BIN_EXE_reference-stack"),
        &[("PORTCULLIS_INSECURE_HTTP", "1")],
    )
    .await;
    let addr = stack.addr;
    let tally: Tally = Arc::default();
    // Warm up, then measure memory from there.
    for n in 0..20 {
        round(addr, &tally, n).await;
    }
    let rss_start = stack.rss_kib().expect("rss");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let tally = tally.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline && n < 100_000 {
                    round(addr, &tally, worker * 1_000_000 + n).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut rounds = 0;
    for worker in workers {
        rounds += worker.await.expect("a worker failed");
    }
    let rss_end = stack.rss_kib().expect("rss");
    println!(
        "soak {seconds} s: {rounds} rounds ({} requests); RSS {} MiB → {} MiB",
        rounds * 12,
        rss_start / 1024,
        rss_end / 1024
    );
    println!("{:#?}", tally.lock().expect("lock"));
    assert!(rounds > 0);
    // Revocations and notes accumulate by design (until expiry); the rest
    // must not. A generous bound for the run length.
    let allowed_kib = 64 * 1024 + rounds * 2;
    assert!(
        rss_end.saturating_sub(rss_start) < allowed_kib,
        "memory grew from {rss_start} KiB to {rss_end} KiB"
    );
}
