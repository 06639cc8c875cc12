//! A real headless Chromium, driven through ChromeDriver's W3C WebDriver
//! protocol (JSON over loopback HTTP; the handful of commands the browser
//! tests use). A missing binary fails the test loudly with the install hint.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::send;

const INSTALL_HINT: &str = "chromium and chromedriver are needed for the browser tests: install them \
     (Debian: `apt-get install chromium chromium-driver`; `.ci/install-test-deps` does this) — \
     the browser suites never skip";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one browser session in it; both end on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    profile: std::path::PathBuf,
}

async fn call(method: http::Method, url: &str, body: Option<Value>) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .expect("request");
    let answer = send(request).await;
    let value: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("WebDriver answered non-JSON ({e}): {}", answer.body));
    assert!(
        answer.status.is_success(),
        "WebDriver {url} failed ({}): {}",
        answer.status,
        value["value"]
    );
    value["value"].clone()
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and a headless Chromium
    /// session with a fresh profile.
    pub async fn start() -> Self {
        let chromium = which("chromium").unwrap_or_else(|| panic!("{INSTALL_HINT} (chromium not on PATH)"));
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{INSTALL_HINT} ({error})"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("portcullis-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let session = call(http::Method::POST, &format!("{base}/session"), Some(capabilities)).await;
        let session = session["sessionId"].as_str().expect("session id").to_owned();
        Self {
            driver,
            base,
            session,
            profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        call(http::Method::POST, &self.url("/url"), Some(json!({ "url": url }))).await;
    }

    /// The current page's text (`document.body.innerText`).
    pub async fn text(&self) -> String {
        self.script("return document.body ? document.body.innerText : '';")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        call(
            http::Method::POST,
            &self.url("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let found = call(
            http::Method::POST,
            &self.url("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await;
        found[ELEMENT].as_str().expect("element id").to_owned()
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        call(
            http::Method::POST,
            &self.url(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        call(
            http::Method::POST,
            &self.url(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// Opens a new tab (same profile, so the same cookie jar) and returns
    /// its handle; the current tab stays current.
    pub async fn new_tab(&self) -> String {
        let opened = call(
            http::Method::POST,
            &self.url("/window/new"),
            Some(json!({ "type": "tab" })),
        )
        .await;
        opened["handle"].as_str().expect("window handle").to_owned()
    }

    /// The handle of the current tab.
    pub async fn current_tab(&self) -> String {
        call(http::Method::GET, &self.url("/window"), None)
            .await
            .as_str()
            .expect("window handle")
            .to_owned()
    }

    /// Makes the tab `handle` the current one.
    pub async fn switch_to(&self, handle: &str) {
        call(
            http::Method::POST,
            &self.url("/window"),
            Some(json!({ "handle": handle })),
        )
        .await;
    }

    /// The current page's cookies (`HttpOnly` ones included) as one
    /// `Cookie` header value, to send the browser's session from a plain
    /// HTTP client.
    pub async fn cookie_header(&self) -> String {
        let cookies = call(http::Method::GET, &self.url("/cookie"), None).await;
        cookies
            .as_array()
            .expect("a list of cookies")
            .iter()
            .map(|cookie| {
                format!(
                    "{}={}",
                    cookie["name"].as_str().unwrap_or_default(),
                    cookie["value"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits (at most 10 s) until the page text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "page never showed {needle:?}; it shows: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .map(|path| path.display().to_string())
    })
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser session (Chromium exits) with a plain blocking
        // request, since drop cannot await; then stops the driver.
        if let Some(authority) = self.base.strip_prefix("http://")
            && let Ok(mut stream) = std::net::TcpStream::connect(authority)
        {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
