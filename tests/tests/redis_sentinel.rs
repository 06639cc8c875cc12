//! Every Redis store on a primary that real Sentinels watch: the
//! conformance suites unchanged, and a failover under load that loses no
//! acknowledged durable write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use portcullis::Principal;
use portcullis::redis::{RedisOptions, RedisServers, RedisSessionStore, ReplicaAcks, SessionCacheOptions};
use portcullis::session::{SessionRecord, SessionStore};
use portcullis_tests::redis_cluster::{RedisSentinel, run_every_store_suite};
use portcullis_tests::{cached_nodes_share_changes, routed_key};

fn servers(setup: &RedisSentinel) -> RedisServers {
    RedisServers::sentinel(setup.sentinel_urls(), RedisSentinel::MASTER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_suite_runs_unchanged_on_sentinel() {
    let setup = RedisSentinel::start();
    run_every_store_suite(servers(&setup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_keeps_every_acknowledged_login() {
    let mut setup = RedisSentinel::start();
    let mut options = RedisOptions::default();
    options.replica_acks = Some(ReplicaAcks {
        replicas: 1,
        timeout: Duration::from_millis(500),
    });
    let store = Arc::new(
        RedisSessionStore::connect_with(servers(&setup), options)
            .await
            .expect("connect"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    // 4 clients log in (a durable write, acknowledged once a replica has
    // it) and read their session back, bounded in count and time.
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (store, stop, ok, refused, acknowledged) = (
                store.clone(),
                stop.clone(),
                ok.clone(),
                refused.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) && round < 50_000 && started.elapsed() < Duration::from_secs(60) {
                    let person = Principal::new("https://app.test", format!("w{worker}-{round}"));
                    let key = routed_key(&person, round);
                    let mut record =
                        SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
                    record.principal = Some(person);
                    match store.create(&key, &record, Duration::from_secs(600)).await {
                        Ok(()) => {
                            acknowledged.lock().expect("lock").push(key);
                            match store.load(&key).await {
                                Ok(Some(_)) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(None) => panic!("an acknowledged login read back as logged out"),
                                Err(_) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(error) => {
                            assert!(
                                error.to_string().starts_with("session store unavailable"),
                                "an outage is an outage, nothing else: {error}"
                            );
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    round += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = setup.kill_primary();
    let killed_at = Instant::now();
    // Waiting polls with blocking calls: off the runtime's threads.
    let (setup, new_primary) = tokio::task::spawn_blocking(move || {
        let promoted = setup.wait_failover_from(old, Duration::from_secs(30));
        (setup, promoted)
    })
    .await
    .expect("wait for the failover");
    let promoted_after = killed_at.elapsed();
    // Reads recover within a bounded time of the promotion: a session
    // acknowledged before the kill is found on the new primary.
    let witness = acknowledged
        .lock()
        .expect("lock")
        .first()
        .copied()
        .expect("a login before the kill");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.load(&witness).await {
            Ok(found) => {
                assert!(found.is_some(), "an acknowledged login survived the failover");
                break;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "reads never recovered after the promotion: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reads_after = killed_at.elapsed();
    // Durable writes wait for a replica: the new primary has one again once
    // the old one is back (as its replica).
    let mut setup = setup;
    setup.restart(old);
    let person = Principal::new("https://app.test", "after-failover");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let key = routed_key(&person, 0);
        let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
        record.principal = Some(person.clone());
        if store.create(&key, &record, Duration::from_secs(600)).await.is_ok()
            && store.load(&key).await.is_ok_and(|found| found.is_some())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "durable logins never recovered once a replica was back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a worker saw only successes and outages");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let mut missing = 0;
    for key in &acknowledged {
        if store.load(key).await.expect("load").is_none() {
            missing += 1;
        }
    }
    drop(setup);
    println!(
        "sentinel failover {old} → {new_primary}: promoted after {promoted_after:?}, store recovered after \
         {recovered_after:?} (reads after {reads_after:?}); {} reads ok, {} refused (503); {} acknowledged logins, {missing} missing",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        acknowledged.len()
    );
    assert!(ok.load(Ordering::Relaxed) > 20, "the load ran");
    assert_eq!(missing, 0, "every login acknowledged with WAIT 1 survived the failover");
    // Reads wait only for the Sentinels' answer, never behind durable
    // writes blocked in `WAIT` while the new primary has no replica.
    assert!(
        reads_after < promoted_after + Duration::from_secs(2),
        "reads recovered within 2 s of the promotion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cache_follows_the_primary_across_a_failover() {
    let mut setup = RedisSentinel::start();
    let cached = || async {
        RedisSessionStore::connect_cached(servers(&setup), RedisOptions::default(), SessionCacheOptions::default())
            .await
            .expect("connect")
    };
    let (a, b) = (cached().await, cached().await);
    portcullis::session::conformance::run(Arc::new(cached().await), "cached").await;
    cached_nodes_share_changes(&a, &b, 10).await;

    let resyncs = b.cache_stats().expect("on").resyncs;
    let old = setup.kill_primary();
    setup.wait_failover_from(old, Duration::from_secs(30));
    // b lost its feed with the old primary and follows the new one.
    let started = Instant::now();
    while !(b.cache_stats().expect("on").serving && b.cache_stats().expect("on").resyncs > resyncs) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the feed follows the new primary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Writes go to the new primary once the Sentinels name it, and their
    // changes reach b's cache.
    let started = Instant::now();
    let probe = routed_key(&Principal::new("https://app.test", "probe"), 0);
    while a.load(&probe).await.is_err() || b.load(&probe).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the stores reach the new primary"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cached_nodes_share_changes(&a, &b, 3).await;
    println!(
        "sentinel: writes and their invalidations worked again {:?} after the cache followed the new primary",
        started.elapsed()
    );
}
