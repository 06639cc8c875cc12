//! The stacks and requests the session and CSRF benches measure, in one
//! place, so that the criterion benches, `session_cost` and `instructions`
//! measure exactly the same thing.

use std::sync::Arc;

use axum::body::Body;
use axum::routing::{get, post};
use http::header::{CONTENT_TYPE, COOKIE, HOST};
use http::{HeaderValue, Request};
use portcullis::csrf::CsrfToken;
use portcullis::session::{MemoryStore, Session, SessionLayer};
use tower::ServiceExt;

/// `GET path` carrying `cookie`.
pub fn get_request(path: &str, cookie: &HeaderValue) -> Request<Body> {
    let mut request = Request::get(path).body(Body::empty()).expect("request");
    request.headers_mut().insert(COOKIE, cookie.clone());
    request
}

/// Calls `/seed` once: the cookie it set and the body it answered.
pub async fn seed(app: &axum::Router) -> (HeaderValue, String) {
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

/// The CSRF benches' router: `/seed` logs in and answers a CSRF token (when
/// the stack issues them), `/notes` is the protected POST.
pub fn csrf_router() -> axum::Router {
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

/// `SessionLayer` on the memory store, over plain HTTP.
pub fn memory_sessions() -> SessionLayer {
    SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http()
}

/// [`memory_sessions`] hashing ids under `ring`.
pub fn keyring_sessions(ring: &portcullis::SecretKeyring) -> SessionLayer {
    memory_sessions().secrets(ring).expect("session keyring")
}

/// The keyring benches' stack: [`csrf_router`] plus `GET /me` (a session
/// read), behind `sessions` and a `CsrfLayer` on `csrf_secrets`.
pub fn keyring_router(sessions: &SessionLayer, csrf_secrets: &portcullis::SecretKeyring) -> axum::Router {
    csrf_router()
        .route(
            "/me",
            get(|identity: portcullis::Identity| async move { identity.subject().to_owned() }),
        )
        .layer(portcullis::csrf::CsrfLayer::new().insecure_http().secrets(csrf_secrets))
        .layer(sessions.clone())
}

/// The protected POST from the stack's own origin, with the token in the
/// `X-CSRF-Token` header or (with `form`) in the urlencoded body.
pub fn csrf_post(cookie: &HeaderValue, token: Option<&str>, form: bool) -> Request<Body> {
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

/// Serves `router` on a free loopback port, in the background.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// `GET /seed` on `addr` over real HTTP: the session cookie it sets (as a
/// `Cookie` header value) and the body it answers.
pub async fn seed_over_http(addr: std::net::SocketAddr) -> (HeaderValue, String) {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
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
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (
        HeaderValue::from_str(&cookie).expect("cookie"),
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

/// SessionLayer + CsrfLayer (plain HTTP) on `store`, served on loopback:
/// `GET /seed` logs alice in and answers a CSRF token, `POST /notes`
/// answers "ok". Returns the address, alice's cookie and her token.
pub async fn serve_session_stack(
    store: Arc<dyn portcullis::session::SessionStore>,
) -> (std::net::SocketAddr, HeaderValue, String) {
    use portcullis::csrf::CsrfLayer;
    use portcullis::session::SessionLayer;
    let router = axum::Router::new()
        .route(
            "/seed",
            get(|s: Session, t: axum::Extension<CsrfToken>| async move {
                s.login("alice", ["notes:write"]);
                t.0.value().unwrap_or_default()
            }),
        )
        .route("/notes", post(|| async { "ok" }))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SessionLayer::new(store).insecure_http())
                .layer(CsrfLayer::new().insecure_http()),
        );
    let addr = serve(router).await;
    let (cookie, token) = seed_over_http(addr).await;
    (addr, cookie, token)
}
