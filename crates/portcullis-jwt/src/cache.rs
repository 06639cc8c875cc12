//! The verified-token cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use portcullis_core::Identity;

const SHARDS: usize = 16;

/// Bounds of the verified-token cache. See [`JwtVerifier::cache`](crate::JwtVerifier::cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// The most tokens held.
    pub max_entries: usize,
    /// The most bytes held (tokens' claims and bookkeeping, approximately).
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What a token is looked up by: the token itself (compared in full on a
/// hit, so two tokens can never share an entry), where it came from, and
/// the key set's generation, with a seeded 64-bit hash of them to index by.
///
/// A full comparison instead of a cryptographic digest as the key: hashing
/// a 300–700-byte token with SHA-256 was most of a cache hit's cost, and
/// with the bytes compared the hash needs no collision resistance (a
/// collision only shares a slot: the second token is verified, never
/// served the first one's identity).
pub(crate) struct CacheKey<'a> {
    hash: u64,
    token: &'a str,
    transport_tag: u8,
    key_generation: u64,
}

/// The hash is already uniform: use it as the table's hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*b) << (i * 8);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

struct Entry {
    token: Box<str>,
    transport_tag: u8,
    key_generation: u64,
    identity: Identity,
    valid_until: SystemTime,
    size: usize,
}

impl Entry {
    /// Whether this entry is `key`'s: the whole token compared (in
    /// constant time, so a lookup's timing says nothing about how much of a
    /// cached token a probe got right).
    fn is_for(&self, key: &CacheKey<'_>) -> bool {
        self.transport_tag == key.transport_tag
            && self.key_generation == key.key_generation
            && aws_lc_rs::constant_time::verify_slices_are_equal(self.token.as_bytes(), key.token.as_bytes()).is_ok()
    }
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Entry, BuildHasherDefault<KeyHasher>>,
    bytes: usize,
}

/// Maps token hashes to the identity their verification produced. An entry
/// never outlives its token's `exp` (plus leeway), so a hit never accepts a
/// token that a fresh verification would refuse as expired.
pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: CacheLimits,
    limits: CacheLimits,
    /// Seeded per cache from the system RNG, so no client can aim tokens
    /// at one slot.
    hasher: foldhash::fast::FixedState,
}

impl TokenCache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            hasher: foldhash::fast::FixedState::with_seed(u64::from_le_bytes(portcullis_core::random_bytes())),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: CacheLimits {
                max_entries: limits.max_entries.div_ceil(SHARDS).max(1),
                max_bytes: limits.max_bytes.div_ceil(SHARDS),
            },
        }
    }

    /// The limits it was made with.
    pub(crate) fn limits(&self) -> CacheLimits {
        self.limits
    }

    pub(crate) fn key<'a>(&self, token: &'a str, transport_tag: u8, key_generation: u64) -> CacheKey<'a> {
        use std::hash::BuildHasher as _;
        CacheKey {
            hash: self.hasher.hash_one((token, transport_tag, key_generation)),
            token,
            transport_tag,
            key_generation,
        }
    }

    fn shard(&self, key: &CacheKey<'_>) -> std::sync::MutexGuard<'_, Shard> {
        // The top bits: the table indexes by the low ones.
        self.shards[(key.hash >> 60) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &CacheKey<'_>, now: SystemTime) -> Option<Identity> {
        let mut shard = self.shard(key);
        let entry = shard.entries.get(&key.hash)?;
        if !entry.is_for(key) {
            return None;
        }
        if now <= entry.valid_until {
            return Some(entry.identity.clone());
        }
        if let Some(expired) = shard.entries.remove(&key.hash) {
            shard.bytes -= expired.size;
        }
        None
    }

    pub(crate) fn insert(&self, key: CacheKey<'_>, identity: Identity, valid_until: SystemTime, now: SystemTime) {
        let size = 128 + key.token.len() + identity.claims_json().map_or(0, str::len);
        if size > self.per_shard.max_bytes {
            return;
        }
        let mut shard = self.shard(&key);
        let full = |s: &Shard, limits: &CacheLimits| {
            s.entries.len() >= limits.max_entries || s.bytes + size > limits.max_bytes
        };
        if full(&shard, &self.per_shard) {
            let Shard { entries, bytes } = &mut *shard;
            entries.retain(|_, entry| {
                let keep = entry.valid_until >= now;
                if !keep {
                    *bytes -= entry.size;
                }
                keep
            });
        }
        // Still full: evict arbitrary entries (hash order is random enough
        // that a caller cannot aim at another caller's entry).
        while full(&shard, &self.per_shard) {
            let Some(victim) = shard.entries.keys().next().copied() else {
                break;
            };
            if let Some(evicted) = shard.entries.remove(&victim) {
                shard.bytes -= evicted.size;
            }
        }
        let entry = Entry {
            token: key.token.into(),
            transport_tag: key.transport_tag,
            key_generation: key.key_generation,
            identity,
            valid_until,
            size,
        };
        // A colliding slot goes to the newer token; the older is verified
        // again when it next comes.
        if let Some(replaced) = shard.entries.insert(key.hash, entry) {
            shard.bytes -= replaced.size;
        }
        shard.bytes += size;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).entries.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_core::AuthMethod;

    use super::*;

    fn identity(n: usize) -> Identity {
        Identity::builder(format!("user-{n}"), AuthMethod::bearer(None, None))
            .claims_json("{}")
            .build()
    }

    #[test]
    fn entries_are_bounded() {
        let cache = TokenCache::new(CacheLimits {
            max_entries: 64,
            max_bytes: usize::MAX,
        });
        let now = SystemTime::now();
        for n in 0..1_000 {
            cache.insert(
                cache.key(&n.to_string(), 0, 0),
                identity(n),
                now + Duration::from_secs(60),
                now,
            );
        }
        assert!(cache.len() <= 64, "cache grew to {}", cache.len());
    }

    #[test]
    fn bytes_are_bounded() {
        let cache = TokenCache::new(CacheLimits {
            max_entries: usize::MAX,
            max_bytes: 16 * 1024,
        });
        let now = SystemTime::now();
        for n in 0..1_000 {
            cache.insert(
                cache.key(&n.to_string(), 0, 0),
                identity(n),
                now + Duration::from_secs(60),
                now,
            );
        }
        // 16 shards × 1 KiB each, entries of ~130 bytes.
        assert!(cache.len() <= 16 * 8, "cache holds {}", cache.len());
    }

    #[test]
    fn an_entry_never_outlives_its_token() {
        let cache = TokenCache::new(CacheLimits::default());
        let now = SystemTime::now();
        cache.insert(cache.key("t", 0, 0), identity(1), now + Duration::from_secs(10), now);
        assert!(
            cache
                .get(&cache.key("t", 0, 0), now + Duration::from_secs(10))
                .is_some()
        );
        assert!(
            cache
                .get(&cache.key("t", 0, 0), now + Duration::from_secs(11))
                .is_none()
        );
        assert_eq!(cache.len(), 0, "the expired entry is dropped on sight");
    }

    #[test]
    fn entries_are_separate_by_token_transport_and_key_set() {
        let cache = TokenCache::new(CacheLimits::default());
        let now = SystemTime::now();
        let later = now + Duration::from_secs(60);
        cache.insert(cache.key("token-a", 0, 0), identity(1), later, now);
        assert!(cache.get(&cache.key("token-a", 0, 0), now).is_some(), "a hit");
        assert!(
            cache.get(&cache.key("token-a", 1, 0), now).is_none(),
            "another transport"
        );
        assert!(cache.get(&cache.key("token-a", 0, 1), now).is_none(), "another key set");
        assert!(cache.get(&cache.key("token-b", 0, 0), now).is_none(), "another token");
        assert!(cache.get(&cache.key("token-", 0, 0), now).is_none(), "a prefix of it");
    }

    #[test]
    fn a_colliding_slot_never_serves_another_tokens_identity() {
        let cache = TokenCache::new(CacheLimits::default());
        let now = SystemTime::now();
        let later = now + Duration::from_secs(60);
        cache.insert(cache.key("alice-token", 0, 0), identity(1), later, now);
        // Forge a probe with alice's slot but other bytes, as a hash
        // collision would give.
        let alice = cache.key("alice-token", 0, 0);
        let probe = CacheKey {
            hash: alice.hash,
            token: "mallory-token",
            transport_tag: 0,
            key_generation: 0,
        };
        assert!(cache.get(&probe, now).is_none(), "same slot, other token: a miss");
        assert_eq!(
            cache.get(&alice, now).map(|i| i.subject().to_owned()),
            Some("user-1".to_owned())
        );
    }
}
