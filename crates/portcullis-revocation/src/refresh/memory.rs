//! The in-process refresh-token store.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::store::{Family, RefreshStore, Spend, TokenHash};
use crate::store::StoreFuture;

/// Refresh tokens in this process's memory. One mutex makes every spend
/// atomic (refreshes are rare beside requests: minutes apart per client).
/// Idled-out tokens and ended families are swept as new families start.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_revocation::{MemoryRefreshStore, RefreshStore};
///
/// let store: Arc<dyn RefreshStore> = Arc::new(MemoryRefreshStore::new());
/// ```
#[derive(Debug, Default)]
pub struct MemoryRefreshStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<TokenHash, TokenState>,
    families: HashMap<String, FamilyState>,
    by_subject: HashMap<String, HashSet<String>>,
    creations: u64,
}

#[derive(Debug)]
struct TokenState {
    family: String,
    idle_deadline_ms: u64,
    spent: Option<(TokenHash, u64)>,
}

#[derive(Debug)]
struct FamilyState {
    family: Family,
    revoked: bool,
}

const SWEEP_EVERY: u64 = 256;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl MemoryRefreshStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many refresh tokens (live and spent) are held.
    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    /// Whether the store holds no token.
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

    fn sweep(&mut self, now_ms: u64) {
        let families = &self.families;
        // A spent token is kept while its family lives, to catch replays.
        self.tokens.retain(|_, token| {
            (token.spent.is_some() || token.idle_deadline_ms > now_ms)
                && families
                    .get(&token.family)
                    .is_some_and(|f| !f.revoked && f.family.absolute_deadline_ms > now_ms)
        });
        let live: HashSet<&String> = self.tokens.values().map(|t| &t.family).collect();
        let ended: Vec<String> = self.families.keys().filter(|id| !live.contains(id)).cloned().collect();
        for id in ended {
            if let Some(state) = self.families.remove(&id)
                && let Some(ids) = self.by_subject.get_mut(&state.family.subject)
            {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_subject.remove(&state.family.subject);
                }
            }
        }
    }
}

impl RefreshStore for MemoryRefreshStore {
    fn create(&self, first: &TokenHash, family: &Family, idle: Duration) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        inner.creations += 1;
        if inner.creations.is_multiple_of(SWEEP_EVERY) {
            inner.sweep(family.created_ms);
        }
        inner.tokens.insert(
            *first,
            TokenState {
                family: family.id.clone(),
                idle_deadline_ms: family.created_ms.saturating_add(millis(idle)),
                spent: None,
            },
        );
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
            },
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn spend(
        &self,
        token: &TokenHash,
        successor: &TokenHash,
        now_ms: u64,
        grace: Duration,
        idle: Duration,
    ) -> StoreFuture<'_, Spend> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let outcome = 'outcome: {
            let Some(state) = inner.tokens.get_mut(token) else {
                break 'outcome Spend::Unknown;
            };
            let Some(family) = inner.families.get(&state.family) else {
                break 'outcome Spend::Unknown;
            };
            if family.revoked || family.family.absolute_deadline_ms <= now_ms {
                break 'outcome Spend::Ended;
            }
            match state.spent {
                Some((recorded, spent_ms)) => {
                    if recorded == *successor && now_ms.saturating_sub(spent_ms) < millis(grace) {
                        break 'outcome Spend::Retry(family.family.clone());
                    }
                    let id = state.family.clone();
                    match inner.revoke(&id) {
                        Some(family) => Spend::Reused(family),
                        None => Spend::Unknown,
                    }
                }
                None if state.idle_deadline_ms <= now_ms => Spend::Ended,
                None => {
                    state.spent = Some((*successor, now_ms));
                    let family = family.family.clone();
                    inner.tokens.insert(
                        *successor,
                        TokenState {
                            family: family.id.clone(),
                            idle_deadline_ms: now_ms.saturating_add(millis(idle)).min(family.absolute_deadline_ms),
                            spent: None,
                        },
                    );
                    Spend::Rotated(family)
                }
            }
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn family_of(&self, token: &TokenHash) -> StoreFuture<'_, Option<Family>> {
        let inner = self.lock();
        let family = inner
            .tokens
            .get(token)
            .and_then(|state| inner.families.get(&state.family))
            .map(|state| state.family.clone());
        Box::pin(std::future::ready(Ok(family)))
    }

    fn revoke_family_of(&self, token: &TokenHash) -> StoreFuture<'_, Option<Family>> {
        let mut inner = self.lock();
        let family = inner.tokens.get(token).map(|state| state.family.clone());
        let revoked = family.and_then(|id| inner.revoke(&id));
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
