//! Remote key sets against a local JWKS / OIDC provider on a free loopback
//! port: discovery, rotation, the unknown-`kid` flood, outages at start and
//! mid-run, a slow provider, `Cache-Control`, a malformed document, and a
//! JWKS file re-read on change.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use portcullis::jwt::remote::{RemoteKeys, RemoteOptions};
use portcullis::jwt::{JwtIssuer, JwtLayer, SigningKey, Validation, sign_compact};
use portcullis::{Identity, Rejection, RejectionKind};
use portcullis_tests::spawn_axum;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

const AUD: &str = "notes-api";

/// The provider: what it serves, and what it was asked.
#[derive(Default)]
struct Provider {
    jwks: Mutex<Value>,
    issuer: Mutex<String>,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    failing: AtomicBool,
    malformed: AtomicBool,
    slow: AtomicBool,
    max_age: Mutex<Option<u64>>,
    /// Overrides the discovery document's `jwks_uri`.
    jwks_uri: Mutex<Option<String>>,
    /// Where `/elsewhere` redirects to.
    redirect_to: Mutex<String>,
}

async fn jwks(State(provider): State<Arc<Provider>>) -> Response {
    provider.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if provider.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if provider.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = if provider.malformed.load(Ordering::SeqCst) {
        "{\"keys\": [ not json".to_owned()
    } else {
        provider.jwks.lock().expect("lock").to_string()
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = *provider.max_age.lock().expect("lock") {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={seconds}")).expect("value"),
        );
    }
    (headers, body).into_response()
}

async fn discovery(State(provider): State<Arc<Provider>>) -> Response {
    provider.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = provider.issuer.lock().expect("lock").clone();
    let jwks_uri = provider
        .jwks_uri
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_else(|| format!("{issuer}/jwks"));
    axum::Json(json!({ "issuer": issuer, "jwks_uri": jwks_uri })).into_response()
}

async fn start_provider(keys: &[&JwtIssuer]) -> (Arc<Provider>, SocketAddr) {
    let provider = Arc::new(Provider::default());
    set_keys(&provider, keys);
    let router = Router::new()
        .route("/jwks", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/big", get(|| async { "x".repeat(2 * 1024 * 1024) }))
        .route("/moved", get(|| async { axum::response::Redirect::temporary("/jwks") }))
        .route("/loop", get(|| async { axum::response::Redirect::temporary("/loop") }))
        .route(
            "/elsewhere",
            get(|State(provider): State<Arc<Provider>>| async move {
                let target = provider.redirect_to.lock().expect("lock").clone();
                axum::response::Redirect::temporary(&target)
            }),
        )
        .with_state(provider.clone());
    let addr = spawn_axum(router).await;
    *provider.issuer.lock().expect("lock") = format!("http://{addr}");
    (provider, addr)
}

fn set_keys(provider: &Provider, issuers: &[&JwtIssuer]) {
    let keys: Vec<Value> = issuers
        .iter()
        .flat_map(|issuer| issuer.jwks()["keys"].as_array().cloned().unwrap_or_default())
        .collect();
    *provider.jwks.lock().expect("lock") = json!({ "keys": keys });
}

fn issuer(iss: &str) -> JwtIssuer {
    JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), iss, AUD)
}

fn fast() -> RemoteOptions {
    let mut options = RemoteOptions::default();
    options.unknown_kid_cooldown = Duration::from_millis(500);
    options.request_wait = Duration::from_millis(800);
    options
}

/// Calls a JwtLayer-protected handler in process; the keys come over the wire.
async fn call(layer: &JwtLayer, token: &str) -> (StatusCode, Option<Rejection>) {
    let service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|request: http::Request<Full<Bytes>>| async move {
                let subject = request
                    .extensions()
                    .get::<Identity>()
                    .map(|i| i.subject().to_owned())
                    .unwrap_or_default();
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(subject))))
            });
    let request = http::Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = service.oneshot(request).await.expect("infallible");
    let status = response.status();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let _ = response.into_body().collect().await;
    (status, rejection)
}

fn layer(keys: RemoteKeys, iss: &str) -> JwtLayer {
    JwtLayer::new(keys, Validation::new().issuer(iss).audience(AUD)).expect("layer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_rotation_and_removal() {
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let (first, second) = (issuer(&iss), issuer(&iss));
    set_keys(&provider, &[&first]);
    let mut options = fast();
    options.refresh_every = Duration::from_millis(300);
    options.min_refresh = Duration::from_millis(300);
    let keys = RemoteKeys::discover(&iss, options);
    keys.ready(Duration::from_secs(5)).await.expect("ready after discovery");
    assert_eq!(provider.discovery_fetches.load(Ordering::SeqCst), 1);
    let jwt = layer(keys.clone(), &iss);
    assert_eq!(
        call(&jwt, &first.mint("alice", ["a"]).expect("mint")).await.0,
        StatusCode::OK
    );

    // A new key is accepted within one request, without a restart.
    set_keys(&provider, &[&first, &second]);
    let (status, _) = call(&jwt, &second.mint("bob", ["a"]).expect("mint")).await;
    assert_eq!(status, StatusCode::OK, "the first request with the new kid succeeds");

    // A removed key stops verifying once the keys are refreshed.
    set_keys(&provider, &[&second]);
    let removed = first.mint("alice", ["a"]).expect("mint");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, rejection) = call(&jwt, &removed).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(rejection.expect("rejection").reason(), "unknown key id");
            break;
        }
        assert!(Instant::now() < deadline, "the removed key kept verifying");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Discovery naming another issuer is refused, with the reason.
    let wrong = RemoteKeys::discover(format!("{iss}/other"), fast());
    let error = wrong.ready(Duration::from_secs(2)).await.expect_err("not ready");
    assert!(
        error.to_string().contains("404") || error.to_string().contains("issuer"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_a_handful_of_fetches() {
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let good = issuer(&iss);
    set_keys(&provider, &[&good]);
    let keys = RemoteKeys::jwks_url(format!("{iss}/jwks"), fast());
    keys.ready(Duration::from_secs(5)).await.expect("ready");
    let jwt = layer(keys.clone(), &iss);
    let before = provider.jwks_fetches.load(Ordering::SeqCst);
    let forger = SigningKey::generate_ed25519().expect("key");
    let started = Instant::now();
    for n in 0..1_000u32 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let token = sign_compact(
            &forger,
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": format!("forged-{n}")}),
            &json!({"iss": iss, "aud": AUD, "sub": "mallory", "iat": now, "exp": now + 600, "jti": n.to_string()}),
        )
        .expect("sign");
        let (status, rejection) = call(&jwt, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(rejection.expect("rejection").reason(), "unknown key id");
    }
    let fetches = provider.jwks_fetches.load(Ordering::SeqCst) - before;
    println!("1,000 forged kids in {:?}: {fetches} JWKS fetches", started.elapsed());
    let cooldowns = started.elapsed().as_millis() / 500 + 1;
    assert!(
        fetches as u128 <= cooldowns + 1 && fetches <= 10,
        "{fetches} fetches for 1,000 forged kids (at most one per cooldown)"
    );
    assert_eq!(
        call(&jwt, &good.mint("alice", ["a"]).expect("mint")).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_at_start_then_mid_run() {
    // Down at start: not ready, with a clear reason; requests get 503.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let keys = RemoteKeys::jwks_url(format!("http://{dead}/jwks"), fast());
    let error = keys
        .ready(Duration::from_millis(1_500))
        .await
        .expect_err("nothing listens");
    assert!(error.to_string().contains("not loaded"), "{error}");
    assert!(!keys.is_ready());
    let someone = issuer("http://x");
    let jwt = JwtLayer::new(keys, Validation::new().issuer("http://x").audience(AUD)).expect("layer");
    let (status, rejection) = call(&jwt, &someone.mint("alice", ["a"]).expect("mint")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "never a 401 for an outage");
    let rejection = rejection.expect("rejection");
    assert_eq!(rejection.kind(), RejectionKind::Unavailable);
    assert_eq!(rejection.reason(), "signing keys not loaded yet");
    assert!(
        !rejection.reason().contains(&dead.to_string()),
        "the key source's address stays out of the answer"
    );

    // Mid-run: the last good keys serve for the stale bound, then 503.
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let good = issuer(&iss);
    set_keys(&provider, &[&good]);
    let mut options = fast();
    options.refresh_every = Duration::from_millis(200);
    options.min_refresh = Duration::from_millis(200);
    options.serve_stale_for = Duration::from_millis(1_200);
    let keys = RemoteKeys::jwks_url(format!("{iss}/jwks"), options);
    keys.ready(Duration::from_secs(5)).await.expect("ready");
    let jwt = layer(keys, &iss);
    let token = good.mint("alice", ["a"]).expect("mint");
    provider.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call(&jwt, &token).await.0, StatusCode::OK, "stale keys still serve");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, rejection) = call(&jwt, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "past the stale bound");
    let rejection = rejection.expect("rejection");
    assert!(rejection.reason().contains("stale"), "{}", rejection.reason());
    // What failed, never where or why inside: no URL, address or transport
    // error in what the client is told.
    for leak in [iss.as_str(), "127.0.0.1", "http", "error", "connect"] {
        assert!(
            !rejection.reason().contains(leak),
            "names {leak:?}: {}",
            rejection.reason()
        );
    }
    provider.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&jwt, &token).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_holds_a_request_only_briefly() {
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let good = issuer(&iss);
    set_keys(&provider, &[&good]);
    let keys = RemoteKeys::jwks_url(format!("{iss}/jwks"), fast());
    keys.ready(Duration::from_secs(5)).await.expect("ready");
    let jwt = layer(keys, &iss);
    provider.slow.store(true, Ordering::SeqCst);
    let unknown = issuer(&iss).mint("bob", ["a"]).expect("mint");
    let started = Instant::now();
    let (status, _) = call(&jwt, &unknown).await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        waited < Duration::from_millis(1_500),
        "bounded by request_wait: {waited:?}"
    );
    // Known keys are not held up by the slow fetch in flight.
    let started = Instant::now();
    assert_eq!(
        call(&jwt, &good.mint("alice", ["a"]).expect("mint")).await.0,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_is_honoured_and_a_malformed_jwks_keeps_the_good_keys() {
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let good = issuer(&iss);
    set_keys(&provider, &[&good]);
    *provider.max_age.lock().expect("lock") = Some(1);
    let mut options = fast();
    options.refresh_every = Duration::from_secs(3600);
    options.min_refresh = Duration::from_millis(100);
    let keys = RemoteKeys::jwks_url(format!("{iss}/jwks"), options);
    keys.ready(Duration::from_secs(5)).await.expect("ready");
    let before = provider.jwks_fetches.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let refreshed = provider.jwks_fetches.load(Ordering::SeqCst) - before;
    assert!(
        (2..=3).contains(&refreshed),
        "max-age=1 over 2.3 s: {refreshed} refreshes (refresh_every alone would be 1 h)"
    );

    provider.malformed.store(true, Ordering::SeqCst);
    let before = provider.jwks_fetches.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while provider.jwks_fetches.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < deadline, "no refresh happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let jwt = layer(keys.clone(), &iss);
    assert_eq!(
        call(&jwt, &good.mint("alice", ["a"]).expect("mint")).await.0,
        StatusCode::OK,
        "the good keys survive a malformed document"
    );
    assert!(keys.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_file_is_reread_when_it_changes() {
    let iss = "https://files.test";
    let (first, second) = (issuer(iss), issuer(iss));
    let path = std::env::temp_dir().join(format!("portcullis-jwks-{}.json", std::process::id()));
    std::fs::write(&path, first.jwks().to_string()).expect("write");
    let mut options = fast();
    options.file_poll = Duration::from_millis(100);
    let keys = RemoteKeys::file(&path, options);
    keys.ready(Duration::from_secs(5)).await.expect("ready");
    let jwt = layer(keys, iss);
    assert_eq!(
        call(&jwt, &first.mint("alice", ["a"]).expect("mint")).await.0,
        StatusCode::OK
    );

    // Coarse file timestamps: make sure the rewrite is seen as a change.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    std::fs::write(&path, second.jwks().to_string()).expect("rewrite");
    let token = second.mint("bob", ["a"]).expect("mint");
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&jwt, &token).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the rewritten file was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = call(&jwt, &first.mint("alice", ["a"]).expect("mint")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the replaced key no longer verifies");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_issuers_each_with_its_own_keys_and_audience() {
    use portcullis::jwt::{JwtVerifier, Keys, Validation};

    let (provider_a, addr_a) = start_provider(&[]).await;
    let (provider_b, addr_b) = start_provider(&[]).await;
    let (iss_a, iss_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
    let a = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), iss_a.as_str(), "api-a");
    let b = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), iss_b.as_str(), "api-b");
    set_keys(&provider_a, &[&a]);
    set_keys(&provider_b, &[&b]);
    let tenant = |iss: &str, audience: &str| {
        let keys = RemoteKeys::discover(iss, fast());
        let verifier = JwtVerifier::with_keys(
            Keys::from(keys.clone()),
            Validation::new().issuer(iss).audience(audience),
            Arc::new(portcullis::SystemClock),
            None,
        )
        .expect("verifier");
        (keys, verifier)
    };
    let (keys_a, verifier_a) = tenant(&iss_a, "api-a");
    let (keys_b, verifier_b) = tenant(&iss_b, "api-b");
    keys_a.ready(Duration::from_secs(5)).await.expect("a ready");
    keys_b.ready(Duration::from_secs(5)).await.expect("b ready");
    let jwt = JwtLayer::with_verifier(JwtVerifier::for_issuers([verifier_a, verifier_b]).expect("multi"));

    assert_eq!(
        call(&jwt, &a.mint("alice", ["x"]).expect("mint")).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&jwt, &b.mint("bob", ["x"]).expect("mint")).await.0, StatusCode::OK);

    let reason = |answer: (StatusCode, Option<Rejection>)| {
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED);
        answer.1.expect("rejection").reason().to_owned()
    };
    // A token claiming B as issuer but signed with A's key: B's keys only.
    let forged = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), iss_b.as_str(), "api-b");
    assert_eq!(
        reason(call(&jwt, &forged.mint("eve", ["x"]).expect("mint")).await),
        "unknown key id"
    );
    // A's issuer with B's audience.
    let wrong_audience = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), iss_a.as_str(), "api-b");
    set_keys(&provider_a, &[&a, &wrong_audience]);
    tokio::time::sleep(Duration::from_millis(600)).await; // past the unknown-kid cooldown
    assert_eq!(
        reason(call(&jwt, &wrong_audience.mint("eve", ["x"]).expect("mint")).await),
        "audience not accepted"
    );
    // An issuer nobody configured.
    let stranger = issuer("https://stranger.test");
    assert_eq!(
        reason(call(&jwt, &stranger.mint("eve", ["x"]).expect("mint")).await),
        "issuer not accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_client_bounds_size_and_redirects() {
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let good = issuer(&iss);
    set_keys(&provider, &[&good]);
    let moved = RemoteKeys::jwks_url(format!("{iss}/moved"), fast());
    moved
        .ready(Duration::from_secs(5))
        .await
        .expect("a redirect is followed");
    let big = RemoteKeys::jwks_url(format!("{iss}/big"), fast());
    let error = big.ready(Duration::from_secs(2)).await.expect_err("2 MiB is refused");
    assert!(error.to_string().contains("too large"), "{error}");
    let looping = RemoteKeys::jwks_url(format!("{iss}/loop"), fast());
    let error = looping
        .ready(Duration::from_secs(2))
        .await
        .expect_err("a redirect loop is cut");
    assert!(error.to_string().contains("too many redirects"), "{error}");
}

/// A client that only counts what it is asked: proof that a refused key
/// source is refused before any request leaves.
fn counting_client(calls: Arc<AtomicU64>) -> portcullis::jwt::remote::HttpClient {
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |_: http::Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<http::Response<Bytes>, tower::BoxError>("no network here".into()) }
    }))
}

/// Defect: keys were fetched over plain HTTP from anywhere, and a discovery
/// document could point `jwks_uri` at `http://`: an on-path attacker
/// injects a key.
#[tokio::test]
async fn key_sources_are_https_only_loopback_and_an_insecure_opt_in_excepted() {
    let calls = Arc::new(AtomicU64::new(0));
    let plain =
        RemoteKeys::jwks_url_with_client("http://keys.example.test/jwks", counting_client(calls.clone()), fast());
    let error = plain
        .ready(Duration::from_secs(2))
        .await
        .expect_err("plain http is refused");
    assert!(error.to_string().contains("must be https"), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "refused before any request");
    for url in ["ftp://keys.example.test/jwks", "keys.example.test/jwks"] {
        let odd = RemoteKeys::jwks_url_with_client(url, counting_client(calls.clone()), fast());
        let error = odd.ready(Duration::from_secs(2)).await.expect_err("not https");
        assert!(error.to_string().contains("https"), "{url}: {error}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let mut opted_in = fast();
    opted_in.insecure_allow_http = true;
    let insecure = RemoteKeys::jwks_url_with_client(
        "http://keys.example.test/jwks",
        counting_client(calls.clone()),
        opted_in,
    );
    let error = insecure
        .ready(Duration::from_secs(2))
        .await
        .expect_err("the stub has no keys");
    assert!(error.to_string().contains("no network here"), "{error}");
    assert!(calls.load(Ordering::SeqCst) >= 1, "the opt-in lets the request go");

    // Discovery over loopback whose jwks_uri points at plain http elsewhere.
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    set_keys(&provider, &[&issuer(&iss)]);
    *provider.jwks_uri.lock().expect("lock") = Some("http://keys.example.test/jwks".into());
    let discovered = RemoteKeys::discover(iss.as_str(), fast());
    let error = discovered
        .ready(Duration::from_secs(3))
        .await
        .expect_err("jwks_uri over http");
    assert!(error.to_string().contains("must be https"), "{error}");
    assert!(
        provider.discovery_fetches.load(Ordering::SeqCst) >= 1,
        "discovery was read"
    );
    assert_eq!(
        provider.jwks_fetches.load(Ordering::SeqCst),
        0,
        "no JWKS was fetched from anywhere"
    );

    // A redirect to another host is another key source: refused.
    let (other, other_addr) = start_provider(&[]).await;
    set_keys(&other, &[&issuer(&iss)]);
    *provider.redirect_to.lock().expect("lock") = format!("http://{other_addr}/jwks");
    let redirected = RemoteKeys::jwks_url(format!("{iss}/elsewhere"), fast());
    let error = redirected
        .ready(Duration::from_secs(3))
        .await
        .expect_err("cross-host redirect");
    assert!(error.to_string().contains("another host"), "{error}");
    assert_eq!(
        other.jwks_fetches.load(Ordering::SeqCst),
        0,
        "the other host was never asked"
    );
}

/// Defect: symmetric (`oct`) keys were accepted from a network JWKS: a
/// published secret lets anyone who reads it forge tokens.
#[tokio::test]
async fn symmetric_keys_from_a_network_jwks_are_refused_unless_opted_in() {
    use base64::Engine as _;
    let (provider, addr) = start_provider(&[]).await;
    let iss = format!("http://{addr}");
    let asymmetric = issuer(&iss);
    let secret = [42u8; 32];
    let symmetric = JwtIssuer::new(
        SigningKey::hmac(portcullis::jwt::Algorithm::HS256, &secret)
            .expect("key")
            .with_kid("shared"),
        iss.as_str(),
        AUD,
    );
    let mut keys = asymmetric.jwks()["keys"].as_array().cloned().unwrap_or_default();
    keys.push(json!({
        "kty": "oct",
        "kid": "shared",
        "alg": "HS256",
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    }));
    *provider.jwks.lock().expect("lock") = json!({ "keys": keys });

    let strict = RemoteKeys::jwks_url(format!("{iss}/jwks"), fast());
    strict
        .ready(Duration::from_secs(3))
        .await
        .expect("the asymmetric key loads");
    let jwt = layer(strict, &iss);
    assert_eq!(
        call(&jwt, &asymmetric.mint("alice", ["a"]).expect("mint")).await.0,
        StatusCode::OK
    );
    let (status, rejection) = call(&jwt, &symmetric.mint("mallory", ["a"]).expect("mint")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a published secret verifies nothing");
    assert_eq!(rejection.expect("rejection").reason(), "unknown key id");

    // With the opt-in, a set mixing both kinds is ambiguous and refused
    // whole; a set of symmetric keys alone is accepted.
    let mut options = fast();
    options.insecure_allow_symmetric_keys = true;
    let mixed = RemoteKeys::jwks_url(format!("{iss}/jwks"), options.clone());
    let error = mixed.ready(Duration::from_secs(2)).await.expect_err("ambiguous set");
    assert!(error.to_string().contains("mixing symmetric and asymmetric"), "{error}");
    let only_symmetric: Vec<Value> = keys.into_iter().filter(|key| key["kty"] == "oct").collect();
    *provider.jwks.lock().expect("lock") = json!({ "keys": only_symmetric });
    let lenient = RemoteKeys::jwks_url(format!("{iss}/jwks"), options);
    lenient.ready(Duration::from_secs(3)).await.expect("ready");
    let jwt = layer(lenient, &iss);
    let (status, _) = call(&jwt, &symmetric.mint("mallory", ["a"]).expect("mint")).await;
    assert_eq!(status, StatusCode::OK, "the opt-in accepts it");
}
