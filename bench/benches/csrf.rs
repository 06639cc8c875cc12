//! The cost of CSRF protection on a protected POST, side by side: the
//! same axum router behind SessionLayer alone (the floor), behind
//! SessionLayer + Portcullis `CsrfLayer` (origin checks and a token in the
//! header or in a urlencoded form body, and origin checks only), and behind
//! SessionLayer + `tower_http::csrf::CsrfLayer` (origin checks only).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::csrf::CsrfLayer;
use portcullis_bench::stacks::{csrf_post, csrf_router, memory_sessions, seed};
use tower::ServiceExt;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let floor = csrf_router().layer(memory_sessions());
    let ours = csrf_router()
        .layer(CsrfLayer::new().insecure_http())
        .layer(memory_sessions());
    let ours_origin = csrf_router()
        .layer(CsrfLayer::new().insecure_http().origin_checks_only())
        .layer(memory_sessions());
    let theirs = {
        let tower_http_csrf = tower_http::csrf::CsrfLayer::new();
        csrf_router().layer(tower_http_csrf).layer(memory_sessions())
    };

    let contenders: [(&str, &axum::Router, bool, bool); 5] = [
        ("session_only_floor", &floor, false, false),
        ("portcullis_token_header", &ours, true, false),
        ("portcullis_token_form", &ours, true, true),
        ("portcullis_origin_only", &ours_origin, false, false),
        ("tower_http_csrf", &theirs, false, false),
    ];
    let mut group = c.benchmark_group("csrf_protected_post");
    for (name, app, with_token, form) in contenders {
        let (cookie, token) = runtime.block_on(seed(app));
        let token = with_token.then_some(token);
        let check = runtime.block_on(app.clone().oneshot(csrf_post(&cookie, token.as_deref(), form)));
        assert!(
            check.expect("response").status().is_success(),
            "{name} accepts the honest post"
        );
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| app.clone().oneshot(csrf_post(&cookie, token.as_deref(), form)))
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
