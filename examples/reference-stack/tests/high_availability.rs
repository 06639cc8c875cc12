//! Two reference-stack instances on one real Redis Cluster (and on
//! Sentinel), over HTTP: a refresh race has exactly one winner, a
//! revocation on A is refused on B (propagation printed), and killing the
//! primary that holds a logged-in user's slot under load gives only 200 or
//! 503, recovers, and keeps every session written before; the same for a
//! Sentinel failover.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{p256_pem, password_grant, start};
use http::{Method, StatusCode};
use portcullis::{Principal, Route};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::example::Example;
use portcullis_tests::postgres_server::PostgresServer;
use portcullis_tests::redis_cluster::{RedisCluster, RedisSentinel};
use serde_json::json;

const ISSUER: &str = "https://reference.test";

/// One cluster test at a time: each runs six Redis nodes and two stacks,
/// and the failover one loads both cores; side by side on a 2-core machine
/// a durable write can miss its replica deadline and make a flaky 503.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two instances on `cluster`, sharing a signing key and the issuer;
/// refresh tokens without a grace window (any second use is a reuse).
async fn two_instances(cluster: &RedisCluster, tag: &str) -> (Example, Example, std::path::PathBuf) {
    two_instances_on(&[("PORTCULLIS_REDIS_CLUSTER", cluster.seeds().join(","))], tag).await
}

async fn two_instances_on(redis_env: &[(&str, String)], tag: &str) -> (Example, Example, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("portcullis-ha-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_path = dir.join("signing.pem");
    std::fs::write(&key_path, p256_pem()).expect("write key");
    let mut env = redis_env.to_vec();
    env.push(("PORTCULLIS_SIGNING_KEY", key_path.display().to_string()));
    env.push(("PORTCULLIS_ISSUER", ISSUER.to_owned()));
    env.push(("PORTCULLIS_REFRESH_GRACE_SECS", "0".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (start(&env).await, start(&env).await, dir)
}

async fn json_login(client: &mut Client, addr: SocketAddr, user: &str) -> StatusCode {
    let answer = client
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": user, "password": format!("{user}-password")})),
            &[],
        )
        .await;
    if answer.status != StatusCode::OK {
        println!("login of {user} at {addr}: {} {}", answer.status, answer.body);
    }
    answer.status
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_races_have_one_winner_and_revocations_cross_instances() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    let (a, b, dir) = two_instances(&cluster, "race").await;
    races_and_propagation("the cluster", a.addr, b.addr).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_refresh_races_have_one_winner_and_revocations_cross_instances() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let (a, b, dir) = two_instances_on(&[("PORTCULLIS_DATABASE_URL", server.url())], "pg-race").await;
    races_and_propagation("PostgreSQL", a.addr, b.addr).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A refresh race between A and B has one winner (10 rounds), and a token
/// revoked on A is refused on B (50 rounds, propagation printed).
async fn races_and_propagation(on: &str, a: SocketAddr, b: SocketAddr) {
    // A refresh token spent on A and on B at once: one rotation, one reuse.
    for round in 0..10 {
        let grant = password_grant(a, "alice", "alice-password").await;
        let refresh = grant.json()["refresh_token"].as_str().expect("refresh").to_owned();
        let form = format!("grant_type=refresh_token&refresh_token={refresh}");
        let spend = |addr: SocketAddr| {
            let form = form.clone();
            async move {
                Client::default()
                    .call(addr, Method::POST, "/oauth/token", Body::Form(&form), &[])
                    .await
            }
        };
        let (on_a, on_b) = tokio::join!(spend(a), spend(b));
        let winners = [&on_a, &on_b]
            .iter()
            .filter(|answer| answer.status == StatusCode::OK)
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one winner: {} / {}",
            on_a.body, on_b.body
        );
        let loser = if on_a.status == StatusCode::OK { &on_b } else { &on_a };
        assert_eq!(loser.json()["error"], "invalid_grant", "round {round}: {}", loser.body);
    }

    // A token revoked on A is refused on B: the propagation, 50 rounds.
    let mut delays = Vec::new();
    for _ in 0..50 {
        let grant = password_grant(a, "bob", "bob-password").await;
        let access = grant.json()["access_token"].as_str().expect("access").to_owned();
        let mut api = Client {
            bearer: Some(access.clone()),
            ..Client::default()
        };
        assert_eq!(
            api.call(b, Method::GET, "/me", Body::None, &[]).await.status,
            StatusCode::OK
        );
        let revoke = Client::default()
            .call(
                a,
                Method::POST,
                "/oauth/revoke",
                Body::Form(&format!("token={access}")),
                &[],
            )
            .await;
        assert_eq!(revoke.status, StatusCode::OK);
        let revoked_at = Instant::now();
        loop {
            let answer = api.call(b, Method::GET, "/me", Body::None, &[]).await;
            if answer.status == StatusCode::UNAUTHORIZED {
                assert!(answer.body.contains("token revoked"), "{}", answer.body);
                break;
            }
            assert_eq!(answer.status, StatusCode::OK);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(5),
                "B never saw the revocation"
            );
        }
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    println!("revocation propagation A→B on {on} over HTTP, 50 rounds: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_secs(1), "a generous bound: p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_of_a_users_slot_under_load_is_only_200_or_503() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = RedisCluster::start();
    let (a, b, dir) = two_instances(&cluster, "failover").await;

    let mut devices = logged_in_devices(a.addr, b.addr).await;
    let alice = Principal::new(ISSUER, "alice");
    let slot_key = format!("{{portcullis:{}}}probe", Route::of(&alice));
    let doomed = cluster.primary_for(&slot_key);
    let load = Load::start(&devices[0].1, [a.addr, b.addr]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(doomed);
    let killed_at = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_failover_from(doomed, Duration::from_secs(30));
        cluster
    })
    .await
    .expect("wait for the failover");
    load.finish(
        &format!("cluster failover of primary {doomed} (alice's slot)"),
        killed_at,
    )
    .await;
    every_session_still_works(&mut devices, [a.addr, b.addr]).await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_is_only_200_or_503() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut setup = RedisSentinel::start();
    let env = [
        ("PORTCULLIS_REDIS_SENTINEL", setup.sentinel_urls().join(",")),
        ("PORTCULLIS_REDIS_SENTINEL_MASTER", RedisSentinel::MASTER.to_owned()),
    ];
    let (a, b, dir) = two_instances_on(&env, "sentinel").await;
    let mut devices = logged_in_devices(a.addr, b.addr).await;
    let load = Load::start(&devices[0].1, [a.addr, b.addr]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = setup.kill_primary();
    let killed_at = Instant::now();
    let setup = tokio::task::spawn_blocking(move || {
        setup.wait_failover_from(old, Duration::from_secs(30));
        setup
    })
    .await
    .expect("wait for the failover");
    load.finish(&format!("sentinel failover of primary {old}"), killed_at)
        .await;
    every_session_still_works(&mut devices, [a.addr, b.addr]).await;
    drop(setup);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sessions written (and acknowledged by a replica) before a failover:
/// alice on several devices through A and B, bob too.
async fn logged_in_devices(a: SocketAddr, b: SocketAddr) -> Vec<(String, Client)> {
    let mut devices = Vec::new();
    for n in 0..8 {
        for user in ["alice", "bob"] {
            let mut device = Client::default();
            let addr = if n % 2 == 0 { a } else { b };
            assert_eq!(json_login(&mut device, addr, user).await, StatusCode::OK);
            devices.push((user.to_owned(), device));
        }
    }
    devices
}

/// Every session written before the failover still works, on both.
async fn every_session_still_works(devices: &mut [(String, Client)], addrs: [SocketAddr; 2]) {
    for (user, device) in devices {
        for addr in addrs {
            let me = device.call(addr, Method::GET, "/me", Body::None, &[]).await;
            assert_eq!(
                me.status,
                StatusCode::OK,
                "{user}'s session survived on {addr}: {} {:?}",
                me.body,
                std::time::SystemTime::now()
            );
            assert_eq!(me.json()["subject"], user.as_str());
        }
    }
}

/// 4 clients on one cookie, alternating between two instances, bounded
/// in count and time; each asserts every answer is a 200 for its user or
/// a 503 that names no address.
struct Load {
    clients: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<Mutex<BTreeMap<u16, u64>>>,
    last_failure: Arc<Mutex<Option<Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Load {
    fn start(device: &Client, targets: [SocketAddr; 2]) -> Self {
        let tally: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
        let last_failure: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let clients = (0..4u64)
            .map(|n| {
                let (tally, last_failure, stop) = (tally.clone(), last_failure.clone(), stop.clone());
                let mut client = Client {
                    cookies: device.cookies.clone(),
                    ..Client::default()
                };
                tokio::spawn(async move {
                    let mut sent = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && sent < 40_000
                        && started.elapsed() < Duration::from_secs(90)
                    {
                        let target = targets[usize::try_from(sent + n).unwrap_or(0) % 2];
                        let answer = client.call(target, Method::GET, "/me", Body::None, &[]).await;
                        let status = answer.status;
                        assert!(
                            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                            "only 200 or 503 during a failover, got {status}: {}",
                            answer.body
                        );
                        if status == StatusCode::OK {
                            assert_eq!(answer.json()["subject"], "alice", "{}", answer.body);
                        } else {
                            assert!(
                                !answer.body.contains("127.0.0.1") && !answer.body.contains("redis://"),
                                "a 503 names no address: {}",
                                answer.body
                            );
                            *last_failure.lock().expect("lock") = Some(Instant::now());
                        }
                        *tally.lock().expect("lock").entry(status.as_u16()).or_insert(0) += 1;
                        sent += 1;
                    }
                })
            })
            .collect();
        Self {
            clients,
            tally,
            last_failure,
            stop,
        }
    }

    /// After the promotion: runs on until two seconds pass without a 503
    /// (at most 15 s), stops, and checks recovery came within 5 s of the
    /// promotion.
    async fn finish(self, what: &str, killed_at: Instant) {
        let promoted_after = killed_at.elapsed();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let quiet_since = self.last_failure.lock().expect("lock").unwrap_or(killed_at);
            if quiet_since.elapsed() > Duration::from_secs(2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: requests never recovered after the promotion"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in self.clients {
            client.await.expect("a client saw only 200 or 503");
        }
        let recovered_after = self
            .last_failure
            .lock()
            .expect("lock")
            .map_or(Duration::ZERO, |at| at.duration_since(killed_at));
        let tally = self.tally.lock().expect("lock").clone();
        println!(
            "{what}: serving again (promoted or restarted) after {promoted_after:?}, last 503 at {recovered_after:?} after the kill; answers {tally:?}"
        );
        assert!(tally.get(&200).is_some_and(|&ok| ok > 20), "the load ran: {tally:?}");
        assert!(
            recovered_after < promoted_after + Duration::from_secs(5),
            "{what}: recovered within 5 s of the promotion"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_and_restarted_under_load_is_only_200_or_503_and_keeps_everything() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let (a, b, dir) = two_instances_on(&[("PORTCULLIS_DATABASE_URL", server.url())], "pg-kill").await;
    let mut devices = logged_in_devices(a.addr, b.addr).await;
    // A refresh family written before the crash, too.
    let grant = password_grant(a.addr, "alice", "alice-password").await;
    let refresh = grant.json()["refresh_token"].as_str().expect("refresh").to_owned();
    let load = Load::start(&devices[0].1, [a.addr, b.addr]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut server = server;
    let killed_at = Instant::now();
    let server = tokio::task::spawn_blocking(move || {
        server.kill();
        std::thread::sleep(Duration::from_secs(1));
        server.restart();
        server
    })
    .await
    .expect("kill and restart");
    load.finish("PostgreSQL killed (SIGKILL) and restarted", killed_at)
        .await;
    every_session_still_works(&mut devices, [a.addr, b.addr]).await;
    let rotated = Client::default()
        .call(
            b.addr,
            Method::POST,
            "/oauth/token",
            Body::Form(&format!("grant_type=refresh_token&refresh_token={refresh}")),
            &[],
        )
        .await;
    assert_eq!(
        rotated.status,
        StatusCode::OK,
        "the family survived the crash: {}",
        rotated.body
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
