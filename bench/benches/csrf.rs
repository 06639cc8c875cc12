//! The cost of CSRF protection on a protected POST, side by side: the
//! same axum router behind SessionLayer alone (the floor), behind
//! SessionLayer + Portcullis `CsrfLayer` (origin checks and a token in the
//! header or in a urlencoded form body, and origin checks only), and behind
//! SessionLayer + `tower_http::csrf::CsrfLayer` (origin checks only).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{CONTENT_TYPE, COOKIE, HOST};
use http::{HeaderValue, Request};
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use tower::ServiceExt;

fn router() -> axum::Router {
    axum::Router::new()
        .route(
            "/seed",
            get(|s: Session, t: Option<axum::Extension<CsrfToken>>| async move {
                s.login("alice", ["notes:write"]);
                t.and_then(|axum::Extension(t)| t.value().ok()).unwrap_or_default()
            }),
        )
        .route("/notes", post(|| async { "ok" }))
}

fn sessions() -> SessionLayer {
    SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http()
}

/// Logs in once; the session cookie and (when the stack issues them) a
/// CSRF token.
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
    headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let (Some(token), false) = (token, form) {
        headers.insert("x-csrf-token", HeaderValue::from_str(token).expect("token"));
    }
    request
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let floor = router().layer(sessions());
    let ours = router().layer(CsrfLayer::new().insecure_http()).layer(sessions());
    let ours_origin = router()
        .layer(CsrfLayer::new().insecure_http().origin_checks_only())
        .layer(sessions());
    let theirs = {
        let tower_http_csrf = tower_http::csrf::CsrfLayer::new();
        router().layer(tower_http_csrf).layer(sessions())
    };

    let contenders: [(&str, &axum::Router, bool, bool); 5] = [
        ("session_only_floor", &floor, false, false),
        ("portcullis_token_header", &ours, true, false),
        ("portcullis_token_form", &ours, true, true),
        ("portcullis_origin_only", &ours_origin, false, false),
        ("tower_http_csrf", &theirs, false, false),
    ];
    let mut group = c.benchmark_group("csrf_protected_post");
    for (name, app, with_token, form) in contenders {
        let (cookie, token) = runtime.block_on(seed(app));
        let token = with_token.then_some(token);
        let check = runtime.block_on(app.clone().oneshot(post_request(&cookie, token.as_deref(), form)));
        assert!(
            check.expect("response").status().is_success(),
            "{name} accepts the honest post"
        );
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| app.clone().oneshot(post_request(&cookie, token.as_deref(), form)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
