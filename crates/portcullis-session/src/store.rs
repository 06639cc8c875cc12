//! The `SessionStore` trait and the records it keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::Principal;

use crate::SessionKey;
pub(crate) use portcullis_core::epoch_millis as millis;

pub use portcullis_core::{StoreError, StoreFuture, StoreKind};

/// One session as a store keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// Who is logged in, if anyone: `(issuer, subject)`.
    pub principal: Option<Principal>,
    /// The subject's scopes, recorded at login.
    pub scopes: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// The idle deadline, ms since the epoch: refreshed as the session is
    /// used.
    pub idle_deadline_ms: u64,
    /// The absolute deadline, ms since the epoch: never moves.
    pub absolute_deadline_ms: u64,
    /// Last time the idle deadline was refreshed, ms since the epoch.
    pub last_seen_ms: u64,
    /// The `User-Agent` of the request that created the session.
    pub user_agent: Option<String>,
    /// Application data: key → JSON text.
    pub data: BTreeMap<String, String>,
    /// The identity provider's session this login came from (an OpenID
    /// provider's `sid`), scoped to the principal's issuer. Stores index
    /// it beside the principal, so a provider's logout of that session
    /// ([`SessionStore::delete_provider_session`]) ends every session it
    /// started, on every node.
    pub provider_session: Option<String>,
    /// The identity this record yielded last, reused while the record
    /// says the same (see `layer::save::identity_of`).
    pub(crate) identity: IdentityMemo,
    /// One value derived from a data entry ([`Session::derived`](crate::Session::derived)),
    /// reused while the entry's text is the same.
    pub(crate) derived: DerivedMemo,
}

/// A value a record remembers about itself, for the requests that read it
/// while it is shared (the memory store, the local cache). Only a memo:
/// every use checks it against what it was made from, a copy of the
/// record starts empty, and it is never part of the record's equality.
pub(crate) struct Memo<T>(std::sync::OnceLock<T>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Memo<T> {}

impl<T> fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memo")
    }
}

/// The last identity a record yielded, under the key it was read by: a
/// read of an unchanged record hands out a clone of it (a reference
/// count) instead of building one per request. Every use checks it
/// against the record (principal, scopes, times) and the key, so a record
/// changed in place never yields a stale identity.
pub(crate) type IdentityMemo = Memo<(SessionKey, portcullis_core::Identity)>;

impl IdentityMemo {
    /// The memo, made by `make` under `key` if empty.
    pub(crate) fn get_or_init(
        &self,
        key: SessionKey,
        make: impl FnOnce() -> portcullis_core::Identity,
    ) -> &(SessionKey, portcullis_core::Identity) {
        self.0.get_or_init(|| (key, make()))
    }
}

/// A value derived from one data entry of a record, with what it was
/// derived from: the entry's name and text, and the caller's tag; every
/// use compares all three. It holds one value; a second deriver on the
/// same record derives afresh each time.
pub(crate) type DerivedMemo = Memo<Derived>;

pub(crate) struct Derived {
    entry: Box<str>,
    tag: u64,
    text: Box<str>,
    value: Box<dyn std::any::Any + Send + Sync>,
}

impl DerivedMemo {
    /// `derive(text)`, from the memo when it was derived from the same
    /// entry, text and tag; remembered if the memo is empty.
    pub(crate) fn get<T: Clone + Send + Sync + 'static>(
        &self,
        entry: &str,
        tag: u64,
        text: &str,
        derive: impl FnOnce(&str) -> T,
    ) -> T {
        if let Some(memo) = self.0.get() {
            if memo.tag == tag
                && *memo.entry == *entry
                && *memo.text == *text
                && let Some(value) = memo.value.downcast_ref::<T>()
            {
                return value.clone();
            }
            return derive(text);
        }
        let value = derive(text);
        // Two requests may race to fill it: one wins, both values are right.
        let _ = self.0.set(Derived {
            entry: entry.into(),
            tag,
            text: text.into(),
            value: Box::new(value.clone()),
        });
        value
    }
}

impl SessionRecord {
    /// A new record at `now`, with deadlines from the two timeouts.
    pub fn new(now: SystemTime, idle: Duration, absolute: Duration) -> Self {
        let now_ms = millis(now);
        let absolute_deadline_ms = now_ms.saturating_add(u64::try_from(absolute.as_millis()).unwrap_or(u64::MAX));
        Self {
            created_ms: now_ms,
            last_seen_ms: now_ms,
            idle_deadline_ms: now_ms
                .saturating_add(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
                .min(absolute_deadline_ms),
            absolute_deadline_ms,
            ..Self::default()
        }
    }

    /// The first deadline to pass.
    pub fn deadline_ms(&self) -> u64 {
        self.idle_deadline_ms.min(self.absolute_deadline_ms)
    }

    /// Whether the session is over at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        millis(now) >= self.deadline_ms()
    }

    /// Time left until the first deadline, from `now` (zero when past).
    pub fn ttl(&self, now: SystemTime) -> Duration {
        Duration::from_millis(self.deadline_ms().saturating_sub(millis(now)))
    }

    /// The index key of the record's provider session: see
    /// [`provider_session_key`]. `None` without a principal or a provider
    /// session.
    pub fn provider_session_key(&self) -> Option<String> {
        let principal = self.principal.as_ref()?;
        let session = self.provider_session.as_deref()?;
        Some(provider_session_key(principal.issuer(), session))
    }
}

/// The one key a store indexes a provider session under: the provider's
/// issuer and its session id, unambiguously joined (in
/// [`Principal::key`]'s form), so another provider's session `"s1"` is
/// another session.
///
/// ```
/// use portcullis_session::provider_session_key;
/// assert_eq!(provider_session_key("https://idp.test", "s1"), "16:https://idp.tests1");
/// assert_ne!(provider_session_key("https://a", "bs1"), provider_session_key("https://ab", "s1"));
/// ```
pub fn provider_session_key(issuer: &str, session: &str) -> String {
    Principal::new(issuer, session).key()
}

/// Per-key changes of one request, applied together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Changes {
    /// Keys set: key → JSON text.
    pub set: BTreeMap<String, String>,
    /// Keys removed.
    pub removed: Vec<String>,
    /// A refreshed idle deadline and last-seen time (ms), when due.
    pub touch: Option<Touch>,
}

/// A refresh of the idle deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The new idle deadline, ms since the epoch.
    pub idle_deadline_ms: u64,
    /// Now, ms since the epoch.
    pub last_seen_ms: u64,
    /// How long the store may keep the record from now.
    pub ttl: Duration,
}

impl Changes {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty() && self.touch.is_none()
    }
}

/// Where sessions live. Usable as `Arc<dyn SessionStore>`.
///
/// Every implementation runs the one conformance suite
/// (`portcullis_session::conformance`, feature `conformance`). The
/// contract:
///
/// - Keys are [`SessionKey`]s (keyed hashes); a store never sees an id.
/// - [`update`](SessionStore::update) changes only the keys it names (two
///   requests writing different keys both keep their writes), and never
///   brings back a deleted session (a logout is final).
/// - [`rotate`](SessionStore::rotate) moves a session to a new key; with a
///   grace period the old key keeps resolving to the new record for that
///   long (requests already in flight are not logged out). It never brings
///   back a deleted session, and rotating through a grace alias moves the
///   record the alias points to: never two live sessions from one.
/// - Every session with a principal is indexed by it: `(issuer, subject)`,
///   never the subject alone (another issuer's `alice` is someone else).
/// - The key of a session with a principal carries that principal's
///   [`Route`](portcullis_core::Route) ([`SessionKey::route`]; the layer
///   issues ids that way), so a partitioned store may keep a principal's
///   sessions and index on one shard and change them in one atomic step.
///   Such a store refuses a record whose key is routed elsewhere.
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// The record under `key` (following a rotation alias), or `None`.
    ///
    /// Shared, so a store that keeps records in memory hands out its copy
    /// without cloning it; the layer copies on write.
    fn load(&self, key: &SessionKey) -> StoreFuture<'_, Option<Arc<SessionRecord>>>;

    /// The answer [`load`](SessionStore::load) would give, when the store
    /// has it without waiting (an in-process store); `None` when it would
    /// have to wait (a network store), and then the layer calls `load`.
    /// An optional fast path: the layer skips allocating and polling a
    /// future for it. Must agree with `load`.
    fn load_now(&self, key: &SessionKey) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        let _ = key;
        None
    }

    /// Like [`load_now`](SessionStore::load_now), for
    /// [`update`](SessionStore::update).
    fn update_now(&self, key: &SessionKey, changes: &Changes) -> Option<Result<bool, StoreError>> {
        let _ = (key, changes);
        None
    }

    /// Stores a new record under `key`, for `ttl`.
    fn create(&self, key: &SessionKey, record: &SessionRecord, ttl: Duration) -> StoreFuture<'_, ()>;

    /// Applies `changes` to the record under `key` (following a rotation
    /// alias). Returns `false`, writing nothing, when there is no such
    /// record.
    fn update(&self, key: &SessionKey, changes: &Changes) -> StoreFuture<'_, bool>;

    /// Replaces the record `old` resolves to (itself, or the target of its
    /// grace alias) by `record` under `new` (for `ttl`). With `grace`, the
    /// replaced keys resolve to `new` for that long; without, they are gone
    /// at once.
    ///
    /// Returns `false`, writing nothing, when `old` resolves to no live
    /// record: it ended meanwhile (a logout, "log out everywhere"), and a
    /// logout is final.
    fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        record: &SessionRecord,
        ttl: Duration,
        grace: Option<Duration>,
    ) -> StoreFuture<'_, bool>;

    /// Moves the live record stored under `old` — as it is in the store,
    /// every write to it kept — to `new`, with its deadlines and its index
    /// entry: a session found under a previous secret of the
    /// [`SecretKeyring`](portcullis_core::SecretKeyring), re-keyed to the
    /// current one. `new` is a key of the same id (same route). With
    /// `grace`, `old` resolves to `new` for that long (requests already in
    /// flight under the old key); without, it is gone at once.
    ///
    /// Returns `false`, writing nothing, when `old` holds no live record of
    /// its own (ended, already moved, or only a grace alias) or `new` is
    /// taken: of several requests re-keying one session at once exactly one
    /// moves it, and the others find it under `new`.
    fn rekey(&self, old: &SessionKey, new: &SessionKey, grace: Option<Duration>) -> StoreFuture<'_, bool>;

    /// Deletes the record under `key` (and its subject index entry).
    fn delete(&self, key: &SessionKey) -> StoreFuture<'_, ()>;

    /// The live sessions of `principal`.
    fn sessions_of(&self, principal: &Principal) -> StoreFuture<'_, Vec<(SessionKey, SessionRecord)>>;

    /// Deletes every session of `principal`; returns how many there were.
    fn delete_all_of(&self, principal: &Principal) -> StoreFuture<'_, usize>;

    /// Deletes every live session logged in through the provider session
    /// `session` of `issuer` (the records whose principal's issuer is
    /// `issuer` and whose [`provider_session`](SessionRecord::provider_session)
    /// is `session`, under whatever key rotations moved them to); returns
    /// how many there were. Other sessions of the same principal stay: a
    /// provider's back-channel logout ends the sessions it started.
    fn delete_provider_session(&self, issuer: &str, session: &str) -> StoreFuture<'_, usize>;
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::DerivedMemo;

    #[test]
    fn a_derived_value_is_reused_only_for_the_same_entry_text_and_tag() {
        let memo = DerivedMemo::default();
        let runs = Cell::new(0);
        let derive = |text: &str| {
            runs.set(runs.get() + 1);
            format!("mac({text})")
        };
        assert_eq!(memo.get("secret", 1, "\"a\"", derive), "mac(\"a\")");
        assert_eq!(memo.get("secret", 1, "\"a\"", derive), "mac(\"a\")");
        assert_eq!(runs.get(), 1, "the second read is the memo's");
        // Another text (a new secret), tag (other keys) or entry: derived
        // afresh, every time, and the memo keeps its first value.
        for _ in 0..2 {
            assert_eq!(memo.get("secret", 1, "\"b\"", derive), "mac(\"b\")");
            assert_eq!(memo.get("secret", 2, "\"a\"", derive), "mac(\"a\")");
            assert_eq!(memo.get("other", 1, "\"a\"", derive), "mac(\"a\")");
        }
        assert_eq!(runs.get(), 7);
        // Another type under the same names is derived, never mistaken.
        assert_eq!(memo.get("secret", 1, "\"a\"", |text: &str| text.len()), 3);
        // A copy of the record starts without it.
        let copy = memo.clone();
        assert_eq!(copy.get("secret", 1, "\"a\"", derive), "mac(\"a\")");
        assert_eq!(runs.get(), 8);
    }
}
