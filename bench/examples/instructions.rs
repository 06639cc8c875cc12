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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::routing::{get, post};
use http::header::{CONTENT_TYPE, COOKIE, HOST};
use http::{HeaderValue, Request};
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use tower::ServiceExt;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn sessions() -> SessionLayer {
    SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http()
}

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

async fn seed(app: &axum::Router) -> (HeaderValue, String) {
    let response = app
        .clone()
        .oneshot(Request::get("/seed").body(Body::empty()).expect("request"))
        .await
        .expect("seed");
    let set = response.headers()["set-cookie"].to_str().expect("ascii");
    let cookie = HeaderValue::from_str(set.split(';').next().expect("pair")).expect("cookie");
    let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
    (cookie, String::from_utf8(body.to_vec()).expect("utf-8"))
}

fn get_request(path: &str, cookie: &HeaderValue) -> Request<Body> {
    let mut request = Request::get(path).body(Body::empty()).expect("request");
    request.headers_mut().insert(COOKIE, cookie.clone());
    request
}

fn post_request(cookie: &HeaderValue, token: Option<&str>, form: bool) -> Request<Body> {
    let body = match (form, token) {
        (true, Some(token)) => Body::from(format!("note=hello&csrf_token={token}")),
        _ => Body::from("note=hello"),
    };
    let mut request = Request::post("/notes").body(body).expect("request");
    let headers = request.headers_mut();
    headers.insert(COOKIE, cookie.clone());
    headers.insert(HOST, HeaderValue::from_static("app.test"));
    headers.insert("origin", HeaderValue::from_static("http://app.test"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let (Some(token), false) = (token, form) {
        headers.insert("x-csrf-token", HeaderValue::from_str(token).expect("token"));
    }
    request
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
        "session_read" | "session_write" | "csrf_floor" => router().layer(sessions()),
        "csrf_token_header" | "csrf_token_form" => router().layer(CsrfLayer::new().insecure_http()).layer(sessions()),
        "csrf_origin_only" => router()
            .layer(CsrfLayer::new().insecure_http().origin_checks_only())
            .layer(sessions()),
        other => panic!("unknown scenario {other}"),
    };
    runtime.block_on(async {
        let (cookie, token) = seed(&app).await;
        for _ in 0..n {
            let request = match scenario.as_str() {
                "session_read" => get_request("/read", &cookie),
                "session_write" => get_request("/write", &cookie),
                "csrf_floor" | "csrf_origin_only" => post_request(&cookie, None, false),
                "csrf_token_header" => post_request(&cookie, Some(&token), false),
                _ => post_request(&cookie, Some(&token), true),
            };
            let response = app.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success(), "{scenario}: {}", response.status());
        }
    });
}
