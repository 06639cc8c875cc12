//! Interleaved min-of-batches timing of the session read/write paths,
//! a noise-resistant cross-check of the criterion numbers on a busy VM.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every write sets a new value, so both layers must save it.
static NEXT: AtomicU64 = AtomicU64::new(1);
use std::time::{Duration, Instant};

use axum::routing::get;
use http::HeaderValue;
use portcullis::session::{MemoryStore, Session, SessionLayer};
use portcullis_bench::stacks::{get_request, seed};
use tower::ServiceExt;

async fn batch(app: &axum::Router, path: &str, cookie: &HeaderValue, n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let response = app.clone().oneshot(get_request(path, cookie)).await.expect("response");
        assert!(response.status().is_success());
    }
    start.elapsed() / n
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
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
    let (oc, tc) = (seed(&ours).await.0, seed(&theirs).await.0);
    for path in ["/read", "/write"] {
        let (mut best_ours, mut best_theirs) = (Duration::MAX, Duration::MAX);
        for _ in 0..30 {
            best_ours = best_ours.min(batch(&ours, path, &oc, 5_000).await);
            best_theirs = best_theirs.min(batch(&theirs, path, &tc, 5_000).await);
        }
        println!(
            "{path}: portcullis {best_ours:?}  tower-sessions {best_theirs:?}  ratio {:.2}",
            best_ours.as_secs_f64() / best_theirs.as_secs_f64()
        );
    }
}
