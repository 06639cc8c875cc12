//! Sign-in with a real OpenID provider (panva oidc-provider on loopback) in
//! a real headless Chromium, into a `SessionLayer` session: the full login
//! through the provider's login and consent pages, two logins pending in
//! one browser at once, and the refusals (tampered state, replayed
//! callback, open-redirect return path), each with its named reason and no
//! session.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use portcullis::Identity;
use portcullis::oidc::{ClientConfig, MemoryReplayCache, OidcClient, ReturnPath};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use portcullis::{AuthMethod, SecretKeyring};
use portcullis_tests::loopback_listener;
use portcullis_tests::oidc_provider::{OidcProvider, ProviderClient, sign_in_at_provider};
use portcullis_tests::webdriver::Browser;

#[derive(Clone)]
struct App {
    oidc: OidcClient,
    /// Every callback query the app was sent, in order.
    callbacks: Arc<Mutex<Vec<String>>>,
    /// Every authorization URL the app redirected to, in order.
    authorizations: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

fn refused(status: StatusCode, reason: &str) -> Response {
    (status, format!("login refused: {reason}")).into_response()
}

async fn start(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let return_to = match ReturnPath::from_query(query.as_deref()) {
        Ok(path) => path,
        Err(error) => return refused(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let redirect = app.oidc.begin_login(return_to);
    app.authorizations.lock().expect("lock").push(redirect.url.clone());
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, redirect.url), (SET_COOKIE, redirect.set_cookie)],
    )
        .into_response()
}

async fn callback(State(app): State<App>, session: Session, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    app.callbacks.lock().expect("lock").push(query.clone());
    match app.oidc.complete_login(&headers, &query).await {
        Ok(login) => {
            if app.oidc.log_in(&session, &login).is_err() {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            (
                StatusCode::SEE_OTHER,
                [
                    (LOCATION, login.return_to.to_string()),
                    (SET_COOKIE, login.remove_cookie),
                ],
            )
                .into_response()
        }
        Err(error) => refused(error.status(), error.reason()),
    }
}

async fn me(identity: Option<Identity>) -> Response {
    match identity {
        Some(identity) => {
            let method = match identity.method() {
                AuthMethod::Session { .. } => "session",
                _ => "other",
            };
            format!(
                "method={method} subject={} issuer={}",
                identity.subject(),
                identity.issuer()
            )
            .into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "not signed in").into_response(),
    }
}

async fn logout(session: Session) -> &'static str {
    session.logout();
    "signed out"
}

/// RP-initiated logout: the local session ends first, then the browser
/// goes to the provider's logout page.
async fn logout_at_provider(State(app): State<App>, session: Session) -> Response {
    let back = format!("{}/", app.base);
    match app.oidc.end_session(&session, Some(&back), Some("logout-state")) {
        Some(url) => (StatusCode::SEE_OTHER, [(LOCATION, url)]).into_response(),
        None => "signed out here only".into_response(),
    }
}

async fn provider_session(session: Session) -> String {
    match OidcClient::provider_session(&session) {
        Some((issuer, sid)) => format!("provider session {issuer} {}", sid.unwrap_or_default()),
        None => "no provider session".into(),
    }
}

async fn page(uri: http::Uri) -> String {
    format!("page {}", uri.path())
}

struct Setup {
    provider: OidcProvider,
    app: String,
    callbacks: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

async fn setup() -> Setup {
    // The app's port is known before the provider starts (its redirect
    // URI is registered there).
    let (listener, addr) = loopback_listener().await;
    let app = format!("http://127.0.0.1:{}", addr.port());
    let provider = OidcProvider::start(&[ProviderClient {
        id: "stack".into(),
        secret: "a-client-secret-of-enough-length".into(),
        redirect_uris: vec![format!("{app}/login/oidc/callback")],
        post_logout_redirect_uris: vec![format!("{app}/")],
        backchannel_logout_uri: None,
    }]);
    let config = ClientConfig::new(
        "stack",
        "a-client-secret-of-enough-length",
        format!("{app}/login/oidc/callback"),
    );
    let secrets = SecretKeyring::single(&[42; 32]).expect("ring");
    let oidc = OidcClient::discover(
        &provider.issuer(),
        config,
        &secrets,
        Arc::new(MemoryReplayCache::default()),
    )
    .await
    .expect("discovery");
    let callbacks = Arc::new(Mutex::new(Vec::new()));
    let authorizations = Arc::new(Mutex::new(Vec::new()));
    let state = App {
        oidc,
        callbacks: callbacks.clone(),
        authorizations: authorizations.clone(),
        base: app.clone(),
    };
    let router = Router::new()
        .route("/login/oidc", get(start))
        .route("/login/oidc/callback", get(callback))
        .route("/me", get(me))
        .route("/logout", get(logout))
        .route("/logout/oidc", get(logout_at_provider))
        .route("/provider-session", get(provider_session))
        .fallback(get(page))
        .with_state(state)
        .layer(SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Setup {
        provider,
        app,
        callbacks,
        authorizations,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_at_the_provider_into_a_session_and_refusals_name_their_reason() {
    let setup = setup().await;
    let browser = Browser::start().await;
    let app = &setup.app;

    // Not signed in yet.
    browser.goto(&format!("{app}/me")).await;
    assert!(browser.text().await.contains("not signed in"));

    // An open-redirect return path is refused before the provider is asked.
    browser.goto(&format!("{app}/login/oidc?return=//evil.example/")).await;
    let text = browser.text().await;
    assert!(
        text.contains("login refused: the return path names another origin"),
        "{text}"
    );

    // A tampered state (same cookie name, another tail) is refused by name.
    browser.goto(&format!("{app}/login/oidc?return=/notes")).await;
    browser.wait_for_text("Sign-in").await;
    let authorize = setup
        .authorizations
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("the app redirected to the provider");
    let state = authorize
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("state="))
        .expect("the authorization URL carries the state")
        .to_owned();
    let mut tampered = state.clone();
    let last = if tampered.ends_with('A') { "B" } else { "A" };
    tampered.replace_range(42..43, last);
    browser
        .goto(&format!("{app}/login/oidc/callback?code=forged&state={tampered}"))
        .await;
    let text = browser.text().await;
    assert!(text.contains("login refused: tampered state"), "{text}");
    browser.goto(&format!("{app}/me")).await;
    assert!(
        browser.text().await.contains("not signed in"),
        "no session after a refusal"
    );

    // Two logins pending at once: start a second one (another return
    // path), complete it, then complete the first from its own page.
    browser.goto(&format!("{app}/login/oidc?return=/second")).await;
    let landed = sign_in_at_provider(&browser, "alice", "page /second").await;
    assert!(landed.contains("page /second"), "{landed}");
    browser.goto(&authorize).await;
    // The provider has a session now; it may or may not ask again.
    let landed = if browser.text().await.contains("Sign-in") {
        sign_in_at_provider(&browser, "alice", "page /notes").await
    } else {
        browser.wait_for_text("page /notes").await
    };
    assert!(
        landed.contains("page /notes"),
        "the first login completed too: {landed}"
    );

    // Signed in by session, as the provider's subject.
    browser.goto(&format!("{app}/me")).await;
    let text = browser.text().await;
    assert!(
        text.contains(&format!(
            "method=session subject=alice issuer={}",
            setup.provider.issuer()
        )),
        "{text}"
    );

    // The provider's session was recorded with the local one.
    browser.goto(&format!("{app}/provider-session")).await;
    let text = browser.text().await;
    assert!(
        text.starts_with(&format!("provider session {} ", setup.provider.issuer())) && text.trim().len() > 30,
        "the sid is recorded: {text}"
    );

    // RP-initiated logout: the local session ends, the provider's logout
    // page confirms, and the browser comes back signed out everywhere (the
    // next login asks for the password again).
    browser.goto(&format!("{app}/logout/oidc")).await;
    browser.wait_for_text("sign me out").await;
    browser.click("button[name=logout][value=yes]").await;
    let back = browser.wait_for_text("page /").await;
    assert!(back.contains("page /"), "{back}");
    browser.goto(&format!("{app}/me")).await;
    assert!(browser.text().await.contains("not signed in"), "signed out locally");
    browser.goto(&format!("{app}/login/oidc?return=/again")).await;
    let text = browser.wait_for_text("Sign-in").await;
    assert!(text.contains("Sign-in"), "the provider session ended too: {text}");
    sign_in_at_provider(&browser, "alice", "page /again").await;

    // A real ID token of an earlier login, substituted into the next
    // token response, is refused by its nonce, and no session is made.
    let issued = setup.provider.issued_id_tokens("stack").await;
    assert_eq!(issued.len(), 3, "one ID token per completed login");
    browser.goto(&format!("{app}/logout")).await;
    browser.goto(&format!("{app}/me")).await;
    assert!(browser.text().await.contains("not signed in"));
    setup.provider.substitute_next_id_token(&issued[0]).await;
    browser.goto(&format!("{app}/login/oidc?return=/third")).await;
    let text = if browser.text().await.contains("Sign-in") {
        sign_in_at_provider(&browser, "alice", "login refused").await
    } else {
        browser.wait_for_text("login refused").await
    };
    assert!(text.contains("login refused: id token nonce"), "{text}");
    browser.goto(&format!("{app}/me")).await;
    assert!(
        browser.text().await.contains("not signed in"),
        "no session after a refusal"
    );

    // A replayed callback URL is refused (its transaction is gone) and
    // makes no session in a fresh browser.
    let used = setup
        .callbacks
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|query| query.contains("code="))
        .cloned()
        .expect("a callback with a code");
    drop(browser);
    let fresh = Browser::start().await;
    fresh.goto(&format!("{app}/login/oidc/callback?{used}")).await;
    let text = fresh.text().await;
    assert!(text.contains("login refused: unknown state"), "{text}");
    fresh.goto(&format!("{app}/me")).await;
    assert!(fresh.text().await.contains("not signed in"));
}
