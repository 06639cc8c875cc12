//! Sign-in with a real OpenID provider (panva oidc-provider on loopback) in
//! a real headless Chromium, into a `SessionLayer` session: the full login
//! through the provider's login and consent pages, two logins pending in
//! one browser at once and two tabs logging in at once, the refusals
//! (tampered state, another tab's state, replayed callback, substituted ID
//! token, open-redirect return path), each with its named reason and no
//! session, and the provider's own tokens kept sealed in the session store
//! and refreshed once for many concurrent requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, StatusCode};
use portcullis::Identity;
use portcullis::oidc::{ClientConfig, MemoryReplayCache, OidcClient, ReturnPath};
use portcullis::session::{MemoryStore, Session, SessionLayer, SessionStore};
use portcullis::{AuthMethod, Principal, SecretKeyring};
use portcullis_tests::client::{Body, Client};
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
    /// While set, the callback only records its query (the code stays
    /// unredeemed, its transaction pending) and answers "held".
    hold_callbacks: Arc<AtomicBool>,
}

/// One browser at a time: two Chromium and ChromeDriver pairs starting
/// together on a 2-core machine reset each other's connections.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    if app.hold_callbacks.load(Ordering::SeqCst) {
        return "held".into_response();
    }
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

/// The provider's access token of this session's login (refreshed when
/// due), for the app's calls to the provider's APIs.
async fn upstream_token(State(app): State<App>, session: Session) -> Response {
    match app.oidc.access_token(&session).await {
        Ok(token) => format!("refreshed={} token={}", token.refreshed, token.token).into_response(),
        Err(error) => (error.status(), format!("no upstream token: {}", error.reason())).into_response(),
    }
}

async fn page(uri: http::Uri) -> String {
    format!("page {}", uri.path())
}

struct Setup {
    provider: OidcProvider,
    app: String,
    addr: std::net::SocketAddr,
    callbacks: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
    hold_callbacks: Arc<AtomicBool>,
    store: Arc<MemoryStore>,
}

/// The client's choices a test varies.
#[derive(Default)]
struct Options {
    /// Keep the provider's tokens, refreshing once this much is left.
    keep_tokens_refreshing_ahead: Option<Duration>,
    /// The provider's access-token lifetime (default 10 min).
    access_token_lifetime: Option<Duration>,
    /// Authenticate by `private_key_jwt` with this key (registered at the
    /// provider) instead of the client secret.
    assertion_key: Option<portcullis::SigningKey>,
}

/// The `private_key_jwt` assertions of the client `stack` at `provider`,
/// signed with `key`.
fn assertions(key: &portcullis::SigningKey, provider: &OidcProvider) -> portcullis::JwtIssuer {
    portcullis::JwtIssuer::new(key.clone(), "stack", provider.issuer())
}

/// The JWKS that publishes `key`.
fn jwks_of(key: &portcullis::SigningKey) -> serde_json::Value {
    portcullis::JwtIssuer::new(key.clone(), "stack", "any").jwks()
}

async fn setup() -> Setup {
    setup_with(Options::default()).await
}

async fn setup_with(options: Options) -> Setup {
    // The app's port is known before the provider starts (its redirect
    // URI is registered there).
    let (listener, addr) = loopback_listener().await;
    let app = format!("http://127.0.0.1:{}", addr.port());
    let provider = OidcProvider::start_with_access_token_lifetime(
        &[ProviderClient {
            id: "stack".into(),
            secret: "a-client-secret-of-enough-length".into(),
            redirect_uris: vec![format!("{app}/login/oidc/callback")],
            post_logout_redirect_uris: vec![format!("{app}/")],
            backchannel_logout_uri: None,
            jwks: options.assertion_key.as_ref().map(jwks_of),
        }],
        options.access_token_lifetime.unwrap_or(Duration::from_secs(600)),
    );
    let mut config = ClientConfig::new(
        "stack",
        "a-client-secret-of-enough-length",
        format!("{app}/login/oidc/callback"),
    );
    if let Some(key) = &options.assertion_key {
        config.auth = portcullis::oidc::ClientAuth::PrivateKeyJwt(assertions(key, &provider));
    }
    if let Some(ahead) = options.keep_tokens_refreshing_ahead {
        config = config.keep_upstream_tokens(Vec::<String>::new());
        config.refresh_ahead = ahead;
    }
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
    let hold_callbacks = Arc::new(AtomicBool::new(false));
    let store = Arc::new(MemoryStore::new());
    let state = App {
        oidc,
        callbacks: callbacks.clone(),
        authorizations: authorizations.clone(),
        base: app.clone(),
        hold_callbacks: hold_callbacks.clone(),
    };
    let router = Router::new()
        .route("/login/oidc", get(start))
        .route("/login/oidc/callback", get(callback))
        .route("/me", get(me))
        .route("/logout", get(logout))
        .route("/logout/oidc", get(logout_at_provider))
        .route("/provider-session", get(provider_session))
        .route("/upstream-token", get(upstream_token))
        .fallback(get(page))
        .with_state(state)
        .layer(SessionLayer::new(store.clone()).insecure_http());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Setup {
        provider,
        app,
        addr,
        callbacks,
        authorizations,
        hold_callbacks,
        store,
    }
}

/// After a login was started: signs in at the provider if it asks, else
/// waits for the provider to send the browser straight on; returns the
/// text of the page showing `landing`.
async fn finish_at_provider(browser: &Browser, landing: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = browser.text().await;
        if text.contains(landing) {
            return text;
        }
        if text.contains("Sign-in") {
            return sign_in_at_provider(browser, "alice", landing).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached {landing:?}; the page says: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `name` in a query string.
fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name} in {query}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_at_the_provider_into_a_session_and_refusals_name_their_reason() {
    let _one_browser = ONE_BROWSER.lock().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_log_in_at_once_and_a_callback_with_another_tabs_state_is_refused() {
    let _one_browser = ONE_BROWSER.lock().await;
    let setup = setup().await;
    let app = &setup.app;
    let browser = Browser::start().await;

    // Two tabs of one browser (one cookie jar) each start a login and
    // stop at the provider's sign-in page; then both complete, the second
    // first. Neither transaction overwrote the other.
    let first_tab = browser.current_tab().await;
    browser.goto(&format!("{app}/login/oidc?return=/tab-one")).await;
    browser.wait_for_text("Sign-in").await;
    let second_tab = browser.new_tab().await;
    browser.switch_to(&second_tab).await;
    browser.goto(&format!("{app}/login/oidc?return=/tab-two")).await;
    let landed = sign_in_at_provider(&browser, "alice", "page /tab-two").await;
    assert!(landed.contains("page /tab-two"), "{landed}");
    browser.switch_to(&first_tab).await;
    let landed = sign_in_at_provider(&browser, "alice", "page /tab-one").await;
    assert!(
        landed.contains("page /tab-one"),
        "the first tab's login completed too: {landed}"
    );
    browser.goto(&format!("{app}/me")).await;
    let text = browser.text().await;
    assert!(text.contains("method=session subject=alice"), "{text}");
    browser.goto(&format!("{app}/logout")).await;
    browser.goto(&format!("{app}/me")).await;
    assert!(browser.text().await.contains("not signed in"));

    // Two more logins, their callbacks held: two real, unredeemed codes,
    // both transactions pending in this browser.
    setup.hold_callbacks.store(true, Ordering::SeqCst);
    let mut held = Vec::new();
    for (tab, path) in [(&first_tab, "/held-one"), (&second_tab, "/held-two")] {
        browser.switch_to(tab).await;
        browser.goto(&format!("{app}/login/oidc?return={path}")).await;
        finish_at_provider(&browser, "held").await;
        held.push(
            setup
                .callbacks
                .lock()
                .expect("lock")
                .last()
                .cloned()
                .expect("the callback was recorded"),
        );
    }
    setup.hold_callbacks.store(false, Ordering::SeqCst);
    let (one, two) = (&held[0], &held[1]);
    assert_ne!(param(one, "state"), param(two, "state"));

    // The second login's code with the first tab's state: the first tab's
    // transaction opens, but its PKCE verifier is not the one the code was
    // issued for, and the provider refuses the exchange.
    browser
        .goto(&format!(
            "{app}/login/oidc/callback?code={}&state={}&iss={}",
            param(two, "code"),
            param(one, "state"),
            param(two, "iss")
        ))
        .await;
    let text = browser.text().await;
    assert!(text.contains("login refused: code refused"), "{text}");
    browser.goto(&format!("{app}/me")).await;
    assert!(
        browser.text().await.contains("not signed in"),
        "no session after a callback with another tab's state"
    );
    // The state it spent is gone for good: its own code cannot use it now.
    browser.goto(&format!("{app}/login/oidc/callback?{one}")).await;
    let text = browser.text().await;
    assert!(text.contains("login refused: replayed callback"), "{text}");
    browser.goto(&format!("{app}/me")).await;
    assert!(browser.text().await.contains("not signed in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_tokens_are_kept_sealed_and_refreshed_once_for_concurrent_requests() {
    let _one_browser = ONE_BROWSER.lock().await;
    // Access tokens live 40 s and are refreshed with 34 s left: due 6 s
    // after they are issued.
    let setup = setup_with(Options {
        keep_tokens_refreshing_ahead: Some(Duration::from_secs(34)),
        access_token_lifetime: Some(Duration::from_secs(40)),
        ..Options::default()
    })
    .await;
    let app = &setup.app;
    let browser = Browser::start().await;
    browser.goto(&format!("{app}/login/oidc?return=/me")).await;
    let landed = sign_in_at_provider(&browser, "alice", "method=session").await;
    let logged_in = std::time::Instant::now();
    assert!(landed.contains("method=session subject=alice"), "{landed}");
    let cookie = browser.cookie_header().await;
    let addr = setup.addr;
    let fetch = || {
        let cookie = cookie.clone();
        async move {
            let answer = Client::default()
                .call(
                    addr,
                    http::Method::GET,
                    "/upstream-token",
                    Body::None,
                    &[("cookie", &cookie)],
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            answer.body
        }
    };
    let token_of = |body: &str| body.split("token=").nth(1).expect("a token").trim().to_owned();

    // Fresh: the login's own token, no refresh.
    let first = fetch().await;
    assert!(first.starts_with("refreshed=false "), "{first}");
    let login_token = token_of(&first);
    assert_eq!(setup.provider.refresh_grants("stack").await, 0);

    // Kept in the session store, sealed: the stored entry holds no token.
    let stored = || async {
        let sessions = setup
            .store
            .sessions_of(&Principal::new(setup.provider.issuer(), "alice"))
            .await
            .expect("list");
        assert_eq!(sessions.len(), 1, "one session");
        sessions[0]
            .1
            .data
            .get(OidcClient::SESSION_KEY)
            .cloned()
            .expect("the OIDC entry")
    };
    let entry = stored().await;
    assert!(entry.contains("\"tokens\""), "{entry}");
    assert!(!entry.contains(&login_token), "the access token is sealed: {entry}");
    assert!(!cookie.contains(&login_token), "and never in a cookie");

    // Due: eight concurrent requests of the session share one refresh.
    let due = Duration::from_millis(6_500).saturating_sub(logged_in.elapsed());
    tokio::time::sleep(due).await;
    let requests: Vec<_> = (0..8).map(|_| tokio::spawn(fetch())).collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("request"));
    }
    let refreshed: Vec<String> = answers.iter().map(|body| token_of(body)).collect();
    for body in &answers {
        assert!(body.starts_with("refreshed=true "), "{body}");
    }
    assert!(
        refreshed.iter().all(|token| *token == refreshed[0]),
        "every request got the one refreshed token"
    );
    assert_ne!(refreshed[0], login_token, "a new access token");
    assert_eq!(
        setup.provider.refresh_grants("stack").await,
        1,
        "one refresh for eight concurrent requests"
    );

    // Written back: the next request uses the refreshed token as kept.
    let next = fetch().await;
    assert_eq!(next, format!("refreshed=false token={}", refreshed[0]));
    assert_eq!(setup.provider.refresh_grants("stack").await, 1);
    let entry = stored().await;
    assert!(!entry.contains(&refreshed[0]), "the refreshed token is sealed too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_authenticated_by_private_key_jwt_signs_in_and_a_wrong_key_is_refused() {
    let _one_browser = ONE_BROWSER.lock().await;
    let registered = portcullis::SigningKey::generate_p256()
        .expect("key")
        .with_kid("stack-1");
    let setup = setup_with(Options {
        assertion_key: Some(registered.clone()),
        ..Options::default()
    })
    .await;
    let app = &setup.app;
    let issuer = setup.provider.issuer();

    // Straight at the real token endpoint, with a real transaction and a
    // made-up code: the registered key authenticates (the provider then
    // refuses only the code), a key it never saw does not.
    let attempt = |key: portcullis::SigningKey| {
        let issuer = issuer.clone();
        let provider = &setup.provider;
        async move {
            let mut config = ClientConfig::new("stack", "", format!("{}/login/oidc/callback", "http://127.0.0.1:1"));
            config.auth = portcullis::oidc::ClientAuth::PrivateKeyJwt(assertions(&key, provider));
            let client = OidcClient::discover(
                &issuer,
                config,
                &SecretKeyring::single(&[9; 32]).expect("ring"),
                Arc::new(MemoryReplayCache::default()),
            )
            .await
            .expect("discovery");
            let login = client.begin_login(ReturnPath::parse("/").expect("path"));
            let state = param(login.url.split_once('?').expect("query").1, "state").to_owned();
            let cookie = login.set_cookie.split(';').next().expect("cookie").to_owned();
            let mut headers = HeaderMap::new();
            headers.insert(http::header::COOKIE, cookie.parse().expect("header"));
            let query = format!("code=made-up&state={state}&iss={}", issuer);
            match client.complete_login(&headers, &query).await {
                Err(portcullis::oidc::CallbackError::CodeRefused(error)) => error,
                other => panic!("expected the token endpoint to refuse: {other:?}"),
            }
        }
    };
    assert_eq!(
        attempt(registered.clone()).await,
        "invalid_grant",
        "the registered key authenticates the client; only the code is refused"
    );
    let stranger = portcullis::SigningKey::generate_p256()
        .expect("key")
        .with_kid("stack-1");
    assert_eq!(
        attempt(stranger).await,
        "invalid_client",
        "an assertion signed by an unregistered key is refused"
    );
    let other_name = OidcClient::discover(
        &issuer,
        {
            let mut config = ClientConfig::new("stack", "", "http://127.0.0.1:1/cb");
            config.auth = portcullis::oidc::ClientAuth::PrivateKeyJwt(portcullis::JwtIssuer::new(
                registered.clone(),
                "someone-else",
                issuer.clone(),
            ));
            config
        },
        &SecretKeyring::single(&[9; 32]).expect("ring"),
        Arc::new(MemoryReplayCache::default()),
    )
    .await
    .expect_err("an assertion issuer not named after the client is refused at build time");
    assert!(other_name.to_string().contains("client_id"), "{other_name}");

    // The whole login in a browser, the code exchanged with an assertion.
    let browser = Browser::start().await;
    browser.goto(&format!("{app}/login/oidc?return=/me")).await;
    let landed = sign_in_at_provider(&browser, "alice", "method=session").await;
    assert!(landed.contains("method=session subject=alice"), "{landed}");
}
