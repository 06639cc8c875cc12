//! Single-use identifiers shared by every node: a login's `state` and a
//! logout token's `jti` each count once, whichever node sees them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::{StoreError, StoreFuture};

/// Remembers identifiers until they expire, and says whether one is new.
/// Implemented in this crate for one process, and by `portcullis-redis`
/// and `portcullis-postgres` for every node of a deployment.
///
/// Every node of a deployment must share one (Redis or PostgreSQL past
/// one machine): a logout token replayed to another node is a replay too.
/// An outage is an error (the endpoint answers 503), never a pass.
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `id` in `namespace` until `until`; `true` if it was not
    /// recorded already (the first use), `false` for a replay.
    fn first_use<'a>(&'a self, namespace: &'a str, id: &'a str, until: SystemTime) -> StoreFuture<'a, bool>;
}

/// A replay cache in this process (one node only).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use portcullis_core::{MemoryReplayCache, ReplayCache};
///
/// # tokio_test_block_on(async {
/// let cache = MemoryReplayCache::default();
/// let until = SystemTime::now() + Duration::from_secs(60);
/// assert!(cache.first_use("jti", "abc", until).await?);
/// assert!(!cache.first_use("jti", "abc", until).await?, "a replay");
/// assert!(cache.first_use("state", "abc", until).await?, "namespaces are apart");
/// # Ok::<(), portcullis_core::StoreError>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut f = std::pin::pin!(f);
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut std::task::Context::from_waker(&waker)) { return v; } }
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryReplayCache {
    seen: Mutex<HashMap<(String, String), SystemTime>>,
}

impl MemoryReplayCache {
    /// Entries kept before expired ones are swept on the next insert.
    const SWEEP_ABOVE: usize = 4096;
}

impl ReplayCache for MemoryReplayCache {
    fn first_use<'a>(&'a self, namespace: &'a str, id: &'a str, until: SystemTime) -> StoreFuture<'a, bool> {
        let now = SystemTime::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() > Self::SWEEP_ABOVE {
            seen.retain(|_, expires| *expires > now);
        }
        let key = (namespace.to_owned(), id.to_owned());
        let first = match seen.get(&key) {
            Some(expires) if *expires > now => false,
            _ => {
                seen.insert(key, until);
                true
            }
        };
        Box::pin(std::future::ready(Ok::<_, StoreError>(first)))
    }
}
