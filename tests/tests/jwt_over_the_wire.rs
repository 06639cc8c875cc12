//! One JwtLayer stack in front of an axum router, a bare hyper service and
//! a tonic gRPC server, each over a real loopback socket.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::routing::get as route_get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use portcullis::jwt::{Algorithm, JwtError};
use portcullis::{Claims, Identity, JwtIssuer, JwtLayer, RequireAuthLayer, SigningKey, Validation};
use portcullis_tests::grpc::{IdentityServer, who_am_i};
use portcullis_tests::{get, loopback_listener, send, spawn_axum, spawn_hyper};
use serde_json::json;
use tower::ServiceBuilder;

const ISS: &str = "https://auth.test";
const AUD: &str = "notes-api";

fn issuer() -> JwtIssuer {
    JwtIssuer::new(SigningKey::generate_p256().expect("key"), ISS, AUD)
}

fn layer(issuer: &JwtIssuer) -> JwtLayer {
    JwtLayer::new(issuer.verifying_key(), Validation::new().issuer(ISS).audience(AUD)).expect("layer")
}

#[derive(serde::Deserialize)]
struct TenantClaims {
    sub: String,
    tenant: String,
}

async fn me(identity: Identity) -> Json<serde_json::Value> {
    Json(json!({"subject": identity.subject(), "method": identity.method().name(), "scopes": identity.scopes()}))
}

async fn maybe(identity: Option<Identity>) -> String {
    identity.map_or_else(|| "anonymous".to_owned(), |i| i.subject().to_owned())
}

async fn tenant(Claims(claims): Claims<TenantClaims>) -> String {
    format!("{}@{}", claims.sub, claims.tenant)
}

#[tokio::test]
async fn axum_router_behind_jwt_layer() {
    let issuer = issuer();
    let app = axum::Router::new()
        .route("/me", route_get(me))
        .route("/tenant", route_get(tenant))
        .layer(layer(&issuer));
    let addr = spawn_axum(app).await;

    let token = issuer.mint("alice", ["notes:read", "notes:write"]).expect("mint");
    let ok = get(addr, "/me", Some(&token)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.json(),
        json!({"subject": "alice", "method": "bearer", "scopes": ["notes:read", "notes:write"]})
    );

    let missing = get(addr, "/me", None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.header("www-authenticate"), "Bearer");

    let garbage = get(addr, "/me", Some("not.a.token")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        garbage.header("www-authenticate"),
        r#"Bearer error="invalid_token", error_description="malformed token: header is not base64url""#
    );
    assert_eq!(garbage.header("content-type"), "application/problem+json");
    assert_eq!(garbage.json()["detail"], "malformed token: header is not base64url");

    // Typed claims through the extractor.
    let mut extra = serde_json::Map::new();
    extra.insert("tenant".into(), json!("acme"));
    let with_tenant = issuer.mint_with("alice", ["notes:read"], extra).expect("mint");
    assert_eq!(get(addr, "/tenant", Some(&with_tenant)).await.body, "alice@acme");
    let without = get(addr, "/tenant", Some(&token)).await;
    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    assert_eq!(without.json()["detail"], "token claims do not have the expected shape");
}

#[tokio::test]
async fn axum_optional_mode_and_extractor_misconfiguration() {
    let issuer = issuer();
    let optional = JwtLayer::new(issuer.verifying_key(), Validation::new().issuer(ISS).audience(AUD))
        .expect("layer")
        .optional();
    let app = axum::Router::new()
        .route("/maybe", route_get(maybe))
        .route("/me", route_get(me))
        .layer(optional);
    let addr = spawn_axum(app).await;
    assert_eq!(get(addr, "/maybe", None).await.body, "anonymous");
    let anonymous_me = get(addr, "/me", None).await;
    assert_eq!(anonymous_me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous_me.json()["detail"], "authentication required");
    let token = issuer.mint("bob", ["notes:read"]).expect("mint");
    assert_eq!(get(addr, "/maybe", Some(&token)).await.body, "bob");

    // No authenticator layer at all: the extractor names the mistake.
    let bare = spawn_axum(axum::Router::new().route("/me", route_get(me))).await;
    let misconfigured = get(bare, "/me", Some(&token)).await;
    assert_eq!(misconfigured.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        misconfigured.json()["detail"]
            .as_str()
            .expect("detail")
            .contains("no Portcullis authenticator layer")
    );
}

#[tokio::test]
async fn scopes_are_enforced_by_require_auth() {
    let issuer = issuer();
    let app = axum::Router::new().route("/me", route_get(me)).layer(
        ServiceBuilder::new()
            .layer(layer(&issuer))
            .layer(RequireAuthLayer::new().scope("notes:write")),
    );
    let addr = spawn_axum(app).await;
    let reader = issuer.mint("bob", ["notes:read"]).expect("mint");
    let refused = get(addr, "/me", Some(&reader)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.header("www-authenticate"),
        r#"Bearer error="insufficient_scope", error_description="insufficient scope", scope="notes:write""#
    );
    let writer = issuer.mint("alice", ["notes:write"]).expect("mint");
    assert_eq!(get(addr, "/me", Some(&writer)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bare_hyper_service_behind_jwt_layer() {
    let issuer = issuer();
    let service =
        ServiceBuilder::new()
            .layer(layer(&issuer))
            .service_fn(|request: Request<hyper::body::Incoming>| async move {
                let subject = request
                    .extensions()
                    .get::<Identity>()
                    .map(|i| i.subject().to_owned())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(subject))))
            });
    let addr = spawn_hyper(service).await;

    let token = issuer.mint("carol", ["notes:read"]).expect("mint");
    let ok = get(addr, "/anything", Some(&token)).await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "carol"));

    let expired_issuer = JwtIssuer::new(SigningKey::generate_p256().expect("key"), ISS, AUD);
    let foreign = expired_issuer.mint("carol", ["notes:read"]).expect("mint");
    let refused = get(addr, "/anything", Some(&foreign)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.header("www-authenticate"),
        r#"Bearer error="invalid_token", error_description="unknown key id""#
    );

    // Two Authorization headers are ambiguous: refused.
    let request = Request::get(format!("http://{addr}/"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer other")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let twice = send(request).await;
    assert_eq!(twice.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        twice.json()["detail"],
        JwtError::MultipleAuthorizationHeaders.to_string()
    );
}

#[tokio::test]
async fn tonic_server_behind_jwt_layer() {
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), ISS, AUD);
    assert_eq!(issuer.verifying_key().algorithm(), Algorithm::EdDSA);
    let (listener, addr) = loopback_listener().await;
    let server = tonic::transport::Server::builder()
        .layer(layer(&issuer))
        .add_service(IdentityServer)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    let token = issuer.mint("dave", ["notes:read"]).expect("mint");
    let reply = who_am_i(addr, Some(&token)).await.expect("authorized call");
    assert_eq!(reply.subject, "dave");
    assert_eq!(reply.method, "bearer");
    assert_eq!(reply.scopes, ["notes:read"]);

    let missing = who_am_i(addr, None).await.expect_err("no token");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    assert_eq!(missing.message(), "bearer token required");

    let bad = who_am_i(addr, Some("e30.e30.e30")).await.expect_err("bad token");
    assert_eq!(bad.code(), tonic::Code::Unauthenticated);
    assert_eq!(bad.message(), "malformed token: header has no alg");

    let short_lived =
        JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), ISS, AUD).access_token_ttl(Duration::from_secs(1));
    let foreign = short_lived.mint("eve", ["notes:read"]).expect("mint");
    let unknown = who_am_i(addr, Some(&foreign)).await.expect_err("foreign key");
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    assert_eq!(unknown.message(), "unknown key id");
}

#[tokio::test]
async fn tonic_server_behind_jwt_and_revocation_layers() {
    use portcullis::revocation::{MemoryRevocationStore, RevocationLayer, Revocations};

    let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), ISS, AUD);
    let revocations = Revocations::new(std::sync::Arc::new(MemoryRevocationStore::new()));
    let (listener, addr) = loopback_listener().await;
    let server = tonic::transport::Server::builder()
        .layer(
            ServiceBuilder::new()
                .layer(layer(&issuer))
                .layer(RevocationLayer::new(&revocations)),
        )
        .add_service(IdentityServer)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    let token = issuer.mint("dave", ["notes:read"]).expect("mint");
    assert_eq!(who_am_i(addr, Some(&token)).await.expect("authorized").subject, "dave");
    revocations
        .cut_off_subject(&portcullis::Principal::new(ISS, "dave"))
        .await
        .expect("cut off");
    let revoked = who_am_i(addr, Some(&token)).await.expect_err("revoked");
    assert_eq!(revoked.code(), tonic::Code::Unauthenticated);
    assert_eq!(revoked.message(), "token revoked");
}
