//! Service A: holds a private key, publishes its public half at
//! `/.well-known/jwks.json`, and calls service B with a token it mints for
//! each call (60 s lifetime, audience `service-b`).
//!
//! `GET /call?peer=http://B-ADDR` makes one call and answers what B said.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::{JwtIssuer, SigningKey};
use serde::Deserialize;

#[derive(Deserialize)]
struct Call {
    peer: String,
}

async fn call(State(issuer): State<JwtIssuer>, Query(call): Query<Call>) -> (StatusCode, String) {
    let token = match issuer.mint("service-a", ["work:do"]) {
        Ok(token) => token,
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let request = http::Request::get(format!("{}/work", call.peer))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new());
    let Ok(request) = request else {
        return (StatusCode::BAD_REQUEST, "bad peer URL".into());
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        _ => (StatusCode::BAD_GATEWAY, "service B did not answer".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let me = format!("http://{}", listener.local_addr()?);
    let issuer = JwtIssuer::new(SigningKey::generate_p256()?, me.as_str(), "service-b")
        .access_token_ttl(Duration::from_secs(60));
    let jwks = issuer.jwks();
    let app = Router::new()
        .route("/call", get(call))
        .with_state(issuer)
        .route("/.well-known/jwks.json", get(move || async move { Json(jwks) }));
    println!("issuer: {me}");
    println!("listening on {me}");
    axum::serve(listener, app).await?;
    Ok(())
}
