//! A JSON API behind `JwtLayer` + `RevocationLayer`, with the OAuth refresh
//! (RFC 6749 §6) and revocation (RFC 7009) endpoints.
//!
//! It mints its own tokens with an ephemeral Ed25519 key (a real deployment
//! trusts its identity provider's keys, or runs its login here) and prints
//! a token pair for `alice`, so you can try it at once:
//!
//! ```text
//! cargo run -p api-jwt
//! curl -H "authorization: Bearer $ACCESS" http://127.0.0.1:3000/me
//! curl -d grant_type=refresh_token -d refresh_token=$REFRESH http://127.0.0.1:3000/oauth/token
//! curl -d token=$ACCESS http://127.0.0.1:3000/oauth/revoke
//! ```
//!
//! `PORTCULLIS_ADDR` sets the address (default `127.0.0.1:3000`).

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use portcullis::revocation::{
    MemoryRefreshStore, MemoryRevocationStore, RefreshEndpoint, RefreshTokens, RevocationEndpoint, RevocationLayer,
    Revocations, generate_secret,
};
use portcullis::{Identity, JwtIssuer, JwtLayer, JwtVerifier, RequireAuthLayer, SigningKey, Validation};
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
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let issuer_name = format!("http://{addr}");
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, issuer_name.clone(), AUDIENCE);

    let jwt = JwtLayer::new(
        issuer.verifying_key(),
        Validation::new()
            .issuer(issuer_name)
            .audience(AUDIENCE)
            .token_type("at+jwt"),
    )?;
    let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
    // The secret keys refresh-token hashes; production keeps a stable one.
    let secret = generate_secret();
    let tokens = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), issuer.clone(), &secret)
        .revocations(&revocations)
        .build()?;
    let verifier: JwtVerifier = jwt.verifier().clone();

    let jwks = issuer.jwks();
    let api = Router::new()
        .route("/me", get(me))
        .route("/notes", get(notes).layer(RequireAuthLayer::new().scope("notes:read")))
        .layer(
            ServiceBuilder::new()
                .layer(jwt)
                .layer(RevocationLayer::new(&revocations)),
        );
    let app = api
        .route_service("/oauth/token", RefreshEndpoint::new(tokens.clone()))
        .route_service(
            "/oauth/revoke",
            RevocationEndpoint::new(tokens.clone(), Some(verifier), revocations.clone()),
        )
        .route("/.well-known/jwks.json", get(move || async move { Json(jwks) }));

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let pair = tokens.issue("alice", ["notes:read"]).await?;
    println!("demo token for alice: {}", pair.access_token);
    println!("demo refresh token for alice: {}", pair.refresh_token);
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
