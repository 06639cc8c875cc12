//! Every Redis store on a real 3-primary, 3-replica Redis Cluster: the
//! conformance suites unchanged, keys spread over every shard, a session
//! read in one round trip, the "log out everywhere" generation, and a
//! slot migration under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use portcullis::Principal;
use portcullis::redis::{
    RedisOptions, RedisRefreshStore, RedisRevocationStore, RedisServers, RedisSessionStore, ReplicaAcks,
    ReplicatedRevocationStore, ReplicationOptions, SessionCacheOptions,
};
use portcullis::session::{SessionKey, SessionRecord, SessionStore};
use portcullis_tests::redis_cluster::{RedisCluster, query, run_every_store_suite};
use portcullis_tests::{cached_nodes_share_changes, routed_key};

fn servers(cluster: &RedisCluster) -> RedisServers {
    RedisServers::cluster(cluster.seeds())
}

fn record_of(principal: &Principal) -> SessionRecord {
    let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
    record.principal = Some(principal.clone());
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_suite_runs_unchanged_on_a_cluster() {
    let cluster = RedisCluster::start();
    run_every_store_suite(servers(&cluster)).await;

    // The suites wrote on more than one shard: the layout really spreads.
    let spread = cluster.keys_per_primary();
    assert!(
        spread.values().filter(|&&keys| keys > 0).count() >= 2,
        "keys on several primaries: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subjects_spread_over_every_primary_and_a_read_is_one_round_trip() {
    let cluster = RedisCluster::start();
    let store = RedisSessionStore::connect_with(servers(&cluster), RedisOptions::default())
        .await
        .expect("connect");
    let mut keys = Vec::new();
    for n in 0..300u64 {
        let person = Principal::new("https://app.test", format!("user-{n}"));
        let key = routed_key(&person, n);
        store
            .create(&key, &record_of(&person), Duration::from_secs(600))
            .await
            .expect("create");
        keys.push(key);
    }
    let spread = cluster.keys_per_primary();
    println!("keys per primary after 300 subjects logged in: {spread:?}");
    assert_eq!(spread.len(), 3, "three primaries: {spread:?}");
    for (port, count) in &spread {
        // 300 sessions with their indexes and generations: about a third
        // of the keys each; a shard with under a sixth means no spread.
        let total: u64 = spread.values().sum();
        assert!(
            *count * 6 >= total,
            "primary {port} holds {count} of {total} keys: {spread:?}"
        );
    }

    // 1,000 reads of one session: one script call each, on its primary
    // (after one that loads the script there: a node's first call of a
    // script is an EVALSHA refused with NOSCRIPT, then an EVAL).
    assert!(store.load(&keys[7]).await.expect("load").is_some());
    cluster.reset_stats();
    for _ in 0..1_000 {
        assert!(store.load(&keys[7]).await.expect("load").is_some());
    }
    let calls = cluster.command_calls();
    println!("commands on all primaries for 1000 session reads: {calls:?}");
    assert_eq!(calls.get("evalsha"), Some(&1_000), "one round trip per read: {calls:?}");
    assert_eq!(
        calls
            .keys()
            .filter(|name| !["evalsha", "hgetall", "hget"].contains(&name.as_str()))
            .count(),
        0,
        "nothing else was asked: {calls:?}"
    );

    // Every node forgets its scripts (a restart, a promoted replica): the
    // store sends the script again and goes on.
    for port in cluster.primaries() {
        assert!(query(port, &["SCRIPT", "FLUSH"]).is_ok(), "SCRIPT FLUSH on {port}");
    }
    cluster.reset_stats();
    assert!(store.load(&keys[7]).await.expect("load after NOSCRIPT").is_some());
    assert!(store.load(&keys[7]).await.expect("load").is_some());
    let calls = cluster.command_calls();
    assert_eq!(
        calls.get("eval"),
        Some(&1),
        "sent by source once after NOSCRIPT: {calls:?}"
    );
    assert_eq!(
        calls.get("evalsha"),
        Some(&2),
        "the refused call, then by hash again: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_ends_a_session_that_fell_out_of_the_index() {
    let cluster = RedisCluster::start();
    let store = RedisSessionStore::connect_with(servers(&cluster), RedisOptions::default())
        .await
        .expect("connect");
    let alice = Principal::new("https://app.test", "alice-gen");
    let (indexed, lost) = (routed_key(&alice, 1), routed_key(&alice, 2));
    for key in [&indexed, &lost] {
        store
            .create(key, &record_of(&alice), Duration::from_secs(600))
            .await
            .expect("create");
    }
    // The index loses one entry (an eviction, a write lost in a failover).
    let route = portcullis::Route::of(&alice);
    let idx = format!("{{portcullis:{route}}}idx");
    let field = format!("{}{}", lost.to_hex(), alice.key());
    let primary = cluster.primary_for(&idx);
    assert_eq!(
        query(primary, &["HDEL", &idx, &field]).as_deref(),
        Ok("1"),
        "the entry was there"
    );
    assert_eq!(
        store.sessions_of(&alice).await.expect("list").len(),
        1,
        "one left in the index"
    );

    assert_eq!(store.delete_all_of(&alice).await.expect("log out everywhere"), 1);
    assert_eq!(
        store.load(&indexed).await.expect("load"),
        None,
        "the indexed session ended"
    );
    assert_eq!(
        store.load(&lost).await.expect("load"),
        None,
        "the unindexed one is dead too: it predates the principal's generation"
    );
    // A login after the log-out-everywhere is a live session again.
    let fresh = routed_key(&alice, 3);
    store
        .create(&fresh, &record_of(&alice), Duration::from_secs(600))
        .await
        .expect("create");
    assert!(store.load(&fresh).await.expect("load").is_some(), "a new login works");
    // A write to the dead session reports it gone and brings nothing back.
    let mut changes = portcullis::session::Changes::default();
    changes.set.insert("late".into(), "1".into());
    assert!(
        !store.update(&lost, &changes).await.expect("update"),
        "gone for writes too"
    );
    assert_eq!(store.load(&lost).await.expect("load"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_under_load_loses_nothing() {
    let cluster = RedisCluster::start();
    let mut options = RedisOptions::default();
    options.replica_acks = Some(ReplicaAcks {
        replicas: 1,
        timeout: Duration::from_secs(1),
    });
    options.response_timeout = Duration::from_secs(2);
    let store = Arc::new(
        RedisSessionStore::connect_with(servers(&cluster), options)
            .await
            .expect("connect"),
    );
    // Sessions on every shard; the soak adds keys to them.
    const SESSIONS: usize = 200;
    let mut sessions = Vec::new();
    for n in 0..SESSIONS as u64 {
        let person = Principal::new("https://app.test", format!("mover-{n}"));
        let key = routed_key(&person, n);
        store
            .create(&key, &record_of(&person), Duration::from_secs(600))
            .await
            .expect("create");
        sessions.push(key);
    }
    let sessions = Arc::new(sessions);
    let stop = Arc::new(AtomicBool::new(false));
    let (writes, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (store, sessions, stop) = (store.clone(), sessions.clone(), stop.clone());
            let (writes, failures) = (writes.clone(), failures.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                // Bounded in count and time.
                while !stop.load(Ordering::Relaxed) && round < 20_000 && started.elapsed() < Duration::from_secs(60) {
                    let index = usize::try_from(round * 4 + worker).unwrap_or(0) % SESSIONS;
                    let key = sessions[index];
                    let mut changes = portcullis::session::Changes::default();
                    changes.set.insert(format!("w{worker}-r{round}"), "1".into());
                    match store.update(&key, &changes).await {
                        Ok(true) => {
                            writes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => panic!("a session vanished during the migration"),
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    round += 1;
                }
                round
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let name = |key: &SessionKey| format!("{{portcullis:{}}}s:{}", key.route(), key.to_hex());
    let before: Vec<u16> = sessions.iter().map(|key| cluster.primary_for(&name(key))).collect();
    let cluster = Arc::new(cluster);
    let moving = cluster.clone();
    tokio::task::spawn_blocking(move || moving.reshard(from, to, 500))
        .await
        .expect("reshard");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut rounds = Vec::new();
    for worker in workers {
        rounds.push(worker.await.expect("worker"));
    }
    let (writes, failures) = (writes.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    let moved = sessions
        .iter()
        .zip(&before)
        .filter(|(key, was)| cluster.primary_for(&name(key)) != **was)
        .count();
    println!(
        "slot migration of 500 slots under 4 writers: {moved} of {SESSIONS} sessions moved shard; \
         {writes} writes acknowledged, {failures} refused (503)"
    );
    assert!(moved >= 1, "the migration moved some of the soaked sessions");
    assert!(writes > 100, "the soak ran through the migration: {writes}");
    // Every acknowledged write is there: count the keys per session.
    let mut found = 0u64;
    for key in sessions.iter() {
        let record = store.load(key).await.expect("load").expect("every session survives");
        found += record.data.len() as u64;
    }
    assert!(
        found >= writes,
        "every acknowledged write survived the migration: {found} found, {writes} acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_mirror_follows_its_feed_across_a_failover() {
    use portcullis::revocation::{Revocation, RevocationStore, Target};
    let mut cluster = RedisCluster::start();
    let mut options = RedisOptions::default();
    options.replica_acks = Some(ReplicaAcks {
        replicas: 1,
        timeout: Duration::from_secs(1),
    });
    options.response_timeout = Duration::from_secs(2);
    let mut replication = ReplicationOptions::default();
    replication.redis = options.clone();
    let writer = RedisRevocationStore::connect_with(servers(&cluster), options)
        .await
        .expect("writer");
    let mirror = ReplicatedRevocationStore::start(servers(&cluster), replication)
        .await
        .expect("mirror");
    let expires = SystemTime::now() + Duration::from_secs(600);
    let revoke = |n: u32| Revocation::token("https://iss.test", format!("jti-{n}"), expires);
    for n in 0..5 {
        writer
            .revoke(revoke(n))
            .await
            .expect("acknowledged before the failover");
    }
    let feed_primary = cluster.primary_for("{portcullis:rev}feed");
    cluster.kill(feed_primary);
    // The cluster heals (a replica promoted, the old primary back as its
    // replica, so durable writes can be acknowledged again) while
    // revocations go on, each retried until acknowledged (503s meanwhile),
    // bounded in time.
    let healing = tokio::task::spawn_blocking(move || {
        cluster.wait_failover_from(feed_primary, Duration::from_secs(30));
        cluster.restart(feed_primary);
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    });
    for n in 5..10 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while writer.revoke(revoke(n)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "revocation {n} never acknowledged after the failover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let cluster = healing.await.expect("the cluster healed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = mirror.entries().await.expect("entries");
        let seen = (0..10)
            .filter(|n| {
                entries
                    .iter()
                    .any(|entry| matches!(&entry.target, Target::Token { jti, .. } if *jti == format!("jti-{n}")))
            })
            .count();
        if seen == 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror has {seen} of 10 revocations after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = mirror.stats();
    println!("mirror across a cluster failover: {stats:?}");
    assert!(
        stats.catch_ups + stats.gaps >= 1,
        "the feed reconnected and caught up: {stats:?}"
    );
    assert!(stats.connected, "{stats:?}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_subject_ends_a_refresh_family_that_fell_out_of_the_index() {
    use portcullis::refresh::{Family, RefreshStore, Spend, SpendRules};
    let cluster = RedisCluster::start();
    let store = RedisRefreshStore::connect_with(servers(&cluster), RedisOptions::default())
        .await
        .expect("connect");
    let subject = "dave-gen";
    let route = portcullis::Route::of_subject(subject);
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let family = |id: &str| Family {
        id: format!("{route}{id}"),
        subject: subject.to_owned(),
        scopes: vec!["notes:read".into()],
        created_ms: now,
        absolute_deadline_ms: now + 600_000,
    };
    let (indexed, lost) = (family("indexed"), family("lost"));
    for f in [&indexed, &lost] {
        store.create(f, Duration::from_secs(600)).await.expect("create");
    }
    let index = format!("{{portcullis:{route}}}rs");
    let field = format!("{}:{subject}{}", subject.len(), lost.id);
    assert_eq!(
        query(cluster.primary_for(&index), &["HDEL", &index, &field]).as_deref(),
        Ok("1"),
        "the index entry was there"
    );
    let revoked = store.revoke_subject(subject).await.expect("revoke subject");
    assert_eq!(revoked, vec![indexed.id.clone()], "only the indexed family is listed");
    let rules = SpendRules::new(Duration::ZERO, Duration::from_secs(600));
    for f in [&indexed, &lost] {
        assert_eq!(
            store.spend(&f.id, 0, now + 1, rules).await.expect("spend"),
            Spend::Ended,
            "family {} predates the subject's generation",
            f.id
        );
    }
    // A family created after the revocation lives.
    let fresh = family("fresh");
    store.create(&fresh, Duration::from_secs(600)).await.expect("create");
    assert!(matches!(
        store.spend(&fresh.id, 0, now + 1, rules).await.expect("spend"),
        Spend::Rotated(_)
    ));
    // A family id not routed to its subject is refused, with its reason.
    let mut misrouted = family("x");
    misrouted.id = format!("zz{}", misrouted.id);
    let error = store
        .create(&misrouted, Duration::from_secs(600))
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("not routed to its subject"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cache_hears_changes_made_on_every_shard() {
    let cluster = RedisCluster::start();
    let cached = || async {
        RedisSessionStore::connect_cached(
            servers(&cluster),
            RedisOptions::default(),
            SessionCacheOptions::default(),
        )
        .await
        .expect("connect")
    };
    let (a, b) = (cached().await, cached().await);
    portcullis::session::conformance::run(Arc::new(cached().await), "cached").await;
    // 30 subjects land on every primary; each script publishes on its own
    // shard, and the Cluster carries the message to the node b hears.
    let slowest = cached_nodes_share_changes(&a, &b, 30).await;
    println!("cluster: slowest change reaching the other node's cache {slowest:?}");
    let spread = cluster.keys_per_primary();
    assert!(spread.len() == 3, "{spread:?}");
}
