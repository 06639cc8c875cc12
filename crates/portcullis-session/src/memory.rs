//! The in-process store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use portcullis_core::Principal;

use crate::id::KeyHash;
use crate::store::{Changes, SessionRecord, StoreError, StoreFuture};
use crate::{SessionKey, SessionStore};

/// Sessions in this process's memory (dashmap): the embedded default, for
/// one machine. Sessions do not survive a restart.
///
/// Memory is bounded two ways, without a background task:
/// - **Incremental sweep**: entries are queued by expiry; every creation
///   drops up to 16 expired ones from the head of the queue (no walk of
///   the whole map).
/// - **Capacity** (default [`DEFAULT_CAPACITY`](MemoryStore::DEFAULT_CAPACITY)
///   entries, [`with_capacity`](MemoryStore::with_capacity) to change):
///   a creation at capacity first sweeps, then **evicts the entries
///   closest to expiry** (the longest idle), one per creation, and logs a
///   warning. Anonymous visitors store nothing (see `CsrfLayer`'s
///   pre-session cookie), so only logins and session writes fill it.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_session::{MemoryStore, SessionStore};
///
/// let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
/// assert_eq!(MemoryStore::new().len(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    records: DashMap<SessionKey, Entry, KeyHash>,
    by_principal: DashMap<Principal, HashSet<SessionKey>>,
    /// [`provider_session_key`](crate::provider_session_key) → the keys of
    /// the sessions it started. An entry may be stale (its session moved
    /// on or ended): checked on use.
    by_provider_session: DashMap<String, HashSet<SessionKey>>,
    /// Every entry's key by expiry, soonest first. An item may be stale (its
    /// entry gone, or touched to a later expiry): checked when it is popped.
    expiries: Mutex<BinaryHeap<Reverse<(Instant, SessionKey)>>>,
    capacity: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

#[derive(Debug)]
enum Entry {
    Live {
        record: Arc<SessionRecord>,
        expires: Instant,
    },
    Alias {
        to: SessionKey,
        expires: Instant,
    },
}

impl Entry {
    fn expires(&self) -> Instant {
        match self {
            Self::Live { expires, .. } | Self::Alias { expires, .. } => *expires,
        }
    }
}

/// Expired entries dropped per creation.
const SWEEP_BATCH: usize = 16;

#[derive(Clone, Copy)]
enum Drain {
    Expired,
    Evict { force: bool },
}

impl MemoryStore {
    /// The default bound on entries (sessions and rotation aliases).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty store holding at most [`DEFAULT_CAPACITY`](MemoryStore::DEFAULT_CAPACITY)
    /// entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `capacity` entries (at least 1).
    ///
    /// ```
    /// use portcullis_session::MemoryStore;
    /// assert_eq!(MemoryStore::with_capacity(10).capacity(), 10);
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            records: DashMap::with_hasher(KeyHash::default()),
            by_principal: DashMap::new(),
            by_provider_session: DashMap::new(),
            expiries: Mutex::new(BinaryHeap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The most entries held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries (sessions and rotation aliases) are held, expired
    /// ones not yet swept included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn expiries(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<(Instant, SessionKey)>>> {
        self.expiries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `key` to be looked at when `expires` comes.
    fn queue(&self, key: SessionKey, expires: Instant) {
        let mut expiries = self.expiries();
        expiries.push(Reverse((expires, key)));
        // Stale items (deleted entries) leave only when their time comes:
        // rebuild from the live entries if they pile up.
        if expiries.len() > 2 * self.capacity.max(self.records.len()) + SWEEP_BATCH {
            drop(expiries);
            let rebuilt: BinaryHeap<_> = self
                .records
                .iter()
                .map(|entry| Reverse((entry.expires(), *entry.key())))
                .collect();
            *self.expiries() = rebuilt;
        }
    }

    /// Looks at up to `budget` queue items: with `Drain::Expired`, those
    /// whose time has come; with `Drain::Evict`, the soonest whatever
    /// their time. Drops those entries (an entry touched to a later expiry
    /// since it was queued is requeued instead, unless `force`). Returns
    /// how many entries it dropped.
    fn drain(&self, now: Instant, budget: usize, mode: Drain) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            let popped = {
                let mut expiries = self.expiries();
                match expiries.peek() {
                    Some(Reverse((due, _))) if matches!(mode, Drain::Evict { .. }) || *due <= now => expiries.pop(),
                    _ => None,
                }
            };
            let Some(Reverse((due, key))) = popped else { break };
            let force = matches!(mode, Drain::Evict { force: true });
            // Removed only if still as queued (or forced): a touch racing
            // the sweep keeps its session.
            let removed = self
                .records
                .remove_if(&key, |_, entry| force || entry.expires() <= due.max(now));
            match removed {
                Some((_, Entry::Live { record, .. })) => {
                    self.unindex(&record, &key);
                    dropped += 1;
                }
                Some((_, Entry::Alias { .. })) => dropped += 1,
                None => {
                    if let Some(expires) = self.records.get(&key).map(|entry| entry.expires()) {
                        self.queue(key, expires);
                    }
                }
            }
        }
        dropped
    }

    /// Room for one more entry: expired ones go first; at capacity, the
    /// ones closest to expiry are evicted.
    fn make_room(&self, now: Instant) {
        self.drain(now, SWEEP_BATCH, Drain::Expired);
        let mut attempts = 0;
        while self.records.len() >= self.capacity && attempts < 2 * SWEEP_BATCH {
            attempts += 1;
            let force = attempts > SWEEP_BATCH;
            if self.drain(now, 1, Drain::Evict { force }) > 0 {
                tracing::warn!(
                    target: "portcullis::session",
                    capacity = self.capacity,
                    "MemoryStore at capacity: evicted the session closest to expiry"
                );
            }
        }
    }

    /// Drops every expired entry now (a walk of the whole map: creations
    /// already sweep incrementally; this is for tests and maintenance).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.records.retain(|_, entry| entry.expires() > now);
        prune(&self.by_principal, &self.records);
        prune(&self.by_provider_session, &self.records);
        let rebuilt: BinaryHeap<_> = self
            .records
            .iter()
            .map(|entry| Reverse((entry.expires(), *entry.key())))
            .collect();
        *self.expiries() = rebuilt;
    }

    /// The live key `key` resolves to (through at most one alias).
    fn resolve(&self, key: &SessionKey) -> Option<SessionKey> {
        let now = Instant::now();
        let entry = self.records.get(key)?;
        match &*entry {
            Entry::Live { expires, .. } if *expires > now => Some(*key),
            Entry::Alias { to, expires } if *expires > now => Some(*to),
            _ => None,
        }
    }

    fn index(&self, record: &SessionRecord, key: SessionKey) {
        if let Some(principal) = &record.principal {
            self.by_principal.entry(principal.clone()).or_default().insert(key);
        }
        if let Some(provider_session) = record.provider_session_key() {
            self.by_provider_session
                .entry(provider_session)
                .or_default()
                .insert(key);
        }
    }

    fn unindex(&self, record: &SessionRecord, key: &SessionKey) {
        if let Some(principal) = &record.principal {
            drop_from(&self.by_principal, principal, key);
        }
        if let Some(provider_session) = record.provider_session_key() {
            drop_from(&self.by_provider_session, &provider_session, key);
        }
    }

    fn insert_live(&self, key: SessionKey, record: SessionRecord, ttl: Duration) {
        let now = Instant::now();
        self.make_room(now);
        self.index(&record, key);
        let expires = now + ttl;
        self.records.insert(
            key,
            Entry::Live {
                record: Arc::new(record),
                expires,
            },
        );
        self.queue(key, expires);
    }

    fn insert_alias(&self, key: SessionKey, to: SessionKey, expires: Instant) {
        self.records.insert(key, Entry::Alias { to, expires });
        self.queue(key, expires);
    }

    fn remove_live(&self, key: &SessionKey) {
        if let Some((_, Entry::Live { record, .. })) = self.records.remove(key) {
            self.unindex(&record, key);
        }
    }

    /// [`SessionStore::rotate`]: the new record goes in first, then the
    /// live one is replaced under its shard lock — or, if it ended
    /// meanwhile, the new one is taken out again. A delete that runs later
    /// follows the alias to the new record, so a logout always wins.
    fn move_record(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        record: &SessionRecord,
        ttl: Duration,
        grace: Option<Duration>,
    ) -> bool {
        let Some(live) = self.resolve(old) else {
            return false;
        };
        self.insert_live(*new, record.clone(), ttl);
        let now = Instant::now();
        let replaced = match self.records.get_mut(&live).as_deref_mut() {
            Some(entry @ Entry::Live { .. }) if entry.expires() > now => {
                let previous = std::mem::replace(
                    entry,
                    Entry::Alias {
                        to: *new,
                        expires: now + grace.unwrap_or_default(),
                    },
                );
                Some(previous)
            }
            _ => None,
        };
        let Some(Entry::Live { record: previous, .. }) = replaced else {
            // Ended between the look-up and now: undo, write nothing.
            self.remove_live(new);
            self.records.remove(new);
            return false;
        };
        self.unindex(&previous, &live);
        for key in [live, *old] {
            match grace {
                Some(grace) => self.insert_alias(key, *new, now + grace),
                None => {
                    self.records.remove(&key);
                }
            }
        }
        true
    }

    /// [`SessionStore::rekey`]: the record as it is goes in under `new`
    /// first, then `old` is taken out under its shard lock if nothing wrote
    /// to it since (a write makes a new `Arc`: copy-on-write), and a grace
    /// alias takes its place. Writes that slipped in between are folded
    /// into the copy ([`fold`](Self::fold)); a delete in between ends the
    /// copy too (a logout wins).
    fn rekey_record(&self, old: &SessionKey, new: &SessionKey, grace: Option<Duration>) -> bool {
        if old == new {
            return false;
        }
        let now = Instant::now();
        // The guard is dropped at the end of the statement: no shard lock
        // is held across the next steps.
        let (snapshot, expires) = match self.records.get(old).as_deref() {
            Some(Entry::Live { record, expires }) if *expires > now => (Arc::clone(record), *expires),
            _ => return false,
        };
        match self.records.entry(*new) {
            dashmap::Entry::Occupied(_) => return false,
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(Entry::Live {
                    record: Arc::clone(&snapshot),
                    expires,
                });
            }
        }
        self.index(&snapshot, *new);
        self.queue(*new, expires);
        let alias_until = grace.map(|grace| (now + grace).min(expires));
        // `old` changed or ended meanwhile: the copy stays, since a request
        // may already use it or have written to it (taking either side out
        // once lost a write, or made a live session look ended, in about one
        // run in twenty of `re_keying_on_many_threads_loses_no_write`).
        self.retire(old, new, &snapshot, alias_until) || self.fold(old, new, snapshot, alias_until)
    }

    /// Takes `old` out if it still holds `record`, in one step under its
    /// shard lock: replaced by an alias to `new` until `alias_until`, or
    /// removed. A request never finds neither key.
    fn retire(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        record: &Arc<SessionRecord>,
        alias_until: Option<Instant>,
    ) -> bool {
        let unchanged = |entry: &Entry| matches!(entry, Entry::Live { record: held, .. } if Arc::ptr_eq(held, record));
        let retired = match alias_until {
            Some(until) => match self.records.get_mut(old).as_deref_mut() {
                Some(entry) if unchanged(entry) => {
                    *entry = Entry::Alias {
                        to: *new,
                        expires: until,
                    };
                    true
                }
                _ => false,
            },
            None => self.records.remove_if(old, |_, entry| unchanged(entry)).is_some(),
        };
        if retired {
            self.unindex(record, old);
            if let Some(until) = alias_until {
                self.queue(*old, until);
            }
        }
        retired
    }

    /// Moves the writes made to `old` since `base` into its copy at `new`,
    /// then [retires](Self::retire) `old`; again while `old` keeps changing. `false` when
    /// either ended meanwhile: then the session ended (a logout wins), and
    /// neither stays.
    fn fold(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        mut base: Arc<SessionRecord>,
        alias_until: Option<Instant>,
    ) -> bool {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let now = Instant::now();
            // The guard goes at the end of the statement: `new` may share
            // `old`'s shard.
            let live = match self.records.get(old).as_deref() {
                Some(Entry::Live { record, expires }) if *expires > now => Some((Arc::clone(record), *expires)),
                _ => None,
            };
            let Some((current, old_expires)) = live else {
                self.remove_live(new);
                return false;
            };
            let folded = match self.records.get_mut(new).as_deref_mut() {
                Some(Entry::Live { record, expires }) if *expires > now => {
                    fold_writes(Arc::make_mut(record), &base, &current);
                    *expires = (*expires).max(old_expires);
                    true
                }
                _ => false,
            };
            if !folded {
                // The copy ended (a logout through the new key): so does
                // the session under the old one.
                self.remove_live(old);
                return false;
            }
            if self.retire(old, new, &current, alias_until) {
                return true;
            }
            base = current;
        }
        // Still changing after every attempt: keep both rather than lose
        // a write; the next re-key of this session moves it.
        false
    }

    /// The live record under `key`, following a rotation alias. One
    /// lookup in the common case (an alias's guard is dropped before its
    /// target's shard is locked).
    fn find(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        let now = Instant::now();
        let alias_to = match self.records.get(key).as_deref() {
            Some(Entry::Live { record, expires }) if *expires > now => return Some(Arc::clone(record)),
            Some(Entry::Alias { to, expires }) if *expires > now => *to,
            _ => return None,
        };
        match self.records.get(&alias_to).as_deref() {
            Some(Entry::Live { record, expires }) if *expires > now => Some(Arc::clone(record)),
            _ => None,
        }
    }

    /// Applies `changes` to the live record under `key` (following an
    /// alias); `false` when there is none.
    fn apply(&self, key: &SessionKey, changes: &Changes) -> bool {
        let now = Instant::now();
        // `get_mut` holds the shard lock: a concurrent delete either ran
        // before (nothing to update) or runs after (and wins).
        let alias_to = match self.records.get_mut(key).as_deref_mut() {
            Some(Entry::Live { record, expires }) if *expires > now => {
                apply_changes(record, expires, changes, now);
                return true;
            }
            Some(Entry::Alias { to, expires }) if *expires > now => *to,
            _ => return false,
        };
        match self.records.get_mut(&alias_to).as_deref_mut() {
            Some(Entry::Live { record, expires }) if *expires > now => {
                apply_changes(record, expires, changes, now);
                true
            }
            _ => false,
        }
    }
}

/// Applies to `target` what changed from `base` to `changed`: keys set and
/// removed (a key written on both sides keeps `changed`'s value), and the
/// later idle refresh.
fn fold_writes(target: &mut SessionRecord, base: &SessionRecord, changed: &SessionRecord) {
    for (name, value) in &changed.data {
        if base.data.get(name) != Some(value) {
            target.data.insert(name.clone(), value.clone());
        }
    }
    for name in base.data.keys() {
        if !changed.data.contains_key(name) {
            target.data.remove(name);
        }
    }
    target.idle_deadline_ms = target.idle_deadline_ms.max(changed.idle_deadline_ms);
    target.last_seen_ms = target.last_seen_ms.max(changed.last_seen_ms);
}

fn apply_changes(record: &mut Arc<SessionRecord>, expires: &mut Instant, changes: &Changes, now: Instant) {
    // Copy-on-write: a request still holding the loaded snapshot keeps it.
    let record = Arc::make_mut(record);
    for (name, value) in &changes.set {
        record.data.insert(name.clone(), value.clone());
    }
    for name in &changes.removed {
        record.data.remove(name);
    }
    if let Some(touch) = changes.touch {
        record.idle_deadline_ms = touch.idle_deadline_ms;
        record.last_seen_ms = touch.last_seen_ms;
        *expires = now + touch.ttl;
    }
}

impl SessionStore for MemoryStore {
    fn load(&self, key: &SessionKey) -> StoreFuture<'_, Option<Arc<SessionRecord>>> {
        Box::pin(std::future::ready(Ok(self.find(key))))
    }

    fn load_now(&self, key: &SessionKey) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        Some(Ok(self.find(key)))
    }

    fn create(&self, key: &SessionKey, record: &SessionRecord, ttl: Duration) -> StoreFuture<'_, ()> {
        self.insert_live(*key, record.clone(), ttl);
        Box::pin(std::future::ready(Ok(())))
    }

    fn update(&self, key: &SessionKey, changes: &Changes) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(self.apply(key, changes))))
    }

    fn update_now(&self, key: &SessionKey, changes: &Changes) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.apply(key, changes)))
    }

    fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        record: &SessionRecord,
        ttl: Duration,
        grace: Option<Duration>,
    ) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(self.move_record(old, new, record, ttl, grace))))
    }

    fn rekey(&self, old: &SessionKey, new: &SessionKey, grace: Option<Duration>) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(self.rekey_record(old, new, grace))))
    }

    fn delete(&self, key: &SessionKey) -> StoreFuture<'_, ()> {
        if let Some(live) = self.resolve(key) {
            self.remove_live(&live);
        }
        self.remove_live(key);
        self.records.remove(key);
        Box::pin(std::future::ready(Ok(())))
    }

    fn sessions_of(&self, principal: &Principal) -> StoreFuture<'_, Vec<(SessionKey, SessionRecord)>> {
        let keys: Vec<SessionKey> = self
            .by_principal
            .get(principal)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        let now = Instant::now();
        let mut sessions: Vec<(SessionKey, SessionRecord)> = keys
            .into_iter()
            .filter_map(|key| match self.records.get(&key).as_deref() {
                Some(Entry::Live { record, expires }) if *expires > now => Some((key, SessionRecord::clone(record))),
                _ => None,
            })
            .collect();
        sessions.sort_by_key(|(_, record)| record.created_ms);
        Box::pin(std::future::ready(Ok(sessions)))
    }

    fn delete_all_of(&self, principal: &Principal) -> StoreFuture<'_, usize> {
        let keys = self
            .by_principal
            .remove(principal)
            .map(|(_, keys)| keys)
            .unwrap_or_default();
        let mut ended = 0;
        for key in keys {
            if let Some((_, entry)) = self.records.remove(&key) {
                if let Entry::Live { record, .. } = &entry {
                    self.unindex(record, &key);
                }
                ended += 1;
            }
        }
        Box::pin(std::future::ready(Ok(ended)))
    }

    fn delete_provider_session(&self, issuer: &str, session: &str) -> StoreFuture<'_, usize> {
        let index_key = crate::provider_session_key(issuer, session);
        let now = Instant::now();
        let mut ended = 0;
        // A rotation racing this may index its new key after the entry was
        // taken: the next pass finds it (a rotation makes one new key).
        for _ in 0..3 {
            let Some((_, keys)) = self.by_provider_session.remove(&index_key) else {
                break;
            };
            for key in keys {
                // Only a live record that still names this provider
                // session: an index entry may be stale.
                let removed = self.records.remove_if(&key, |_, entry| {
                    matches!(entry, Entry::Live { record, .. }
                        if record.provider_session_key().as_deref() == Some(index_key.as_str()))
                });
                if let Some((_, Entry::Live { record, expires })) = removed {
                    self.unindex(&record, &key);
                    ended += usize::from(expires > now);
                }
            }
        }
        Box::pin(std::future::ready(Ok(ended)))
    }
}

/// Takes `key` out of the index entry `name`, and the entry once empty.
fn drop_from<K: Eq + std::hash::Hash>(index: &DashMap<K, HashSet<SessionKey>>, name: &K, key: &SessionKey) {
    index.remove_if_mut(name, |_, keys| {
        keys.remove(key);
        keys.is_empty()
    });
}

/// Keeps only the index entries whose sessions are still held.
fn prune<K: Eq + std::hash::Hash + Clone>(
    index: &DashMap<K, HashSet<SessionKey>>,
    records: &DashMap<SessionKey, Entry, KeyHash>,
) {
    index.retain(|_, keys| {
        keys.retain(|key| records.contains_key(key));
        !keys.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn key(n: u32) -> SessionKey {
        let mut hex = format!("{n:08x}");
        hex.push_str(&"0".repeat(56));
        SessionKey::from_hex(&hex).expect("64 hex digits")
    }

    #[tokio::test]
    async fn memory_stays_bounded_under_churn() {
        let store = MemoryStore::new();
        let record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600));
        let mut most = 0;
        const WAVE: u32 = 128;
        // 40 waves of short-lived sessions: without sweeping, 5,120 entries.
        for wave in 0..40u32 {
            for n in 0..WAVE {
                let ttl = Duration::from_millis(2);
                store
                    .create(&key(wave * 1_000 + n), &record, ttl)
                    .await
                    .expect("create");
            }
            most = most.max(store.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            most <= 2 * WAVE as usize,
            "expired sessions are swept: at most {most} entries held"
        );
        store.sweep();
        assert!(store.is_empty(), "an explicit sweep drops every expired entry");
    }

    /// The two orders a re-key can meet, made one step at a time: writes
    /// to both the old record and its copy all survive, and the old key
    /// then leads to the copy; an old record deleted meanwhile (a logout)
    /// ends the copy too.
    #[test]
    fn a_re_key_folds_writes_from_both_sides_and_a_logout_wins() {
        let store = MemoryStore::new();
        let record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600));
        let (old, new) = (key(1), key(2));
        store.insert_live(old, record, Duration::from_secs(60));
        let write = |at: &SessionKey, name: &str| {
            let mut changes = Changes::default();
            changes.set.insert(name.into(), "1".into());
            assert!(store.apply(at, &changes), "{name} written");
        };
        write(&old, "before");
        let snapshot = store.find(&old).expect("live");
        // What `rekey_record`'s first step leaves: the record as it was,
        // under the new key too.
        let copy = |at: SessionKey, record: &Arc<SessionRecord>| {
            store.records.insert(
                at,
                Entry::Live {
                    record: record.clone(),
                    expires: Instant::now() + Duration::from_secs(60),
                },
            );
        };
        copy(new, &snapshot);
        write(&old, "on_old");
        write(&new, "on_copy");
        let until = Instant::now() + Duration::from_secs(5);
        assert!(
            !store.retire(&old, &new, &snapshot, Some(until)),
            "the old record changed"
        );
        assert!(
            store.fold(&old, &new, snapshot.clone(), Some(until)),
            "folded and retired"
        );
        let moved = store.find(&new).expect("live under the new key");
        let names: Vec<_> = moved.data.keys().map(String::as_str).collect();
        assert_eq!(names, ["before", "on_copy", "on_old"]);
        assert!(
            store.find(&old).is_some_and(|through| Arc::ptr_eq(&through, &moved)),
            "the old key is an alias to the copy"
        );

        let (ended, copy_of_ended) = (key(3), key(4));
        store.insert_live(ended, SessionRecord::clone(&snapshot), Duration::from_secs(60));
        let snapshot = store.find(&ended).expect("live");
        copy(copy_of_ended, &snapshot);
        store.remove_live(&ended);
        assert!(
            !store.fold(&ended, &copy_of_ended, snapshot.clone(), None),
            "the session ended"
        );
        assert!(store.find(&copy_of_ended).is_none(), "a logout wins over the re-key");

        // A logout through the new key (a request that found the copy)
        // ends the old record as well.
        let (kept, logged_out) = (key(5), key(6));
        store.insert_live(kept, SessionRecord::clone(&snapshot), Duration::from_secs(60));
        let snapshot = store.find(&kept).expect("live");
        copy(logged_out, &snapshot);
        write(&kept, "on_old");
        store.remove_live(&logged_out);
        assert!(!store.fold(&kept, &logged_out, snapshot, None), "the session ended");
        assert!(store.find(&kept).is_none(), "a logout through the new key wins too");
    }

    /// Threads (not one task) racing a re-key against writers: the writers
    /// that use the new key once it exists and those still on the old one
    /// (through the grace alias) all keep their writes.
    #[test]
    fn re_keying_on_many_threads_loses_no_write() {
        for round in 0..400u32 {
            let store = Arc::new(MemoryStore::new());
            let record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600));
            let (old, new) = (key(round * 2), key(round * 2 + 1));
            store.insert_live(old, record, Duration::from_secs(60));
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let mut moved = 0;
                        if t % 2 == 0 && store.rekey_record(&old, &new, Some(Duration::from_secs(5))) {
                            moved += 1;
                        }
                        let mut changes = Changes::default();
                        changes.set.insert(format!("t{t}"), "1".into());
                        let at = if store.find(&new).is_some() { new } else { old };
                        assert!(store.apply(&at, &changes), "thread {t} found the session");
                        moved
                    })
                })
                .collect();
            let moved: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
            assert_eq!(moved, 1, "round {round}: moved exactly once");
            let record = store.find(&new).expect("live under the new key");
            for t in 0..8 {
                assert!(
                    record.data.contains_key(&format!("t{t}")),
                    "round {round}: thread {t}'s write kept"
                );
            }
        }
    }
}
