//! The conformance suite against `MemoryStore`, and its sweeping.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_session::{MemoryStore, SessionKey, SessionRecord, SessionStore};

// One test per rule of the conformance suite.
portcullis_session::session_store_conformance!(async {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    (store, ())
});

#[tokio::test]
async fn expired_sessions_are_swept_under_churn() {
    let store = MemoryStore::new();
    let record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(60));
    for n in 0..1_000u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        store
            .create(&SessionKey::from_bytes(bytes), &record, Duration::from_millis(1))
            .await
            .expect("create");
        if n % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Creations keep sweeping: one more batch leaves at most a batch.
    for n in 1_000..1_128u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        store
            .create(&SessionKey::from_bytes(bytes), &record, Duration::from_millis(1))
            .await
            .expect("create");
    }
    assert!(store.len() <= 128, "memory stays bounded: {} entries held", store.len());
}

fn key(n: u32) -> SessionKey {
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    SessionKey::from_bytes(bytes)
}

/// Defect: `MemoryStore` had no capacity bound, and its sweep walked the
/// whole map. At capacity it now evicts the entries closest to expiry.
#[tokio::test]
async fn at_capacity_the_sessions_closest_to_expiry_are_evicted() {
    let store = MemoryStore::with_capacity(100);
    let record = SessionRecord::new(SystemTime::now(), Duration::from_secs(3600), Duration::from_secs(3600));
    for n in 0..300u32 {
        // Later sessions live longer.
        let ttl = Duration::from_secs(600) + Duration::from_millis(u64::from(n));
        store.create(&key(n), &record, ttl).await.expect("create");
        assert!(store.len() <= 100, "bounded at every step: {} after {n}", store.len());
    }
    assert_eq!(store.len(), 100);
    for n in 0..200u32 {
        assert!(
            store.load(&key(n)).await.expect("load").is_none(),
            "{n} was closest to expiry"
        );
    }
    for n in 200..300u32 {
        assert!(store.load(&key(n)).await.expect("load").is_some(), "{n} kept");
    }

    // A session in use (its idle deadline refreshed) is not the one to go.
    let mut changes = portcullis_session::Changes::default();
    changes.touch = Some(portcullis_session::Touch {
        idle_deadline_ms: 0,
        last_seen_ms: 0,
        ttl: Duration::from_secs(7200),
    });
    assert!(store.update(&key(200), &changes).await.expect("touch"));
    store
        .create(&key(1_000), &record, Duration::from_secs(3600))
        .await
        .expect("create");
    assert!(
        store.load(&key(200)).await.expect("load").is_some(),
        "the touched session stays"
    );
    assert!(
        store.load(&key(201)).await.expect("load").is_none(),
        "the next closest to expiry went"
    );
    assert_eq!(store.len(), 100);
}
