//! The conformance suite against `MemoryStore`, and its sweeping.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_session::{MemoryStore, SessionKey, SessionRecord, SessionStore};

#[tokio::test]
async fn memory_store_conforms() {
    portcullis_session::conformance::run(Arc::new(MemoryStore::new()), "mem").await;
}

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
