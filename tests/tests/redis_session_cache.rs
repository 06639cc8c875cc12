//! The Redis session store with its local cache on, against real
//! redis-servers: the conformance suite unchanged; two nodes on one Redis,
//! where a write or a logout on one reaches the other's cache within the
//! feed's delay (p50/p99 over 50 rounds); 1,000 reads of one session cost
//! one round trip; a cut or frozen feed (through a cuttable TCP proxy)
//! makes the node bypass its cache, never serve stale data, and a restored
//! one resynchronises; a Redis restart is an outage, then recovery.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use portcullis::Principal;
use portcullis::redis::{CacheOptions, RedisOptions, RedisServers, RedisSessionStore, SessionCacheOptions};
use portcullis::session::{Changes, SessionKey, SessionRecord, SessionStore};
use portcullis_tests::redis_server::RedisServer;
use portcullis_tests::tcp_proxy::TcpProxy;

async fn cached(url: &str, feed: Option<String>) -> RedisSessionStore {
    let mut options = SessionCacheOptions::default();
    options.cache = CacheOptions::default();
    options.cache.max_staleness = Duration::from_millis(600);
    options.feed = feed.map(RedisServers::single);
    RedisSessionStore::connect_cached(url, RedisOptions::default(), options)
        .await
        .expect("connect")
}

// One test per rule of the conformance suite, each on its own server, the
// cache on: a cached store keeps every promise of the store.
portcullis::session::session_store_conformance!(async {
    let server = RedisServer::start();
    let store: Arc<dyn SessionStore> = Arc::new(cached(&server.url(), None).await);
    (store, server)
});

fn alice() -> Principal {
    Principal::new("https://app.test", "alice")
}

/// A new logged-in session of alice's, under a fresh key routed to her.
async fn new_session(store: &RedisSessionStore, greeting: &str) -> SessionKey {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 32];
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    bytes[2..18].copy_from_slice(&nanos.to_le_bytes());
    bytes[18..26].copy_from_slice(&n.to_le_bytes());
    bytes[..2].copy_from_slice(&portcullis::Route::of(&alice()).to_bytes());
    let key = SessionKey::from_hex(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()).expect("key");
    let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
    record.principal = Some(alice());
    record.data.insert("greeting".into(), format!("\"{greeting}\""));
    store
        .create(&key, &record, Duration::from_secs(600))
        .await
        .expect("create");
    key
}

async fn greeting(store: &RedisSessionStore, key: &SessionKey) -> Option<String> {
    store
        .load(key)
        .await
        .expect("load")
        .and_then(|record| record.data.get("greeting").cloned())
}

/// Polls `check` until it holds (at most `bound`); returns how long it took.
async fn within<F, Fut>(bound: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_logouts_on_one_node_reach_the_other_nodes_cache() {
    let server = RedisServer::start();
    let (a, b) = (cached(&server.url(), None).await, cached(&server.url(), None).await);
    let bound = Duration::from_secs(1);
    let (mut writes, mut logouts) = (Vec::new(), Vec::new());
    for round in 0..50 {
        let key = new_session(&a, "hello").await;
        // B reads it twice: the second read is its cache's.
        let hits = b.cache_stats().expect("cache on").hits;
        assert_eq!(greeting(&b, &key).await.as_deref(), Some("\"hello\""));
        assert_eq!(greeting(&b, &key).await.as_deref(), Some("\"hello\""));
        assert!(
            b.cache_stats().expect("cache on").hits > hits,
            "round {round}: served from B's cache"
        );

        let mut changes = Changes::default();
        changes.set.insert("greeting".into(), format!("\"round {round}\""));
        assert!(a.update(&key, &changes).await.expect("update"));
        let expected = format!("\"round {round}\"");
        writes.push(
            within(bound, || async {
                greeting(&b, &key).await.as_deref() == Some(expected.as_str())
            })
            .await,
        );

        a.delete(&key).await.expect("logout");
        logouts.push(within(bound, || async { b.load(&key).await.expect("load").is_none() }).await);
    }
    writes.sort();
    logouts.sort();
    println!(
        "cache invalidation A -> B over 50 rounds: write p50 {:?} p99 {:?}; logout p50 {:?} p99 {:?}",
        percentile(&writes, 50),
        percentile(&writes, 99),
        percentile(&logouts, 50),
        percentile(&logouts, 99)
    );
    assert!(
        percentile(&logouts, 99) < Duration::from_millis(250),
        "logout propagation p99"
    );

    // "Log out everywhere" on A: B drops every copy of alice's.
    let keys = [new_session(&a, "one").await, new_session(&a, "two").await];
    for key in &keys {
        greeting(&b, key).await;
        greeting(&b, key).await;
    }
    a.delete_all_of(&alice()).await.expect("log out everywhere");
    for key in &keys {
        within(bound, || async { b.load(key).await.expect("load").is_none() }).await;
    }
}

/// The calls of `command` the server has served (`INFO commandstats`).
async fn calls(server: &RedisServer, command: &str) -> u64 {
    let client = redis::Client::open(server.url()).expect("client");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("info");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reads_of_one_session_cost_one_round_trip() {
    let server = RedisServer::start();
    let store = cached(&server.url(), None).await;
    let plain = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let key = new_session(&store, "hello").await;
    // The read script loaded once (a fresh server answers NOSCRIPT first).
    plain.load(&key).await.expect("load");

    let scripts = || async { calls(&server, "evalsha").await + calls(&server, "eval").await };
    let before = scripts().await;
    for _ in 0..1_000 {
        assert_eq!(greeting(&store, &key).await.as_deref(), Some("\"hello\""));
    }
    let round_trips = scripts().await - before;
    let stats = store.cache_stats().expect("cache on");
    println!("1,000 reads with the cache: {round_trips} script call(s) at Redis; {stats:?}");
    assert_eq!(round_trips, 1, "the first read only");
    assert_eq!(stats.hits, 999);

    // Without the cache, every read is a round trip: the count can tell.
    let before = scripts().await;
    for _ in 0..100 {
        plain.load(&key).await.expect("load");
    }
    assert_eq!(scripts().await - before, 100);
}

/// A server and two caching nodes on it: B writes and reads directly, and
/// hears the feed through a proxy the test can cut or freeze.
async fn nodes_with_b_hearing_through_a_proxy() -> (RedisServer, TcpProxy, RedisSessionStore, RedisSessionStore) {
    let server = RedisServer::start();
    let proxy = TcpProxy::to_loopback_port(server.port()).await;
    let a = cached(&server.url(), None).await;
    let b = cached(&server.url(), Some(proxy.redis_url())).await;
    (server, proxy, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_feed_bypasses_the_cache_and_a_restored_one_resynchronises() {
    let (_server, proxy, a, b) = nodes_with_b_hearing_through_a_proxy().await;
    let key = new_session(&a, "hello").await;
    greeting(&b, &key).await;
    assert_eq!(greeting(&b, &key).await.as_deref(), Some("\"hello\""));
    assert!(b.cache_stats().expect("on").hits >= 1, "cached");

    proxy.cut();
    within(Duration::from_secs(2), || async {
        !b.cache_stats().expect("on").serving
    })
    .await;
    // A change B cannot hear of: B reads Redis, so it sees it at once.
    let mut changes = Changes::default();
    changes.set.insert("greeting".into(), "\"changed unheard\"".into());
    a.update(&key, &changes).await.expect("update");
    assert_eq!(
        greeting(&b, &key).await.as_deref(),
        Some("\"changed unheard\""),
        "a node without its feed reads the store, never its stale copy"
    );
    let stats = b.cache_stats().expect("on");
    assert!(stats.bypassed >= 1 && stats.feed_losses >= 1, "{stats:?}");
    a.delete(&key).await.expect("logout");
    assert!(b.load(&key).await.expect("load").is_none(), "a logout holds at once");

    proxy.restore();
    let resyncs = stats.resyncs;
    let took = within(Duration::from_secs(5), || async {
        let stats = b.cache_stats().expect("on");
        stats.serving && stats.resyncs > resyncs
    })
    .await;
    println!("feed restored and resynchronised {took:?} after the proxy came back");
    let key = new_session(&a, "again").await;
    greeting(&b, &key).await;
    let hits = b.cache_stats().expect("on").hits;
    greeting(&b, &key).await;
    assert!(b.cache_stats().expect("on").hits > hits, "caching again");
    a.delete(&key).await.expect("logout");
    within(Duration::from_secs(1), || async {
        b.load(&key).await.expect("load").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_feed_is_noticed_within_the_staleness_bound() {
    let (_server, proxy, a, b) = nodes_with_b_hearing_through_a_proxy().await;
    let key = new_session(&a, "hello").await;
    greeting(&b, &key).await;
    greeting(&b, &key).await;
    assert!(b.cache_stats().expect("on").serving);

    // Half-open: the connection stays up and nothing arrives.
    proxy.freeze();
    let frozen = Instant::now();
    let noticed = within(Duration::from_secs(3), || async {
        !b.cache_stats().expect("on").serving
    })
    .await;
    println!("a frozen feed stopped the cache after {noticed:?} (bound 600 ms + one heartbeat)");
    assert!(
        frozen.elapsed() < Duration::from_millis(600 + 200 + 300),
        "within the staleness bound"
    );
    let mut changes = Changes::default();
    changes.set.insert("greeting".into(), "\"changed\"".into());
    a.update(&key, &changes).await.expect("update");
    assert_eq!(
        greeting(&b, &key).await.as_deref(),
        Some("\"changed\""),
        "not the stale copy"
    );
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_an_outage_then_recovery() {
    let mut server = RedisServer::start();
    let store = cached(&server.url(), None).await;
    let key = new_session(&store, "hello").await;
    greeting(&store, &key).await;
    server.kill();
    within(Duration::from_secs(3), || async {
        !store.cache_stats().expect("on").serving
    })
    .await;
    let error = store
        .load(&key)
        .await
        .expect_err("Redis is down: an outage, not a cached answer");
    assert!(error.to_string().starts_with("session store unavailable"), "{error}");
    server.restart();
    // A restart without persistence lost the session: recovery means the
    // store answers again, and truthfully.
    within(Duration::from_secs(10), || async {
        matches!(store.load(&key).await, Ok(None))
    })
    .await;
    within(Duration::from_secs(5), || async {
        store.cache_stats().expect("on").serving
    })
    .await;
    let key = new_session(&store, "after").await;
    greeting(&store, &key).await;
    assert_eq!(greeting(&store, &key).await.as_deref(), Some("\"after\""));
}
