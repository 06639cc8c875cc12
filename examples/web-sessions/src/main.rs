//! A first-party web app on server-side sessions: an HTML login form, a
//! protected page, a form post, logout, and "log out everywhere", with
//! every cookie-authenticated form CSRF-protected.
//!
//! ```text
//! cargo run -p web-sessions        # then open http://127.0.0.1:3000
//! ```
//!
//! Plain HTTP on localhost: the cookie drops `Secure` and the `__Host-`
//! prefix (`insecure_http`). Behind TLS in production, remove those calls.
//! `PORTCULLIS_ADDR` sets the address.

use std::sync::Arc;

use axum::Router;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use serde::Deserialize;
use tower::ServiceBuilder;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The form fields every page's forms carry.
fn hidden(token: &CsrfToken) -> Option<String> {
    let value = token.value().ok()?;
    Some(format!(
        r#"<input type="hidden" name="csrf_token" value="{}">"#,
        escape(&value)
    ))
}

async fn home(session: Session, token: CsrfToken) -> Response {
    let Some(csrf) = hidden(&token) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let page = match session.subject() {
        None => format!(
            r#"<h1>Welcome</h1><form method="post" action="/login">{csrf}
<input name="username" placeholder="name"><button>Sign in</button></form>"#
        ),
        Some(user) => {
            let notes: Vec<String> = session.get("notes").ok().flatten().unwrap_or_default();
            let items: String = notes.iter().map(|n| format!("<li>{}</li>", escape(n))).collect();
            format!(
                r#"<h1>Hello, {user}</h1><ul>{items}</ul>
<form method="post" action="/notes">{csrf}<input name="note"><button>Add</button></form>
<form method="post" action="/logout">{csrf}<button>Sign out</button></form>
<form method="post" action="/logout-everywhere">{csrf}<button>Sign out everywhere</button></form>"#,
                user = escape(&user)
            )
        }
    };
    Html(page).into_response()
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

/// A real app checks a password here; the demo trusts the name.
async fn login(session: Session, Form(login): Form<Login>) -> Redirect {
    session.login(login.username, ["notes:write"]);
    Redirect::to("/")
}

#[derive(Deserialize)]
struct Note {
    note: String,
}

async fn add_note(session: Session, Form(note): Form<Note>) -> Response {
    if session.subject().is_none() {
        return Redirect::to("/").into_response();
    }
    let mut notes: Vec<String> = session.get("notes").ok().flatten().unwrap_or_default();
    notes.push(note.note);
    match session.insert("notes", &notes) {
        Ok(()) => Redirect::to("/").into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn logout(session: Session) -> Redirect {
    session.logout();
    Redirect::to("/")
}

async fn logout_everywhere(session: Session) -> Response {
    match session.end_all().await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let sessions = SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http();
    let csrf = CsrfLayer::new().insecure_http();
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/notes", post(add_note))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(ServiceBuilder::new().layer(sessions).layer(csrf));

    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
