//! Redis killed and restarted during load: cookie requests answer 200 or
//! 503 (never a silent logout), every session Redis still holds works
//! again afterwards, and a revoked token is never accepted under
//! fail-closed. Bounded: 4 clients, about 6 s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use portcullis::Identity;
use portcullis::jwt::{JwtIssuer, JwtLayer, SigningKey, Validation};
use portcullis::redis::{FeedLossPolicy, RedisSessionStore, ReplicatedRevocationStore, ReplicationOptions};
use portcullis::revocation::{RevocationLayer, Revocations};
use portcullis::session::{Session, SessionLayer};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::redis_server::RedisServer;
use portcullis_tests::spawn_axum;
use tower::ServiceBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load() {
    let mut server = RedisServer::start_persistent();
    let url = server.url();
    let key = SigningKey::generate_ed25519().expect("key");
    let verifying = key.verifying_key();
    let issuer = JwtIssuer::new(key, "https://iss", "aud");
    let mut options = ReplicationOptions::default();
    options.policy = FeedLossPolicy::FailClosed;
    options.max_staleness = Duration::from_millis(500);
    options.heartbeat = Duration::from_millis(100);
    let revocations = Revocations::new(Arc::new(
        ReplicatedRevocationStore::start(&url, options).await.expect("mirror"),
    ));
    let sessions =
        SessionLayer::new(Arc::new(RedisSessionStore::connect(&url).await.expect("sessions"))).insecure_http();
    let jwt = JwtLayer::new(verifying, Validation::new().issuer("https://iss").audience("aud"))
        .expect("jwt")
        .optional();
    let router = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .route(
            "/login/{user}",
            post(
                |session: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    session.login(user, ["x"]);
                    "ok"
                },
            ),
        )
        .layer(
            ServiceBuilder::new()
                .layer(sessions)
                .layer(jwt)
                .layer(RevocationLayer::new(&revocations)),
        );
    let addr = spawn_axum(router).await;

    let mut devices = Vec::new();
    for n in 0..20 {
        let mut device = Client::default();
        let login = device
            .call(addr, Method::POST, &format!("/login/user{n}"), Body::None, &[])
            .await;
        assert_eq!(login.status, StatusCode::OK);
        devices.push(Arc::new(tokio::sync::Mutex::new(device)));
    }
    let revoked = issuer.mint("mallory", ["x"]).expect("mint");
    let identity = JwtLayer::new(
        issuer.verifying_key(),
        Validation::new().issuer("https://iss").audience("aud"),
    )
    .expect("layer")
    .verifier()
    .verify(&revoked)
    .expect("verify");
    assert!(revocations.revoke_identity(&identity).await.expect("revoke"));

    let tally: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..4usize)
        .map(|worker| {
            let (devices, tally, revoked) = (devices.clone(), tally.clone(), revoked.clone());
            tokio::spawn(async move {
                let mut n = worker;
                while Instant::now() < deadline {
                    let device = devices[n % devices.len()].clone();
                    let status = device
                        .lock()
                        .await
                        .call(addr, Method::GET, "/me", Body::None, &[])
                        .await
                        .status;
                    assert!(
                        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                        "a cookie request got {status}: never a silent logout"
                    );
                    let mut attacker = Client {
                        bearer: Some(revoked.clone()),
                        ..Client::default()
                    };
                    let bearer = attacker.call(addr, Method::GET, "/me", Body::None, &[]).await.status;
                    assert_ne!(bearer, StatusCode::OK, "a revoked token was accepted");
                    let mut tally = tally.lock().expect("lock");
                    *tally.entry(format!("cookie {}", status.as_u16())).or_default() += 1;
                    *tally.entry(format!("revoked {}", bearer.as_u16())).or_default() += 1;
                    n += 4;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    server.restart();
    for client in clients {
        client.await.expect("a client saw a forbidden answer");
    }
    let tally = tally.lock().expect("lock").clone();
    println!("{tally:#?}");
    assert!(
        tally.get("cookie 503").copied().unwrap_or(0) > 0,
        "the outage was seen: {tally:?}"
    );

    // Every session Redis still holds (it persisted them) works again.
    for device in &devices {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = device
                .lock()
                .await
                .call(addr, Method::GET, "/me", Body::None, &[])
                .await;
            if answer.status == StatusCode::OK {
                assert!(answer.body.starts_with("user"), "{}", answer.body);
                break;
            }
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
            assert!(Instant::now() < deadline, "a session never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut attacker = Client {
        bearer: Some(revoked),
        ..Client::default()
    };
    assert_eq!(
        attacker.call(addr, Method::GET, "/me", Body::None, &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}
