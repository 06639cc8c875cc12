//! The PostgreSQL stores on a throwaway PostgreSQL the tests start: the
//! conformance suites unchanged, migrations racing, concurrent writers,
//! a logout racing a write, a refresh race, and an outage.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use portcullis::Principal;
use portcullis::postgres::{
    PostgresOptions, PostgresRefreshStore, PostgresRevocationStore, PostgresSessionStore, ReplicationOptions,
    SessionCacheOptions, connect, migrate,
};
use portcullis::session::{Changes, SessionRecord, SessionStore};
use portcullis_tests::postgres_server::PostgresServer;
use portcullis_tests::tcp_proxy::TcpProxy;
use portcullis_tests::{cached_nodes_share_changes, routed_key};

async fn ready(server: &PostgresServer, options: &PostgresOptions) -> portcullis::postgres::Pool {
    let pool = connect(&server.url(), options).expect("pool");
    migrate(&pool, options).await.expect("migrate");
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_suite_runs_unchanged_on_postgres() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    let pool = ready(&server, &options).await;
    portcullis::session::conformance::run(Arc::new(PostgresSessionStore::new(pool.clone(), &options)), "pg").await;
    portcullis::refresh::conformance::run(Arc::new(PostgresRefreshStore::new(pool, &options))).await;
    let revocations = PostgresRevocationStore::start(&server.url(), ReplicationOptions::default())
        .await
        .expect("revocations");
    portcullis::revocation::conformance::run(Arc::new(revocations)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_mirror_and_a_lost_database_fails_closed() {
    use portcullis::revocation::{Revocation, RevocationStore, Revoked};
    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    ready(&server, &options).await;
    let mut replication = ReplicationOptions::default();
    replication.max_staleness = Duration::from_millis(800);
    let a = PostgresRevocationStore::start(&server.url(), replication.clone())
        .await
        .expect("a");
    let b = PostgresRevocationStore::start(&server.url(), replication)
        .await
        .expect("b");
    let identity = |jti: &str| {
        portcullis::Identity::builder(
            "alice",
            portcullis::AuthMethod::bearer(Some(jti.into()), Some("https://iss.test".into())),
        )
        .build()
    };
    let expires = SystemTime::now() + Duration::from_secs(600);
    // Propagation A → B, 50 rounds.
    let mut delays = Vec::new();
    for n in 0..50 {
        let jti = format!("jti-{n}");
        a.revoke(Revocation::token("https://iss.test", jti.as_str(), expires))
            .await
            .expect("revoke");
        let revoked_at = Instant::now();
        while b.check_now(&identity(&jti)).expect("local").expect("fresh") != Some(Revoked::Token) {
            assert!(revoked_at.elapsed() < Duration::from_secs(5), "B never saw {jti}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    let (p50, p99) = (delays[24], delays[49]);
    println!("revocation propagation A→B through PostgreSQL (NOTIFY wake-up), 50 rounds: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_secs(1), "a generous bound: p99 {p99:?}");
    assert!(b.stats().applied >= 50, "{:?}", b.stats());

    // The database goes away: past the allowed staleness B fails closed,
    // with the reason; back, it reads on and answers again.
    let mut server = tokio::task::spawn_blocking(move || {
        server.kill();
        server
    })
    .await
    .expect("kill");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let refused = b.check_now(&identity("jti-0")).expect("local").expect_err("stale");
    assert!(refused.to_string().contains("fail closed"), "{refused}");
    assert!(!b.stats().connected);
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(answer) = b.check_now(&identity("jti-0")).expect("local") {
            assert_eq!(answer, Some(Revoked::Token), "what it knew is kept");
            break;
        }
        assert!(Instant::now() < deadline, "B never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A revocation after the restart reaches B too (it reconnected).
    let deadline = Instant::now() + Duration::from_secs(15);
    while a
        .revoke(Revocation::token("https://iss.test", "after", expires))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "A never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.check_now(&identity("after")).expect("local").ok().flatten() != Some(Revoked::Token) {
        assert!(
            Instant::now() < deadline,
            "B never saw the revocation made after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_migrating_at_once_apply_the_schema_once() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let mut options = PostgresOptions::default();
    options.schema = "racing".into();
    let pools: Vec<_> = (0..4)
        .map(|_| connect(&server.url(), &options).expect("pool"))
        .collect();
    let handles: Vec<_> = pools
        .iter()
        .cloned()
        .map(|pool| {
            let options = options.clone();
            tokio::spawn(async move { migrate(&pool, &options).await })
        })
        .collect();
    for handle in handles {
        assert_eq!(
            handle.await.expect("join").expect("migrated"),
            4,
            "every instance sees version 4"
        );
    }
    let client = pools[0].get().await.expect("client");
    let rows = client
        .query("SELECT version FROM racing.schema_version", &[])
        .await
        .expect("versions");
    assert_eq!(rows.len(), 4, "each of the four migrations was applied exactly once");
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "1s", "the server gives up on a statement when the store does");
}

fn record_of(principal: &Principal) -> SessionRecord {
    let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
    record.principal = Some(principal.clone());
    record
}

fn set(name: &str, value: &str) -> Changes {
    let mut changes = Changes::default();
    changes.set.insert(name.to_owned(), value.to_owned());
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_logouts_and_refresh_races() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    let pool = ready(&server, &options).await;
    let store = Arc::new(PostgresSessionStore::new(pool.clone(), &options));
    let alice = Principal::new("https://app.test", "alice");

    // 100 writers, each to its own key of one session: every write stays.
    let key = routed_key(&alice, 1);
    store
        .create(&key, &record_of(&alice), Duration::from_secs(600))
        .await
        .expect("create");
    let writers: Vec<_> = (0..100)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.update(&key, &set(&format!("k{n}"), &n.to_string())).await })
        })
        .collect();
    for writer in writers {
        assert!(writer.await.expect("join").expect("update"), "the session was there");
    }
    let record = store.load(&key).await.expect("load").expect("present");
    for n in 0..100 {
        assert_eq!(
            record.data.get(&format!("k{n}")),
            Some(&n.to_string()),
            "write k{n} was lost"
        );
    }

    // A logout racing a write, 50 times: whichever runs first, the
    // session ends and the write never brings it back.
    for round in 0..50u64 {
        let key = routed_key(&alice, 100 + round);
        store
            .create(&key, &record_of(&alice), Duration::from_secs(600))
            .await
            .expect("create");
        let (writer, logout) = (store.clone(), store.clone());
        let write = tokio::spawn(async move { writer.update(&key, &set("late", "1")).await });
        let end = tokio::spawn(async move { logout.delete(&key).await });
        let wrote = write.await.expect("join").expect("update");
        end.await.expect("join").expect("delete");
        assert_eq!(
            store.load(&key).await.expect("load"),
            None,
            "round {round}: the logout is final"
        );
        assert!(
            !store.update(&key, &set("later", "1")).await.expect("update"),
            "round {round}: a write after the logout finds nothing (the racing one wrote: {wrote})"
        );
    }

    // A slow write (its row held by another transaction) with a logout
    // queued behind it: the write lands, then the logout ends the session
    // for good — and a logout that went first leaves the write nothing.
    let key = routed_key(&alice, 999);
    store
        .create(&key, &record_of(&alice), Duration::from_secs(600))
        .await
        .expect("create");
    let mut holder = pool.get().await.expect("client");
    let lock = holder.transaction().await.expect("begin");
    lock.execute(
        "SELECT 1 FROM portcullis.sessions WHERE key = $1 FOR UPDATE",
        &[&key.to_hex()],
    )
    .await
    .expect("hold the row");
    let (writer, logout) = (store.clone(), store.clone());
    let write = tokio::spawn(async move { writer.update(&key, &set("slow", "1")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let end = tokio::spawn(async move { logout.delete(&key).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!write.is_finished() && !end.is_finished(), "both wait for the held row");
    lock.rollback().await.expect("release");
    assert!(
        write.await.expect("join").expect("update"),
        "the slow write found the session"
    );
    end.await.expect("join").expect("delete");
    assert_eq!(
        store.load(&key).await.expect("load"),
        None,
        "the logout after it is final"
    );
    assert!(
        !store.update(&key, &set("again", "1")).await.expect("update"),
        "nothing to write to"
    );

    // A refresh token spent 8 times at once: exactly one rotation.
    use portcullis::refresh::{Family, RefreshStore, Spend, SpendRules};
    let families = Arc::new(PostgresRefreshStore::new(pool, &options));
    let now = portcullis_now_ms();
    for round in 0..10 {
        let family = Family {
            id: format!("race-{round}"),
            subject: "alice".into(),
            scopes: vec!["notes:read".into()],
            created_ms: now,
            absolute_deadline_ms: now + 600_000,
        };
        families
            .create(&family, Duration::from_secs(600))
            .await
            .expect("create");
        let spends: Vec<_> = (0..8)
            .map(|_| {
                let (families, id) = (families.clone(), family.id.clone());
                tokio::spawn(async move {
                    families
                        .spend(
                            &id,
                            0,
                            portcullis_now_ms(),
                            SpendRules::new(Duration::ZERO, Duration::from_secs(600)),
                        )
                        .await
                })
            })
            .collect();
        let mut rotated = 0;
        for spend in spends {
            match spend.await.expect("join").expect("spend") {
                Spend::Rotated(_) => rotated += 1,
                Spend::Reused(_) | Spend::Ended => {}
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(rotated, 1, "round {round}: exactly one winner");
    }
}

fn portcullis_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_killed_is_a_bounded_outage_and_keeps_every_acknowledged_write() {
    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    let pool = ready(&server, &options).await;
    let store = PostgresSessionStore::new(pool.clone(), &options);
    let alice = Principal::new("https://app.test", "alice");
    let mut written = Vec::new();
    for n in 0..20 {
        let key = routed_key(&alice, n);
        store
            .create(&key, &record_of(&alice), Duration::from_secs(600))
            .await
            .expect("create");
        written.push(key);
    }
    let server = tokio::task::spawn_blocking(move || {
        server.kill();
        server
    })
    .await
    .expect("kill");
    let started = Instant::now();
    let error = store.load(&written[0]).await.expect_err("the database is down");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded: {:?}",
        started.elapsed()
    );
    let text = error.to_string();
    assert!(text.starts_with("session store unavailable"), "{text}");
    let mut server = server;
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    // The pool recovers by itself, and everything acknowledged is there.
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.load(&written[0]).await.is_err() {
        assert!(Instant::now() < deadline, "the pool never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for key in &written {
        assert!(
            store.load(key).await.expect("load").is_some(),
            "a session written before the crash survived it"
        );
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_removes_only_expired_rows_and_reads_never_wait_for_it() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    let pool = ready(&server, &options).await;
    let store = PostgresSessionStore::new(pool.clone(), &options);
    let alice = Principal::new("https://app.test", "alice");
    let (short, long) = (routed_key(&alice, 1), routed_key(&alice, 2));
    store
        .create(&short, &record_of(&alice), Duration::from_millis(200))
        .await
        .expect("create");
    store
        .create(&long, &record_of(&alice), Duration::from_secs(600))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.load(&short).await.expect("load"),
        None,
        "expired: gone before any sweep"
    );
    let client = pool.get().await.expect("client");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM portcullis.sessions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 2, "the expired row is still in the table until swept");
    // Two nodes sweeping at once: each skips what the other has locked.
    let (one, two) = tokio::join!(store.sweep(100), store.sweep(100));
    assert_eq!(
        one.expect("sweep") + two.expect("sweep"),
        1,
        "exactly the expired row went"
    );
    assert!(
        store.load(&long).await.expect("load").is_some(),
        "the live session stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_is_verified_tls_and_never_plaintext() {
    use portcullis::postgres::PostgresTls;
    let server = tokio::task::spawn_blocking(PostgresServer::start_tls)
        .await
        .expect("server");
    let url = format!("{}?sslmode=require", server.url());
    let mut options = PostgresOptions::default();
    options.tls = PostgresTls::roots_from_pem(&server.ca_pem()).expect("the test CA");
    let pool = connect(&url, &options).expect("pool");
    migrate(&pool, &options).await.expect("migrate over TLS");
    let client = pool.get().await.expect("client");
    let ssl: bool = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "the store's own connection is encrypted");
    drop(client);
    let store = PostgresSessionStore::new(pool, &options);
    let alice = Principal::new("https://app.test", "alice");
    let key = routed_key(&alice, 1);
    store
        .create(&key, &record_of(&alice), Duration::from_secs(600))
        .await
        .expect("create");
    assert!(store.load(&key).await.expect("load").is_some());
    // The revocation mirror's LISTEN connection takes the same road.
    let mut replication = ReplicationOptions::default();
    replication.postgres = options.clone();
    let writer = PostgresRevocationStore::start(&url, replication.clone())
        .await
        .expect("mirror over TLS");
    let reader = PostgresRevocationStore::start(&url, replication)
        .await
        .expect("mirror over TLS");
    use portcullis::revocation::{Revocation, RevocationStore, Revoked};
    let expires = SystemTime::now() + Duration::from_secs(600);
    writer
        .revoke(Revocation::token("https://iss.test", "over-tls", expires))
        .await
        .expect("revoke over TLS");
    let caller = portcullis::Identity::builder(
        "alice",
        portcullis::AuthMethod::bearer(Some("over-tls".into()), Some("https://iss.test".into())),
    )
    .build();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reader.check_now(&caller).expect("local").expect("fresh") != Some(Revoked::Token) {
        assert!(
            Instant::now() < deadline,
            "the other mirror never saw it: {:?}",
            reader.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A certificate from a CA we do not trust: refused, never plaintext.
    let stranger = PostgresOptions::default();
    let pool = connect(&url, &stranger).expect("pool");
    let error = migrate(&pool, &stranger).await.expect_err("an untrusted certificate");
    assert!(error.to_string().contains("store unavailable"), "{error}");
    let store = PostgresSessionStore::new(pool, &stranger);
    assert!(store.load(&key).await.is_err(), "no read over an unverified connection");
}

/// The replay cache OIDC shares across nodes, on PostgreSQL: first use
/// once across pools, namespaces apart, an expired row taken over, and an
/// outage an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_replay_cache_counts_each_identifier_once_across_nodes() {
    use portcullis::ReplayCache;
    use portcullis::postgres::PostgresReplayCache;

    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    let node_a = PostgresReplayCache::new(ready(&server, &options).await, &options);
    let node_b = PostgresReplayCache::new(connect(&server.url(), &options).expect("pool"), &options);
    portcullis_tests::replay_cache_rules(&node_a, &node_b).await;
    let until = SystemTime::now() + Duration::from_secs(60);
    assert!(node_a.sweep().await.expect("sweep") <= 3);
    // Many racing first uses of one identifier: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let node = node_b.clone();
            tokio::spawn(async move { node.first_use("jti", "raced", until).await })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        if racer.await.expect("join").expect("answer") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one first use");
    tokio::task::spawn_blocking(move || {
        server.kill();
        server
    })
    .await
    .expect("kill");
    let error = node_a
        .first_use("jti", "during-outage", until)
        .await
        .expect_err("an outage is an error");
    assert!(error.to_string().starts_with("replay store unavailable"), "{error}");
}

/// A store with the local cache on, hearing the feed at `feed_url` (the
/// database itself when `None`).
async fn cached(
    server: &PostgresServer,
    pool: &portcullis::postgres::Pool,
    feed_url: Option<String>,
) -> PostgresSessionStore {
    let options = PostgresOptions::default();
    let mut cache = SessionCacheOptions::default();
    cache.cache.max_staleness = Duration::from_millis(600);
    cache.feed_url = feed_url;
    PostgresSessionStore::new(pool.clone(), &options)
        .with_cache(&server.url(), &options, cache)
        .await
        .expect("cached store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cache_on_postgres_hears_every_change_and_bypasses_a_lost_feed() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let options = PostgresOptions::default();
    let pool = ready(&server, &options).await;
    // The conformance suite with the cache on.
    portcullis::session::conformance::run(Arc::new(cached(&server, &pool, None).await), "pg-cached").await;

    // Two nodes: changes on one reach the other's cache through NOTIFY.
    let a = cached(&server, &pool, None).await;
    let proxy = TcpProxy::to_loopback_port(server.port()).await;
    let feed = server
        .url()
        .replace(&format!(":{}/", server.port()), &format!(":{}/", proxy.addr().port()));
    assert_ne!(feed, server.url(), "the feed goes through the proxy");
    let b = cached(&server, &pool, Some(feed)).await;
    let slowest = cached_nodes_share_changes(&a, &b, 20).await;
    println!("postgres: slowest change reaching the other node's cache {slowest:?}");

    // B's LISTEN connection cut: B reads the database, never its copy.
    let person = Principal::new("https://app.test", "cut-feed");
    let key = routed_key(&person, 1);
    let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
    record.principal = Some(person);
    a.create(&key, &record, Duration::from_secs(600)).await.expect("create");
    b.load(&key).await.expect("load");
    b.load(&key).await.expect("load");
    proxy.cut();
    let cut = Instant::now();
    while b.cache_stats().expect("on").serving {
        assert!(cut.elapsed() < Duration::from_secs(2), "B noticed its feed was cut");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.delete(&key).await.expect("logout");
    assert_eq!(
        b.load(&key).await.expect("load"),
        None,
        "a logout holds at once without the feed"
    );
    proxy.restore();
    let restored = Instant::now();
    while !b.cache_stats().expect("on").serving {
        assert!(restored.elapsed() < Duration::from_secs(5), "B listens again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cached_nodes_share_changes(&a, &b, 2).await;
}
