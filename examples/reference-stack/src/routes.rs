//! The HTTP routes of the reference stack.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use portcullis::csrf::CsrfToken;
use portcullis::jwt::JwtVerifier;
use portcullis::jwt::remote::RemoteKeys;
use portcullis::oidc::{OidcClient, ReturnPath};
use portcullis::revocation::{RefreshEndpoint, RefreshTokens, RevocationEndpoint, Revocations};
use portcullis::session::{Session, Sessions};
use portcullis::{Identity, JwtIssuer, RequireAuthLayer};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;

use crate::data::{Notes, Users};

/// What the handlers share.
pub(crate) struct App {
    /// Sign-in with an OpenID provider, when configured.
    pub(crate) oidc: Option<OidcClient>,
    pub(crate) users: Users,
    pub(crate) notes: Notes,
    pub(crate) sessions: Sessions,
    pub(crate) tokens: RefreshTokens,
    pub(crate) revocations: Revocations,
    pub(crate) verifier: JwtVerifier,
    pub(crate) issuer: JwtIssuer,
    pub(crate) remote: Option<RemoteKeys>,
    pub(crate) redis: Option<portcullis::redis::RedisConnection>,
    pub(crate) database: Option<portcullis::postgres::Pool>,
    /// The local session cache's counters, when it is on.
    pub(crate) cache_stats: Option<CacheStatsSource>,
}

/// Reads the session cache's counters.
pub(crate) type CacheStatsSource = Arc<dyn Fn() -> Option<portcullis::redis::CacheStats> + Send + Sync>;

type Shared = Arc<App>;

/// Where the provider posts logout tokens (exempt from CSRF: the token is
/// signed, and no cookie comes with it).
pub(crate) const BACKCHANNEL_LOGOUT: &str = "/logout/oidc/backchannel";

pub(crate) fn router(app: Shared) -> Router {
    let authenticated = RequireAuthLayer::new();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me).layer(authenticated.clone()))
        .route(
            "/notes",
            get(list_notes)
                .layer(RequireAuthLayer::new().scope("notes:read"))
                .merge(post(add_note).layer(RequireAuthLayer::new().scope("notes:write"))),
        )
        .route(
            "/preferences",
            get(preferences)
                .merge(post(set_preferences))
                .layer(authenticated.clone()),
        )
        .route("/sessions", get(list_sessions).layer(authenticated.clone()))
        .route(
            "/sessions/logout-everywhere",
            post(logout_everywhere).layer(authenticated),
        )
        .route("/oauth/token", post(token))
        .route_service(
            "/oauth/revoke",
            RevocationEndpoint::new(app.tokens.clone(), Some(app.verifier.clone()), app.revocations.clone()),
        )
        .route("/.well-known/jwks.json", get(jwks))
        .route("/login/oidc", get(oidc_login))
        .route("/login/oidc/callback", get(oidc_callback))
        .route("/logout/oidc", post(oidc_logout))
        .route(BACKCHANNEL_LOGOUT, post(oidc_backchannel_logout))
        .route_service(
            crate::grpc::WHO_AM_I,
            tower::ServiceBuilder::new()
                .layer(RequireAuthLayer::new())
                .service(crate::grpc::IdentityService),
        )
        .with_state(app)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A 503 that says what failed, never where or why inside (no address or
/// driver error in a body); the detail goes to the log.
/// A refusal that names its reason (and never an address or a token).
fn refused(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}

fn oidc_not_configured() -> Response {
    refused(
        StatusCode::NOT_FOUND,
        "sign-in with an OpenID provider is not configured",
    )
}

/// `GET /login/oidc?return=/path`: to the provider, with this login's
/// transaction cookie.
async fn oidc_login(State(app): State<Shared>, axum::extract::RawQuery(query): axum::extract::RawQuery) -> Response {
    let Some(oidc) = app.oidc.as_ref() else {
        return oidc_not_configured();
    };
    let return_to = match ReturnPath::from_query(query.as_deref()) {
        Ok(path) => path,
        Err(error) => return refused(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let redirect = oidc.begin_login(return_to);
    let mut response = Redirect::to(&redirect.url).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&redirect.set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /login/oidc/callback`: the code exchanged, the ID token checked,
/// the user logged into a session; then to the validated return path.
async fn oidc_callback(
    State(app): State<Shared>,
    session: Session,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let Some(oidc) = app.oidc.as_ref() else {
        return oidc_not_configured();
    };
    match oidc
        .complete_login(&headers, query.as_deref().unwrap_or_default())
        .await
    {
        Ok(login) => {
            if let Err(error) = oidc.log_in(&session, &login) {
                return unavailable(error);
            }
            let mut response = Redirect::to(login.return_to.as_str()).into_response();
            if let Ok(cookie) = HeaderValue::from_str(&login.remove_cookie) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(error) => {
            eprintln!("oidc callback refused: {error}");
            refused(error.status(), error.reason())
        }
    }
}

/// `POST /logout/oidc` (CSRF-checked): the local session ends, then the
/// browser goes to the provider's logout page, which returns here.
async fn oidc_logout(State(app): State<Shared>, session: Session, headers: HeaderMap) -> Response {
    let Some(oidc) = app.oidc.as_ref() else {
        return oidc_not_configured();
    };
    let back = format!("{}/", app.issuer.issuer());
    match oidc.end_session(&session, Some(&back), None) {
        Some(url) if is_form(&headers) => Redirect::to(&url).into_response(),
        Some(url) => axum::Json(json!({ "redirect": url })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `POST /logout/oidc/backchannel`: the provider's logout token, checked
/// (a replayed `jti` is refused on every instance), ends the sessions it
/// names on every instance sharing this store: with a `sid`, the sessions
/// of that provider session; with a `sub` alone, all of the user's.
async fn oidc_backchannel_logout(State(app): State<Shared>, body: Bytes) -> Response {
    let Some(oidc) = app.oidc.as_ref() else {
        return oidc_not_configured();
    };
    match oidc.backchannel_logout(&app.sessions, &body).await {
        Ok(ended) => {
            eprintln!("back-channel logout: {ended} session(s) ended");
            no_store(StatusCode::OK.into_response())
        }
        Err(error) => {
            eprintln!("back-channel logout refused: {error}");
            no_store(refused(error.status(), error.reason()))
        }
    }
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unavailable(detail: impl std::fmt::Display) -> Response {
    eprintln!("store unavailable: {detail}");
    (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// A body as form or JSON, per its content type.
fn parse<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, body: &Bytes) -> Result<T, String> {
    let parsed = if is_form(headers) {
        serde_json::to_value(
            form_pairs(body)
                .into_iter()
                .collect::<std::collections::HashMap<String, String>>(),
        )
        .and_then(serde_json::from_value)
    } else {
        serde_json::from_slice(body)
    };
    parsed.map_err(|error| format!("unreadable body: {error}"))
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

async fn healthz(State(app): State<Shared>) -> Response {
    if let Some(remote) = &app.remote
        && !remote.is_ready()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "external signing keys not loaded").into_response();
    }
    if let Some(redis) = &app.redis {
        let mut connection = redis.clone();
        let ping = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        if !matches!(ping, Ok(Ok(_))) {
            return (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable").into_response();
        }
    }
    if let Some(pool) = &app.database {
        let ping = tokio::time::timeout(Duration::from_millis(500), async {
            let client = pool.get().await.map_err(|_| ())?;
            client.simple_query("SELECT 1").await.map_err(|_| ())
        })
        .await;
        if !matches!(ping, Ok(Ok(_))) {
            return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response();
        }
    }
    (StatusCode::OK, "ok").into_response()
}

async fn home(State(app): State<Shared>, session: Session, csrf: CsrfToken) -> Response {
    let token = match csrf.value() {
        Ok(token) => escape(&token),
        Err(error) => return unavailable(error),
    };
    let page = match session.principal() {
        None => format!(
            r#"<!doctype html><title>Notes</title><h1>Sign in</h1>
<form method="post" action="/login"><input type="hidden" name="csrf_token" value="{token}">
<label>User <input id="username" name="username"></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="signin" type="submit">Sign in</button></form>"#
        ),
        Some(principal) => {
            let notes = match app.notes.list(&principal).await {
                Ok(notes) => notes,
                Err(error) => return unavailable(error),
            };
            let items: String = notes
                .iter()
                .map(|note| format!("<li>{}</li>", escape(&note.text)))
                .collect();
            format!(
                r#"<!doctype html><title>Notes</title><h1>Signed in as {subject}</h1>
<ul id="notes">{items}</ul>
<form method="post" action="/notes"><input type="hidden" name="csrf_token" value="{token}">
<input id="text" name="text"><button id="add" type="submit">Add</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{token}">
<button id="logout" type="submit">Sign out</button></form>"#,
                subject = escape(principal.subject())
            )
        }
    };
    Html(page).into_response()
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    State(app): State<Shared>,
    session: Session,
    csrf: CsrfToken,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credentials: Credentials = match parse(&headers, &body) {
        Ok(credentials) => credentials,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let Some(user) = app.users.check(&credentials.username, &credentials.password).await else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "bad credentials"})),
        )
            .into_response();
    };
    session.login(user.name, user.scopes.iter().copied());
    if is_form(&headers) {
        return Redirect::to("/").into_response();
    }
    match csrf.value() {
        Ok(token) => axum::Json(json!({"subject": user.name, "csrf_token": token})).into_response(),
        Err(error) => unavailable(error),
    }
}

async fn logout(session: Session, headers: HeaderMap) -> Response {
    session.logout();
    if is_form(&headers) {
        Redirect::to("/").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn me(identity: Identity) -> Response {
    axum::Json(json!({
        "subject": identity.subject(),
        "issuer": identity.issuer(),
        "method": identity.method().name(),
        "scopes": identity.scopes(),
    }))
    .into_response()
}

async fn list_notes(State(app): State<Shared>, identity: Identity) -> Response {
    match app.notes.list(identity.principal()).await {
        Ok(notes) => axum::Json(json!(notes)).into_response(),
        Err(error) => unavailable(error),
    }
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

/// The session key of the visitor's theme.
const THEME: &str = "theme";
const THEMES: [&str; 2] = ["light", "dark"];

/// `GET /preferences`: the theme picked on this device — data of the
/// session, not of the user, as a UI preference is.
async fn preferences(session: Session) -> Response {
    let theme: String = session
        .get(THEME)
        .ok()
        .flatten()
        .unwrap_or_else(|| THEMES[0].to_owned());
    axum::Json(json!({ "theme": theme })).into_response()
}

#[derive(Deserialize)]
struct NewPreferences {
    theme: String,
}

/// `POST /preferences` (`theme=light|dark`), CSRF-checked.
async fn set_preferences(session: Session, headers: HeaderMap, body: Bytes) -> Response {
    let wanted: NewPreferences = match parse(&headers, &body) {
        Ok(wanted) => wanted,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    if !THEMES.contains(&wanted.theme.as_str()) {
        return (StatusCode::BAD_REQUEST, "theme must be light or dark").into_response();
    }
    match session.insert(THEME, &wanted.theme) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn add_note(State(app): State<Shared>, identity: Identity, headers: HeaderMap, body: Bytes) -> Response {
    let note: NewNote = match parse(&headers, &body) {
        Ok(note) => note,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    match app.notes.add(identity.principal(), note.text).await {
        Ok(_) if is_form(&headers) => Redirect::to("/").into_response(),
        Ok(note) => (StatusCode::CREATED, axum::Json(json!(note))).into_response(),
        Err(error) => unavailable(error),
    }
}

fn seconds(at: std::time::SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

async fn list_sessions(State(app): State<Shared>, identity: Identity, session: Session) -> Response {
    let listed = if session.principal().as_ref() == Some(identity.principal()) {
        session.list().await
    } else {
        app.sessions.list(identity.principal()).await
    };
    match listed {
        Ok(sessions) => axum::Json(
            sessions
                .iter()
                .map(|info| {
                    json!({
                        "handle": info.handle,
                        "created": seconds(info.created),
                        "last_seen": seconds(info.last_seen),
                        "user_agent": info.user_agent,
                        "current": info.current,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(error) => unavailable(error),
    }
}

/// Ends every session, refresh family and earlier access token of the caller.
async fn logout_everywhere(State(app): State<Shared>, identity: Identity) -> Response {
    // By principal: an external issuer's `alice` ends only her own.
    let principal = identity.principal();
    let sessions = match app.sessions.end_all(principal).await {
        Ok(ended) => ended,
        Err(error) => return unavailable(error),
    };
    let families = match app.tokens.revoke_subject(principal).await {
        Ok(revoked) => revoked,
        Err(error) => return unavailable(error),
    };
    if let Err(error) = app.revocations.cut_off_subject(principal).await {
        return unavailable(error);
    }
    axum::Json(json!({"sessions_ended": sessions, "refresh_families_revoked": families})).into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    let mut response = (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The token endpoint: `grant_type=password` here, `refresh_token` by the
/// library's RFC 6749 endpoint.
async fn token(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_form(&headers) {
        return oauth_error("invalid_request", "the body must be application/x-www-form-urlencoded");
    }
    let form = form_pairs(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match field("grant_type") {
        Some("password") => {
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return oauth_error("invalid_request", "username and password are required");
            };
            let Some(user) = app.users.check(username, password).await else {
                return oauth_error("invalid_grant", "bad credentials");
            };
            match app
                .tokens
                .issue(user.name, app.users.scopes_of(user.name).iter().copied())
                .await
            {
                Ok(pair) => {
                    let mut response = axum::Json(json!({
                        "access_token": pair.access_token,
                        "refresh_token": pair.refresh_token,
                        "token_type": "Bearer",
                        "expires_in": pair.expires_in.as_secs(),
                        "scope": pair.scope,
                    }))
                    .into_response();
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                Err(error) => unavailable(error),
            }
        }
        _ => {
            // refresh_token and every error case of RFC 6749 §5.2.
            let mut request = http::Request::post("/oauth/token");
            if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let Ok(request) = request.body(axum::body::Body::from(body)) else {
                return oauth_error("invalid_request", "unreadable request");
            };
            match RefreshEndpoint::new(app.tokens.clone()).oneshot(request).await {
                Ok(response) => response.map(axum::body::Body::new),
                Err(never) => match never {},
            }
        }
    }
}

/// The JWKS, cacheable for the keyring's publish lead: a staged key
/// reaches every verifier before it may sign.
async fn jwks(State(app): State<Shared>) -> Response {
    let mut response = axum::Json(app.issuer.jwks()).into_response();
    if let Ok(value) = HeaderValue::try_from(app.issuer.jwks_cache_control()) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Counters in the Prometheus text format: sessions this instance moved
/// from a previous secret to the current one (a rotation's progress), and
/// the session cache's, when it is on.
async fn metrics(State(app): State<Shared>) -> Response {
    let mut body = format!(
        "# HELP portcullis_sessions_rekeyed_total Sessions moved from a previous secret to the current one.\n\
         # TYPE portcullis_sessions_rekeyed_total counter\n\
         portcullis_sessions_rekeyed_total {}\n",
        app.sessions.rekeyed_sessions()
    );
    if let Some(stats) = app.cache_stats.as_ref().and_then(|source| source()) {
        let rows: [(&str, &str, &str, u64); 9] = [
            (
                "hits_total",
                "counter",
                "Session reads served from the local cache.",
                stats.hits,
            ),
            (
                "misses_total",
                "counter",
                "Session reads that went to the store with the cache serving.",
                stats.misses,
            ),
            (
                "bypassed_total",
                "counter",
                "Session reads that went to the store because the feed was lost or silent.",
                stats.bypassed,
            ),
            (
                "invalidations_total",
                "counter",
                "Cached sessions dropped because the store said they changed.",
                stats.invalidations,
            ),
            (
                "feed_losses_total",
                "counter",
                "Times the invalidation feed was lost.",
                stats.feed_losses,
            ),
            (
                "resyncs_total",
                "counter",
                "Times the cache was emptied and the feed followed again.",
                stats.resyncs,
            ),
            (
                "entries",
                "gauge",
                "Sessions held in the local cache.",
                u64::try_from(stats.entries).unwrap_or(u64::MAX),
            ),
            (
                "serving",
                "gauge",
                "1 while reads are served from the cache, 0 while it is bypassed.",
                u64::from(stats.serving),
            ),
            (
                "feed_delay_ms",
                "gauge",
                "The invalidation feed's last measured delay.",
                stats.feed_delay_ms,
            ),
        ];
        for (name, kind, help, value) in rows {
            body.push_str(&format!(
                "# HELP portcullis_session_cache_{name} {help}\n# TYPE portcullis_session_cache_{name} {kind}\nportcullis_session_cache_{name} {value}\n"
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
