//! A bare hyper 1 service behind `JwtLayer`: no framework, just a tower
//! service adapted to hyper. It mints a demo token at start.
//!
//! ```text
//! cargo run -p hyper-example
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:3000/
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use portcullis::{Identity, JwtIssuer, JwtLayer, SigningKey, Validation};
use tower::ServiceBuilder;

const ISSUER: &str = "https://hyper-example.local";
const AUDIENCE: &str = "hyper-example";

async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // JwtLayer (required mode) guarantees an identity here.
    let subject = request
        .extensions()
        .get::<Identity>()
        .map_or("nobody", |identity| identity.subject());
    Ok(Response::new(Full::new(Bytes::from(format!("hello, {subject}\n")))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519()?, ISSUER, AUDIENCE);
    let jwt = JwtLayer::new(
        issuer.verifying_key(),
        Validation::new().issuer(ISSUER).audience(AUDIENCE),
    )?;
    let service = ServiceBuilder::new().layer(jwt).service_fn(hello);

    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("demo token for alice: {}", issuer.mint("alice", ["hello"])?);
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
