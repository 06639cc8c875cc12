//! The server: `example.v1.Identity` behind `JwtLayer` + `RevocationLayer`.
//! It prints a demo token for alice and one it has already revoked.
//!
//! ```text
//! cargo run -p grpc-example --bin grpc-server
//! cargo run -p grpc-example --bin grpc-client -- http://127.0.0.1:50051 $TOKEN
//! ```

use std::sync::Arc;

use grpc_example::IdentityServer;
use portcullis::revocation::{MemoryRevocationStore, RevocationLayer, Revocations};
use portcullis::{JwtIssuer, JwtLayer, SigningKey, Validation};
use tower::ServiceBuilder;

const ISSUER: &str = "https://grpc-example.local";
const AUDIENCE: &str = "grpc-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, ISSUER, AUDIENCE);
    let jwt = JwtLayer::new(
        issuer.verifying_key(),
        Validation::new().issuer(ISSUER).audience(AUDIENCE),
    )?;
    let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
    let revoked = issuer.mint("alice", ["identity:read"])?;
    revocations.revoke_identity(&jwt.verifier().verify(&revoked)?).await?;

    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("demo token for alice: {}", issuer.mint("alice", ["identity:read"])?);
    println!("revoked token: {revoked}");
    println!("listening on http://{}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .layer(
            ServiceBuilder::new()
                .layer(jwt)
                .layer(RevocationLayer::new(&revocations)),
        )
        .add_service(IdentityServer)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}
