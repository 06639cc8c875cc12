//! SessionLayer over real HTTP on loopback, with the memory store and with
//! a real redis-server: cookie attributes, fixation, logout and replay,
//! log out everywhere, timeouts on a test clock, concurrent writers,
//! logout racing a slow write, and a Redis outage and recovery.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use portcullis::redis::RedisSessionStore;
use portcullis::session::{SessionLayer, SessionStore};
use portcullis::{Identity, ManualClock, MemoryStore, Session};
use portcullis_tests::redis_server::RedisServer;
use portcullis_tests::{Answer, send, spawn_axum};
use serde_json::json;

async fn login(session: Session, Path(user): Path<String>) -> &'static str {
    session.login(user, ["notes:read"]);
    "welcome"
}

async fn me(identity: Identity) -> String {
    identity.subject().to_owned()
}

async fn put(session: Session, Path((key, value)): Path<(String, String)>) -> StatusCode {
    match session.insert(&key, &value) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn slow_put(session: Session, Path((key, value)): Path<(String, String)>) -> StatusCode {
    tokio::time::sleep(Duration::from_millis(400)).await;
    put(session, Path((key, value))).await
}

async fn read(session: Session, Path(key): Path<String>) -> Json<serde_json::Value> {
    Json(json!(session.get::<String>(&key).ok().flatten()))
}

async fn logout(session: Session) -> StatusCode {
    session.logout();
    StatusCode::NO_CONTENT
}

async fn everywhere(session: Session) -> Result<String, StatusCode> {
    session
        .end_all()
        .await
        .map(|n| n.to_string())
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

async fn devices(session: Session) -> Result<Json<serde_json::Value>, StatusCode> {
    let list = session.list().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(Json(json!(
        list.iter()
            .map(|d| json!({"handle": d.handle, "current": d.current, "ua": d.user_agent}))
            .collect::<Vec<_>>()
    )))
}

async fn end_one(session: Session, Path(handle): Path<String>) -> Result<String, StatusCode> {
    session
        .end(&handle)
        .await
        .map(|ended| ended.to_string())
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

async fn cycle(session: Session) -> StatusCode {
    session.cycle_id();
    StatusCode::NO_CONTENT
}

async fn slow_cycle(session: Session) -> StatusCode {
    tokio::time::sleep(Duration::from_millis(400)).await;
    session.cycle_id();
    StatusCode::NO_CONTENT
}

async fn boom(session: Session) -> StatusCode {
    let _ = session.insert("after_error", "x");
    StatusCode::INTERNAL_SERVER_ERROR
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/me", get(me))
        .route("/put/{key}/{value}", post(put))
        .route("/slow-put/{key}/{value}", post(slow_put))
        .route("/get/{key}", get(read))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(everywhere))
        .route("/devices", get(devices))
        .route("/end/{handle}", post(end_one))
        .route("/cycle", post(cycle))
        .route("/slow-cycle", post(slow_cycle))
        .route("/boom", post(boom))
        .layer(layer)
}

/// A tiny cookie-keeping client for one "device".
#[derive(Clone, Default)]
struct Device {
    cookie: Option<String>,
    agent: &'static str,
}

impl Device {
    fn new(agent: &'static str) -> Self {
        Self { cookie: None, agent }
    }

    async fn call(&mut self, addr: std::net::SocketAddr, method: Method, path: &str) -> Answer {
        let answer = self.call_with(addr, method, path, self.cookie.clone()).await;
        if let Some(set) = answer.headers.get("set-cookie") {
            let set = set.to_str().expect("ascii");
            let pair = set.split(';').next().expect("pair").to_owned();
            self.cookie = if set.contains("Max-Age=0") { None } else { Some(pair) };
        }
        answer
    }

    async fn call_with(
        &self,
        addr: std::net::SocketAddr,
        method: Method,
        path: &str,
        cookie: Option<String>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("user-agent", self.agent);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        send(request.body(Full::new(Bytes::new())).expect("request")).await
    }
}

async fn serve(
    store: Arc<dyn SessionStore>,
    configure: impl FnOnce(SessionLayer) -> SessionLayer,
) -> std::net::SocketAddr {
    spawn_axum(app(configure(SessionLayer::new(store)))).await
}

/// The flows every store must support, over HTTP.
async fn common_flows(store: Arc<dyn SessionStore>) {
    let addr = serve(store.clone(), |l| l).await;
    let mut device = Device::new("laptop");

    // No cookie, no session touch: no Set-Cookie.
    let anonymous = device.call(addr, Method::GET, "/me").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers.get("set-cookie").is_none(), "nothing to set");

    // A write creates the session with hardened attributes.
    let created = device.call(addr, Method::POST, "/put/cart/apples").await;
    assert_eq!(created.status, StatusCode::NO_CONTENT);
    let set_cookie = created.header("set-cookie").to_owned();
    assert!(set_cookie.starts_with("__Host-session="), "{set_cookie}");
    // Exactly these attributes, in whatever order the cookie crate writes
    // them: nothing else (no Domain, no Max-Age: a browser-session cookie).
    let mut attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    attributes.sort_unstable();
    assert_eq!(
        attributes,
        ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"],
        "{set_cookie}"
    );
    let id = set_cookie
        .split(';')
        .next()
        .expect("pair")
        .trim_start_matches("__Host-session=")
        .to_owned();
    assert_eq!(id.len(), 43, "256 bits, base64url");
    let before_login = device.cookie.clone().expect("cookie");

    // A read-only request sets no cookie.
    let read = device.call(addr, Method::GET, "/get/cart").await;
    assert_eq!(read.json(), json!("apples"));
    assert!(read.headers.get("set-cookie").is_none());

    // Fixation: login rotates the id, keeps the data, and the pre-login
    // cookie is dead at once.
    let logged_in = device.call(addr, Method::POST, "/login/alice").await;
    assert_eq!(logged_in.status, StatusCode::OK);
    let after_login = device.cookie.clone().expect("cookie");
    assert_ne!(
        before_login, after_login,
        "a cookie set before login is not the one after it"
    );
    assert_eq!(device.call(addr, Method::GET, "/me").await.body, "alice");
    assert_eq!(
        device.call(addr, Method::GET, "/get/cart").await.json(),
        json!("apples"),
        "data survives login"
    );
    let planted = device.call_with(addr, Method::GET, "/me", Some(before_login)).await;
    assert_eq!(
        planted.status,
        StatusCode::UNAUTHORIZED,
        "the pre-login id does not reach the logged-in session"
    );
    assert!(
        planted.header("set-cookie").contains("Max-Age=0"),
        "an unknown id is cleared"
    );

    // An unknown id is never adopted.
    let forged = format!("__Host-session={}", "A".repeat(43));
    let mut attacker = Device {
        cookie: Some(forged.clone()),
        agent: "attacker",
    };
    let refused = attacker.call(addr, Method::POST, "/login/mallory").await;
    assert_eq!(refused.status, StatusCode::OK);
    assert_ne!(
        attacker.cookie.as_deref(),
        Some(forged.as_str()),
        "the planted id was replaced"
    );

    // Nothing is saved after a 5xx.
    assert_eq!(
        device.call(addr, Method::POST, "/boom").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        device.call(addr, Method::GET, "/get/after_error").await.json(),
        json!(null)
    );

    // 100 concurrent requests writing distinct keys lose none.
    let cookie = device.cookie.clone();
    let writers = (0..100).map(|i| {
        let device = device.clone();
        let cookie = cookie.clone();
        tokio::spawn(async move {
            device
                .call_with(addr, Method::POST, &format!("/put/k{i}/v{i}"), cookie)
                .await
                .status
        })
    });
    for writer in writers {
        assert_eq!(writer.await.expect("join"), StatusCode::NO_CONTENT);
    }
    for i in 0..100 {
        let value = device.call(addr, Method::GET, &format!("/get/k{i}")).await.json();
        assert_eq!(value, json!(format!("v{i}")), "write k{i} was lost");
    }

    // Rotation grace: after cycle_id the old id keeps working briefly.
    let old = device.cookie.clone();
    device.call(addr, Method::POST, "/cycle").await;
    assert_ne!(device.cookie, old);
    let in_flight = device.call_with(addr, Method::GET, "/me", old).await;
    assert_eq!(
        in_flight.body, "alice",
        "a request with the pre-rotation id within the grace is not logged out"
    );

    // Logout racing a slow write: the logout is final.
    let slow = {
        let device = device.clone();
        let cookie = device.cookie.clone();
        tokio::spawn(async move { device.call_with(addr, Method::POST, "/slow-put/late/x", cookie).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stale_cookie = device.cookie.clone();
    let out = device.call(addr, Method::POST, "/logout").await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.header("set-cookie").contains("Max-Age=0"),
        "logout clears the cookie"
    );
    let slow = slow.await.expect("join");
    assert_eq!(slow.status, StatusCode::NO_CONTENT);
    let replay = device.call_with(addr, Method::GET, "/me", stale_cookie).await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "logout, then replay of the old cookie"
    );
    assert_eq!(replay.json()["detail"], "authentication required");

    // Log out everywhere ends the sessions of two devices.
    let (mut laptop, mut phone) = (Device::new("laptop"), Device::new("phone"));
    laptop.call(addr, Method::POST, "/login/bob").await;
    phone.call(addr, Method::POST, "/login/bob").await;
    let listed = phone.call(addr, Method::GET, "/devices").await.json();
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed.iter().filter(|d| d["current"] == json!(true)).count(), 1);
    assert!(listed.iter().any(|d| d["ua"] == json!("laptop")));
    let laptop_cookie = laptop.cookie.clone();
    assert_eq!(phone.call(addr, Method::POST, "/logout-everywhere").await.body, "2");
    assert_eq!(
        laptop.call_with(addr, Method::GET, "/me", laptop_cookie).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        phone.call(addr, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_over_http() {
    common_flows(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_over_http() {
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    common_flows(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_on_a_test_clock() {
    let clock = ManualClock::starting_now();
    let addr = serve(Arc::new(MemoryStore::new()), |l| {
        l.clock(Arc::new(clock.clone()))
            .timeouts(Duration::from_secs(60), Duration::from_secs(300))
            .expect("timeouts")
    })
    .await;
    let mut device = Device::new("idle");
    device.call(addr, Method::POST, "/login/alice").await;

    // Idle: used within the window, the session lives on past 60 s total.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(40));
        assert_eq!(
            device.call(addr, Method::GET, "/me").await.body,
            "alice",
            "refreshed by use"
        );
    }
    // Idle for longer than the window: over.
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        device.call(addr, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "idle timeout"
    );

    // Absolute: however busy, over after 300 s.
    let mut busy = Device::new("busy");
    busy.call(addr, Method::POST, "/login/bob").await;
    for _ in 0..7 {
        clock.advance(Duration::from_secs(40));
        assert_eq!(busy.call(addr, Method::GET, "/me").await.body, "bob");
    }
    clock.advance(Duration::from_secs(40)); // 320 s since login
    assert_eq!(
        busy.call(addr, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "absolute timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_a_503_and_recovers_without_restarting_the_app() {
    let mut server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let addr = serve(Arc::new(store), |l| l).await;
    let mut device = Device::new("outage");
    device.call(addr, Method::POST, "/login/alice").await;
    assert_eq!(device.call(addr, Method::GET, "/me").await.body, "alice");

    server.kill();
    let down = device.call(addr, Method::GET, "/me").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "never a silent logout: {}",
        down.body
    );
    assert_eq!(down.json()["detail"], "session store unavailable");
    assert!(
        down.headers.get("set-cookie").is_none(),
        "the cookie is kept through an outage"
    );
    let down_login = Device::new("new").call(addr, Method::POST, "/login/carol").await;
    assert_eq!(
        down_login.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "never a fresh session that was not saved"
    );

    server.restart();
    // The restarted Redis is empty (no persistence): the app answers again,
    // without a restart, and a new login works.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = device.call(addr, Method::GET, "/me").await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "the old session died with the server's memory"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "recovered within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut again = Device::new("again");
    again.call(addr, Method::POST, "/login/alice").await;
    assert_eq!(again.call(addr, Method::GET, "/me").await.body, "alice");
}

/// Client commands Redis ran since the last `CONFIG RESETSTAT`, by name
/// (`INFO commandstats`). Commands a Lua script runs are counted under
/// their own names too, which is how the test sees what one script did.
async fn command_calls(connection: &mut redis::aio::MultiplexedConnection) -> std::collections::BTreeMap<String, i64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| name != "info" && !name.starts_with("config"))
        .collect()
}

async fn reset_stats(connection: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(connection)
        .await
        .expect("reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_request_costs_one_redis_round_trip() {
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let addr = serve(Arc::new(store), |l| l).await;
    let mut device = Device::new("counted");
    device.call(addr, Method::POST, "/login/alice").await;
    device.call(addr, Method::POST, "/put/k/v").await;
    let client = redis::Client::open(server.url()).expect("client");
    let mut probe = client
        .get_multiplexed_async_connection()
        .await
        .expect("probe connection");

    reset_stats(&mut probe).await;
    assert_eq!(device.call(addr, Method::GET, "/get/k").await.json(), json!("v"));
    let calls = command_calls(&mut probe).await;
    // Inside the one script: the session's hash, and the principal's "log
    // out everywhere" generation (one field of one hash in the same slot).
    let expected: std::collections::BTreeMap<String, i64> = [
        ("evalsha".to_owned(), 1),
        ("hgetall".to_owned(), 1),
        ("hget".to_owned(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        calls, expected,
        "one round trip: one script, which reads one hash and one generation"
    );

    reset_stats(&mut probe).await;
    assert_eq!(
        Device::new("anon").call(addr, Method::GET, "/get/k").await.json(),
        json!(null)
    );
    assert!(command_calls(&mut probe).await.is_empty(), "no cookie, no store call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_one_device_and_cap_sessions_per_subject() {
    let addr = serve(Arc::new(MemoryStore::new()), |l| l.max_sessions_per_subject(2)).await;
    let (mut first, mut second) = (Device::new("first"), Device::new("second"));
    first.call(addr, Method::POST, "/login/dana").await;
    second.call(addr, Method::POST, "/login/dana").await;

    // End the other device by its handle, from this one.
    let listed = second.call(addr, Method::GET, "/devices").await.json();
    let other = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["current"] == json!(false))
        .expect("the other device")["handle"]
        .as_str()
        .expect("handle")
        .to_owned();
    assert_eq!(
        second.call(addr, Method::POST, &format!("/end/{other}")).await.body,
        "true"
    );
    assert_eq!(
        first.call(addr, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "ended"
    );
    assert_eq!(
        second.call(addr, Method::GET, "/me").await.body,
        "dana",
        "this one lives on"
    );
    assert_eq!(
        second.call(addr, Method::POST, "/end/0000000000000000").await.body,
        "false"
    );

    // The cap: a third login ends the oldest.
    let (mut a, mut b, mut c) = (Device::new("a"), Device::new("b"), Device::new("c"));
    a.call(addr, Method::POST, "/login/erin").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.call(addr, Method::POST, "/login/erin").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    c.call(addr, Method::POST, "/login/erin").await;
    assert_eq!(
        a.call(addr, Method::GET, "/me").await.status,
        StatusCode::UNAUTHORIZED,
        "the oldest was ended"
    );
    assert_eq!(b.call(addr, Method::GET, "/me").await.body, "erin");
    assert_eq!(c.call(addr, Method::GET, "/me").await.body, "erin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callers_get_unavailable_when_the_store_is_down() {
    use portcullis_tests::grpc::IdentityServer;
    let mut server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let (listener, addr) = portcullis_tests::loopback_listener().await;
    let grpc = tonic::transport::Server::builder()
        .layer(SessionLayer::new(Arc::new(store)))
        .add_service(IdentityServer)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(grpc);
    server.kill();
    // A session cookie sent as gRPC metadata makes the layer consult the store.
    let status = portcullis_tests::grpc::who_am_i_with_cookie(addr, &format!("__Host-session={}", "A".repeat(43)))
        .await
        .expect_err("store down");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "session store unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_bounded_by_the_command_timeout() {
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let addr = serve(Arc::new(store), |l| l).await;
    let mut device = Device::new("slow");
    device.call(addr, Method::POST, "/login/alice").await;
    assert_eq!(device.call(addr, Method::GET, "/me").await.body, "alice");

    // Another client stalls the server for 3 s.
    let client = redis::Client::open(server.url()).expect("client");
    let mut staller = client.get_multiplexed_async_connection().await.expect("connect");
    let stall = tokio::spawn(async move {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(3).query_async(&mut staller).await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let slow = device.call(addr, Method::GET, "/me").await;
    let waited = started.elapsed();
    assert_eq!(
        slow.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a stalled store is a 503: {}",
        slow.body
    );
    assert!(slow.body.contains("session store unavailable"), "{}", slow.body);
    assert!(
        waited < Duration::from_millis(2_000),
        "bounded by the 1 s command timeout: {waited:?}"
    );
    stall.await.expect("join");

    // The session is still there once Redis answers again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = device.call(addr, Method::GET, "/me").await;
        if answer.status == StatusCode::OK {
            assert_eq!(answer.body, "alice", "no session lost");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Defect: a login kept the pre-login session's data (and its CSRF secret)
/// even when it replaced another person on the session. A keep-list names
/// what an app carries over (a cart); an anonymous visitor's data is theirs.
async fn login_as_another_subject_drops_the_old_data(store: Arc<dyn SessionStore>) {
    let addr = serve(store, |layer| layer.keep_on_login(["cart"])).await;
    let mut shared = Device::new("kiosk");
    assert_eq!(
        shared.call(addr, Method::POST, "/put/cart/book").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        shared.call(addr, Method::POST, "/put/draft/anon-note").await.status,
        StatusCode::NO_CONTENT
    );
    shared.call(addr, Method::POST, "/login/alice").await;
    let read = |device: &mut Device, key: &'static str| {
        let mut device = device.clone();
        async move { device.call(addr, Method::GET, &format!("/get/{key}")).await.json() }
    };
    assert_eq!(
        read(&mut shared, "draft").await,
        json!("anon-note"),
        "a visitor's own data survives their login"
    );
    shared.call(addr, Method::POST, "/put/secret/alice-only").await;
    shared
        .call(addr, Method::POST, "/put/_portcullis_csrf/alice-csrf-secret")
        .await;

    // Bob logs in on the same browser without logging alice out.
    shared.call(addr, Method::POST, "/login/bob").await;
    assert_eq!(shared.call(addr, Method::GET, "/me").await.body, "bob");
    assert_eq!(
        read(&mut shared, "secret").await,
        json!(null),
        "alice's data is not bob's"
    );
    assert_eq!(read(&mut shared, "draft").await, json!(null));
    assert_eq!(
        read(&mut shared, "_portcullis_csrf").await,
        json!(null),
        "nor is her CSRF secret"
    );
    assert_eq!(
        read(&mut shared, "cart").await,
        json!("book"),
        "the keep-list carries over"
    );

    // The same subject logging in again (re-authentication) keeps its data.
    shared.call(addr, Method::POST, "/put/secret/bob-only").await;
    shared.call(addr, Method::POST, "/login/bob").await;
    assert_eq!(read(&mut shared, "secret").await, json!("bob-only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_as_another_subject_drops_the_old_data_in_memory_and_on_redis() {
    login_as_another_subject_drops_the_old_data(Arc::new(MemoryStore::new())).await;
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    login_as_another_subject_drops_the_old_data(Arc::new(store)).await;
}

/// Defects: a rotation in flight re-created a session deleted meanwhile
/// ("log out everywhere" undone), and rotating from a grace alias forked a
/// second live session.
async fn rotation_is_final_and_never_forks(store: Arc<dyn SessionStore>) {
    let addr = serve(store, |layer| layer.rotation_grace(Duration::from_secs(30))).await;

    // A slow id rotation racing "log out everywhere".
    let mut laptop = Device::new("laptop");
    laptop.call(addr, Method::POST, "/login/alice").await;
    let racing = {
        let laptop = laptop.clone();
        let cookie = laptop.cookie.clone();
        tokio::spawn(async move { laptop.call_with(addr, Method::POST, "/slow-cycle", cookie).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(laptop.call(addr, Method::POST, "/logout-everywhere").await.body, "1");
    let late = racing.await.expect("join");
    let set_cookie = late
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert!(
        set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=0")),
        "the late rotation clears the cookie: {set_cookie:?}"
    );
    let mut phone = Device::new("phone");
    phone.call(addr, Method::POST, "/login/alice").await;
    let devices = phone.call(addr, Method::GET, "/devices").await.json();
    assert_eq!(
        devices.as_array().map(Vec::len),
        Some(1),
        "only the phone: the rotation did not bring the laptop back: {devices}"
    );

    // Rotate from a grace alias: still one live session.
    let mut tablet = Device::new("tablet");
    tablet.call(addr, Method::POST, "/login/bob").await;
    let before = tablet.cookie.clone();
    tablet.call(addr, Method::POST, "/cycle").await;
    let mut stale_tab = Device {
        cookie: before,
        agent: "tablet",
    };
    assert_eq!(
        stale_tab.call(addr, Method::GET, "/me").await.body,
        "bob",
        "the alias serves in grace"
    );
    stale_tab.call(addr, Method::POST, "/cycle").await;
    let devices = tablet.call(addr, Method::GET, "/devices").await.json();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "no fork: {devices}");
    assert_eq!(
        tablet.call(addr, Method::GET, "/me").await.body,
        "bob",
        "both tabs stay logged in"
    );
    assert_eq!(stale_tab.call(addr, Method::GET, "/me").await.body, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_final_and_never_forks_in_memory_and_on_redis() {
    rotation_is_final_and_never_forks(Arc::new(MemoryStore::new())).await;
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    rotation_is_final_and_never_forks(Arc::new(store)).await;
}
