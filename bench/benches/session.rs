//! SessionLayer against tower-sessions, both on their in-memory stores,
//! side by side: a request that reads one value from an existing session,
//! and one that writes one value to it. Each goes through a whole axum
//! router in process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every write sets a new value, so both layers must save it.
static NEXT: AtomicU64 = AtomicU64::new(1);
use std::time::Duration;

use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use portcullis_bench::stacks::{get_request, seed};
use tower::ServiceExt;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");

    let ours = axum::Router::new()
        .route(
            "/seed",
            get(|s: Session| async move {
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
        .layer(SessionLayer::new(Arc::new(MemoryStore::new())));
    let our_cookie = runtime.block_on(seed(&ours)).0;

    let theirs = axum::Router::new()
        .route(
            "/seed",
            get(|s: tower_sessions::Session| async move {
                s.insert("counter", "0")
                    .await
                    .map(|_| "ok")
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .route(
            "/read",
            get(|s: tower_sessions::Session| async move {
                s.get::<String>("counter").await.ok().flatten().unwrap_or_default()
            }),
        )
        .route(
            "/write",
            get(|s: tower_sessions::Session| async move {
                s.insert("counter", NEXT.fetch_add(1, Ordering::Relaxed).to_string())
                    .await
                    .map(|_| "ok")
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .layer(tower_sessions::SessionManagerLayer::new(
            tower_sessions::MemoryStore::default(),
        ));
    let their_cookie = runtime.block_on(seed(&theirs)).0;

    for path in ["/read", "/write"] {
        let mut group = c.benchmark_group(format!("session{}", path.replace('/', "_")));
        group.bench_function("portcullis_memory", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = ours
                    .clone()
                    .oneshot(get_request(path, &our_cookie))
                    .await
                    .expect("response");
                assert!(response.status().is_success());
            })
        });
        group.bench_function("tower_sessions_memory", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = theirs
                    .clone()
                    .oneshot(get_request(path, &their_cookie))
                    .await
                    .expect("response");
                assert!(response.status().is_success());
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
