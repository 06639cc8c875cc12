//! A fixed number of requests through one stack of the session and CSRF
//! benches, for counting instructions under `valgrind --tool=callgrind`
//! (repeatable where wall-clock time on a shared VM is not):
//!
//! ```text
//! cargo build --release --example instructions
//! bench/instructions            # every scenario, instructions per request
//! ```
//!
//! `instructions SCENARIO N` runs N requests of SCENARIO after its setup;
//! the per-request figure is the difference between two runs of different
//! N, divided by their difference, so setup cancels out.
use std::sync::atomic::{AtomicU64, Ordering};

use axum::routing::{get, post};
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::Session;
use portcullis_bench::stacks::{csrf_post, get_request, memory_sessions, seed};
use tower::ServiceExt;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn router() -> axum::Router {
    axum::Router::new()
        .route(
            "/seed",
            get(|s: Session, t: Option<axum::Extension<CsrfToken>>| async move {
                s.login("alice", ["notes:write"]);
                let _ = s.insert("counter", &"0");
                t.and_then(|axum::Extension(t)| t.value().ok()).unwrap_or_default()
            }),
        )
        .route(
            "/read",
            get(|s: Session| async move { s.get::<String>("counter").ok().flatten().unwrap_or_default() }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                let next = NEXT.fetch_add(1, Ordering::Relaxed).to_string();
                s.insert("counter", &next)
                    .map(|_| "ok")
                    .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
            }),
        )
        .route("/notes", post(|| async { "ok" }))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "session_read".into());
    let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let app = match scenario.as_str() {
        "session_read" | "session_write" | "csrf_floor" => router().layer(memory_sessions()),
        "csrf_token_header" | "csrf_token_form" => router()
            .layer(CsrfLayer::new().insecure_http())
            .layer(memory_sessions()),
        "csrf_origin_only" => router()
            .layer(CsrfLayer::new().insecure_http().origin_checks_only())
            .layer(memory_sessions()),
        other => panic!("unknown scenario {other}"),
    };
    runtime.block_on(async {
        let (cookie, token) = seed(&app).await;
        for _ in 0..n {
            let request = match scenario.as_str() {
                "session_read" => get_request("/read", &cookie),
                "session_write" => get_request("/write", &cookie),
                "csrf_floor" | "csrf_origin_only" => csrf_post(&cookie, None, false),
                "csrf_token_header" => csrf_post(&cookie, Some(&token), false),
                _ => csrf_post(&cookie, Some(&token), true),
            };
            let response = app.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success(), "{scenario}: {}", response.status());
        }
    });
}
