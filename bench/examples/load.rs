//! End-to-end load over loopback HTTP: requests/s and p50/p99 latency for
//! a bare axum server (on `GET /me`, and on the protected stacks' own
//! request), the same behind JwtLayer + RevocationLayer, behind
//! SessionLayer + CsrfLayer (memory; Redis, Redis with the local cache,
//! Redis Cluster; PostgreSQL, PostgreSQL with the local cache), and
//! tower-sessions with its Redis store on the same route. Each stack is
//! driven three times, 16 connections for 5 s each (`LOAD_SECS`),
//! loopback only: by this driver, by `wrk` (Debian's) with both sharing
//! the machine's cores, and by `wrk` pinned to core 1 with the server
//! pinned to core 0 (`taskset`), which measures the server's capacity on
//! one core without the scheduler's interleaving. `LOAD_QUICK=1` runs
//! only the bare rows, memory, Redis with the cache and the peer. Then
//! the stacks the targets compare (bare axum on the same request, memory,
//! Redis with the cache, the peer) run again in `LOAD_ROUNDS` alternating
//! rounds (default 5, `LOAD_ROUND_SECS` each, default 3), their ratios
//! taken within each round. Writes the tables to `target/load.md` for
//! `report.py`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::postgres::{PostgresOptions, PostgresSessionStore};
use portcullis::redis::{RedisOptions, RedisServers, RedisSessionStore, SessionCacheOptions};
use portcullis::revocation::{MemoryRevocationStore, RevocationLayer, Revocations};
use portcullis::session::{MemoryStore, SessionStore};
use portcullis::{JwtIssuer, JwtLayer, SigningKey, Validation};
use portcullis_bench::stacks::{seed_over_http, serve, serve_session_stack};
use portcullis_bench::start_redis;
use portcullis_tests::postgres_server::PostgresServer;
use portcullis_tests::redis_cluster::RedisCluster;
use tower::ServiceBuilder;

const CONNECTIONS: usize = 16;
/// The row the protected stacks are compared with: bare axum on their own
/// request.
const BARE_SAME_REQUEST: &str = "bare axum, the protected stacks' request";

/// Drives `make_request` from `CONNECTIONS` tasks for `seconds`.
async fn drive(
    addr: SocketAddr,
    seconds: u64,
    make_request: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync>,
) -> (f64, Duration, Duration) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, make_request) = (client.clone(), make_request.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline && latencies.len() < 2_000_000 {
                    let started = Instant::now();
                    let response = client.request(make_request(addr)).await.expect("answer");
                    assert!(response.status().is_success(), "{}", response.status());
                    let _ = response.into_body().collect().await;
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    all.sort();
    let rate = all.len() as f64 / seconds as f64;
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

/// One request's method, path, headers and body, for `wrk`.
#[derive(Clone)]
struct WrkRequest {
    method: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Option<&'static str>,
}

/// How `wrk` and the server share the machine's cores.
#[derive(Clone, Copy)]
enum Cores {
    /// Both on every core (wrk with 2 threads): the scheduler interleaves
    /// them, and every µs the server spends also costs wrk context switches.
    Shared,
    /// The server (this whole process) on core 0, wrk (1 thread) on core
    /// 1: the rate is the server's capacity on one core. The stores'
    /// servers (Redis, PostgreSQL) stay unpinned.
    Pinned,
}

/// Runs `taskset` (util-linux) with `args`; false if it failed.
fn taskset(args: &[&str]) -> bool {
    std::process::Command::new("taskset")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Puts every thread of this process on `cpus` (a `taskset` list).
fn pin_this_process(cpus: &str) {
    let pid = std::process::id().to_string();
    assert!(
        taskset(&["-a", "-p", "-c", cpus, &pid]),
        "taskset -a -p -c {cpus} {pid} failed"
    );
}

/// Requests/s `wrk` reaches on `addr` (the same connections and seconds
/// as this driver).
fn wrk(addr: SocketAddr, seconds: u64, request: &WrkRequest, cores: Cores) -> f64 {
    let script = std::env::temp_dir().join(format!("portcullis-wrk-{}-{}.lua", std::process::id(), addr.port()));
    let mut lua = format!("wrk.method = \"{}\"\n", request.method);
    if let Some(body) = request.body {
        lua.push_str(&format!("wrk.body = \"{body}\"\n"));
    }
    for (name, value) in &request.headers {
        lua.push_str(&format!("wrk.headers[\"{name}\"] = \"{value}\"\n"));
    }
    std::fs::write(&script, lua).expect("wrk script");
    let mut command = match cores {
        Cores::Shared => {
            let mut command = std::process::Command::new("wrk");
            command.arg("-t2");
            command
        }
        Cores::Pinned => {
            let mut command = std::process::Command::new("taskset");
            command.args(["-c", "1", "wrk", "-t1"]);
            command
        }
    };
    let output = command
        .args([&format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(format!("http://{addr}{}", request.path))
        .output()
        .expect("wrk on PATH (Debian: apt-get install wrk; bench/run installs it)");
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw refusals on {}: {text}",
        request.path
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's output: {text}"))
}

/// tower-sessions 0.14 with its Redis store (fred) on the same route: a
/// session read on `POST /notes` (no CSRF layer: it has none).
async fn tower_sessions_redis_stack(url: &str) -> (SocketAddr, HeaderValue) {
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
    use tower_sessions014::{Session as TowerSession, SessionManagerLayer};
    let pool = Pool::new(Config::from_url(url).expect("url"), None, None, None, 6).expect("pool");
    // The connection task runs on; its handle is not needed.
    drop(pool.connect());
    pool.wait_for_connect().await.expect("fred connects");
    let layer = SessionManagerLayer::new(RedisStore::new(pool)).with_secure(false);
    let router = Router::new()
        .route(
            "/seed",
            get(|session: TowerSession| async move {
                session.insert("user", "alice").await.expect("insert");
                "seeded"
            }),
        )
        .route(
            "/notes",
            post(|session: TowerSession| async move {
                let user: Option<String> = session.get("user").await.expect("get");
                user.map_or("nobody", |_| "ok")
            }),
        )
        .layer(layer);
    let addr = serve(router).await;
    let (cookie, _) = seed_over_http(addr).await;
    (addr, cookie)
}

/// A protected `POST /notes` with the session cookie and the CSRF token.
fn csrf_post(
    cookie: HeaderValue,
    token: String,
) -> (Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync>, WrkRequest) {
    let cookie_text = cookie.to_str().expect("ascii").to_owned();
    let wrk = WrkRequest {
        method: "POST",
        path: "/notes",
        headers: vec![
            ("cookie".into(), cookie_text),
            ("sec-fetch-site".into(), "same-origin".into()),
            ("x-csrf-token".into(), token.clone()),
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
        ],
        body: Some("note=hi"),
    };
    let driver: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(move |addr| {
        Request::post(format!("http://{addr}/notes"))
            .header("cookie", cookie.clone())
            .header("host", addr.to_string())
            .header("sec-fetch-site", "same-origin")
            .header("x-csrf-token", token.as_str())
            .body(Body::from("note=hi"))
            .expect("request")
    });
    (driver, wrk)
}

/// A stack's label; this driver's rate, p50 and p99; wrk's rate on shared
/// cores, and pinned apart from the server.
type Row = (String, (f64, Duration, Duration), f64, f64);

/// wrk's rate on `addr` with both on every core, then pinned apart.
async fn wrk_both_layouts(addr: SocketAddr, seconds: u64, request: &WrkRequest) -> [f64; 2] {
    let mut rates = [0.0; 2];
    for (rate, cores) in rates.iter_mut().zip([Cores::Shared, Cores::Pinned]) {
        let request = request.clone();
        if let Cores::Pinned = cores {
            pin_this_process("0");
        }
        *rate = tokio::task::spawn_blocking(move || wrk(addr, seconds, &request, cores))
            .await
            .expect("wrk");
        if let Cores::Pinned = cores {
            pin_this_process(&all_cpus());
        }
    }
    rates
}

async fn measure(
    label: &str,
    addr: SocketAddr,
    seconds: u64,
    driver: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync>,
    wrk_request: &WrkRequest,
) -> Row {
    let own = drive(addr, seconds, driver).await;
    let [shared, pinned] = wrk_both_layouts(addr, seconds, wrk_request).await;
    println!(
        "{label}: {:.0} requests/s (driver), {shared:.0} (wrk), {pinned:.0} (wrk, pinned apart)",
        own.0
    );
    (label.to_owned(), own, shared, pinned)
}

/// The stacks the targets compare, measured again in alternating rounds:
/// each round runs every stack once, in both core layouts, so a drift of
/// the machine's speed (seen here: ±15–20 % between runs minutes apart)
/// lands on all of them alike instead of on whichever row ran then.
/// Returns, per stack, its wrk rates by round: `[shared, pinned]`.
async fn alternating_rounds(
    stacks: &[(String, SocketAddr, WrkRequest)],
    rounds: usize,
    seconds: u64,
) -> Vec<Vec<[f64; 2]>> {
    let mut rates = vec![Vec::with_capacity(rounds); stacks.len()];
    for _ in 0..rounds {
        for (index, (_, addr, request)) in stacks.iter().enumerate() {
            rates[index].push(wrk_both_layouts(*addr, seconds, request).await);
        }
    }
    rates
}

/// The median of `values` and their range.
fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    let median = if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    };
    (median, values[0], values[values.len() - 1])
}

/// The alternating rounds' table: each stack's rate in each round over the
/// first stack's (bare axum) and over the last's (the peer) in the same
/// round, as median and range.
fn rounds_table(stacks: &[(String, SocketAddr, WrkRequest)], rates: &[Vec<[f64; 2]>], seconds: u64) -> String {
    let rounds = rates[0].len();
    let mut table = format!(
        "\n### Alternating rounds ({rounds} rounds, each stack {seconds} s per round and layout, wrk, {CONNECTIONS} connections)\n\n\
         Ratios are taken within a round (the same minute of the machine), then summarised: median (min–max).\n\n\
         | stack | requests/s, shared cores (median) | requests/s, pinned apart (median) \
         | × bare, shared | × bare, pinned | × the peer, shared | × the peer, pinned |\n\
         |---|---|---|---|---|---|---|\n"
    );
    let peer = rates.len() - 1;
    for ((label, _, _), own) in stacks.iter().zip(rates) {
        let mut cells = vec![label.clone()];
        for layout in 0..2 {
            let (median, _, _) = median_and_range(own.iter().map(|round| round[layout]).collect());
            cells.push(format!("{median:.0}"));
        }
        for reference in [0, peer] {
            for layout in 0..2 {
                let ratios = own
                    .iter()
                    .zip(&rates[reference])
                    .map(|(own, reference)| own[layout] / reference[layout])
                    .collect();
                let (median, low, high) = median_and_range(ratios);
                cells.push(format!("{median:.2} ({low:.2}–{high:.2})"));
            }
        }
        table.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    table
}

/// The environment variable `name` parsed, or `default` when unset or
/// unparsable.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Every CPU, as a `taskset` list (read before any pinning narrows what
/// this process sees).
fn all_cpus() -> String {
    static ALL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        assert!(count >= 2, "the pinned wrk runs need two cores (server on 0, wrk on 1)");
        format!("0-{}", count - 1)
    })
    .clone()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Both jsonwebtoken backends are on in this crate: pick one, once.
    portcullis::jwt::install_crypto_provider().expect("first install");
    let seconds: u64 = env_or("LOAD_SECS", 5);
    let mut rows: Vec<Row> = Vec::new();
    all_cpus();

    // Bare axum.
    let bare = serve(Router::new().route("/me", get(|| async { "alice" }))).await;
    let plain: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(|addr| {
        Request::get(format!("http://{addr}/me"))
            .body(Body::empty())
            .expect("request")
    });
    let get_me = WrkRequest {
        method: "GET",
        path: "/me",
        headers: Vec::new(),
        body: None,
    };
    rows.push(measure("bare axum", bare, seconds, plain, &get_me).await);

    // Bare axum answering the protected stacks' own request (the same
    // method, path, headers and body; nothing checks them): what hyper
    // and the load generator spend on that request's shape, apart from
    // the layers.
    let same_request = serve(Router::new().route("/notes", post(|| async { "ok" }))).await;
    let (_, cookie, token) = serve_session_stack(Arc::new(MemoryStore::new())).await;
    let (driver, wrk_request) = csrf_post(cookie, token);
    rows.push(measure(BARE_SAME_REQUEST, same_request, seconds, driver, &wrk_request).await);
    // The stacks the targets name, for the alternating rounds at the end.
    let mut compared = vec![(BARE_SAME_REQUEST.to_owned(), same_request, wrk_request)];

    // JwtLayer + RevocationLayer, one token reused (the cache's case).
    let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), "https://iss", "aud");
    let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
    let jwt = JwtLayer::new(
        issuer.verifying_key(),
        Validation::new().issuer("https://iss").audience("aud"),
    )
    .expect("jwt");
    let protected = serve(
        Router::new().route("/me", get(|| async { "alice" })).layer(
            ServiceBuilder::new()
                .layer(jwt)
                .layer(RevocationLayer::new(&revocations)),
        ),
    )
    .await;
    let bearer = format!("Bearer {}", issuer.mint("alice", ["x"]).expect("mint"));
    let wrk_bearer = WrkRequest {
        method: "GET",
        path: "/me",
        headers: vec![("authorization".into(), bearer.clone())],
        body: None,
    };
    let with_token: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(move |addr| {
        Request::get(format!("http://{addr}/me"))
            .header("authorization", bearer.as_str())
            .body(Body::empty())
            .expect("request")
    });
    rows.push(
        measure(
            "JwtLayer + RevocationLayer (EdDSA, cached)",
            protected,
            seconds,
            with_token,
            &wrk_bearer,
        )
        .await,
    );

    // SessionLayer + CsrfLayer, a protected POST, on every store.
    let (_redis, url) = start_redis();
    let redis_store: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::connect(&url).await.expect("redis"));
    let cached_redis: Arc<dyn SessionStore> = Arc::new(
        RedisSessionStore::connect_cached(url.as_str(), RedisOptions::default(), SessionCacheOptions::default())
            .await
            .expect("redis, cached"),
    );
    // `LOAD_QUICK=1` (for iterating on the hot path): bare axum, memory,
    // Redis with the cache and the peer only.
    let quick = std::env::var_os("LOAD_QUICK").is_some();
    // Each store's row, and whether a target names it (then it runs again
    // in the alternating rounds).
    let mut stores: Vec<(&str, Arc<dyn SessionStore>, bool)> = vec![
        (
            "SessionLayer + CsrfLayer, POST (memory)",
            Arc::new(MemoryStore::new()),
            true,
        ),
        ("SessionLayer + CsrfLayer, POST (Redis)", redis_store, false),
        (
            "SessionLayer + CsrfLayer, POST (Redis, local cache)",
            cached_redis,
            true,
        ),
    ];
    // Kept alive to the end of the run.
    let mut _servers: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    if quick {
        stores.remove(1);
    } else {
        // A 3-primary, 3-replica cluster (blocking setup, off the runtime).
        let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("cluster");
        let cluster_store: Arc<dyn SessionStore> = Arc::new(
            RedisSessionStore::connect_with(RedisServers::cluster(cluster.seeds()), RedisOptions::default())
                .await
                .expect("cluster"),
        );
        let database = tokio::task::spawn_blocking(PostgresServer::start)
            .await
            .expect("postgres");
        let pg_options = PostgresOptions::default();
        let pool = portcullis::postgres::connect(&database.url(), &pg_options).expect("pool");
        portcullis::postgres::migrate(&pool, &pg_options)
            .await
            .expect("migrate");
        let pg_store: Arc<dyn SessionStore> = Arc::new(PostgresSessionStore::new(pool.clone(), &pg_options));
        let cached_pg: Arc<dyn SessionStore> = Arc::new(
            PostgresSessionStore::new(pool, &pg_options)
                .with_cache(
                    &database.url(),
                    &pg_options,
                    portcullis::postgres::SessionCacheOptions::default(),
                )
                .await
                .expect("postgres, cached"),
        );
        stores.extend([
            ("SessionLayer + CsrfLayer, POST (Redis Cluster)", cluster_store, false),
            ("SessionLayer + CsrfLayer, POST (PostgreSQL)", pg_store, false),
            (
                "SessionLayer + CsrfLayer, POST (PostgreSQL, local cache)",
                cached_pg,
                false,
            ),
        ]);
        _servers.push(Box::new(cluster));
        _servers.push(Box::new(database));
    }
    for (label, store, in_rounds) in stores {
        let (addr, cookie, token) = serve_session_stack(store).await;
        let (driver, wrk_request) = csrf_post(cookie, token);
        rows.push(measure(label, addr, seconds, driver, &wrk_request).await);
        if in_rounds {
            compared.push((label.to_owned(), addr, wrk_request));
        }
    }

    // The peer: tower-sessions with its Redis store, a session read on the
    // same route.
    let (addr, cookie) = tower_sessions_redis_stack(&url).await;
    let cookie_text = cookie.to_str().expect("ascii").to_owned();
    let wrk_request = WrkRequest {
        method: "POST",
        path: "/notes",
        headers: vec![("cookie".into(), cookie_text)],
        body: Some("note=hi"),
    };
    let driver: Arc<dyn Fn(SocketAddr) -> Request<Body> + Send + Sync> = Arc::new(move |addr| {
        Request::post(format!("http://{addr}/notes"))
            .header("cookie", cookie.clone())
            .body(Body::from("note=hi"))
            .expect("request")
    });
    let peer = "tower-sessions 0.14 + RedisStore (fred), POST";
    rows.push(measure(peer, addr, seconds, driver, &wrk_request).await);
    compared.push((peer.to_owned(), addr, wrk_request));

    // Each row against bare axum on its own request, and on `GET /me`.
    let bare_wrk = rows[0].2;
    let same = rows
        .iter()
        .find(|row| row.0 == BARE_SAME_REQUEST)
        .expect("the same-request row");
    let (same_driver, same_shared, same_pinned) = ((same.1).0, same.2, same.3);
    let mut table = format!(
        "### End to end over loopback ({CONNECTIONS} connections, {seconds} s each, this driver and wrk)\n\n\
         | stack | requests/s (driver) | p50 | p99 | requests/s (wrk, shared cores) | requests/s (wrk, pinned apart) \
         | × bare on the same request (wrk shared / pinned / driver) | × bare `GET /me` (wrk shared) |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (label, (rate, p50, p99), shared, pinned) in &rows {
        table.push_str(&format!(
            "| {label} | {rate:.0} | {p50:?} | {p99:?} | {shared:.0} | {pinned:.0} | {:.2} / {:.2} / {:.2} | {:.2} |\n",
            shared / same_shared,
            pinned / same_pinned,
            rate / same_driver,
            shared / bare_wrk,
        ));
    }
    let rounds: usize = env_or("LOAD_ROUNDS", 5);
    let round_seconds: u64 = env_or("LOAD_ROUND_SECS", 3);
    if rounds > 0 {
        let rates = alternating_rounds(&compared, rounds, round_seconds).await;
        table.push_str(&rounds_table(&compared, &rates, round_seconds));
    }
    println!("{table}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    std::fs::write(format!("{target}/load.md"), table).expect("write load.md");
}
