//! Service B: trusts service A's tokens through A's published JWKS,
//! fetched and kept current by `RemoteKeys` (rotation-safe).
//!
//! `PORTCULLIS_TRUSTED_ISSUER=http://A-ADDR` (A publishes
//! `/.well-known/jwks.json` there).

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use portcullis::jwt::remote::{RemoteKeys, RemoteOptions};
use portcullis::{Identity, JwtLayer, Validation};

async fn work(caller: Identity) -> String {
    format!("work done for {}", caller.subject())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let trusted = std::env::var("PORTCULLIS_TRUSTED_ISSUER").map_err(|_| "set PORTCULLIS_TRUSTED_ISSUER")?;
    let keys = RemoteKeys::jwks_url(format!("{trusted}/.well-known/jwks.json"), RemoteOptions::default());
    // Not ready to serve before A's keys are here.
    keys.ready(Duration::from_secs(10)).await?;
    let jwt = JwtLayer::new(keys, Validation::new().issuer(trusted.as_str()).audience("service-b"))?;
    let app = Router::new().route("/work", get(work)).layer(jwt);
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
