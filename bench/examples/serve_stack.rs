//! One protected stack of the load run, served until killed, for
//! profiling under an external load generator:
//!
//! ```text
//! cargo build --release --example serve_stack
//! target/release/examples/serve_stack memory   # prints a wrk script's path
//! wrk -t2 -c16 -d10s -s SCRIPT http://127.0.0.1:PORT/notes
//! ```
//!
//! `memory` (the default) is `SessionLayer` + `CsrfLayer` on the memory
//! store; `bare` is bare axum on the same request.
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::csrf::{CsrfLayer, CsrfToken};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use tower::ServiceBuilder;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "memory".into());
    let seed = Router::new().route(
        "/seed",
        get(|s: Session, t: axum::Extension<CsrfToken>| async move {
            s.login("alice", ["notes:write"]);
            t.0.value().unwrap_or_default()
        }),
    );
    let protected = seed.route("/notes", post(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http())
            .layer(CsrfLayer::new().insecure_http()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, protected).await });
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let response = client
        .request(
            Request::get(format!("http://{addr}/seed"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("seed");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let token =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");
    let target = if which == "bare" {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bare = listener.local_addr().expect("addr");
        tokio::spawn(
            async move { axum::serve(listener, Router::new().route("/notes", post(|| async { "ok" }))).await },
        );
        bare
    } else {
        addr
    };
    let script = std::env::temp_dir().join(format!("serve-stack-{}.lua", target.port()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"note=hi\"\nwrk.headers[\"cookie\"] = \"{cookie}\"\nwrk.headers[\"sec-fetch-site\"] = \"same-origin\"\nwrk.headers[\"x-csrf-token\"] = \"{token}\"\nwrk.headers[\"content-type\"] = \"application/x-www-form-urlencoded\"\n"
        ),
    )
    .expect("script");
    println!("wrk -t2 -c16 -d10s -s {} http://{target}/notes", script.display());
    std::future::pending::<()>().await;
}
