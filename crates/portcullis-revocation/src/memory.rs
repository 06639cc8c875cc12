//! The in-process revocation store.

use std::time::SystemTime;

use portcullis_core::Identity;

use crate::denylist::{Denylist, Revocation, Revoked, TokenFacts, millis};
use crate::store::{RevocationStore, StoreError, StoreFuture};

/// Revocations in this process's memory (dashmap): the embedded default,
/// for one machine. A check is a local lookup; expired entries are swept
/// as new ones arrive (at most every 30 s), so memory stays bounded.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_revocation::{MemoryRevocationStore, RevocationStore};
///
/// let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocationStore::new());
/// assert!(MemoryRevocationStore::new().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct MemoryRevocationStore {
    denylist: Denylist,
}

impl MemoryRevocationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries are held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.denylist.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry now.
    pub fn sweep(&self) {
        self.denylist.sweep(millis(SystemTime::now()));
    }

    fn verdict(&self, identity: &Identity) -> Option<Revoked> {
        let facts = TokenFacts::of(identity)?;
        self.denylist.verdict(&facts, millis(SystemTime::now()))
    }
}

impl RevocationStore for MemoryRevocationStore {
    fn revoke(&self, revocation: Revocation) -> StoreFuture<'_, ()> {
        self.denylist.insert(&revocation, millis(SystemTime::now()));
        Box::pin(std::future::ready(Ok(())))
    }

    fn check(&self, identity: Identity) -> StoreFuture<'_, Option<Revoked>> {
        Box::pin(std::future::ready(Ok(self.verdict(&identity))))
    }

    fn check_now(&self, identity: &Identity) -> Option<Result<Option<Revoked>, StoreError>> {
        Some(Ok(self.verdict(identity)))
    }

    fn entries(&self) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(std::future::ready(Ok(self.denylist.entries(millis(SystemTime::now())))))
    }
}
