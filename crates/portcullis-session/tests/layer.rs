//! SessionLayer's own behaviour, on the memory store, through a tower
//! service (no HTTP server): fixation, the rotation grace, logout racing a
//! slow write, timeouts on a manual clock, and nothing saved after a 5xx.
//! The cross-crate suite (`tests/tests/sessions_over_http.rs`) runs the
//! same flows over loopback HTTP and on Redis.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use portcullis_core::{Identity, ManualClock};
use portcullis_session::{MemoryStore, Session, SessionLayer, SessionStore};
use tower::{Layer, Service, ServiceExt};

/// The application: a few routes that use the `Session` handle.
async fn app(request: Request<String>) -> Result<Response<String>, Infallible> {
    let session = request
        .extensions()
        .get::<Session>()
        .cloned()
        .expect("SessionLayer ran");
    let subject = request.extensions().get::<Identity>().map(|i| i.subject().to_owned());
    let path: Vec<&str> = request.uri().path().split('/').skip(1).collect();
    let (status, body) = match path.as_slice() {
        ["login", user] => {
            session.login(*user, ["notes:read"]);
            (StatusCode::OK, String::new())
        }
        ["me"] => match subject {
            Some(subject) => (StatusCode::OK, subject),
            None => (StatusCode::UNAUTHORIZED, String::new()),
        },
        ["put", key, value] => {
            session.insert(key, value).expect("insert");
            (StatusCode::NO_CONTENT, String::new())
        }
        ["slow-put", key, value] => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            session.insert(key, value).expect("insert");
            (StatusCode::NO_CONTENT, String::new())
        }
        ["get", key] => {
            let value: Option<String> = session.get(key).expect("get");
            (StatusCode::OK, value.unwrap_or_default())
        }
        ["logout"] => {
            session.logout();
            (StatusCode::NO_CONTENT, String::new())
        }
        ["cycle"] => {
            session.cycle_id();
            (StatusCode::NO_CONTENT, String::new())
        }
        ["boom"] => {
            session.insert("after_error", "x").expect("insert");
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        }
        _ => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    Ok(response)
}

struct Answer {
    status: StatusCode,
    set_cookie: Option<String>,
    body: String,
}

/// One browser: keeps the cookie the layer sets, drops it when cleared.
#[derive(Clone, Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    async fn call(&mut self, layer: &SessionLayer, method: Method, path: &str) -> Answer {
        let answer = send(layer, method, path, self.cookie.clone()).await;
        if let Some(set_cookie) = &answer.set_cookie {
            let pair = set_cookie.split(';').next().expect("pair").to_owned();
            self.cookie = (!set_cookie.contains("Max-Age=0")).then_some(pair);
        }
        answer
    }
}

/// One request with `cookie` (a `name=value` pair), through the layer.
async fn send(layer: &SessionLayer, method: Method, path: &str, cookie: Option<String>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request.body(String::new()).expect("request");
    let mut service = layer.layer(tower::service_fn(app));
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible");
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|value| value.to_str().expect("ascii").to_owned());
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        set_cookie,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

fn layer() -> SessionLayer {
    SessionLayer::new(Arc::new(MemoryStore::new()))
}

#[tokio::test]
async fn login_rotates_the_id_and_a_planted_or_unknown_id_is_never_adopted() {
    let layer = layer();
    let mut browser = Browser::default();
    assert_eq!(
        browser.call(&layer, Method::POST, "/put/cart/apples").await.status,
        StatusCode::NO_CONTENT
    );
    let before_login = browser.cookie.clone().expect("a write starts a session");
    assert!(before_login.starts_with("__Host-session="), "{before_login}");

    assert_eq!(
        browser.call(&layer, Method::POST, "/login/alice").await.status,
        StatusCode::OK
    );
    let after_login = browser.cookie.clone().expect("cookie");
    assert_ne!(before_login, after_login, "login rotates the id");
    assert_eq!(browser.call(&layer, Method::GET, "/me").await.body, "alice");
    assert_eq!(
        browser.call(&layer, Method::GET, "/get/cart").await.body,
        "apples",
        "data survives login"
    );

    let planted = send(&layer, Method::GET, "/me", Some(before_login)).await;
    assert_eq!(planted.status, StatusCode::UNAUTHORIZED, "the pre-login id is dead");
    assert!(
        planted.set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=0")),
        "an unknown id is cleared"
    );

    let forged = format!("__Host-session={}", "A".repeat(43));
    let mut attacker = Browser {
        cookie: Some(forged.clone()),
    };
    assert_eq!(
        attacker.call(&layer, Method::POST, "/login/mallory").await.status,
        StatusCode::OK
    );
    assert!(attacker.cookie.is_some(), "a session was started");
    assert_ne!(
        attacker.cookie,
        Some(forged),
        "an unknown id is replaced, never adopted"
    );
}

#[tokio::test]
async fn the_old_id_works_within_the_rotation_grace_and_not_after() {
    let layer = layer().rotation_grace(Duration::from_millis(300));
    let mut browser = Browser::default();
    browser.call(&layer, Method::POST, "/login/alice").await;
    let old = browser.cookie.clone();
    assert_eq!(
        browser.call(&layer, Method::POST, "/cycle").await.status,
        StatusCode::NO_CONTENT
    );
    assert_ne!(browser.cookie, old, "cycle_id rotates");
    let in_flight = send(&layer, Method::GET, "/me", old.clone()).await;
    assert_eq!(
        in_flight.body, "alice",
        "a request in flight with the old id is not logged out"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = send(&layer, Method::GET, "/me", old).await;
    assert_eq!(
        late.status,
        StatusCode::UNAUTHORIZED,
        "past the grace the old id is dead"
    );
    assert_eq!(
        browser.call(&layer, Method::GET, "/me").await.body,
        "alice",
        "the new id lives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_racing_a_slow_write_is_final() {
    let layer = layer();
    let mut browser = Browser::default();
    browser.call(&layer, Method::POST, "/login/alice").await;
    let cookie = browser.cookie.clone();
    let slow = {
        let layer = layer.clone();
        let cookie = cookie.clone();
        tokio::spawn(async move { send(&layer, Method::POST, "/slow-put/late/x", cookie).await.status })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = browser.call(&layer, Method::POST, "/logout").await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=0")),
        "logout clears the cookie"
    );
    assert_eq!(
        slow.await.expect("join"),
        StatusCode::NO_CONTENT,
        "the slow write finished"
    );
    let replay = send(&layer, Method::GET, "/me", cookie.clone()).await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "the slow write did not bring the session back"
    );
    assert_eq!(
        send(&layer, Method::GET, "/get/late", cookie).await.body,
        "",
        "nor its data"
    );
}

#[tokio::test]
async fn idle_and_absolute_timeouts_follow_the_clock() {
    let clock = ManualClock::starting_now();
    let layer = layer()
        .clock(Arc::new(clock.clone()))
        .timeouts(Duration::from_secs(60), Duration::from_secs(300))
        .expect("timeouts");
    let mut idle = Browser::default();
    idle.call(&layer, Method::POST, "/login/alice").await;
    for _ in 0..4 {
        clock.advance(Duration::from_secs(40));
        assert_eq!(
            idle.call(&layer, Method::GET, "/me").await.body,
            "alice",
            "refreshed by use"
        );
    }
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        idle.call(&layer, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "idle timeout"
    );

    let mut busy = Browser::default();
    busy.call(&layer, Method::POST, "/login/bob").await;
    for _ in 0..7 {
        clock.advance(Duration::from_secs(40));
        assert_eq!(busy.call(&layer, Method::GET, "/me").await.body, "bob");
    }
    clock.advance(Duration::from_secs(40)); // 320 s since login
    assert_eq!(
        busy.call(&layer, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "absolute timeout"
    );
}

#[tokio::test]
async fn nothing_is_saved_after_a_server_error() {
    let store = Arc::new(MemoryStore::new());
    let layer = SessionLayer::new(store.clone() as Arc<dyn SessionStore>);
    let mut browser = Browser::default();
    browser.call(&layer, Method::POST, "/login/alice").await;
    let boom = browser.call(&layer, Method::POST, "/boom").await;
    assert_eq!(boom.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(boom.set_cookie.is_none(), "a 5xx sets no cookie");
    assert_eq!(
        browser.call(&layer, Method::GET, "/get/after_error").await.body,
        "",
        "its write was dropped"
    );
    assert_eq!(
        browser.call(&layer, Method::GET, "/me").await.body,
        "alice",
        "the session itself is intact"
    );

    // A 5xx on a first visit starts no session at all.
    let mut newcomer = Browser::default();
    let boom = newcomer.call(&layer, Method::POST, "/boom").await;
    assert_eq!(boom.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(newcomer.cookie.is_none(), "no session was started");
    assert_eq!(store.len(), 1, "only alice's session is stored");
}

/// A keyring rotation over one store: sessions made under `s1` keep
/// working under `[s2, s1]` and are moved to `s2` on use (counted); once
/// `s1` is gone, the moved ones still work, one left idle through the
/// overlap is gone, and new sessions were made under `s2` alone.
#[tokio::test]
async fn a_secret_rotation_re_keys_active_sessions_and_ends_idle_ones() {
    use portcullis_core::SecretKeyring;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let ring = |secrets: &[[u8; 32]]| SecretKeyring::new(secrets).expect("ring");
    let (s1, s2) = ([1u8; 32], [2u8; 32]);
    let layer = |secrets: &[[u8; 32]]| {
        SessionLayer::new(store.clone())
            .insecure_http()
            .secrets(&ring(secrets))
            .expect("layer")
    };
    let (phase1, phase2, phase3) = (layer(&[s1]), layer(&[s2, s1]), layer(&[s2]));

    let (mut active, mut idle) = (Browser::default(), Browser::default());
    for (browser, user) in [(&mut active, "alice"), (&mut idle, "bob")] {
        browser.call(&phase1, Method::POST, &format!("/login/{user}")).await;
        browser.call(&phase1, Method::POST, "/put/colour/blue").await;
    }
    let before = active.cookie.clone();

    // Overlap: the s1 session works, keeps its data and its cookie, and
    // is moved once (a second request finds it under s2 at once).
    let me = active.call(&phase2, Method::GET, "/me").await;
    assert_eq!((me.status, me.body.as_str()), (StatusCode::OK, "alice"));
    assert_eq!(me.set_cookie, None, "a re-key keeps the cookie");
    assert_eq!(active.cookie, before);
    assert_eq!(phase2.sessions().rekeyed_sessions(), 1, "one session moved");
    assert_eq!(active.call(&phase2, Method::GET, "/get/colour").await.body, "blue");
    assert_eq!(phase2.sessions().rekeyed_sessions(), 1, "moved once, not per request");
    let mut fresh = Browser::default();
    fresh.call(&phase2, Method::POST, "/login/carol").await;

    // s1 removed.
    let me = active.call(&phase3, Method::GET, "/me").await;
    assert_eq!(
        (me.status, me.body.as_str()),
        (StatusCode::OK, "alice"),
        "the moved session survives"
    );
    assert_eq!(active.call(&phase3, Method::GET, "/get/colour").await.body, "blue");
    let me = fresh.call(&phase3, Method::GET, "/me").await;
    assert_eq!(
        (me.status, me.body.as_str()),
        (StatusCode::OK, "carol"),
        "a session made during the overlap was made under s2 alone"
    );
    let me = idle.call(&phase3, Method::GET, "/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "idle through the overlap: ended");
    assert!(
        me.set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=0")),
        "and its cookie cleared"
    );
    assert_eq!(phase3.sessions().rekeyed_sessions(), 0, "nothing left to move");
}

#[test]
fn a_bad_keyring_is_refused() {
    use portcullis_core::{KeyringError, SecretKeyring};
    use portcullis_session::ConfigError;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    assert!(matches!(
        SessionLayer::new(store.clone()).secret(&[1; 16]),
        Err(ConfigError::ShortSecret { got: 16, needed: 32 })
    ));
    assert_eq!(
        SecretKeyring::new([[1u8; 32], [1u8; 32]]).err(),
        Some(KeyringError::Duplicate { position: 1, first: 0 })
    );
}

#[tokio::test]
async fn a_raw_utf8_cookie_beside_the_session_cookie_keeps_the_user_signed_in() {
    // Another app on the domain (or a script) set a cookie with raw UTF-8:
    // the `Cookie` header is no longer visible ASCII, and the session
    // cookie in it must still count (it used to be skipped: signed out).
    let layer = layer();
    let mut browser = Browser::default();
    browser.call(&layer, Method::POST, "/login/alice").await;
    let session = browser.cookie.clone().expect("a session cookie");
    for header in [format!("prénom=José; {session}"), format!("{session}; motto=\u{2713}")] {
        let answer = send(&layer, Method::GET, "/me", Some(header.clone())).await;
        assert_eq!(answer.status, StatusCode::OK, "{header}");
        assert_eq!(answer.body, "alice", "{header}");
        assert_eq!(answer.set_cookie, None, "the session cookie is not cleared: {header}");
    }
    // A session cookie that is itself not ASCII is malformed: refused, and
    // cleared (never skipped for a later one of the same name).
    let planted = format!("__Host-session=caf\u{e9}; {session}");
    let answer = send(&layer, Method::GET, "/me", Some(planted)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let cleared = answer.set_cookie.expect("the malformed cookie is cleared");
    assert!(
        cleared.starts_with("__Host-session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

/// The `User-Agent` is recorded with a session when its record is created
/// (a write, or a login), and a later login of the same session keeps the
/// one it has; the layer keeps the header only for a request that could
/// record it.
#[tokio::test]
async fn the_user_agent_is_recorded_when_the_record_is_created() {
    let store = Arc::new(MemoryStore::new());
    let layer = SessionLayer::new(store.clone()).insecure_http();
    let call = |path: &'static str, cookie: Option<String>, agent: &'static str| {
        let layer = layer.clone();
        async move {
            let mut request = Request::post(path).header(header::USER_AGENT, agent);
            if let Some(cookie) = cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let response = layer
                .layer(tower::service_fn(app))
                .oneshot(request.body(String::new()).expect("request"))
                .await
                .expect("infallible");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.headers().get(header::SET_COOKIE).map(|value| {
                value
                    .to_str()
                    .expect("ascii")
                    .split(';')
                    .next()
                    .expect("pair")
                    .to_owned()
            })
        }
    };
    let agents = || async {
        let principal = portcullis_core::Principal::new(portcullis_session::DEFAULT_ISSUER, "erin");
        let sessions = store.sessions_of(&principal).await.expect("sessions");
        sessions
            .into_iter()
            .map(|(_, record)| record.user_agent)
            .collect::<Vec<_>>()
    };
    // An anonymous write creates the record: the agent of that request.
    let cookie = call("/put/theme/dark", None, "agent/1").await.expect("a session");
    let cookie = call("/login/erin", Some(cookie), "agent/2").await.expect("a new id");
    assert_eq!(agents().await, [Some("agent/1".to_owned())], "the first agent stays");
    // Reads by another agent change nothing.
    assert_eq!(call("/me", Some(cookie), "agent/3").await, None);
    assert_eq!(agents().await, [Some("agent/1".to_owned())]);
    // A login with no session yet records its own.
    store
        .delete_all_of(&portcullis_core::Principal::new(
            portcullis_session::DEFAULT_ISSUER,
            "erin",
        ))
        .await
        .expect("end");
    call("/login/erin", None, "agent/4").await.expect("a session");
    assert_eq!(agents().await, [Some("agent/4".to_owned())]);
}
