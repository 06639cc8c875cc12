//! A real OpenID provider — panva's `oidc-provider` on Node, pinned in
//! `tests/oidc-provider/package-lock.json` — started by the tests on a free
//! loopback port and stopped with them. A missing `node` or an uninstalled
//! package fails the test loudly with the install hint.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const INSTALL_HINT: &str = "the test OpenID provider is not installed: run `bash .ci/install-test-deps` (it needs \
     Node 20+ and runs `npm ci` in tests/oidc-provider) — the OIDC suites never skip";

/// One client registered at the provider.
#[derive(Clone, Debug)]
pub struct ProviderClient {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
    /// Allowed `redirect_uri`s.
    pub redirect_uris: Vec<String>,
    /// Allowed `post_logout_redirect_uri`s.
    pub post_logout_redirect_uris: Vec<String>,
    /// Where the provider posts logout tokens, if anywhere.
    pub backchannel_logout_uri: Option<String>,
    /// With a JWKS (`{"keys": […]}`), the client authenticates by
    /// `private_key_jwt` with those keys instead of its secret.
    pub jwks: Option<serde_json::Value>,
}

impl ProviderClient {
    fn metadata(&self) -> serde_json::Value {
        let mut client = serde_json::json!({
            "client_id": self.id,
            "client_secret": self.secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            client["backchannel_logout_uri"] = uri.clone().into();
            client["backchannel_logout_session_required"] = true.into();
        }
        if let Some(jwks) = &self.jwks {
            client["token_endpoint_auth_method"] = "private_key_jwt".into();
            client["jwks"] = jwks.clone();
        }
        client
    }
}

/// A running provider owned by one test.
#[derive(Debug)]
pub struct OidcProvider {
    port: u16,
    child: Child,
}

impl OidcProvider {
    /// Starts a provider with `clients` registered, on a free loopback
    /// port, and waits until it listens.
    pub fn start(clients: &[ProviderClient]) -> Self {
        Self::start_with_access_token_lifetime(clients, Duration::from_secs(600))
    }

    /// [`start`](Self::start), its access tokens living `lifetime`.
    pub fn start_with_access_token_lifetime(clients: &[ProviderClient], lifetime: Duration) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "{INSTALL_HINT} (no {}/node_modules/oidc-provider)",
            dir.display()
        );
        let clients = serde_json::Value::Array(clients.iter().map(ProviderClient::metadata).collect());
        let port = crate::free_port();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("CLIENTS", clients.to_string())
            .env("ACCESS_TOKEN_TTL", lifetime.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{INSTALL_HINT} (could not run node: {error})"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening ") {
                    let _ = ready.send(());
                }
            }
        });
        if listening.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!("the OpenID provider did not listen on {port} within 20 s ({INSTALL_HINT})");
        }
        Self { port, child }
    }

    /// The issuer, `http://127.0.0.1:PORT` (loopback, so plain HTTP is allowed).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The ID tokens the provider issued to `client_id`, oldest first
    /// (its test hook).
    pub async fn issued_id_tokens(&self, client_id: &str) -> Vec<String> {
        let answer = crate::client::Client::default()
            .call(
                self.addr(),
                http::Method::GET,
                &format!("/test/id-tokens?client_id={client_id}"),
                crate::client::Body::None,
                &[],
            )
            .await;
        serde_json::from_str(&answer.body).expect("a JSON list of ID tokens")
    }

    /// How many refresh-token grants the provider answered for
    /// `client_id` (its test hook).
    pub async fn refresh_grants(&self, client_id: &str) -> u64 {
        let answer = crate::client::Client::default()
            .call(
                self.addr(),
                http::Method::GET,
                &format!("/test/refresh-grants?client_id={client_id}"),
                crate::client::Body::None,
                &[],
            )
            .await;
        answer.body.trim().parse().expect("a count of refresh grants")
    }

    /// A logout token with `claims`, signed with the provider's own
    /// published key (its test hook): one that passes the signature check,
    /// to prove the other rules refuse it.
    pub async fn sign_logout_token(&self, claims: serde_json::Value) -> String {
        let answer = crate::client::Client::default()
            .call(
                self.addr(),
                http::Method::POST,
                "/test/sign-logout-token",
                crate::client::Body::Json(serde_json::json!({ "claims": claims })),
                &[],
            )
            .await;
        assert_eq!(answer.status, 200, "the provider's signing hook: {}", answer.body);
        answer.body
    }

    /// Makes the provider's next token response carry `id_token` instead
    /// of its own: a real, provider-signed token substituted, as a
    /// malicious or confused token endpoint would (its test hook).
    pub async fn substitute_next_id_token(&self, id_token: &str) {
        let answer = crate::client::Client::default()
            .call(
                self.addr(),
                http::Method::POST,
                "/test/substitute",
                crate::client::Body::Json(serde_json::json!({ "id_token": id_token })),
                &[],
            )
            .await;
        assert_eq!(answer.status, 204, "the provider's substitution hook: {}", answer.body);
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs in at the provider's development pages — the login form, then
/// the consent form when the provider shows it — and waits (30 s at most)
/// until the browser shows `landing`; returns that page's text. Pages
/// load at the machine's pace, so each step waits for its page.
pub async fn sign_in_at_provider(browser: &crate::webdriver::Browser, login: &str, landing: &str) -> String {
    browser.wait_for_text("Sign-in").await;
    browser.type_into("input[name=login]", login).await;
    browser.type_into("input[name=password]", "any password").await;
    browser.click("button[type=submit]").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut consented = false;
    loop {
        let text = browser.text().await;
        if text.contains(landing) {
            return text;
        }
        if !consented && text.contains("Continue") && text.contains("Authorize") {
            browser.click("button[type=submit]").await;
            consented = true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached {landing:?} after signing in; the page says: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
