//! Instruction counts of a session read and a CSRF-checked POST with one
//! secret and with a ring of three (current first), for callgrind, which
//! counts instructions and is stable on a noisy machine:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/keyring_counts session three 20000
//! ```
//!
//! The per-request cost is the difference between two request counts,
//! divided by their difference (setup cancels out); `bench/run` prints it.

use portcullis::SecretKeyring;
use portcullis_bench::stacks::{csrf_post, get_request, keyring_router, keyring_sessions, seed};
use tower::ServiceExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (what, ring, count) = match args.as_slice() {
        [_, what, ring, count] => (what.as_str(), ring.as_str(), count.parse::<u32>().expect("a count")),
        _ => panic!("usage: keyring_counts session|csrf one|three COUNT"),
    };
    let secrets: Vec<[u8; 32]> = match ring {
        "one" => vec![[1; 32]],
        "three" => vec![[1; 32], [2; 32], [3; 32]],
        other => panic!("one or three, not {other}"),
    };
    let ring = SecretKeyring::new(secrets).expect("ring");
    let app = keyring_router(&keyring_sessions(&ring), &ring);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let (cookie, token) = seed(&app).await;
        for _ in 0..count {
            let request = match what {
                "session" => get_request("/me", &cookie),
                "csrf" => csrf_post(&cookie, Some(&token), false),
                other => panic!("session or csrf, not {other}"),
            };
            let response = app.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success(), "{what}: {}", response.status());
        }
    });
}
