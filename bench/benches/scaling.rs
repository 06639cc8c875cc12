//! How the cost grows: the revocation check with 10³ … 10⁷ denylisted
//! tokens (memory store), and a session read with 10³ … 10⁶ live sessions
//! (memory store), with the memory each size holds (RSS growth while
//! filling, printed).
//!
//! `PORTCULLIS_SCALING_MAX` caps the largest size (default 10⁷ tokens /
//! 10⁶ sessions).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::get;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, header::COOKIE};
use portcullis::revocation::{MemoryRevocationStore, Revocation, RevocationStore};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use portcullis::{AuthMethod, Identity};
use tower::ServiceExt;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn max() -> usize {
    std::env::var("PORTCULLIS_SCALING_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn revocation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let far = SystemTime::now() + Duration::from_secs(3600);
    let clean = Identity::builder(
        "user",
        AuthMethod::bearer(Some("not-revoked".into()), Some("iss".into())),
    )
    .issued_at(SystemTime::now())
    .build();
    let mut group = c.benchmark_group("scaling_revocation_check");
    for size in [1_000usize, 10_000, 100_000, 1_000_000, 10_000_000] {
        if size > max() {
            break;
        }
        let before = rss_kib();
        let store = MemoryRevocationStore::new();
        runtime.block_on(async {
            for i in 0..size {
                store
                    .revoke(Revocation::token("iss", format!("jti-{i:08}"), far))
                    .await
                    .expect("revoke");
            }
        });
        let held = rss_kib().saturating_sub(before);
        println!(
            "denylist of {size} tokens holds ~{} MiB ({} B/entry)",
            held / 1024,
            held * 1024 / size as u64
        );
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| store.check_now(&clean))
        });
        drop(store);
    }
    group.finish();
}

fn sessions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut group = c.benchmark_group("scaling_session_read");
    for size in [1_000usize, 10_000, 100_000, 1_000_000] {
        if size > max() {
            break;
        }
        let before = rss_kib();
        let store = Arc::new(MemoryStore::new());
        let app = axum::Router::new()
            .route(
                "/seed",
                get(|s: Session| async move {
                    s.insert("counter", &"0")
                        .map(|_| "ok")
                        .map_err(|_| http::StatusCode::INTERNAL_SERVER_ERROR)
                }),
            )
            .route(
                "/read",
                get(|s: Session| async move { s.get::<String>("counter").ok().flatten().unwrap_or_default() }),
            )
            .layer(SessionLayer::new(store.clone()));
        let mut cookie = None;
        runtime.block_on(async {
            for _ in 0..size {
                let response = app
                    .clone()
                    .oneshot(Request::get("/seed").body(Body::empty()).expect("request"))
                    .await
                    .expect("seed");
                let set = response.headers()["set-cookie"].to_str().expect("ascii");
                cookie = Some(HeaderValue::from_str(set.split(';').next().expect("pair")).expect("cookie"));
            }
        });
        let held = rss_kib().saturating_sub(before);
        println!(
            "{size} live sessions hold ~{} MiB ({} B/session)",
            held / 1024,
            held * 1024 / size as u64
        );
        let cookie = cookie.expect("a session");
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.to_async(&runtime).iter(|| {
                let mut request = Request::get("/read").body(Body::empty()).expect("request");
                request.headers_mut().insert(COOKIE, cookie.clone());
                app.clone().oneshot(request)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = revocation, sessions
}
criterion_main!(benches);
