//! For authors of a [`RevocationStore`](crate::RevocationStore): the
//! in-process denylist every node's check reads, the facts a check
//! matches, and the text form stores keep. Applications need none of it.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use portcullis_core::Principal;
//! use portcullis_revocation::store_support::{decode_revocation, encode_target, encode_value};
//! use portcullis_revocation::{Revocation, Target};
//!
//! let alice = Principal::new("https://app.example", "alice");
//! let revocation = Revocation::subject(alice.clone(), SystemTime::now(), Duration::from_secs(60));
//! let key = encode_target(&revocation.target);
//! assert_eq!(key, "s:19:https://app.examplealice");
//! let stored = decode_revocation(&key, &encode_value(&revocation));
//! assert_eq!(stored, Some(revocation));
//! ```

pub use crate::denylist::{Denylist, EXPIRY_MARGIN, TokenFacts};
use crate::denylist::{Revocation, Target};

/// An unambiguous text form of `target`, for use as a key: lengths
/// prefix the parts that could otherwise run together.
pub fn encode_target(target: &Target) -> String {
    target.encode()
}

/// Parses [`encode_target`]'s form; `None` for anything else.
pub fn decode_target(text: &str) -> Option<Target> {
    Target::decode(text)
}

/// The value half a store keeps beside the key: `cutoff:expires`.
pub fn encode_value(revocation: &Revocation) -> String {
    revocation.encode_value()
}

/// Rebuilds a revocation from [`encode_target`] and [`encode_value`];
/// `None` when either does not parse.
pub fn decode_revocation(target: &str, value: &str) -> Option<Revocation> {
    Revocation::decode(target, value)
}

/// What every replicated store's node keeps: the local denylist its
/// checks read (no round trip), and the health of the feed that keeps it
/// current — how stale it is, and what happens past the allowed
/// staleness ([`FeedLossPolicy`](crate::FeedLossPolicy)). The Redis and
/// PostgreSQL mirrors share it, so both fail the same way.
///
/// ```
/// use std::time::Duration;
/// use portcullis_core::{AuthMethod, Identity};
/// use portcullis_revocation::FeedLossPolicy;
/// use portcullis_revocation::store_support::Mirror;
///
/// let mirror = Mirror::new(Duration::from_secs(3), FeedLossPolicy::FailClosed);
/// let caller = Identity::builder("alice", AuthMethod::bearer(Some("t-1".into()), Some("https://iss".into()))).build();
/// // Never heard from the store yet: stale, so fail closed.
/// assert!(mirror.verdict(&caller).is_err());
/// mirror.heard_from_store();
/// assert_eq!(mirror.verdict(&caller).ok(), Some(None), "fresh, and nothing revoked");
/// ```
#[derive(Debug)]
pub struct Mirror {
    /// The revocations held.
    pub denylist: Denylist,
    max_staleness_ms: u64,
    policy: crate::FeedLossPolicy,
    last_contact_ms: std::sync::atomic::AtomicU64,
    last_warning_ms: std::sync::atomic::AtomicU64,
    connected: std::sync::atomic::AtomicBool,
    applied: std::sync::atomic::AtomicU64,
    resyncs: std::sync::atomic::AtomicU64,
    catch_ups: std::sync::atomic::AtomicU64,
    gaps: std::sync::atomic::AtomicU64,
    delays: std::sync::Mutex<std::collections::VecDeque<std::time::Duration>>,
}

/// A snapshot of a mirror's health, for metrics and health checks.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MirrorStats {
    /// Time since the mirror last heard from its store.
    pub staleness: std::time::Duration,
    /// Whether the feed is connected now.
    pub connected: bool,
    /// Revocations applied from the feed since start.
    pub applied: u64,
    /// Full resynchronizations (the first load included).
    pub resyncs: u64,
    /// Reconnections that read on from the last entry seen.
    pub catch_ups: u64,
    /// Reconnections that found a gap (entries gone past the last one
    /// seen) and so resynchronized.
    pub gaps: u64,
    /// Propagation delays of the revocations applied from the feed (from
    /// the store's timestamp to the mirror applying it), the latest 1,024.
    pub recent_delays: Vec<std::time::Duration>,
    /// Entries held.
    pub entries: usize,
}

fn mirror_now_ms() -> u64 {
    portcullis_core::epoch_millis(std::time::SystemTime::now())
}

impl Mirror {
    /// An empty mirror that allows `max_staleness` before `policy`.
    pub fn new(max_staleness: std::time::Duration, policy: crate::FeedLossPolicy) -> Self {
        Self {
            denylist: Denylist::default(),
            max_staleness_ms: u64::try_from(max_staleness.as_millis()).unwrap_or(u64::MAX),
            policy,
            last_contact_ms: Default::default(),
            last_warning_ms: Default::default(),
            connected: Default::default(),
            applied: Default::default(),
            resyncs: Default::default(),
            catch_ups: Default::default(),
            gaps: Default::default(),
            delays: Default::default(),
        }
    }

    /// The store answered now (a heartbeat, a read of the feed).
    pub fn heard_from_store(&self) {
        use std::sync::atomic::Ordering;
        self.last_contact_ms.store(mirror_now_ms(), Ordering::Release);
        self.connected.store(true, Ordering::Release);
    }

    /// The feed's connection was lost.
    pub fn lost_feed(&self) {
        self.connected.store(false, std::sync::atomic::Ordering::Release);
    }

    /// One revocation from the feed, applied; `delay` since the store
    /// stamped it, when known.
    pub fn applied(&self, revocation: &Revocation, delay: Option<std::time::Duration>) {
        use std::sync::atomic::Ordering;
        self.denylist.insert(revocation, mirror_now_ms());
        self.applied.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = delay {
            tracing::debug!(target: "portcullis::metrics", delay_ms = delay.as_millis() as u64, "revocation applied to mirror");
            let mut delays = self.delays.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if delays.len() == 1_024 {
                delays.pop_front();
            }
            delays.push_back(delay);
        }
    }

    /// A full reload finished.
    pub fn resynced(&self) {
        self.resyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.heard_from_store();
    }

    /// A reconnection read on from the last entry seen.
    pub fn caught_up(&self) {
        self.catch_ups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.heard_from_store();
    }

    /// A reconnection found a gap (a reload follows).
    pub fn found_gap(&self) {
        self.gaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time since the store last answered.
    pub fn staleness(&self) -> std::time::Duration {
        let last = self.last_contact_ms.load(std::sync::atomic::Ordering::Acquire);
        std::time::Duration::from_millis(mirror_now_ms().saturating_sub(last))
    }

    /// The answer for `identity`: from the denylist while fresh; past the
    /// allowed staleness, an `Unavailable` error (fail closed) or the
    /// stale answer with a warning audit event at most once a second
    /// (fail open).
    pub fn verdict(&self, identity: &portcullis_core::Identity) -> Result<Option<crate::Revoked>, crate::StoreError> {
        use std::sync::atomic::Ordering;
        let now = mirror_now_ms();
        let stale_ms = now.saturating_sub(self.last_contact_ms.load(Ordering::Acquire));
        if stale_ms > self.max_staleness_ms {
            match self.policy {
                crate::FeedLossPolicy::FailClosed => {
                    return Err(crate::StoreError::unavailable(
                        crate::StoreKind::Revocation,
                        format!("revocation feed lost: mirror {stale_ms} ms stale (fail closed)"),
                    ));
                }
                crate::FeedLossPolicy::FailOpen => {
                    let last = self.last_warning_ms.load(Ordering::Relaxed);
                    if now.saturating_sub(last) >= 1_000
                        && self
                            .last_warning_ms
                            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        tracing::warn!(
                            target: portcullis_core::audit::TARGET,
                            layer = crate::LAYER,
                            staleness_ms = stale_ms,
                            "revocation feed lost: answering from a stale mirror (fail open)"
                        );
                    }
                }
            }
        }
        Ok(TokenFacts::of(identity).and_then(|facts| self.denylist.verdict(&facts, now)))
    }

    /// The mirror's health now.
    pub fn stats(&self) -> MirrorStats {
        use std::sync::atomic::Ordering;
        MirrorStats {
            staleness: self.staleness(),
            connected: self.connected.load(Ordering::Acquire),
            applied: self.applied.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            catch_ups: self.catch_ups.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            recent_delays: self
                .delays
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .copied()
                .collect(),
            entries: self.denylist.len(),
        }
    }
}
