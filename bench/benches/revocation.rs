//! The revocation check with 1M revoked entries: the local mirror of the
//! replicated store and the memory store (in-process lookups) beside a
//! Redis round trip per request (`HMGET`), in one run.
//!
//! Starts its own `redis-server` on a free loopback port (Debian:
//! `apt-get install redis-server`).

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::redis::{RedisRevocationStore, ReplicatedRevocationStore, ReplicationOptions};
use portcullis::revocation::{MemoryRevocationStore, Revocation, RevocationStore, store_support};
use portcullis::{AuthMethod, Identity};
use portcullis_bench::start_redis;

const TOKENS: usize = 990_000;
const SUBJECTS: usize = 10_000;
const ISS: &str = "https://auth.example";

fn revocations() -> impl Iterator<Item = Revocation> {
    let far = SystemTime::now() + Duration::from_secs(3600);
    let tokens = (0..TOKENS).map(move |i| Revocation::token(ISS, format!("jti-{i:07}"), far));
    let subjects = (0..SUBJECTS).map(move |i| {
        let principal = portcullis::Principal::new(ISS, format!("user-{i}"));
        Revocation::subject(principal, SystemTime::now(), Duration::from_secs(3600))
    });
    tokens.chain(subjects)
}

fn bearer(subject: &str, jti: &str) -> Identity {
    let now = SystemTime::now();
    Identity::builder(subject, AuthMethod::bearer(Some(jti.into()), Some(ISS.into())))
        .issued_at(now)
        .expires_at(now + Duration::from_secs(900))
        .build()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (_redis, url) = start_redis();

    // 1M entries into Redis (pipelined, in the store's layout), then the
    // mirror loads them at start as a node would.
    runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
        let all: Vec<Revocation> = revocations().collect();
        for chunk in all.chunks(10_000) {
            let mut pipe = redis::pipe();
            for revocation in chunk {
                pipe.hset(
                    "portcullis:rev:entries",
                    store_support::encode_target(&revocation.target),
                    store_support::encode_value(revocation),
                )
                .ignore();
            }
            let () = pipe.query_async(&mut connection).await.expect("populate");
        }
    });
    let mirror = runtime
        .block_on(ReplicatedRevocationStore::start(&url, ReplicationOptions::default()))
        .expect("mirror");
    assert_eq!(
        mirror.stats().entries,
        TOKENS + SUBJECTS,
        "the mirror loaded every entry"
    );
    let direct = runtime.block_on(RedisRevocationStore::connect(&url)).expect("direct");
    let memory = MemoryRevocationStore::new();
    runtime.block_on(async {
        for revocation in revocations() {
            memory.revoke(revocation).await.expect("revoke");
        }
    });

    let clean = bearer("user-999999", "jti-not-revoked");
    let revoked = bearer("someone", "jti-0500000");
    assert!(matches!(mirror.check_now(&revoked), Some(Ok(Some(_)))));
    assert!(matches!(mirror.check_now(&clean), Some(Ok(None))));
    assert!(
        runtime
            .block_on(direct.check(revoked.clone()))
            .expect("check")
            .is_some()
    );

    let mut group = c.benchmark_group("revocation_check_1M");
    for (name, identity) in [("clean", &clean), ("revoked", &revoked)] {
        group.bench_function(format!("mirror_local/{name}"), |b| {
            b.iter(|| mirror.check_now(identity))
        });
        group.bench_function(format!("memory_store/{name}"), |b| {
            b.iter(|| memory.check_now(identity))
        });
        group.bench_function(format!("redis_round_trip/{name}"), |b| {
            b.to_async(&runtime).iter(|| direct.check(identity.clone()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
