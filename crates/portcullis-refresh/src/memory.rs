//! The in-process refresh-token store.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::store::{Family, RefreshStore, Spend, SpendRules};
use portcullis_core::StoreFuture;
use portcullis_core::duration_millis as millis;

/// Refresh-token families in this process's memory: one record per
/// family, whatever its number of rotations. One mutex makes every spend
/// atomic (refreshes are rare beside requests: minutes apart per client).
/// Ended families are swept as new families start.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_refresh::{MemoryRefreshStore, RefreshStore};
///
/// let store: Arc<dyn RefreshStore> = Arc::new(MemoryRefreshStore::new());
/// ```
#[derive(Debug, Default)]
pub struct MemoryRefreshStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    families: HashMap<String, FamilyState>,
    by_subject: HashMap<String, HashSet<String>>,
    creations: u64,
}

/// Everything a family is: O(1) whatever its number of rotations.
#[derive(Debug)]
struct FamilyState {
    family: Family,
    revoked: bool,
    /// The sequence number of the live token.
    live: u64,
    /// When the live token was made live (the last rotation), ms.
    rotated_ms: u64,
    /// When the live token idles out, ms.
    idle_deadline_ms: u64,
}

const SWEEP_EVERY: u64 = 256;

impl MemoryRefreshStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many families are held (one record each, whatever their number
    /// of rotations).
    pub fn len(&self) -> usize {
        self.lock().families.len()
    }

    /// Whether the store holds no family.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn revoke(&mut self, family: &str) -> Option<Family> {
        let state = self.families.get_mut(family)?;
        state.revoked = true;
        Some(state.family.clone())
    }

    /// Drops families no token of which can still be spent.
    fn sweep(&mut self, now_ms: u64) {
        let mut ended = Vec::new();
        self.families.retain(|id, state| {
            let live = state.family.absolute_deadline_ms > now_ms && state.idle_deadline_ms > now_ms;
            if !live {
                ended.push((id.clone(), state.family.subject.clone()));
            }
            live
        });
        for (id, subject) in ended {
            if let Some(ids) = self.by_subject.get_mut(&subject) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_subject.remove(&subject);
                }
            }
        }
    }
}

impl RefreshStore for MemoryRefreshStore {
    fn create(&self, family: &Family, idle: Duration) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        inner.creations += 1;
        if inner.creations.is_multiple_of(SWEEP_EVERY) {
            inner.sweep(family.created_ms);
        }
        inner
            .by_subject
            .entry(family.subject.clone())
            .or_default()
            .insert(family.id.clone());
        inner.families.insert(
            family.id.clone(),
            FamilyState {
                family: family.clone(),
                revoked: false,
                live: 0,
                rotated_ms: family.created_ms,
                idle_deadline_ms: family
                    .created_ms
                    .saturating_add(millis(idle))
                    .min(family.absolute_deadline_ms),
            },
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn spend(&self, id: &str, seq: u64, now_ms: u64, rules: SpendRules) -> StoreFuture<'_, Spend> {
        let (grace, idle) = (rules.grace, rules.idle);
        let mut inner = self.lock();
        let outcome = match inner.families.get_mut(id) {
            None => Spend::Unknown,
            Some(state) if state.revoked || state.family.absolute_deadline_ms <= now_ms => Spend::Ended,
            Some(state) if seq == state.live => {
                if state.idle_deadline_ms <= now_ms {
                    Spend::Ended
                } else if now_ms.saturating_sub(state.rotated_ms) < millis(rules.min_interval) {
                    Spend::Throttled
                } else {
                    state.live += 1;
                    state.rotated_ms = now_ms;
                    state.idle_deadline_ms = now_ms
                        .saturating_add(millis(idle))
                        .min(state.family.absolute_deadline_ms);
                    Spend::Rotated(state.family.clone())
                }
            }
            Some(state)
                if seq.checked_add(1) == Some(state.live)
                    && now_ms.saturating_sub(state.rotated_ms) < millis(grace) =>
            {
                Spend::Retry(state.family.clone())
            }
            Some(state) => {
                state.revoked = true;
                Spend::Reused(state.family.clone())
            }
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn family(&self, id: &str) -> StoreFuture<'_, Option<Family>> {
        let family = self.lock().families.get(id).map(|state| state.family.clone());
        Box::pin(std::future::ready(Ok(family)))
    }

    fn revoke_family(&self, id: &str) -> StoreFuture<'_, Option<Family>> {
        let revoked = self.lock().revoke(id);
        Box::pin(std::future::ready(Ok(revoked)))
    }

    fn revoke_subject(&self, subject: &str) -> StoreFuture<'_, Vec<String>> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner
            .by_subject
            .get(subject)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        let revoked = ids.into_iter().filter(|id| inner.revoke(id).is_some()).collect();
        Box::pin(std::future::ready(Ok(revoked)))
    }
}
