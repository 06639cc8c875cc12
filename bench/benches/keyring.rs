//! What a keyring costs in the common case (the credential made with the
//! current secret, first in the ring): a session read and a CSRF-checked
//! POST with one secret, side by side with a ring of three. For honesty,
//! also a CSRF token made with the *oldest* of the three (each request
//! then tries every key; sessions have no such steady state, a session
//! found under an old key is moved to the current one on its first read).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::SecretKeyring;
use portcullis_bench::stacks::{csrf_post, get_request, keyring_router as router, keyring_sessions as sessions, seed};
use tower::ServiceExt;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let ring = |secrets: &[[u8; 32]]| SecretKeyring::new(secrets).expect("ring");
    let (one, three) = (ring(&[[1; 32]]), ring(&[[1; 32], [2; 32], [3; 32]]));
    let oldest_first = ring(&[[3; 32]]);

    let ringed_sessions = sessions(&three);
    let single = router(&sessions(&one), &one);
    let ringed = router(&ringed_sessions, &three);
    // The same sessions, tokens made with the ring's oldest secret only.
    let oldest = router(&ringed_sessions, &oldest_first);
    let mut group = c.benchmark_group("keyring_session_read");
    for (name, app) in [("one_key", &single), ("three_keys_current_first", &ringed)] {
        let (cookie, _) = runtime.block_on(seed(app));
        let check = runtime
            .block_on(app.clone().oneshot(get_request("/me", &cookie)))
            .expect("response");
        assert!(check.status().is_success(), "{name} reads the session");
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| app.clone().oneshot(get_request("/me", &cookie)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("keyring_csrf_post");
    for (name, app, minted_by) in [
        ("one_key", &single, &single),
        ("three_keys_current_first", &ringed, &ringed),
        ("three_keys_token_of_the_oldest", &ringed, &oldest),
    ] {
        let (cookie, token) = runtime.block_on(seed(minted_by));
        let check = runtime
            .block_on(app.clone().oneshot(csrf_post(&cookie, Some(&token), false)))
            .expect("response");
        assert!(check.status().is_success(), "{name} accepts the honest post");
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| app.clone().oneshot(csrf_post(&cookie, Some(&token), false)))
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
