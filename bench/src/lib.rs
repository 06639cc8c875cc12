//! Helpers shared by the benches and the load driver.

pub mod stacks;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisProcess(Child);

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts one, waits until it accepts connections, and returns it with
/// its `redis://` URL.
pub fn start_redis() -> (RedisProcess, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH (Debian: apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (RedisProcess(child), format!("redis://127.0.0.1:{port}"))
}

/// A PKCS#8 private key (DER) as PEM, for the rows that hand the same key
/// to Portcullis and to a bare jsonwebtoken.
pub fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// The floor of the JWT rows: an axum router whose handler decodes the
/// bearer token itself with `jsonwebtoken::decode` (issuer and audience
/// checked) and answers its `sub`.
pub fn bare_decode_router(key: jsonwebtoken::DecodingKey, validation: jsonwebtoken::Validation) -> axum::Router {
    use http::HeaderMap;
    use http::header::AUTHORIZATION;
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
    }
    axum::Router::new().route(
        "/",
        axum::routing::get(move |headers: HeaderMap| {
            let (key, validation) = (key.clone(), validation.clone());
            async move {
                let value = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
                let token = value.strip_prefix("Bearer ").unwrap_or("");
                match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
                    Ok(data) => Ok(data.claims.sub),
                    Err(_) => Err(http::StatusCode::UNAUTHORIZED),
                }
            }
        }),
    )
}

/// The claims `JwtIssuer::mint` writes, as a bare `jsonwebtoken::encode`
/// caller would declare them (the floor of the mint rows).
#[derive(serde::Serialize)]
pub struct MintedClaims<'a> {
    /// Issuer.
    pub iss: &'a str,
    /// Subject.
    pub sub: &'a str,
    /// Audience.
    pub aud: &'a str,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// Token id.
    pub jti: &'a str,
    /// Scopes, space-separated.
    pub scope: &'a str,
}

impl<'a> MintedClaims<'a> {
    /// The claims `JwtIssuer::mint("alice", ["notes:read"])` writes with the
    /// bench issuer and audience, issued now for 15 minutes (the issuer's
    /// default), with the fixed `jti` given.
    pub fn now(iss: &'a str, aud: &'a str, jti: &'a str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        Self {
            iss,
            sub: "alice",
            aud,
            iat: now,
            exp: now + 900,
            jti,
            scope: "notes:read",
        }
    }
}
