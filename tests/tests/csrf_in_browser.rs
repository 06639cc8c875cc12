//! CSRF in a real headless Chromium: log in through an HTML form on one
//! loopback origin, post a protected form, then visit an attacker page on
//! another origin (another port) that auto-submits a form and issues a
//! `fetch` POST to the app. Both forged posts are refused by CsrfLayer
//! (the browser sends the session cookie along: the two origins are
//! same-site, so `SameSite=Lax` does not stop them), and the session
//! survives intact.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Request, State};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use portcullis_tests::spawn_axum;
use portcullis_tests::webdriver::Browser;
use serde::Deserialize;
use tower::ServiceBuilder;

/// One browser at a time: two Chromium and ChromeDriver pairs starting
/// together on a 2-core machine reset each other's connections.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the app saw of every POST: path, `Sec-Fetch-Site`, status.
type Seen = Arc<Mutex<Vec<(String, String, u16)>>>;

#[derive(Deserialize)]
struct Login {
    username: String,
}

#[derive(Deserialize)]
struct Note {
    note: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home(session: Session, token: CsrfToken) -> Response {
    let Ok(token) = token.value() else {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let token = escape(&token);
    let page = match session.subject() {
        None => format!(
            r#"<h1>Sign in</h1><form method="post" action="/login">
               <input type="hidden" name="csrf_token" value="{token}">
               <input id="username" name="username"><button id="signin" type="submit">Sign in</button></form>"#
        ),
        Some(user) => {
            let notes: Vec<String> = session.get("notes").ok().flatten().unwrap_or_default();
            let items: String = notes.iter().map(|n| format!("<li>{}</li>", escape(n))).collect();
            format!(
                r#"<h1>Signed in as {user}</h1><ul id="notes">{items}</ul>
                   <form method="post" action="/notes">
                   <input type="hidden" name="csrf_token" value="{token}">
                   <input id="note" name="note"><button id="add" type="submit">Add</button></form>"#,
                user = escape(&user)
            )
        }
    };
    Html(page).into_response()
}

async fn login(session: Session, Form(login): Form<Login>) -> Redirect {
    session.login(login.username, ["notes:write"]);
    Redirect::to("/")
}

async fn add_note(session: Session, Form(note): Form<Note>) -> Response {
    if session.subject().is_none() {
        return http::StatusCode::UNAUTHORIZED.into_response();
    }
    let mut notes: Vec<String> = session.get("notes").ok().flatten().unwrap_or_default();
    notes.push(note.note);
    match session.insert("notes", &notes) {
        Ok(()) => Redirect::to("/").into_response(),
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn record(State(seen): State<Seen>, request: Request, next: Next) -> Response {
    let is_post = request.method() == http::Method::POST;
    let path = request.uri().path().to_owned();
    let site = request
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(request).await;
    if is_post {
        seen.lock()
            .expect("lock")
            .push((path, site, response.status().as_u16()));
    }
    response
}

fn attacker(app: std::net::SocketAddr) -> Router {
    let form = format!(
        r#"<h1>Win a prize</h1><form id="f" method="post" action="http://{app}/notes">
           <input type="hidden" name="note" value="forged by form"></form>
           <script>document.getElementById('f').submit();</script>"#
    );
    let fetch = format!(
        r#"<h1>Loading</h1><p id="result">pending</p><script>
           fetch('http://{app}/notes', {{method: 'POST', credentials: 'include', mode: 'no-cors',
             headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: 'note=forged+by+fetch'}})
           .then(() => document.getElementById('result').textContent = 'sent')
           .catch(e => document.getElementById('result').textContent = 'sent: ' + e);
           </script>"#
    );
    let login = format!(
        r#"<h1>Welcome</h1><form id="l" method="post" action="http://{app}/login">
           <input type="hidden" name="username" value="mallory"></form>
           <script>document.getElementById('l').submit();</script>"#
    );
    Router::new()
        .route("/form", get(move || async move { Html(form) }))
        .route("/fetch", get(move || async move { Html(fetch) }))
        .route("/login-form", get(move || async move { Html(login) }))
}

fn app_router(seen: &Seen) -> Router {
    let stack = ServiceBuilder::new()
        .layer(SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http())
        .layer(CsrfLayer::new().insecure_http());
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/notes", post(add_note))
        .layer(stack)
        .layer(middleware::from_fn_with_state(seen.clone(), record))
}

async fn wait_for_post(seen: &Seen, count: usize) -> Vec<(String, String, u16)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let posts = seen.lock().expect("lock").clone();
        if posts.len() >= count {
            return posts;
        }
        assert!(Instant::now() < deadline, "the app saw only {posts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_posts_its_own_forms_and_forged_ones_are_refused() {
    let _one = ONE_BROWSER.lock().await;
    let seen: Seen = Arc::default();
    let app = spawn_axum(app_router(&seen)).await;
    let evil = spawn_axum(attacker(app)).await;
    assert_ne!(app.port(), evil.port());

    let browser = Browser::start().await;
    browser.goto(&format!("http://{app}/")).await;
    browser.wait_for_text("Sign in").await;
    browser.type_into("#username", "alice").await;
    browser.click("#signin").await;
    browser.wait_for_text("Signed in as alice").await;
    browser.type_into("#note", "my first note").await;
    browser.click("#add").await;
    browser.wait_for_text("my first note").await;
    let posts = wait_for_post(&seen, 2).await;
    assert_eq!(
        posts,
        [
            ("/login".to_owned(), "same-origin".to_owned(), 303),
            ("/notes".to_owned(), "same-origin".to_owned(), 303)
        ],
        "the app's own forms pass"
    );

    // The attacker's auto-submitting form.
    browser.goto(&format!("http://{evil}/form")).await;
    let posts = wait_for_post(&seen, 3).await;
    assert_eq!(posts[2].0, "/notes");
    assert_eq!(
        posts[2].1, "same-site",
        "another port of 127.0.0.1 is another origin of the same site"
    );
    assert_eq!(posts[2].2, 403, "the forged form post is refused");
    let refusal = browser.wait_for_text("cross-site request").await;
    assert!(refusal.contains("cross-site request"), "{refusal}");

    // The attacker's fetch POST (credentials included).
    browser.goto(&format!("http://{evil}/fetch")).await;
    browser.wait_for_text("sent").await;
    let posts = wait_for_post(&seen, 4).await;
    assert_eq!(
        (posts[3].0.as_str(), posts[3].2),
        ("/notes", 403),
        "the forged fetch is refused"
    );

    // The session is intact, with only the note its owner wrote.
    browser.goto(&format!("http://{app}/")).await;
    let page = browser.wait_for_text("Signed in as alice").await;
    assert!(page.contains("my first note"), "{page}");
    assert!(!page.contains("forged"), "no forged note landed: {page}");
}

/// Login CSRF in a real browser: a visitor with no session at the app
/// lands on the attacker's page, which auto-submits a login form for the
/// attacker's account. No cookie rides along, yet the post is refused and
/// the visitor is not signed in as the attacker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_login_form_does_not_sign_the_visitor_in() {
    let _one = ONE_BROWSER.lock().await;
    let seen: Seen = Arc::default();
    let app = spawn_axum(app_router(&seen)).await;
    let evil = spawn_axum(attacker(app)).await;

    let browser = Browser::start().await;
    browser.goto(&format!("http://{evil}/login-form")).await;
    let posts = wait_for_post(&seen, 1).await;
    assert_eq!(posts[0].0, "/login");
    assert_eq!(posts[0].1, "same-site", "another port: another origin of the same site");
    assert_eq!(posts[0].2, 403, "the forged login is refused");
    let refusal = browser.wait_for_text("cross-site request").await;
    assert!(refusal.contains("cross-site request"), "{refusal}");

    browser.goto(&format!("http://{app}/")).await;
    let page = browser.wait_for_text("Sign in").await;
    assert!(!page.contains("mallory"), "not signed in as the attacker: {page}");

    // The app's own login form still works, with its pre-session token.
    browser.type_into("#username", "alice").await;
    browser.click("#signin").await;
    browser.wait_for_text("Signed in as alice").await;
    let posts = wait_for_post(&seen, 2).await;
    assert_eq!(posts[1], ("/login".to_owned(), "same-origin".to_owned(), 303));
}
