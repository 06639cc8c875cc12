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

/// The cache key: SHA-256 of the whole token (and where it came from).
pub(crate) type CacheKey = [u8; 32];

/// The key is already a uniform hash: use its first bytes as the hash.
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
}

struct Entry {
    identity: Identity,
    valid_until: SystemTime,
    size: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<CacheKey, Entry, BuildHasherDefault<KeyHasher>>,
    bytes: usize,
}

/// Maps token hashes to the identity their verification produced. An entry
/// never outlives its token's `exp` (plus leeway), so a hit never accepts a
/// token that a fresh verification would refuse as expired.
pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: CacheLimits,
    limits: CacheLimits,
}

impl TokenCache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
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

    pub(crate) fn key(token: &str, transport_tag: u8, key_generation: u64) -> CacheKey {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        // The transport only separates entries; folding it into a byte the
        // shard choice does not use keeps the hash one-shot.
        key[0] ^= transport_tag;
        // Likewise the key-set generation: entries made with other keys
        // are never hit again.
        for (slot, byte) in key[1..9].iter_mut().zip(key_generation.to_le_bytes()) {
            *slot ^= byte;
        }
        key
    }

    fn shard(&self, key: &CacheKey) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(key[31]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &CacheKey, now: SystemTime) -> Option<Identity> {
        let mut shard = self.shard(key);
        let entry = shard.entries.get(key)?;
        if now <= entry.valid_until {
            return Some(entry.identity.clone());
        }
        if let Some(expired) = shard.entries.remove(key) {
            shard.bytes -= expired.size;
        }
        None
    }

    pub(crate) fn insert(&self, key: CacheKey, identity: Identity, valid_until: SystemTime, now: SystemTime) {
        let size = 128 + identity.claims_json().map_or(0, str::len);
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
            identity,
            valid_until,
            size,
        };
        if let Some(replaced) = shard.entries.insert(key, entry) {
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
                TokenCache::key(&n.to_string(), 0, 0),
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
                TokenCache::key(&n.to_string(), 0, 0),
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
        let key = TokenCache::key("t", 0, 0);
        cache.insert(key, identity(1), now + Duration::from_secs(10), now);
        assert!(cache.get(&key, now + Duration::from_secs(10)).is_some());
        assert!(cache.get(&key, now + Duration::from_secs(11)).is_none());
        assert_eq!(cache.len(), 0, "the expired entry is dropped on sight");
    }

    #[test]
    fn keys_differ_by_transport() {
        assert_ne!(TokenCache::key("t", 0, 0), TokenCache::key("t", 1, 0));
        assert_ne!(
            TokenCache::key("t", 0, 0),
            TokenCache::key("t", 0, 1),
            "key sets separate entries"
        );
    }
}
