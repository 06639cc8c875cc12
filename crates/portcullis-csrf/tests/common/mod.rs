//! Helpers shared by the CSRF suites: SessionLayer → CsrfLayer → a small
//! handler, and requests against it.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE, VARY};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Rejection, RejectionKind};
use portcullis_csrf::{CsrfBody, CsrfLayer, CsrfToken};
use portcullis_session::{MemoryStore, Session, SessionLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

const SITE: &str = "http://app.test";

/// SessionLayer → CsrfLayer → a handler that: on `/login` logs in, on
/// `/token` answers a fresh CSRF token, on anything else echoes the body.
pub fn stack(
    csrf: CsrfLayer,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
    Error = Infallible,
> + Clone {
    stack_with(Arc::new(MemoryStore::new()), csrf)
}

/// [`stack`] over `store`, for tests that count what it holds.
pub fn stack_with(
    store: Arc<MemoryStore>,
    csrf: CsrfLayer,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
    Error = Infallible,
> + Clone {
    stack_with_sessions(SessionLayer::new(store).insecure_http(), csrf)
}

/// [`stack`] behind a given session layer (several stacks sharing one).
pub fn stack_with_sessions(
    sessions: SessionLayer,
    csrf: CsrfLayer,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
    Error = Infallible,
> + Clone {
    ServiceBuilder::new()
        .layer(sessions)
        .layer(csrf)
        .service_fn(|request: Request<CsrfBody<Full<Bytes>>>| async move {
            let path = request.uri().path().to_owned();
            let session = request.extensions().get::<Session>().cloned().expect("session");
            let token = request.extensions().get::<CsrfToken>().cloned().expect("token handle");
            let text = match path.as_str() {
                "/login" => {
                    session.login("alice", ["notes:write"]);
                    "logged in".to_owned()
                }
                "/token" => token.value().expect("token"),
                _ => {
                    let body = request.into_body().collect().await.expect("body").to_bytes();
                    format!("handled: {}", String::from_utf8_lossy(&body))
                }
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
        })
}

pub struct Answer {
    pub status: StatusCode,
    pub body: String,
    pub set_cookie: Option<String>,
    pub vary: Vec<String>,
    pub rejection: Option<Rejection>,
}

pub async fn send<S, ResBody>(app: &S, request: Request<Full<Bytes>>) -> Answer
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>, Error = Infallible> + Clone,
    ResBody: http_body::Body<Data = Bytes>,
    ResBody::Error: std::fmt::Debug,
{
    let response = app.clone().oneshot(request).await.expect("infallible");
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").split(';').next().expect("pair").to_owned());
    let vary = response
        .headers()
        .get_all(VARY)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let status = response.status();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
        vary,
        rejection,
    }
}

pub fn request(
    method: Method,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{SITE}{path}"))
        .header("host", "app.test");
    if let Some(cookie) = cookie {
        builder = builder.header(COOKIE, cookie);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::from(body.to_owned()))).expect("request")
}

/// A logged-in session: its cookie and a token for it.
/// A same-origin `POST /notes` with `cookie` and `token` in the header.
pub fn same_origin_post(cookie: &str, token: &str) -> Request<Full<Bytes>> {
    request(
        Method::POST,
        "/notes",
        Some(cookie),
        &[("sec-fetch-site", "same-origin"), ("x-csrf-token", token)],
        "",
    )
}

pub async fn logged_in<S, B>(app: &S) -> (String, String)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let first = send(app, request(Method::GET, "/token", None, &[], "")).await;
    let cookie = first
        .set_cookie
        .expect("asking for a token sets the pre-session cookie (no stored session)");
    let login = send(
        app,
        request(
            Method::POST,
            "/login",
            Some(&cookie),
            &[("sec-fetch-site", "same-origin"), ("x-csrf-token", &first.body)],
            "",
        ),
    )
    .await;
    assert_eq!(
        login.status,
        StatusCode::OK,
        "the login form is protected too: {}",
        login.body
    );
    let cookie = login.set_cookie.expect("login rotates the id");
    // A token issued before the login still works after the rotation.
    (cookie, first.body)
}

pub fn assert_refused(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{reason}: {}", answer.body);
    let rejection = answer.rejection.as_ref().expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::Forbidden);
    assert_eq!(rejection.layer(), "csrf");
    assert_eq!(rejection.reason(), reason);
    assert!(
        answer.body.contains(reason),
        "the problem body names the reason: {}",
        answer.body
    );
    assert!(
        answer.vary.iter().any(|v| v.contains("Origin")),
        "Vary: {:?}",
        answer.vary
    );
}
