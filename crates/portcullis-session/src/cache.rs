//! A local read cache for a shared session store, kept current by the
//! store's invalidation feed.
//!
//! The cache itself is store-agnostic: a store that has a feed (Redis
//! pub/sub, PostgreSQL `NOTIFY`) holds a [`SessionCache`], serves reads
//! from it while the feed is healthy, writes through to the server, and
//! tells the cache what changed — its own writes at once, other nodes'
//! through the feed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::id::KeyHash;
use crate::{SessionKey, SessionRecord};

/// Bounds and the fail policy of a [`SessionCache`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CacheOptions {
    /// The most sessions held (default 10,000).
    pub max_entries: usize,
    /// The most bytes of session records held, estimated (default 32 MiB).
    pub max_bytes: usize,
    /// How long the feed may stay silent before the cache is bypassed
    /// (default 1 s). A healthy feed is heard every heartbeat, so this
    /// bounds how stale a served read can be when the feed is lost
    /// silently (a half-open connection).
    pub max_staleness: Duration,
    /// How long one entry is served before it is read again even with a
    /// healthy feed (default 60 s): a bound on any invalidation that never
    /// arrived.
    pub max_age: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 << 20,
            max_staleness: Duration::from_secs(1),
            max_age: Duration::from_secs(60),
        }
    }
}

/// What a [`SessionCache`] did so far, and its feed's health now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that went to the store with the cache healthy (not cached, or
    /// too old).
    pub misses: u64,
    /// Reads that went to the store because the feed was lost or silent.
    pub bypassed: u64,
    /// Entries dropped because the store said they changed.
    pub invalidations: u64,
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    /// Times the feed was lost.
    pub feed_losses: u64,
    /// Times the cache was emptied and the feed followed again.
    pub resyncs: u64,
    /// Sessions held now.
    pub entries: usize,
    /// Estimated bytes held now.
    pub bytes: usize,
    /// Whether reads are served from the cache now.
    pub serving: bool,
    /// Time since the feed was last heard, in ms (`u64::MAX` when lost).
    pub feed_silence_ms: u64,
    /// The feed's last measured delay (publish to receipt), in ms.
    pub feed_delay_ms: u64,
}

struct Entry {
    record: Arc<SessionRecord>,
    /// [`Principal::key`](portcullis_core::Principal::key), for an
    /// invalidation of everything of one principal.
    principal: Option<String>,
    bytes: usize,
    /// When it must be read again: `max_age` after it was stored, or when
    /// the store forgets it, whichever comes first.
    fresh_until: Instant,
    /// The insertion's number, to tell a queued eviction of an older copy.
    seq: u64,
}

/// A read in progress: an invalidation of its key meanwhile makes its
/// answer stale, so it is not cached.
#[derive(Default)]
struct Loading {
    readers: u32,
    dirty: bool,
}

/// A read that went to the store, to be offered to the cache afterwards
/// ([`SessionCache::finish_load`]).
#[derive(Debug)]
#[must_use]
pub struct LoadTicket {
    key: SessionKey,
    resyncs: u64,
}

/// The local read cache of one node, for a shared store with an
/// invalidation feed (Redis pub/sub, PostgreSQL `NOTIFY`): the store
/// serves reads from it while the feed is healthy, writes through to the
/// server, and tells it what changed — its own writes at once, other
/// nodes' as the feed brings them. Bounds and the fail policy are in
/// [`CacheOptions`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use portcullis_session::{CacheOptions, SessionCache, SessionKey, SessionRecord};
///
/// let cache = SessionCache::new(CacheOptions::default());
/// let key = SessionKey::from_hex(&"ab".repeat(32)).expect("64 hex digits");
/// let record = Arc::new(SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600)));
/// // Until the feed is followed, nothing is served.
/// let ticket = cache.begin_load(&key);
/// let kept_for = Duration::from_secs(60); // how long the store keeps it
/// cache.finish_load(ticket, Some((&record, kept_for)));
/// assert!(cache.get(&key).is_none());
/// cache.feed_following();
/// let ticket = cache.begin_load(&key);
/// cache.finish_load(ticket, Some((&record, kept_for)));
/// assert_eq!(cache.get(&key), Some(record));
/// cache.invalidate(&key);
/// assert!(cache.get(&key).is_none());
/// ```
pub struct SessionCache {
    options: CacheOptions,
    entries: DashMap<SessionKey, Entry, KeyHash>,
    loading: DashMap<SessionKey, Loading, KeyHash>,
    /// Insertion order, oldest first, for eviction (stale items skipped).
    order: Mutex<VecDeque<(SessionKey, u64)>>,
    bytes: AtomicUsize,
    next_seq: AtomicU64,
    /// The feed is followed (set after a resync, cleared when lost).
    following: AtomicBool,
    /// When the feed was last heard, ms since `epoch`.
    heard_ms: AtomicU64,
    delay_ms: AtomicU64,
    epoch: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    invalidations: AtomicU64,
    evictions: AtomicU64,
    feed_losses: AtomicU64,
    resyncs: AtomicU64,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// This node's heartbeat on an invalidation feed: the message it sends
/// every beat, and the delay it measures on hearing its own back
/// ([`SessionCache::apply_feed_message`]).
///
/// ```
/// use portcullis_session::{CacheOptions, FeedHeartbeat, SessionCache};
///
/// let cache = SessionCache::new(CacheOptions::default());
/// cache.feed_following();
/// let heartbeat = FeedHeartbeat::new();
/// cache.apply_feed_message(&heartbeat.message(), &heartbeat);
/// assert!(cache.stats().serving);
/// ```
#[derive(Debug)]
pub struct FeedHeartbeat {
    nonce: String,
    epoch: Instant,
}

impl Default for FeedHeartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedHeartbeat {
    /// A heartbeat with a random name of its own.
    pub fn new() -> Self {
        let bytes: [u8; 8] = portcullis_core::random_bytes();
        Self {
            nonce: crate::id::hex(&bytes),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The message to send now: `ping:{name}:{ms}`.
    pub fn message(&self) -> String {
        format!("ping:{}:{}", self.nonce, self.now_ms())
    }
}

/// A record's size, estimated: its strings and a fixed overhead.
fn estimate(record: &SessionRecord) -> usize {
    const OVERHEAD: usize = 256;
    let data: usize = record.data.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    let principal = record
        .principal
        .as_ref()
        .map_or(0, |p| p.issuer().len() + p.subject().len());
    let scopes: usize = record.scopes.iter().map(|s| s.len() + 24).sum();
    OVERHEAD
        + data
        + principal
        + scopes
        + record.user_agent.as_ref().map_or(0, String::len)
        + record.provider_session.as_ref().map_or(0, String::len)
}

impl SessionCache {
    /// An empty cache that serves nothing until its feed is followed
    /// ([`feed_following`](Self::feed_following)).
    pub fn new(options: CacheOptions) -> Self {
        Self {
            options,
            entries: DashMap::with_hasher(KeyHash::default()),
            loading: DashMap::with_hasher(KeyHash::default()),
            order: Mutex::new(VecDeque::new()),
            bytes: AtomicUsize::new(0),
            next_seq: AtomicU64::new(0),
            following: AtomicBool::new(false),
            heard_ms: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            feed_losses: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
        }
    }

    /// The options.
    pub fn options(&self) -> &CacheOptions {
        &self.options
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether reads may be served now: the feed followed, and heard
    /// within `max_staleness`.
    pub fn serving(&self) -> bool {
        self.serving_at(Instant::now())
    }

    /// [`serving`](Self::serving) at `now` (one clock read per lookup).
    fn serving_at(&self, now: Instant) -> bool {
        let max = u64::try_from(self.options.max_staleness.as_millis()).unwrap_or(u64::MAX);
        let now_ms = u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.following.load(Ordering::Acquire) && now_ms.saturating_sub(self.heard_ms.load(Ordering::Acquire)) <= max
    }

    /// The cached record of `key`, when the cache is serving and holds a
    /// fresh copy. `None` means: read the store (and count the read with
    /// [`begin_load`](Self::begin_load)).
    pub fn get(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        let now = Instant::now();
        if !self.serving_at(now) {
            return None;
        }
        let found = self
            .entries
            .get(key)
            .filter(|entry| now < entry.fresh_until)
            .map(|entry| Arc::clone(&entry.record));
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Marks the start of a store read of `key` (a miss, or a bypass when
    /// the cache is not serving): an invalidation of `key` before
    /// [`finish_load`](Self::finish_load) keeps its answer out of the
    /// cache.
    pub fn begin_load(&self, key: &SessionKey) -> LoadTicket {
        let counter = if self.serving() { &self.misses } else { &self.bypassed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.loading.entry(*key).or_default().readers += 1;
        LoadTicket {
            key: *key,
            resyncs: self.resyncs.load(Ordering::Acquire),
        }
    }

    /// Offers a store read's answer — the record, and how long the store
    /// keeps it from now — cached when no invalidation of its key, no feed
    /// loss and no resync happened since [`begin_load`](Self::begin_load),
    /// and the cache is serving. Give `None` for an answer not to cache (no
    /// session, or one found through a rotation alias, whose changes arrive
    /// under another key).
    pub fn finish_load(&self, ticket: LoadTicket, answer: Option<(&Arc<SessionRecord>, Duration)>) {
        let key = ticket.key;
        let mut insert = None;
        // Decided and inserted under the loading entry's lock: an
        // invalidation takes the same lock first, so it either marks this
        // read dirty or runs after the insert and removes it.
        if let dashmap::Entry::Occupied(mut loading) = self.loading.entry(key) {
            let state = loading.get_mut();
            let current = !state.dirty && self.resyncs.load(Ordering::Acquire) == ticket.resyncs && self.serving();
            state.readers = state.readers.saturating_sub(1);
            if let (true, Some((record, kept_for))) = (current, answer) {
                insert = Some(self.insert(key, Arc::clone(record), kept_for));
            }
            if state.readers == 0 {
                loading.remove();
            }
        }
        if insert.is_some() {
            self.evict_beyond_bounds();
        }
    }

    /// Inserts (replacing any older copy); returns the bytes added.
    fn insert(&self, key: SessionKey, record: Arc<SessionRecord>, kept_for: Duration) -> usize {
        let bytes = estimate(&record);
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            principal: record.principal.as_ref().map(portcullis_core::Principal::key),
            record,
            bytes,
            fresh_until: Instant::now() + kept_for.min(self.options.max_age),
            seq,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.order_queue().push_back((key, seq));
        bytes
    }

    fn order_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(SessionKey, u64)>> {
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Evicts the oldest insertions while over either bound.
    fn evict_beyond_bounds(&self) {
        loop {
            let over = self.entries.len() > self.options.max_entries
                || self.bytes.load(Ordering::Relaxed) > self.options.max_bytes;
            if !over {
                break;
            }
            let Some((key, seq)) = self.order_queue().pop_front() else {
                break;
            };
            if let Some((_, entry)) = self.entries.remove_if(&key, |_, entry| entry.seq == seq) {
                self.bytes.fetch_sub(entry.bytes, Ordering::Relaxed);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Stale queue items (entries since replaced or invalidated) leave
        // when their turn comes; keep the queue from outgrowing the map.
        let mut order = self.order_queue();
        if order.len() > 2 * self.options.max_entries.max(self.entries.len()) + 64 {
            order.retain(|(key, seq)| self.entries.get(key).is_some_and(|entry| entry.seq == *seq));
        }
    }

    fn drop_entry(&self, key: &SessionKey) {
        if let Some((_, entry)) = self.entries.remove(key) {
            self.bytes.fetch_sub(entry.bytes, Ordering::Relaxed);
            self.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `key` changed at the store (written, rotated away, ended): its copy
    /// is dropped, and a read of it in progress is not cached.
    pub fn invalidate(&self, key: &SessionKey) {
        if let Some(mut loading) = self.loading.get_mut(key) {
            loading.dirty = true;
            // Removed under the loading lock: a concurrent `finish_load`
            // either inserted already (and this removes it) or sees dirty.
            self.drop_entry(key);
            return;
        }
        self.drop_entry(key);
    }

    /// Everything of `principal` (a [`Principal::key`](portcullis_core::Principal::key))
    /// changed ("log out everywhere"): every copy of theirs is dropped, and
    /// no read in progress is cached.
    pub fn invalidate_principal(&self, principal: &str) {
        for mut loading in self.loading.iter_mut() {
            loading.dirty = true;
        }
        let mut dropped = Vec::new();
        self.entries.retain(|_, entry| {
            let keep = entry.principal.as_deref() != Some(principal);
            if !keep {
                dropped.push(entry.bytes);
            }
            keep
        });
        for bytes in dropped {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Empties the cache; reads in progress are not cached.
    fn clear(&self) {
        for mut loading in self.loading.iter_mut() {
            loading.dirty = true;
        }
        self.entries.clear();
        self.order_queue().clear();
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// The feed was lost: stop serving and forget everything (changes made
    /// while nobody listened are unknown).
    pub fn feed_lost(&self) {
        if self.following.swap(false, Ordering::AcqRel) {
            self.feed_losses.fetch_add(1, Ordering::Relaxed);
        }
        self.clear();
    }

    /// The feed is followed (again): start from empty, and serve.
    pub fn feed_following(&self) {
        self.resyncs.fetch_add(1, Ordering::AcqRel);
        self.clear();
        self.heard();
        self.following.store(true, Ordering::Release);
    }

    /// The feed was heard from (a message or a heartbeat).
    pub fn heard(&self) {
        self.heard_ms.store(self.now_ms(), Ordering::Release);
    }

    /// The feed was heard from, with the message's delay from its publish.
    pub fn heard_with_delay(&self, delay: Duration) {
        self.heard();
        self.delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Applies one message of the invalidation feed: a heartbeat (this
    /// node's own, whose delay is measured, or another's), `p:{principal
    /// key}` (everything of one principal changed), or a session key that
    /// changed — its hex, or a Redis key name ending `}s:{hex}`. A message
    /// that is none of these empties the cache: the safe answer to what
    /// cannot be read.
    pub fn apply_feed_message(&self, message: &str, heartbeat: &FeedHeartbeat) {
        if let Some(ping) = message.strip_prefix("ping:") {
            match ping.split_once(':') {
                Some((from, sent)) if from == heartbeat.nonce => {
                    let sent = sent.parse::<u64>().unwrap_or(0);
                    self.heard_with_delay(Duration::from_millis(heartbeat.now_ms().saturating_sub(sent)));
                }
                _ => self.heard(),
            }
            return;
        }
        self.heard();
        if let Some(principal) = message.strip_prefix("p:") {
            self.invalidate_principal(principal);
            return;
        }
        let hex = message.rsplit_once("}s:").map_or(message, |(_, hex)| hex);
        match SessionKey::from_hex(hex) {
            Some(key) => self.invalidate(&key),
            None => self.feed_following(),
        }
    }

    /// The counters and the feed's health now.
    pub fn stats(&self) -> CacheStats {
        let following = self.following.load(Ordering::Acquire);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            feed_losses: self.feed_losses.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            entries: self.entries.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            serving: self.serving(),
            feed_silence_ms: if following {
                self.now_ms().saturating_sub(self.heard_ms.load(Ordering::Acquire))
            } else {
                u64::MAX
            },
            feed_delay_ms: self.delay_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use portcullis_core::Principal;

    use super::*;

    fn key(n: u8) -> SessionKey {
        SessionKey::from_hex(&format!("{n:02x}").repeat(32)).expect("hex")
    }

    fn record(subject: &str, data_bytes: usize) -> Arc<SessionRecord> {
        let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600));
        record.principal = Some(Principal::new("https://app.test", subject));
        record.data.insert("blob".into(), "x".repeat(data_bytes));
        Arc::new(record)
    }

    fn following(options: CacheOptions) -> SessionCache {
        let cache = SessionCache::new(options);
        cache.feed_following();
        cache
    }

    const KEPT: Duration = Duration::from_secs(60);

    fn load(cache: &SessionCache, n: u8, record: &Arc<SessionRecord>) {
        let ticket = cache.begin_load(&key(n));
        cache.finish_load(ticket, Some((record, KEPT)));
    }

    #[test]
    fn an_invalidation_during_a_read_keeps_its_answer_out() {
        let cache = following(CacheOptions::default());
        let ticket = cache.begin_load(&key(1));
        cache.invalidate(&key(1));
        cache.finish_load(ticket, Some((&record("alice", 1), KEPT)));
        assert!(cache.get(&key(1)).is_none(), "the answer predates the change");
        load(&cache, 1, &record("alice", 1));
        assert!(cache.get(&key(1)).is_some(), "the next read is cached");
    }

    #[test]
    fn a_lost_or_silent_feed_stops_serving_and_a_resync_starts_empty() {
        let cache = following(CacheOptions {
            max_staleness: Duration::from_millis(50),
            ..CacheOptions::default()
        });
        load(&cache, 1, &record("alice", 1));
        assert!(cache.get(&key(1)).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get(&key(1)).is_none(), "a silent feed: bypassed");
        assert!(!cache.stats().serving);
        cache.heard();
        assert!(cache.get(&key(1)).is_some(), "heard again within the bound");
        // A read that began before a loss is not cached after it.
        let ticket = cache.begin_load(&key(2));
        cache.feed_lost();
        assert!(cache.get(&key(1)).is_none(), "lost: bypassed");
        let bypass = cache.begin_load(&key(3));
        cache.finish_load(bypass, Some((&record("alice", 1), KEPT)));
        assert!(cache.get(&key(3)).is_none(), "nothing is cached while lost");
        cache.feed_following();
        cache.finish_load(ticket, Some((&record("alice", 1), KEPT)));
        assert!(
            cache.get(&key(2)).is_none(),
            "a read from before the loss is not cached"
        );
        assert!(cache.get(&key(1)).is_none(), "a resync starts empty");
        let stats = cache.stats();
        assert_eq!((stats.feed_losses, stats.resyncs), (1, 2));
        assert_eq!(stats.bypassed, 1, "the read while lost went to the store");
    }

    #[test]
    fn memory_stays_within_entries_and_bytes() {
        let cache = following(CacheOptions {
            max_entries: 10,
            max_bytes: 10 * 1024,
            ..CacheOptions::default()
        });
        for n in 0..50 {
            load(&cache, n, &record("alice", 100));
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 10, "bounded by entries");
        assert_eq!(stats.evictions, 40);
        assert!(cache.get(&key(49)).is_some(), "the newest stay");
        assert!(cache.get(&key(0)).is_none(), "the oldest went");
        for n in 100..110 {
            load(&cache, n, &record("alice", 3_000));
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 10 * 1024, "bounded by bytes: {}", stats.bytes);
        assert!(stats.entries <= 3, "{} entries of over 3 KB", stats.entries);
    }

    #[test]
    fn a_principal_wide_invalidation_drops_only_theirs() {
        let cache = following(CacheOptions::default());
        load(&cache, 1, &record("alice", 1));
        load(&cache, 2, &record("alice", 1));
        load(&cache, 3, &record("bob", 1));
        cache.invalidate_principal(&Principal::new("https://app.test", "alice").key());
        assert!(cache.get(&key(1)).is_none() && cache.get(&key(2)).is_none());
        assert!(cache.get(&key(3)).is_some(), "bob's copy stays");
        assert_eq!(cache.stats().invalidations, 2);
    }

    #[test]
    fn a_copy_lives_no_longer_than_the_store_keeps_it() {
        let cache = following(CacheOptions::default());
        let ticket = cache.begin_load(&key(1));
        cache.finish_load(ticket, Some((&record("alice", 1), Duration::from_millis(30))));
        assert!(cache.get(&key(1)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        cache.heard();
        assert!(cache.get(&key(1)).is_none(), "the store forgot it: so does the cache");
    }

    #[test]
    fn feed_messages_invalidate_what_they_name_and_an_unreadable_one_empties_the_cache() {
        let cache = following(CacheOptions::default());
        let heartbeat = FeedHeartbeat::new();
        for n in 1..=4 {
            load(&cache, n, &record(if n == 4 { "bob" } else { "alice" }, 1));
        }
        cache.apply_feed_message(&key(1).to_hex(), &heartbeat);
        cache.apply_feed_message(&format!("{{portcullis:abcd}}s:{}", key(2).to_hex()), &heartbeat);
        assert!(
            cache.get(&key(1)).is_none() && cache.get(&key(2)).is_none(),
            "named keys dropped"
        );
        assert!(cache.get(&key(3)).is_some(), "others kept");
        cache.apply_feed_message(
            &format!("p:{}", Principal::new("https://app.test", "alice").key()),
            &heartbeat,
        );
        assert!(cache.get(&key(3)).is_none(), "everything of alice dropped");
        assert!(cache.get(&key(4)).is_some(), "bob's kept");
        cache.apply_feed_message(&heartbeat.message(), &heartbeat);
        assert!(cache.get(&key(4)).is_some(), "a heartbeat changes nothing");
        cache.apply_feed_message("garbage", &heartbeat);
        assert!(cache.get(&key(4)).is_none(), "an unreadable message empties the cache");
    }

    #[test]
    fn an_old_copy_is_read_again() {
        let cache = following(CacheOptions {
            max_age: Duration::from_millis(30),
            ..CacheOptions::default()
        });
        load(&cache, 1, &record("alice", 1));
        assert!(cache.get(&key(1)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        cache.heard();
        assert!(cache.get(&key(1)).is_none(), "past max_age");
    }
}
