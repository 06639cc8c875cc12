//! One `Responder` for a whole stack: `ResponderLayer` outermost renders the
//! rejections of every layer inside it — SessionLayer's 503, JwtLayer's
//! 401, RevocationLayer's and CsrfLayer's refusals, RequireAuth's 401 and
//! 403 — and of the axum extractors, unless a layer was given its own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis::jwt::{JwtLayer, SigningKey, Validation};
use portcullis::revocation::{MemoryRevocationStore, RevocationLayer, Revocations};
use portcullis::session::{Changes, SessionKey, SessionRecord, SessionStore, StoreError, StoreFuture, StoreKind};
use portcullis::{
    DefaultResponder, Identity, Principal, Rejection, RejectionKind, RequestContext, RequireAuthLayer, Responder,
    ResponderLayer, SessionLayer,
};
use tower::{ServiceBuilder, ServiceExt};

/// Renders like the default, and says so in a header.
#[derive(Debug)]
struct Marked(&'static str);

impl Responder for Marked {
    fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes> {
        let mut response = DefaultResponder.respond(rejection, request);
        response
            .headers_mut()
            .insert("x-rendered-by", HeaderValue::from_static(self.0));
        response
    }
}

/// A session store that is down.
#[derive(Debug)]
struct DownStore;

fn down<T: Send + 'static>() -> StoreFuture<'static, T> {
    Box::pin(async { Err(StoreError::unavailable(StoreKind::Session, "connection refused")) })
}

impl SessionStore for DownStore {
    fn load(&self, _: &SessionKey) -> StoreFuture<'_, Option<Arc<SessionRecord>>> {
        down()
    }
    fn create(&self, _: &SessionKey, _: &SessionRecord, _: Duration) -> StoreFuture<'_, ()> {
        down()
    }
    fn update(&self, _: &SessionKey, _: &Changes) -> StoreFuture<'_, bool> {
        down()
    }
    fn rotate(
        &self,
        _: &SessionKey,
        _: &SessionKey,
        _: &SessionRecord,
        _: Duration,
        _: Option<Duration>,
    ) -> StoreFuture<'_, bool> {
        down()
    }
    fn rekey(&self, _: &SessionKey, _: &SessionKey, _: Option<Duration>) -> StoreFuture<'_, bool> {
        down()
    }
    fn delete(&self, _: &SessionKey) -> StoreFuture<'_, ()> {
        down()
    }
    fn sessions_of(&self, _: &Principal) -> StoreFuture<'_, Vec<(SessionKey, SessionRecord)>> {
        down()
    }
    fn delete_all_of(&self, _: &Principal) -> StoreFuture<'_, usize> {
        down()
    }
    fn delete_provider_session(&self, _: &str, _: &str) -> StoreFuture<'_, usize> {
        down()
    }
}

struct Answer {
    status: StatusCode,
    rendered_by: Option<String>,
    rejection: Option<Rejection>,
    body: String,
}

async fn send<S>(service: S, request: Request<axum::body::Body>) -> Answer
where
    S: tower::Service<Request<axum::body::Body>, Response = axum::response::Response, Error = Infallible>,
{
    let response = service.oneshot(request).await.expect("infallible");
    let status = response.status();
    let rendered_by = response
        .headers()
        .get("x-rendered-by")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        rendered_by,
        rejection,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get_with(uri: &str, headers: &[(&str, &str)]) -> Request<axum::body::Body> {
    let mut builder = Request::get(uri).header(header::HOST, "app.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(axum::body::Body::empty()).expect("request")
}

fn jwt_layer() -> JwtLayer {
    let key = SigningKey::generate_ed25519().expect("key");
    JwtLayer::new(
        key.verifying_key(),
        Validation::new().issuer("https://auth.test").audience("api"),
    )
    .expect("jwt layer")
    .optional()
}

#[tokio::test]
async fn every_layer_and_extractor_renders_through_the_stack_responder() {
    let handler = || get(|identity: Identity| async move { identity.subject().to_owned() });

    // JwtLayer → RequireAuth, under one responder.
    let app = Router::new().route("/me", handler()).layer(
        ServiceBuilder::new()
            .layer(ResponderLayer::new(Marked("stack")))
            .layer(jwt_layer())
            .layer(RequireAuthLayer::new().scope("notes:read")),
    );
    let bad_token = send(app.clone(), get_with("/me", &[("authorization", "Bearer not.a.token")])).await;
    assert_eq!(bad_token.status, StatusCode::UNAUTHORIZED, "{}", bad_token.body);
    assert_eq!(bad_token.rendered_by.as_deref(), Some("stack"), "JwtLayer");
    assert_eq!(bad_token.rejection.expect("typed").layer(), "jwt");
    let anonymous = send(app.clone(), get_with("/me", &[])).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.rendered_by.as_deref(), Some("stack"), "RequireAuth");
    assert_eq!(anonymous.rejection.expect("typed").layer(), "require_auth");

    // A RevocationLayer with no authenticator: its 500, and the extractor's.
    let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
    let misconfigured = Router::new().route("/me", handler()).layer(
        ServiceBuilder::new()
            .layer(ResponderLayer::new(Marked("stack")))
            .layer(RevocationLayer::new(&revocations)),
    );
    let answer = send(misconfigured, get_with("/me", &[])).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.rendered_by.as_deref(), Some("stack"), "RevocationLayer");
    let rejection = answer.rejection.expect("typed");
    assert_eq!(
        (rejection.kind(), rejection.layer()),
        (RejectionKind::Misconfigured, "revocation")
    );

    let bare = Router::new()
        .route("/me", handler())
        .layer(ResponderLayer::new(Marked("stack")));
    let answer = send(bare.clone(), get_with("/me", &[])).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.rendered_by.as_deref(), Some("stack"), "the Identity extractor");
    assert_eq!(answer.rejection.expect("typed").layer(), "extractor");
    // The extractor now sees the request: a gRPC caller gets a gRPC status.
    let grpc = send(bare, get_with("/me", &[("content-type", "application/grpc")])).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.rendered_by.as_deref(), Some("stack"));

    // SessionLayer's 503 when its store is down, and CsrfLayer's 403.
    let sessions = SessionLayer::new(Arc::new(DownStore)).insecure_http();
    let app = Router::new().route("/notes", post(|| async { "posted" })).layer(
        ServiceBuilder::new()
            .layer(ResponderLayer::new(Marked("stack")))
            .layer(sessions)
            .layer(portcullis::CsrfLayer::new()),
    );
    let cookie = format!("session={}", "A".repeat(43));
    let outage = send(app.clone(), get_with("/notes", &[("cookie", &cookie)])).await;
    assert_eq!(outage.status, StatusCode::SERVICE_UNAVAILABLE, "{}", outage.body);
    assert_eq!(outage.rendered_by.as_deref(), Some("stack"), "SessionLayer");
    assert!(!outage.body.contains("connection refused"), "{}", outage.body);
    let cross_site = Request::post("/notes")
        .header(header::HOST, "app.test")
        .header("sec-fetch-site", "cross-site")
        .body(axum::body::Body::empty())
        .expect("request");
    let forged = send(app, cross_site).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(forged.rendered_by.as_deref(), Some("stack"), "CsrfLayer");
    assert_eq!(forged.rejection.expect("typed").reason(), "cross-site request");
}

#[tokio::test]
async fn a_layer_given_its_own_responder_keeps_it_inside_a_stack_responder() {
    let app = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ResponderLayer::new(Marked("stack")))
                .layer(jwt_layer())
                .layer(RequireAuthLayer::new().responder(Marked("own"))),
        );
    let anonymous = send(app.clone(), get_with("/me", &[])).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.rendered_by.as_deref(), Some("own"));
    let bad_token = send(app, get_with("/me", &[("authorization", "Bearer x.y.z")])).await;
    assert_eq!(bad_token.rendered_by.as_deref(), Some("stack"));
}

#[tokio::test]
async fn without_a_stack_responder_the_default_renders() {
    let app = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .layer(ServiceBuilder::new().layer(jwt_layer()).layer(RequireAuthLayer::new()));
    let anonymous = send(app, get_with("/me", &[])).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.rendered_by, None);
    assert!(anonymous.body.contains("authentication required"), "{}", anonymous.body);
}

/// Says what of the request it was shown.
#[derive(Debug)]
struct Describes;

impl Responder for Describes {
    fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes> {
        let accept = request.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let mut response = Response::new(Bytes::from(format!(
            "{} {} accept={} protocol={:?}",
            request.method,
            request.uri,
            accept.unwrap_or("-"),
            request.protocol
        )));
        *response.status_mut() = rejection.status();
        response
    }
}

/// A 503 rendered after the request moved on (here: a load that had to
/// wait, on a store that is down) shows an app's responder the request's
/// own method, URI and content negotiation; the default responder, which
/// reads only the protocol, gets that protocol right for gRPC callers.
#[tokio::test]
async fn a_late_503_renders_from_what_the_request_was() {
    let cookie = format!("session={}", "A".repeat(43));
    let app = |sessions: SessionLayer| {
        Router::new()
            .route("/notes/{id}", post(|| async { "posted" }))
            .layer(sessions)
    };
    let late = |content_type: &'static str| {
        Request::post("/notes/7?draft=1")
            .header(header::HOST, "app.test")
            .header(header::COOKIE, cookie.as_str())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let own = SessionLayer::new(Arc::new(DownStore))
        .insecure_http()
        .responder(Describes);
    let described = send(app(own), late("text/plain")).await;
    assert_eq!(described.status, StatusCode::SERVICE_UNAVAILABLE, "{}", described.body);
    assert_eq!(
        described.body,
        "POST /notes/7?draft=1 accept=application/json protocol=Http"
    );

    let stack = app(SessionLayer::new(Arc::new(DownStore)).insecure_http()).layer(ResponderLayer::new(Describes));
    let described = send(stack, late("application/grpc")).await;
    assert_eq!(
        described.body, "POST /notes/7?draft=1 accept=application/json protocol=Grpc",
        "the stack's responder, for a gRPC caller"
    );

    let default = send(
        app(SessionLayer::new(Arc::new(DownStore)).insecure_http()),
        late("application/grpc"),
    )
    .await;
    assert_eq!(default.status, StatusCode::OK, "gRPC statuses travel in a 200");
    let rejection = default.rejection.expect("typed");
    assert_eq!(rejection.kind(), RejectionKind::Unavailable);
    let http = send(
        app(SessionLayer::new(Arc::new(DownStore)).insecure_http()),
        late("text/plain"),
    )
    .await;
    assert_eq!(http.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(http.body.contains("session store unavailable"), "{}", http.body);
}
