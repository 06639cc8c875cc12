//! A JSON API behind `JwtLayer`.
//!
//! It mints its own tokens with an ephemeral Ed25519 key (a real deployment
//! trusts its identity provider's keys instead) and prints one for `alice`,
//! so you can try it at once:
//!
//! ```text
//! cargo run -p api-jwt
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:3000/me
//! ```
//!
//! `PORTCULLIS_ADDR` sets the address (default `127.0.0.1:3000`).

use axum::routing::get;
use axum::{Json, Router};
use portcullis::{Identity, JwtIssuer, JwtLayer, RequireAuthLayer, SigningKey};
use serde_json::{Value, json};
use tower::ServiceBuilder;

const AUDIENCE: &str = "api-jwt-example";

async fn me(identity: Identity) -> Json<Value> {
    Json(json!({
        "subject": identity.subject(),
        "method": identity.method().name(),
        "scopes": identity.scopes(),
    }))
}

async fn notes(identity: Identity) -> Json<Value> {
    Json(json!({"owner": identity.subject(), "notes": ["buy milk"]}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let issuer_name = format!("http://{addr}");
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, issuer_name.clone(), AUDIENCE);

    let jwt = JwtLayer::builder(issuer.verifying_key())
        .issuer(issuer_name)
        .audience(AUDIENCE)
        .token_type("at+jwt")
        .build()?;
    let jwks = issuer.jwks();
    let app = Router::new()
        .route("/me", get(me))
        .route("/notes", get(notes).layer(RequireAuthLayer::new().scope("notes:read")))
        .layer(ServiceBuilder::new().layer(jwt))
        .merge(Router::new().route("/.well-known/jwks.json", get(move || async move { Json(jwks) })));

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let token = issuer.mint("alice", ["notes:read"])?;
    println!("demo token for alice: {token}");
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
