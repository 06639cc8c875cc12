//! The SessionStore conformance suite against a real redis-server.

use std::sync::Arc;

use portcullis::redis::RedisSessionStore;
use portcullis_tests::redis_server::RedisServer;

// One test per rule of the conformance suite, each on its own server.
portcullis::session::session_store_conformance!(async {
    let server = RedisServer::start();
    let store = RedisSessionStore::connect(&server.url()).await.expect("connect");
    let store: Arc<dyn portcullis::session::SessionStore> = Arc::new(store);
    (store, server)
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_dead_redis_is_an_error_not_a_hang() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let started = std::time::Instant::now();
    let error = RedisSessionStore::connect(&url).await.expect_err("nothing listens");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "failed fast");
    assert!(error.to_string().starts_with("session store unavailable"), "{error}");
}
