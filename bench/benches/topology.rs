//! SessionLayer on one Redis and on a Redis Cluster (3 primaries, 3
//! replicas), side by side in one run: a logged-in request that reads one
//! value, and one that writes one. Each goes through a whole axum router
//! in process, over a real loopback connection to Redis; the cluster row
//! costs the same single round trip (one script on the session's primary),
//! plus the cluster client's routing.
//!
//! Starts its own `redis-server` processes on free loopback ports
//! (Debian: `apt-get install redis-server redis-tools`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::redis::{RedisOptions, RedisServers, RedisSessionStore};
use portcullis::session::{Session, SessionLayer, SessionStore};
use portcullis_bench::stacks::{get_request, seed};
use portcullis_bench::start_redis;
use portcullis_tests::redis_cluster::RedisCluster;
use tower::ServiceExt;

/// Every write sets a new value, so the layer must save it.
static NEXT: AtomicU64 = AtomicU64::new(1);

fn router(store: Arc<dyn SessionStore>) -> axum::Router {
    axum::Router::new()
        .route(
            "/seed",
            get(|s: Session| async move {
                s.login("alice", ["notes:read"]);
                s.insert("counter", &"0")
                    .map(|_| "ok")
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .route(
            "/read",
            get(|s: Session| async move { s.get::<String>("counter").ok().flatten().unwrap_or_default() }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                s.insert("counter", &NEXT.fetch_add(1, Ordering::Relaxed).to_string())
                    .map(|_| "ok")
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .layer(SessionLayer::new(store).insecure_http())
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (_redis, url) = start_redis();
    let cluster = RedisCluster::start();
    let single: Arc<dyn SessionStore> = Arc::new(runtime.block_on(RedisSessionStore::connect(&url)).expect("redis"));
    let clustered: Arc<dyn SessionStore> = Arc::new(
        runtime
            .block_on(RedisSessionStore::connect_with(
                RedisServers::cluster(cluster.seeds()),
                RedisOptions::default(),
            ))
            .expect("cluster"),
    );
    let stacks: Vec<(&str, axum::Router)> = vec![("single_node", router(single)), ("cluster", router(clustered))];
    let cookies: Vec<_> = stacks.iter().map(|(_, app)| runtime.block_on(seed(app)).0).collect();
    for path in ["/read", "/write"] {
        let mut group = c.benchmark_group(format!("redis_session{}", path.replace('/', "_")));
        for ((name, app), cookie) in stacks.iter().zip(&cookies) {
            group.bench_function(*name, |b| {
                b.to_async(&runtime).iter(|| async {
                    let response = app.clone().oneshot(get_request(path, cookie)).await.expect("response");
                    assert!(response.status().is_success(), "{}", response.status());
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
