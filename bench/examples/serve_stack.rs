//! One protected stack of the load run, served until killed, for
//! profiling under an external load generator:
//!
//! ```text
//! cargo build --release --example serve_stack
//! target/release/examples/serve_stack memory   # prints the wrk command
//! ```
//!
//! `memory` (the default) is `SessionLayer` + `CsrfLayer` on the memory
//! store, as in the load run; `bare` is bare axum on the same request;
//! `noop` is bare axum behind two layers that do nothing (axum's own
//! per-route layering cost); `session` is `SessionLayer` alone.
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use portcullis::session::MemoryStore;
use portcullis_bench::stacks::{serve, serve_session_stack};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    let (protected, cookie, token) = serve_session_stack(Arc::new(MemoryStore::new())).await;
    let (target, cookie) = match which.as_str() {
        "bare" => (
            serve(Router::new().route("/notes", post(|| async { "ok" }))).await,
            cookie,
        ),
        // Two layers that do nothing: what axum's per-route layering costs.
        "noop" => {
            let noop = || tower::util::MapRequestLayer::new(|r: http::Request<axum::body::Body>| r);
            let router = Router::new()
                .route("/notes", post(|| async { "ok" }))
                .layer(noop())
                .layer(noop());
            (serve(router).await, cookie)
        }
        // SessionLayer alone, on the memory store, with its own login.
        "session" => {
            let layer = portcullis::session::SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http();
            let router = Router::new()
                .route(
                    "/seed",
                    axum::routing::get(|s: portcullis::session::Session| async move {
                        s.login("alice", ["notes:write"]);
                    }),
                )
                .route("/notes", post(|| async { "ok" }))
                .layer(layer);
            let addr = serve(router).await;
            (addr, portcullis_bench::stacks::seed_over_http(addr).await.0)
        }
        _ => (protected, cookie),
    };
    let cookie = cookie.to_str().expect("ascii");
    let script = std::env::temp_dir().join(format!("serve-stack-{}.lua", target.port()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"note=hi\"\n\
             wrk.headers[\"cookie\"] = \"{cookie}\"\n\
             wrk.headers[\"sec-fetch-site\"] = \"same-origin\"\n\
             wrk.headers[\"x-csrf-token\"] = \"{token}\"\n\
             wrk.headers[\"content-type\"] = \"application/x-www-form-urlencoded\"\n"
        ),
    )
    .expect("script");
    println!("wrk -t2 -c16 -d10s -s {} http://{target}/notes", script.display());
    std::future::pending::<()>().await;
}
