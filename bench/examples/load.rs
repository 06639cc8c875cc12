//! End-to-end load over loopback HTTP: requests/s and p50/p99 latency for
//! a bare axum server, the same behind JwtLayer + RevocationLayer, and
//! behind SessionLayer + CsrfLayer (memory, Redis, Redis Cluster). Bounded: 16
//! connections for 5 s per stack (`LOAD_SECS`), loopback only. Client and
//! server share the machine's cores, so absolute numbers are a floor.
//! Writes the table to `target/load.md` for `report.py`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::redis::{RedisOptions, RedisServers, RedisSessionStore};
use portcullis::revocation::{MemoryRevocationStore, RevocationLayer, Revocations};
use portcullis::session::{MemoryStore, Session, SessionLayer, SessionStore};
use portcullis::{JwtIssuer, JwtLayer, SigningKey, Validation};
use portcullis_bench::start_redis;
use portcullis_tests::redis_cluster::RedisCluster;
use tower::ServiceBuilder;

const CONNECTIONS: usize = 16;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Drives `make_request` from `CONNECTIONS` tasks for `seconds`.
async fn drive(
    addr: SocketAddr,
    seconds: u64,
    make_request: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync>,
) -> (f64, Duration, Duration) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, make_request) = (client.clone(), make_request.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline && latencies.len() < 2_000_000 {
                    let started = Instant::now();
                    let response = client.request(make_request(addr)).await.expect("answer");
                    assert!(response.status().is_success(), "{}", response.status());
                    let _ = response.into_body().collect().await;
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    all.sort();
    let rate = all.len() as f64 / seconds as f64;
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

async fn session_stack(store: Arc<dyn SessionStore>) -> (SocketAddr, HeaderValue, String) {
    let router = Router::new()
        .route(
            "/seed",
            get(|s: Session, t: axum::Extension<CsrfToken>| async move {
                s.login("alice", ["notes:write"]);
                t.0.value().unwrap_or_default()
            }),
        )
        .route("/notes", post(|| async { "ok" }))
        .layer(
            ServiceBuilder::new()
                .layer(SessionLayer::new(store).insecure_http())
                .layer(CsrfLayer::new().insecure_http()),
        );
    let addr = serve(router).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let response = client
        .request(
            Request::get(format!("http://{addr}/seed"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("seed");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let token =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");
    (addr, HeaderValue::from_str(&cookie).expect("cookie"), token)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Both jsonwebtoken backends are on in this crate: pick one, once.
    portcullis::jwt::install_crypto_provider().expect("first install");
    let seconds: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rows = Vec::new();

    // Bare axum.
    let bare = serve(Router::new().route("/me", get(|| async { "alice" }))).await;
    let plain: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(|addr| {
        Request::get(format!("http://{addr}/me"))
            .body(Body::empty())
            .expect("request")
    });
    rows.push(("bare axum", drive(bare, seconds, plain).await));

    // JwtLayer + RevocationLayer, one token reused (the cache's case).
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), "https://iss", "aud");
    let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
    let jwt = JwtLayer::new(
        issuer.verifying_key(),
        Validation::new().issuer("https://iss").audience("aud"),
    )
    .expect("jwt");
    let protected = serve(
        Router::new().route("/me", get(|| async { "alice" })).layer(
            ServiceBuilder::new()
                .layer(jwt)
                .layer(RevocationLayer::new(&revocations)),
        ),
    )
    .await;
    let bearer = format!("Bearer {}", issuer.mint("alice", ["x"]).expect("mint"));
    let with_token: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(move |addr| {
        Request::get(format!("http://{addr}/me"))
            .header("authorization", bearer.as_str())
            .body(Body::empty())
            .expect("request")
    });
    rows.push((
        "JwtLayer + RevocationLayer (EdDSA, cached)",
        drive(protected, seconds, with_token).await,
    ));

    // SessionLayer + CsrfLayer, a protected POST, memory then Redis.
    let (_redis, url) = start_redis();
    let redis_store: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::connect(&url).await.expect("redis"));
    // A 3-primary, 3-replica cluster (blocking setup, off the runtime).
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("cluster");
    let cluster_store: Arc<dyn SessionStore> = Arc::new(
        RedisSessionStore::connect_with(RedisServers::cluster(cluster.seeds()), RedisOptions::default())
            .await
            .expect("cluster"),
    );
    for (label, store) in [
        (
            "SessionLayer + CsrfLayer, POST (memory)",
            Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>,
        ),
        ("SessionLayer + CsrfLayer, POST (Redis)", redis_store),
        ("SessionLayer + CsrfLayer, POST (Redis Cluster)", cluster_store),
    ] {
        let (addr, cookie, token) = session_stack(store).await;
        let post: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(move |addr| {
            Request::post(format!("http://{addr}/notes"))
                .header("cookie", cookie.clone())
                .header("host", addr.to_string())
                .header("sec-fetch-site", "same-origin")
                .header("x-csrf-token", token.as_str())
                .body(Body::from("note=hi"))
                .expect("request")
        });
        rows.push((label, drive(addr, seconds, post).await));
    }

    let mut table = format!(
        "### End to end over loopback ({CONNECTIONS} connections, {seconds} s each)\n\n| stack | requests/s | p50 | p99 |\n|---|---|---|---|\n"
    );
    for (label, (rate, p50, p99)) in &rows {
        table.push_str(&format!("| {label} | {rate:.0} | {p50:?} | {p99:?} |\n"));
    }
    println!("{table}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    std::fs::write(format!("{target}/load.md"), table).expect("write load.md");
}
