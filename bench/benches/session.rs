//! SessionLayer against tower-sessions, both on their in-memory stores,
//! side by side: a request that reads one value from an existing session,
//! and one that writes one value to it. Each goes through a whole axum
//! router in process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every write sets a new value, so both layers must save it.
static NEXT: AtomicU64 = AtomicU64::new(1);
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, header::COOKIE};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use tower::ServiceExt;

fn request(path: &str, cookie: &HeaderValue) -> Request<Body> {
    let mut request = Request::get(path).body(Body::empty()).expect("request");
    request.headers_mut().insert(COOKIE, cookie.clone());
    request
}

/// Calls `/seed` once and returns the cookie it set.
async fn seed(app: &axum::Router) -> HeaderValue {
    let response = app
        .clone()
        .oneshot(Request::get("/seed").body(Body::empty()).expect("request"))
        .await
        .expect("seed");
    let set = response.headers()["set-cookie"].to_str().expect("ascii");
    HeaderValue::from_str(set.split(';').next().expect("pair")).expect("cookie")
}

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
    let our_cookie = runtime.block_on(seed(&ours));

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
    let their_cookie = runtime.block_on(seed(&theirs));

    for path in ["/read", "/write"] {
        let mut group = c.benchmark_group(format!("session{}", path.replace('/', "_")));
        group.bench_function("portcullis_memory", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = ours
                    .clone()
                    .oneshot(request(path, &our_cookie))
                    .await
                    .expect("response");
                assert!(response.status().is_success());
            })
        });
        group.bench_function("tower_sessions_memory", |b| {
            b.to_async(&runtime).iter(|| async {
                let response = theirs
                    .clone()
                    .oneshot(request(path, &their_cookie))
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
