//! Revocation and refresh tokens on a real redis-server: the conformance
//! suites, propagation between two app instances over loopback HTTP, the
//! feed-loss policies, and catching up after a partition.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;
use portcullis::Identity;
use portcullis::jwt::{JwtIssuer, JwtLayer, SigningKey, Validation, VerifyingKey};
use portcullis::redis::{
    FeedLossPolicy, RedisRefreshStore, RedisRevocationStore, ReplicatedRevocationStore, ReplicationOptions,
};
use portcullis::revocation::{RefreshTokens, RevocationLayer, Revocations};
use portcullis_tests::redis_server::RedisServer;
use portcullis_tests::{Partition, get as http_get, send};

const ISS: &str = "https://auth.test";
const AUD: &str = "notes-api";

/// The writer store, asked on every check, against the RevocationStore
/// contract: one test per rule, each on its own server.
mod direct_revocation_store {
    use super::*;

    portcullis::revocation::revocation_store_conformance!(async {
        let server = RedisServer::start();
        let store = RedisRevocationStore::connect(&server.url()).await.expect("connect");
        let store: Arc<dyn portcullis::revocation::RevocationStore> = Arc::new(store);
        (store, server)
    });
}

/// The replicated store, checked against its local mirror.
mod replicated_revocation_store {
    use super::*;

    portcullis::revocation::revocation_store_conformance!(async {
        let server = RedisServer::start();
        let store = ReplicatedRevocationStore::start(&server.url(), ReplicationOptions::default())
            .await
            .expect("start");
        let store: Arc<dyn portcullis::revocation::RevocationStore> = Arc::new(store);
        (store, server)
    });
}

/// The refresh-family store against the RefreshStore contract.
mod refresh_store {
    use super::*;

    portcullis::refresh::refresh_store_conformance!(async {
        let server = RedisServer::start();
        let store = RedisRefreshStore::connect(&server.url()).await.expect("connect");
        let store: Arc<dyn portcullis::refresh::RefreshStore> = Arc::new(store);
        (store, server)
    });
}

/// One app instance: JwtLayer → RevocationLayer → `/me`, and `/logout`,
/// which revokes the caller's own token.
async fn instance(key: VerifyingKey, store: Arc<ReplicatedRevocationStore>) -> SocketAddr {
    let revocations = Revocations::new(store);
    let jwt = JwtLayer::new(key, Validation::new().issuer(ISS).audience(AUD)).expect("jwt layer");
    let logout = {
        let revocations = revocations.clone();
        move |identity: Identity| async move {
            match revocations.revoke_identity(&identity).await {
                Ok(true) => StatusCode::NO_CONTENT,
                Ok(false) => StatusCode::BAD_REQUEST,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    let router = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .route("/logout", post(logout))
        .layer(
            tower::ServiceBuilder::new()
                .layer(jwt)
                .layer(RevocationLayer::new(&revocations)),
        );
    portcullis_tests::spawn_axum(router).await
}

async fn post_bearer(addr: SocketAddr, path: &str, token: &str) -> StatusCode {
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    send(request).await.status
}

fn options(policy: FeedLossPolicy) -> ReplicationOptions {
    let mut options = ReplicationOptions::default();
    options.policy = policy;
    options.max_staleness = Duration::from_millis(600);
    options.heartbeat = Duration::from_millis(100);
    options
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_reaches_the_other_within_milliseconds() {
    let server = RedisServer::start();
    let key = SigningKey::generate_ed25519().expect("key");
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, ISS, AUD);
    let url = server.url();
    let store_a = Arc::new(
        ReplicatedRevocationStore::start(&url, ReplicationOptions::default())
            .await
            .expect("a"),
    );
    let store_b = Arc::new(
        ReplicatedRevocationStore::start(&url, ReplicationOptions::default())
            .await
            .expect("b"),
    );
    let a = instance(verifying.clone(), store_a).await;
    let b = instance(verifying, store_b.clone()).await;

    let mut delays = Vec::new();
    for _ in 0..40 {
        let token = issuer.mint("alice", ["notes:read"]).expect("mint");
        assert_eq!(http_get(b, "/me", Some(&token)).await.body, "alice");
        assert_eq!(post_bearer(a, "/logout", &token).await, StatusCode::NO_CONTENT);
        let revoked_at = Instant::now();
        let deadline = revoked_at + Duration::from_secs(5);
        loop {
            let answer = http_get(b, "/me", Some(&token)).await;
            if answer.status == StatusCode::UNAUTHORIZED {
                assert!(answer.header("www-authenticate").contains("token revoked"));
                break;
            }
            assert_eq!(answer.status, StatusCode::OK);
            assert!(Instant::now() < deadline, "instance B never saw the revocation");
        }
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    let mirror = store_b.stats();
    let mut feed = mirror.recent_delays.clone();
    feed.sort();
    println!(
        "propagation A→B over HTTP (revoke answered → B rejects), {} runs: p50 {p50:?}, p99 {p99:?}; \
         feed delay at B (Redis entry → mirror): p50 {:?}, p99 {:?}",
        delays.len(),
        percentile(&feed, 0.5),
        percentile(&feed, 0.99),
    );
    assert!(p99 < Duration::from_secs(1), "a generous bound: p99 {p99:?}");
    assert!(mirror.applied >= 40, "B applied the feed: {mirror:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_loss_policies_and_catching_up_after_a_partition() {
    let server = RedisServer::start();
    let key = SigningKey::generate_ed25519().expect("key");
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, ISS, AUD);
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().expect("addr");
    let closed_link = Partition::to(upstream).await;
    let open_link = Partition::to(upstream).await;

    // A writes straight to Redis; C (fail closed) and O (fail open) follow
    // it through links the test can cut.
    let store_a = Arc::new(
        ReplicatedRevocationStore::start(&server.url(), options(FeedLossPolicy::FailClosed))
            .await
            .expect("a"),
    );
    let store_c = Arc::new(
        ReplicatedRevocationStore::start(&closed_link.redis_url(), options(FeedLossPolicy::FailClosed))
            .await
            .expect("c"),
    );
    let store_o = Arc::new(
        ReplicatedRevocationStore::start(&open_link.redis_url(), options(FeedLossPolicy::FailOpen))
            .await
            .expect("o"),
    );
    let a = instance(verifying.clone(), store_a).await;
    let c = instance(verifying.clone(), store_c.clone()).await;
    let o = instance(verifying, store_o.clone()).await;

    let doomed = issuer.mint("alice", ["notes:read"]).expect("mint");
    let innocent = issuer.mint("bob", ["notes:read"]).expect("mint");
    for node in [a, c, o] {
        assert_eq!(http_get(node, "/me", Some(&doomed)).await.status, StatusCode::OK);
    }

    closed_link.cut();
    open_link.cut();
    // Revoked while C and O are cut off, through the connected instance A.
    assert_eq!(post_bearer(a, "/logout", &doomed).await, StatusCode::NO_CONTENT);
    assert_eq!(http_get(a, "/me", Some(&doomed)).await.status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(900)).await;

    // Past the allowed staleness: C refuses with a 503 naming the reason…
    let refused = http_get(c, "/me", Some(&innocent)).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "fail closed");
    assert!(
        refused.body.contains("revocation store unavailable"),
        "{}",
        refused.body
    );
    assert!(!store_c.stats().connected);
    // …while O answers from its stale mirror: it has not seen the revocation.
    assert_eq!(
        http_get(o, "/me", Some(&innocent)).await.status,
        StatusCode::OK,
        "fail open"
    );
    assert_eq!(
        http_get(o, "/me", Some(&doomed)).await.status,
        StatusCode::OK,
        "fail open serves stale answers, knowingly"
    );

    // Links back: both resynchronize and catch the revocation they missed.
    closed_link.restore();
    open_link.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in [c, o] {
        loop {
            let answer = http_get(node, "/me", Some(&doomed)).await;
            if answer.status == StatusCode::UNAUTHORIZED {
                assert!(answer.header("www-authenticate").contains("token revoked"));
                break;
            }
            assert!(Instant::now() < deadline, "{node} never caught up: {}", answer.status);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(http_get(node, "/me", Some(&innocent)).await.body, "bob");
    }
    let stats = store_c.stats();
    assert!(
        stats.catch_ups >= 1 && stats.gaps == 0,
        "C read on from its last entry after the partition (the stream still held it): {stats:?}"
    );
    assert!(stats.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_trimmed_past_the_last_entry_seen_is_a_detected_gap_and_a_reload() {
    let server = RedisServer::start();
    let key = SigningKey::generate_ed25519().expect("key");
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, ISS, AUD);
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().expect("addr");
    let link = Partition::to(upstream).await;
    let store_a = Arc::new(
        ReplicatedRevocationStore::start(&server.url(), options(FeedLossPolicy::FailClosed))
            .await
            .expect("a"),
    );
    let store_c = Arc::new(
        ReplicatedRevocationStore::start(&link.redis_url(), options(FeedLossPolicy::FailClosed))
            .await
            .expect("c"),
    );
    let a = instance(verifying.clone(), store_a).await;
    let c = instance(verifying, store_c.clone()).await;
    let doomed = issuer.mint("alice", ["notes:read"]).expect("mint");
    assert_eq!(http_get(c, "/me", Some(&doomed)).await.status, StatusCode::OK);
    let before = store_c.stats();

    link.cut();
    assert_eq!(post_bearer(a, "/logout", &doomed).await, StatusCode::NO_CONTENT);
    // The stream loses everything C has not read: trimmed to nothing.
    let client = redis::Client::open(server.url()).expect("client");
    let mut raw = client.get_multiplexed_async_connection().await.expect("connect");
    let trimmed: i64 = redis::cmd("XTRIM")
        .arg("{portcullis:rev}feed")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut raw)
        .await
        .expect("xtrim");
    assert!(trimmed >= 1, "the revocation's feed entry is gone");
    link.restore();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http_get(c, "/me", Some(&doomed)).await;
        if answer.status == StatusCode::UNAUTHORIZED {
            assert!(answer.header("www-authenticate").contains("token revoked"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C never learnt of the revocation: {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = store_c.stats();
    assert!(after.gaps > before.gaps, "the gap was detected: {after:?}");
    assert!(after.resyncs > before.resyncs, "and the hash reloaded: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_the_mirror_recovers_and_keeps_what_it_knew() {
    let mut server = RedisServer::start();
    let key = SigningKey::generate_ed25519().expect("key");
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, ISS, AUD);
    let store = Arc::new(
        ReplicatedRevocationStore::start(&server.url(), options(FeedLossPolicy::FailClosed))
            .await
            .expect("start"),
    );
    let node = instance(verifying, store.clone()).await;
    let revoked = issuer.mint("alice", ["notes:read"]).expect("mint");
    let fine = issuer.mint("bob", ["notes:read"]).expect("mint");
    assert_eq!(post_bearer(node, "/logout", &revoked).await, StatusCode::NO_CONTENT);

    server.kill();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let down = http_get(node, "/me", Some(&fine)).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "fail closed while Redis is gone"
    );
    let rejection = down.json();
    assert!(
        rejection.to_string().contains("revocation store unavailable"),
        "{rejection}"
    );
    // Revoking while Redis is down is an error the caller sees (a 503).
    let other = issuer.mint("carol", ["notes:read"]).expect("mint");
    assert_eq!(
        post_bearer(node, "/logout", &other).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Redis comes back empty (no persistence): the mirror recovers by
    // itself and still knows the revocations it had.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(node, "/me", Some(&fine)).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the mirror never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = http_get(node, "/me", Some(&revoked)).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "a revocation survives Redis losing it"
    );
    assert!(answer.header("www-authenticate").contains("token revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_on_redis_shared_by_two_engines() {
    let server = RedisServer::start();
    let key = SigningKey::generate_ed25519().expect("key");
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, ISS, AUD);
    let revocations = Revocations::new(Arc::new(
        ReplicatedRevocationStore::start(&server.url(), ReplicationOptions::default())
            .await
            .expect("start"),
    ));
    let engine = |grace: Duration| {
        let url = server.url();
        let issuer = issuer.clone();
        let revocations = revocations.clone();
        async move {
            let store = RedisRefreshStore::connect(&url).await.expect("connect");
            RefreshTokens::builder(Arc::new(store), issuer, &[3; 32])
                .revocations(&revocations)
                .grace(grace)
                .build()
                .expect("engine")
        }
    };
    let (one, two) = (
        engine(Duration::from_secs(5)).await,
        engine(Duration::from_secs(5)).await,
    );
    let node = instance(
        verifying,
        Arc::new(
            ReplicatedRevocationStore::start(&server.url(), ReplicationOptions::default())
                .await
                .expect("start"),
        ),
    )
    .await;

    let login = one.issue("alice", ["notes:read"]).await.expect("issue");
    let rotated = two
        .refresh(&login.refresh_token)
        .await
        .expect("rotate on the other instance");
    let retry = one.refresh(&login.refresh_token).await.expect("honest retry");
    assert_eq!(retry.refresh_token, rotated.refresh_token, "same successor on retry");
    assert_eq!(http_get(node, "/me", Some(&rotated.access_token)).await.body, "alice");

    // Reuse past the grace window (a zero-grace engine sees any second use as one).
    let strict = engine(Duration::ZERO).await;
    let replay = strict.refresh(&login.refresh_token).await;
    assert!(replay.is_err(), "a replay is refused");
    assert!(
        two.refresh(&rotated.refresh_token).await.is_err(),
        "the successor stops working too"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(node, "/me", Some(&rotated.access_token)).await.status != StatusCode::UNAUTHORIZED {
        assert!(Instant::now() < deadline, "the family's access token was never cut off");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Concurrent double use across two engines: exactly one winner.
    let fresh = one.issue("bob", ["notes:read"]).await.expect("issue");
    let (strict_one, strict_two) = (engine(Duration::ZERO).await, engine(Duration::ZERO).await);
    let attempts: Vec<_> = (0..8)
        .map(|n| {
            let engine = if n % 2 == 0 {
                strict_one.clone()
            } else {
                strict_two.clone()
            };
            let token = fresh.refresh_token.clone();
            tokio::spawn(async move { engine.refresh(&token).await })
        })
        .collect();
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.expect("join").is_ok() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "one token, one rotation, across instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_of_the_layout_before_the_cluster_one_are_still_honoured() {
    use portcullis::revocation::{RevocationStore, Revoked};
    let server = RedisServer::start();
    // A revocation as the previous version wrote it: `portcullis:rev:entries`.
    let client = redis::Client::open(server.url()).expect("client");
    let mut raw = client.get_multiplexed_async_connection().await.expect("connect");
    let expires = std::time::SystemTime::now() + Duration::from_secs(600);
    let expires_ms = expires
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64;
    let revocation = portcullis::revocation::Revocation::token(ISS, "old-jti", expires);
    let field = portcullis::revocation::store_support::encode_target(&revocation.target);
    let _: i64 = redis::cmd("HSET")
        .arg("portcullis:rev:entries")
        .arg(&field)
        .arg(format!("0:{expires_ms}"))
        .query_async(&mut raw)
        .await
        .expect("hset");

    let store = ReplicatedRevocationStore::start(&server.url(), ReplicationOptions::default())
        .await
        .expect("start");
    let identity = portcullis::Identity::builder(
        "alice",
        portcullis::AuthMethod::bearer(Some("old-jti".into()), Some(ISS.into())),
    )
    .build();
    assert_eq!(
        store.check(identity).await.expect("check"),
        Some(Revoked::Token),
        "a token revoked before the upgrade stays revoked after it"
    );
}
