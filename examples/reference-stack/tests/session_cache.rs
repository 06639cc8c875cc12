//! Two reference-stack instances on one Redis with the local session cache
//! on (`PORTCULLIS_SESSION_CACHE=on`), over HTTP: a logout on A is refused
//! on B within the propagation bound (p50/p99 over 50 rounds); a session
//! write on A is read on B; B's invalidation feed cut (through a cuttable
//! TCP proxy) makes B bypass its cache rather than serve stale data, and
//! after reconnecting it resynchronises; Redis killed and restarted is a
//! 503, then recovery.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{SAME_ORIGIN, start, wait_until_healthy};
use http::{Method, StatusCode};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::redis_server::RedisServer;
use portcullis_tests::tcp_proxy::TcpProxy;
use serde_json::json;

/// A client signed in as bob on `addr`, and its CSRF token.
async fn signed_in(addr: SocketAddr) -> (Client, String) {
    let mut client = Client::default();
    let login = client
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "bob", "password": "bob-password"})),
            &[],
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let csrf = login.json()["csrf_token"].as_str().expect("csrf").to_owned();
    (client, csrf)
}

/// The session cache's counter or gauge `name` on the instance at `addr`.
async fn cache_metric(addr: SocketAddr, name: &str) -> u64 {
    let metrics = Client::default()
        .call(addr, Method::GET, "/metrics", Body::None, &[])
        .await;
    let prefix = format!("portcullis_session_cache_{name} ");
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics: {}", metrics.body))
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

async fn theme(client: &mut Client, addr: SocketAddr) -> String {
    let answer = client.call(addr, Method::GET, "/preferences", Body::None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.json()["theme"].as_str().expect("theme").to_owned()
}

async fn set_theme(client: &mut Client, addr: SocketAddr, csrf: &str, theme: &str) {
    let answer = client
        .call(
            addr,
            Method::POST,
            "/preferences",
            Body::Json(json!({ "theme": theme })),
            &[SAME_ORIGIN, ("x-csrf-token", csrf)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
}

/// Over 50 rounds, a logout on `a` is refused on `b` (whose cache held the
/// session) within the propagation bound; a session write on `a` is read
/// on `b`.
async fn logouts_and_writes_reach_the_other_instance(a: SocketAddr, b: SocketAddr, store: &str) {
    // A logout on A, refused on B: 50 rounds, B's cache warm each time.
    let hits_before = cache_metric(b, "hits_total").await;
    let mut delays = Vec::new();
    for round in 0..50 {
        let (mut client, csrf) = signed_in(a).await;
        for _ in 0..2 {
            let me = client.call(b, Method::GET, "/me", Body::None, &[]).await;
            assert_eq!(me.status, StatusCode::OK, "round {round}: {}", me.body);
        }
        // A copy of the session cookie, kept past the logout (as a stolen
        // one would be): B must refuse it once A has ended the session.
        let mut replay = Client {
            cookies: client.cookies.clone(),
            ..Client::default()
        };
        let logout = client
            .call(
                a,
                Method::POST,
                "/logout",
                Body::None,
                &[SAME_ORIGIN, ("x-csrf-token", &csrf)],
            )
            .await;
        assert_eq!(logout.status, StatusCode::NO_CONTENT, "round {round}: {}", logout.body);
        let logged_out = Instant::now();
        loop {
            let me = replay.call(b, Method::GET, "/me", Body::None, &[]).await;
            if me.status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(me.status, StatusCode::OK, "round {round}: {}", me.body);
            assert!(
                logged_out.elapsed() < Duration::from_secs(2),
                "round {round}: B never saw the logout"
            );
        }
        delays.push(logged_out.elapsed());
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 50), percentile(&delays, 99));
    println!("{store}: logout on A refused on B (cache on) over 50 rounds: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(250), "propagation bound: p99 {p99:?}");
    assert!(
        cache_metric(b, "hits_total").await >= hits_before + 50,
        "B served the repeated reads from its cache"
    );

    // A session write on A, read on B (whose cache held the old value).
    let (mut client, csrf) = signed_in(a).await;
    assert_eq!(theme(&mut client, b).await, "light");
    assert_eq!(theme(&mut client, b).await, "light");
    set_theme(&mut client, a, &csrf, "dark").await;
    let written = Instant::now();
    while theme(&mut client, b).await != "dark" {
        assert!(written.elapsed() < Duration::from_secs(1), "the write reached B");
    }
    println!("{store}: a session write on A read on B after {:?}", written.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_on_two_instances_share_logouts_and_writes_and_a_lost_feed_bypasses_the_cache() {
    let mut redis = RedisServer::start();
    let proxy = TcpProxy::to_loopback_port(redis.port()).await;
    let url = redis.url();
    let feed = proxy.redis_url();
    let a = start(&[("PORTCULLIS_REDIS_URL", &url), ("PORTCULLIS_SESSION_CACHE", "on")]).await;
    let b = start(&[
        ("PORTCULLIS_REDIS_URL", &url),
        ("PORTCULLIS_SESSION_CACHE", "on"),
        ("PORTCULLIS_SESSION_CACHE_FEED_URL", &feed),
    ])
    .await;
    assert_eq!(b.printed("session cache"), "on");
    let (a, b) = (a.addr, b.addr);

    logouts_and_writes_reach_the_other_instance(a, b, "Redis").await;
    let (mut client, csrf) = signed_in(a).await;
    assert_eq!(theme(&mut client, b).await, "light");

    // B's feed cut: B bypasses its cache, so a change it cannot hear of is
    // still what it serves.
    proxy.cut();
    let cut = Instant::now();
    while cache_metric(b, "serving").await == 1 {
        assert!(cut.elapsed() < Duration::from_secs(2), "B noticed its feed was cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set_theme(&mut client, a, &csrf, "light").await;
    assert_eq!(theme(&mut client, b).await, "light", "not B's stale copy");
    assert!(cache_metric(b, "bypassed_total").await >= 1);
    assert!(cache_metric(b, "feed_losses_total").await >= 1);

    // Restored: B resynchronises (empties its cache, follows again) and
    // caches again.
    let resyncs = cache_metric(b, "resyncs_total").await;
    proxy.restore();
    let restored = Instant::now();
    while cache_metric(b, "serving").await == 0 || cache_metric(b, "resyncs_total").await == resyncs {
        assert!(restored.elapsed() < Duration::from_secs(5), "B followed its feed again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("B resynchronised {:?} after its feed came back", restored.elapsed());
    assert_eq!(theme(&mut client, b).await, "light");
    set_theme(&mut client, a, &csrf, "dark").await;
    let written = Instant::now();
    while theme(&mut client, b).await != "dark" {
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "writes reach B's cache again"
        );
    }

    // Redis killed: a 503 (never a cached answer, never a logout); back,
    // the stack recovers.
    redis.kill();
    let killed = Instant::now();
    loop {
        let me = client.call(b, Method::GET, "/me", Body::None, &[]).await;
        if me.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(!me.body.contains("127.0.0.1"), "the body names no address: {}", me.body);
            break;
        }
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        assert!(killed.elapsed() < Duration::from_secs(3), "B noticed Redis was gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart();
    wait_until_healthy(b).await;
    let (mut again, _) = signed_in(a).await;
    let back = Instant::now();
    loop {
        let me = again.call(b, Method::GET, "/me", Body::None, &[]).await;
        if me.status == StatusCode::OK {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "B recovered: {}", me.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_on_postgres_two_instances_share_logouts_and_writes() {
    let database = tokio::task::spawn_blocking(portcullis_tests::postgres_server::PostgresServer::start)
        .await
        .expect("server");
    let url = database.url();
    let env = [
        ("PORTCULLIS_DATABASE_URL", url.as_str()),
        ("PORTCULLIS_SESSION_CACHE", "on"),
    ];
    let (a, b) = (start(&env).await, start(&env).await);
    assert_eq!(b.printed("session cache"), "on");
    logouts_and_writes_reach_the_other_instance(a.addr, b.addr, "PostgreSQL").await;
}
