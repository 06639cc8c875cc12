//! The SessionStore conformance suite against a real redis-server.

use std::sync::Arc;

use portcullis::redis::RedisSessionStore;
use portcullis_tests::redis_server::RedisServer;

// One test per rule of the conformance suite, each on its own server.
portcullis::session::session_store_conformance!(async {
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let store: Arc<dyn portcullis::session::SessionStore> = Arc::new(store);
    (store, server)
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_dead_redis_is_an_error_not_a_hang() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let started = std::time::Instant::now();
    let error = RedisSessionStore::connect(&url).await.expect_err("nothing listens");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "failed fast");
    assert!(error.to_string().starts_with("session store unavailable"), "{error}");
}

/// `WAIT` blocks the connection it is sent on; a read must not queue
/// behind a durable write waiting for replicas that do not answer (on a
/// primary without replicas, as right after a failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_never_waits_behind_a_durable_write_that_waits_for_replicas() {
    use std::time::{Duration, Instant, SystemTime};

    use portcullis::Principal;
    use portcullis::redis::{RedisOptions, RedisServers, ReplicaAcks};
    use portcullis::session::{SessionRecord, SessionStore};

    let server = RedisServer::start();
    let mut options = RedisOptions::default();
    options.replica_acks = Some(ReplicaAcks {
        replicas: 1,
        timeout: Duration::from_millis(600),
    });
    let store = Arc::new(
        RedisSessionStore::connect_with(RedisServers::single(server.url()), options)
            .await
            .expect("connect"),
    );
    let person = Principal::new("https://app.test", "reader");
    let record = |person: &Principal| {
        let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
        record.principal = Some(person.clone());
        record
    };
    // A session written before, without waiting (the store's plain path is
    // not durable: write it through a store without replica acks).
    let key = portcullis_tests::routed_key(&person, 1);
    let plain = RedisSessionStore::connect(&server.url()).await.expect("connect");
    plain
        .create(&key, &record(&person), Duration::from_secs(600))
        .await
        .expect("plain create");
    // Four logins wait for a replica that never acknowledges.
    let writers: Vec<_> = (0..4u64)
        .map(|n| {
            let store = store.clone();
            let person = Principal::new("https://app.test", format!("writer-{n}"));
            tokio::spawn(async move {
                let key = portcullis_tests::routed_key(&person, n);
                store.create(&key, &record(&person), Duration::from_secs(600)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let found = store.load(&key).await.expect("the read is served");
    let read_took = started.elapsed();
    for writer in writers {
        let error = writer
            .await
            .expect("writer")
            .expect_err("no replica acknowledges, so the login is not durable");
        assert!(error.to_string().starts_with("session store unavailable"), "{error}");
    }
    assert!(found.is_some(), "the session is there");
    assert!(
        read_took < Duration::from_millis(300),
        "the read waited {read_took:?} behind durable writes blocked in WAIT"
    );
}

/// The replay cache OIDC logins and logout tokens share across nodes:
/// first use once, a replay refused from any connection, namespaces apart,
/// forgotten when it expires, and an outage an error (never a pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_replay_cache_counts_each_identifier_once_across_nodes() {
    use std::time::{Duration, SystemTime};

    use portcullis::ReplayCache;
    use portcullis::redis::RedisReplayCache;

    let mut server = RedisServer::start();
    let node_a = RedisReplayCache::connect(&server.url()).await.expect("connect");
    let node_b = RedisReplayCache::connect(&server.url()).await.expect("connect");
    portcullis_tests::replay_cache_rules(&node_a, &node_b).await;
    let until = SystemTime::now() + Duration::from_secs(60);
    assert!(
        node_a
            .first_use("jti", "{slot}tag", until)
            .await
            .expect("braces are data")
    );
    assert!(
        !node_b
            .first_use("jti", "{slot}tag", until)
            .await
            .expect("braces replay")
    );
    server.kill();
    let error = node_a
        .first_use("jti", "during-outage", until)
        .await
        .expect_err("an outage is an error");
    assert!(error.to_string().starts_with("replay store unavailable"), "{error}");
}
