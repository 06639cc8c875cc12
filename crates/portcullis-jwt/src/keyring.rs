//! [`SigningKeyring`]: an issuer's signing keys and their lifecycle.
//!
//! A key moves **staged** (published in the JWKS, never signs: every
//! verifier fetches it before the first token it signs) → **active**
//! (signs; exactly one) → **retired** (published until every token it
//! signed has expired: the longest token lifetime plus leeway) → dropped.
//! Promotion is one call ([`SigningKeyring::promote`]); the state is a
//! small document ([`KeyringState`]) that several replicas share through a
//! file ([`KeyringStateFile`]), so they agree on the active key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use portcullis_core::epoch_millis;
use serde::{Deserialize, Serialize};

use crate::issuer::SigningKey;
use crate::key::{Jwk, KeySet};

/// Where a key of a [`SigningKeyring`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStatus {
    /// Published, not signing yet (since this time).
    Staged {
        /// When it was staged.
        since: SystemTime,
    },
    /// The one key that signs.
    Active,
    /// Published until `since` plus the ring's retention, never signing.
    Retired {
        /// When it stopped signing.
        since: SystemTime,
    },
}

/// Why a keyring operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyringError {
    /// A ring of several keys needs every key named: the `kid` is what
    /// verifiers select by.
    #[error("every key of a keyring with several keys needs a kid")]
    MissingKid,
    /// Two keys with one `kid`, or one key twice.
    #[error("key {0:?} is in the keyring twice")]
    Duplicate(String),
    /// No key with this `kid`.
    #[error("no key {0:?} in the keyring")]
    UnknownKid(String),
    /// Only a staged key can be promoted.
    #[error("key {0:?} is not staged")]
    NotStaged(String),
    /// Promoting now could sign tokens with a key some verifiers have not
    /// fetched yet: wait for the JWKS cache lifetime after staging.
    #[error("key {kid:?} was staged {staged_for:?} ago; verifiers may cache the JWKS for {needed:?}")]
    StagedTooRecently {
        /// The key.
        kid: String,
        /// How long it has been published.
        staged_for: Duration,
        /// How long it must have been.
        needed: Duration,
    },
    /// A state document that names a key the ring was not given, or no
    /// active key.
    #[error("keyring state: {0}")]
    BadState(String),
    /// The state file could not be read or written.
    #[error("keyring state file: {0}")]
    File(String),
}

struct Entry {
    key: Arc<SigningKey>,
    status: KeyStatus,
}

/// The key set at one moment; replaced whole on every change, so a mint
/// reads one consistent snapshot.
struct Snapshot {
    entries: Vec<Entry>,
    active: usize,
}

/// An issuer's signing keys: one active, any number staged and retired.
/// Cheap to clone (shared): every clone and every [`JwtIssuer`](crate::JwtIssuer)
/// built on it sees a promotion at once.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use portcullis_jwt::{JwtIssuer, SigningKey, SigningKeyring};
///
/// let ring = SigningKeyring::new(SigningKey::generate_ed25519()?.with_kid("k1"))
///     .retention(Duration::from_secs(15 * 60 + 60));
/// let issuer = JwtIssuer::with_keyring(ring.clone(), "https://auth.example", "api");
///
/// // Stage k2: published, not signing.
/// ring.stage(SigningKey::generate_ed25519()?.with_kid("k2"))?;
/// assert_eq!(issuer.jwks()["keys"].as_array().map(Vec::len), Some(2));
/// assert_eq!(ring.active_kid().as_deref(), Some("k1"));
///
/// // Once verifiers had time to fetch it, promote it: k1 retires.
/// let later = SystemTime::now() + ring.jwks_max_age();
/// ring.promote_at("k2", later)?;
/// assert_eq!(ring.active_kid().as_deref(), Some("k2"));
/// assert_eq!(ring.published_kids_at(later), ["k2", "k1"]);
/// // After the retention, k1 is dropped.
/// assert_eq!(ring.prune_at(later + Duration::from_secs(16 * 60 + 1)), ["k1"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SigningKeyring {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    retention: Duration,
    publish_lead: Duration,
}

impl std::fmt::Debug for SigningKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.read();
        let keys: Vec<(Option<&str>, KeyStatus)> = snapshot.entries.iter().map(|e| (e.key.kid(), e.status)).collect();
        f.debug_struct("SigningKeyring")
            .field("keys", &keys)
            .field("retention", &self.retention)
            .finish()
    }
}

impl SigningKeyring {
    /// The default retention of a retired key: a 15-minute token lifetime
    /// plus a minute of leeway.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(16 * 60);
    /// The default JWKS cache lifetime, and how long a key must be staged
    /// before it may sign.
    pub const DEFAULT_PUBLISH_LEAD: Duration = Duration::from_secs(5 * 60);

    /// A ring whose one key is `active`.
    pub fn new(active: SigningKey) -> Self {
        Self {
            snapshot: Arc::new(RwLock::new(Arc::new(Snapshot {
                entries: vec![Entry {
                    key: Arc::new(active),
                    status: KeyStatus::Active,
                }],
                active: 0,
            }))),
            retention: Self::DEFAULT_RETENTION,
            publish_lead: Self::DEFAULT_PUBLISH_LEAD,
        }
    }

    /// The configuration form: `signing[0]` active, the rest retired as of
    /// now (still published, never signing), `staged` published. Every key
    /// needs a distinct `kid` when there are several.
    pub fn from_keys(
        signing: impl IntoIterator<Item = SigningKey>,
        staged: impl IntoIterator<Item = SigningKey>,
    ) -> Result<Self, SigningKeyringError> {
        let now = SystemTime::now();
        let mut signing = signing.into_iter();
        let active = signing
            .next()
            .ok_or_else(|| SigningKeyringError::BadState("no signing key".into()))?;
        let ring = Self::new(active);
        ring.edit(|entries, _| {
            for key in signing {
                push(entries, key, KeyStatus::Retired { since: now })?;
            }
            for key in staged {
                push(entries, key, KeyStatus::Staged { since: now })?;
            }
            Ok(())
        })?;
        Ok(ring)
    }

    /// How long a retired key stays published: at least the longest
    /// token lifetime plus the verifiers' leeway (default
    /// [`DEFAULT_RETENTION`](SigningKeyring::DEFAULT_RETENTION)).
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long verifiers may cache the JWKS (its `Cache-Control`
    /// max-age), which is also how long a key must be staged before
    /// [`promote`](SigningKeyring::promote) lets it sign (default
    /// [`DEFAULT_PUBLISH_LEAD`](SigningKeyring::DEFAULT_PUBLISH_LEAD)).
    #[must_use]
    pub fn publish_lead(mut self, lead: Duration) -> Self {
        self.publish_lead = lead;
        self
    }

    /// The JWKS cache lifetime (the publish lead): serve the JWKS with
    /// `Cache-Control: public, max-age=` this many seconds.
    pub fn jwks_max_age(&self) -> Duration {
        self.publish_lead
    }

    fn read(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Applies `change` to a copy of the key list and installs it whole,
    /// or leaves the ring as it was when `change` fails.
    fn edit<T>(
        &self,
        change: impl FnOnce(&mut Vec<Entry>, &mut usize) -> Result<T, SigningKeyringError>,
    ) -> Result<T, SigningKeyringError> {
        let mut guard = self.snapshot.write().unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<Entry> = guard
            .entries
            .iter()
            .map(|entry| Entry {
                key: entry.key.clone(),
                status: entry.status,
            })
            .collect();
        let mut active = guard.active;
        let out = change(&mut entries, &mut active)?;
        if entries.len() > 1 && entries.iter().any(|entry| entry.key.kid().is_none()) {
            return Err(SigningKeyringError::MissingKid);
        }
        *guard = Arc::new(Snapshot { entries, active });
        Ok(out)
    }

    /// The key that signs now.
    pub(crate) fn active(&self) -> Arc<SigningKey> {
        let snapshot = self.read();
        snapshot.entries[snapshot.active].key.clone()
    }

    /// The `kid` of the key that signs now.
    pub fn active_kid(&self) -> Option<String> {
        self.active().kid().map(str::to_owned)
    }

    /// Where each key stands, active first.
    pub fn statuses(&self) -> Vec<(Option<String>, KeyStatus)> {
        let snapshot = self.read();
        let mut out: Vec<_> = snapshot
            .entries
            .iter()
            .map(|entry| (entry.key.kid().map(str::to_owned), entry.status))
            .collect();
        out.sort_by_key(|(_, status)| !matches!(status, KeyStatus::Active));
        out
    }

    /// Publishes `key` without letting it sign.
    pub fn stage(&self, key: SigningKey) -> Result<(), SigningKeyringError> {
        self.stage_at(key, SystemTime::now())
    }

    /// [`stage`](SigningKeyring::stage) at `now`.
    pub fn stage_at(&self, key: SigningKey, now: SystemTime) -> Result<(), SigningKeyringError> {
        let kid = key.kid().map(str::to_owned);
        self.edit(|entries, _| push(entries, key, KeyStatus::Staged { since: now }))?;
        audit_rotation("staged", kid.as_deref(), &[]);
        Ok(())
    }

    /// Makes the staged key `kid` the one that signs; the active one
    /// retires. Refused while `kid` has been published for less than the
    /// [publish lead](SigningKeyring::publish_lead) (some verifiers may
    /// not know it yet).
    pub fn promote(&self, kid: &str) -> Result<(), SigningKeyringError> {
        self.promote_at(kid, SystemTime::now())
    }

    /// [`promote`](SigningKeyring::promote) at `now`.
    pub fn promote_at(&self, kid: &str, now: SystemTime) -> Result<(), SigningKeyringError> {
        let lead = self.publish_lead;
        let previous = self.edit(|entries, active| {
            let index = position(entries, kid)?;
            let KeyStatus::Staged { since } = entries[index].status else {
                return Err(SigningKeyringError::NotStaged(kid.into()));
            };
            let staged_for = now.duration_since(since).unwrap_or_default();
            if staged_for < lead {
                return Err(SigningKeyringError::StagedTooRecently {
                    kid: kid.into(),
                    staged_for,
                    needed: lead,
                });
            }
            let previous = entries[*active].key.kid().map(str::to_owned);
            entries[*active].status = KeyStatus::Retired { since: now };
            entries[index].status = KeyStatus::Active;
            *active = index;
            Ok(previous)
        })?;
        audit_rotation("promoted", Some(kid), previous.as_slice());
        Ok(())
    }

    /// Drops the retired keys whose retention has passed; returns their
    /// `kid`s (also recorded as an audit event).
    pub fn prune(&self) -> Vec<String> {
        self.prune_at(SystemTime::now())
    }

    /// [`prune`](SigningKeyring::prune) at `now`.
    pub fn prune_at(&self, now: SystemTime) -> Vec<String> {
        let retention = self.retention;
        let dropped = self
            .edit(|entries, active| {
                let active_kid = entries[*active].key.kid().map(str::to_owned);
                let mut dropped = Vec::new();
                entries.retain(|entry| {
                    let expired = matches!(entry.status, KeyStatus::Retired { since } if since + retention <= now);
                    if expired {
                        dropped.push(entry.key.kid().unwrap_or_default().to_owned());
                    }
                    !expired
                });
                *active = entries
                    .iter()
                    .position(|entry| entry.key.kid().map(str::to_owned) == active_kid)
                    .unwrap_or(0);
                Ok(dropped)
            })
            .unwrap_or_default();
        if !dropped.is_empty() {
            audit_rotation("dropped", self.active_kid().as_deref(), &dropped);
        }
        dropped
    }

    fn live_entries_at(&self, now: SystemTime) -> Vec<Arc<SigningKey>> {
        let snapshot = self.read();
        let mut keys: Vec<(u8, Arc<SigningKey>)> = snapshot
            .entries
            .iter()
            .filter_map(|entry| match entry.status {
                KeyStatus::Active => Some((0, entry.key.clone())),
                KeyStatus::Retired { since } if since + self.retention > now => Some((1, entry.key.clone())),
                KeyStatus::Staged { .. } => Some((2, entry.key.clone())),
                KeyStatus::Retired { .. } => None,
            })
            .collect();
        keys.sort_by_key(|(order, _)| *order);
        keys.into_iter().map(|(_, key)| key).collect()
    }

    /// The public keys to publish at `now`: active, retired within their
    /// retention, staged.
    pub fn published_at(&self, now: SystemTime) -> Vec<Jwk> {
        self.live_entries_at(now)
            .iter()
            .filter_map(|key| key.public_jwk())
            .collect()
    }

    /// The `kid`s [`published_at`](SigningKeyring::published_at) lists.
    pub fn published_kids_at(&self, now: SystemTime) -> Vec<String> {
        self.live_entries_at(now)
            .iter()
            .map(|key| key.kid().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every key that verifies this ring's tokens now (active, retired
    /// within retention, staged), for a verifier in the same process. A
    /// snapshot: it includes the staged keys, so it stays right through
    /// their promotion.
    pub fn verifying_keys(&self) -> KeySet {
        self.live_entries_at(SystemTime::now())
            .iter()
            .map(|key| key.verifying_key())
            .collect()
    }

    /// The ring's state as a document, for replicas to share.
    pub fn state(&self) -> KeyringState {
        let snapshot = self.read();
        let mut state = KeyringState {
            active: snapshot.entries[snapshot.active]
                .key
                .kid()
                .unwrap_or_default()
                .to_owned(),
            staged: Vec::new(),
            retired: Vec::new(),
        };
        for entry in &snapshot.entries {
            let kid = entry.key.kid().unwrap_or_default().to_owned();
            match entry.status {
                KeyStatus::Active => {}
                KeyStatus::Staged { since } => state.staged.push(KeyEntry {
                    kid,
                    since_ms: epoch_millis(since),
                }),
                KeyStatus::Retired { since } => state.retired.push(KeyEntry {
                    kid,
                    since_ms: epoch_millis(since),
                }),
            }
        }
        state
    }

    /// Takes on `state` (another replica's promotion): every key it names
    /// must be in this ring; keys it does not name are dropped. Returns
    /// whether the active key changed.
    pub fn apply(&self, state: &KeyringState) -> Result<bool, SigningKeyringError> {
        let before = self.active_kid();
        self.edit(|entries, active| {
            let mut next = Vec::new();
            let mut new_active = None;
            let named = std::iter::once((state.active.as_str(), None))
                .chain(state.staged.iter().map(|e| (e.kid.as_str(), Some((true, e.since_ms)))))
                .chain(
                    state
                        .retired
                        .iter()
                        .map(|e| (e.kid.as_str(), Some((false, e.since_ms)))),
                );
            for (kid, role) in named {
                let index = position(entries, kid).map_err(|_| {
                    SigningKeyringError::BadState(format!("names key {kid:?}, which this replica was not given"))
                })?;
                let status = match role {
                    None => KeyStatus::Active,
                    Some((true, ms)) => KeyStatus::Staged { since: at(ms) },
                    Some((false, ms)) => KeyStatus::Retired { since: at(ms) },
                };
                if next.iter().any(|entry: &Entry| entry.key.kid() == Some(kid)) {
                    return Err(SigningKeyringError::Duplicate(kid.into()));
                }
                if role.is_none() {
                    new_active = Some(next.len());
                }
                next.push(Entry {
                    key: entries[index].key.clone(),
                    status,
                });
            }
            *entries = next;
            *active = new_active.unwrap_or(0);
            Ok(())
        })?;
        let after = self.active_kid();
        if before != after {
            audit_rotation("promoted", after.as_deref(), before.as_slice());
        }
        Ok(before != after)
    }
}

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn position(entries: &[Entry], kid: &str) -> Result<usize, SigningKeyringError> {
    entries
        .iter()
        .position(|entry| entry.key.kid() == Some(kid))
        .ok_or_else(|| SigningKeyringError::UnknownKid(kid.into()))
}

fn push(entries: &mut Vec<Entry>, key: SigningKey, status: KeyStatus) -> Result<(), SigningKeyringError> {
    let kid = key.kid().ok_or(SigningKeyringError::MissingKid)?.to_owned();
    let material = key.verifying_key().public_key_pem();
    for entry in entries.iter() {
        let same_material = material.is_some() && entry.key.verifying_key().public_key_pem() == material;
        if entry.key.kid() == Some(kid.as_str()) || same_material {
            return Err(SigningKeyringError::Duplicate(kid));
        }
    }
    entries.push(Entry {
        key: Arc::new(key),
        status,
    });
    Ok(())
}

fn audit_rotation(event: &'static str, active: Option<&str>, others: &[String]) {
    tracing::info!(
        target: portcullis_core::audit::TARGET,
        layer = "keyring",
        purpose = "signing",
        event,
        active = active.unwrap_or(""),
        keys = %others.join(","),
        "signing keyring {event}"
    );
}

/// A key's place in a [`KeyringState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The key's `kid`.
    pub kid: String,
    /// Since when it has this status, ms since the epoch.
    pub since_ms: u64,
}

/// Which key of a [`SigningKeyring`] signs, and which are staged and
/// retired (since when): what replicas share. The keys themselves are not
/// in it (every replica is given them); a `kid` it names that a replica
/// was not given is refused there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringState {
    /// The active key's `kid`.
    pub active: String,
    /// Published, not signing.
    #[serde(default)]
    pub staged: Vec<KeyEntry>,
    /// Published until their retention passes, not signing.
    #[serde(default)]
    pub retired: Vec<KeyEntry>,
}

/// A [`KeyringState`] in a JSON file that several replicas read (a shared
/// volume, a mounted config map): a promotion written by one is taken on
/// by every other at its next [`sync`](KeyringStateFile::sync).
/// Writes are atomic (a temporary file renamed over the old one).
///
/// ```
/// use portcullis_jwt::{KeyringStateFile, SigningKey, SigningKeyring};
///
/// let k1 = SigningKey::generate_ed25519()?.with_kid("k1");
/// let k2 = SigningKey::generate_ed25519()?.with_kid("k2");
/// let (k1_copy, k2_copy) = (k1.clone(), k2.clone());
/// let dir = std::env::temp_dir().join(format!("keyring-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let file = KeyringStateFile::new(dir.join("keyring.json"));
///
/// let one = SigningKeyring::from_keys([k1], [k2])?.publish_lead(std::time::Duration::ZERO);
/// let two = SigningKeyring::from_keys([k1_copy], [k2_copy])?;
/// file.save(&one.state())?;
/// assert!(!file.sync(&two)?, "same state: nothing changes");
///
/// file.promote(&one, "k2")?;
/// assert!(file.sync(&two)?, "the other replica takes the promotion on");
/// assert_eq!(two.active_kid().as_deref(), Some("k2"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyringStateFile {
    path: PathBuf,
}

impl KeyringStateFile {
    /// The state file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<KeyringState>, SigningKeyringError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| SigningKeyringError::File(format!("{}: {error}", self.path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(SigningKeyringError::File(format!("{}: {error}", self.path.display()))),
        }
    }

    /// Writes `state` atomically.
    pub fn save(&self, state: &KeyringState) -> Result<(), SigningKeyringError> {
        let file_error = |error: std::io::Error| SigningKeyringError::File(format!("{}: {error}", self.path.display()));
        let json = serde_json::to_vec_pretty(state).map_err(|error| SigningKeyringError::File(error.to_string()))?;
        let temporary = self.path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&temporary, json).map_err(file_error)?;
        std::fs::rename(&temporary, &self.path).map_err(file_error)
    }

    /// Promotes `kid` in `ring` and writes the new state for the other
    /// replicas. The file is written only if the promotion was allowed.
    pub fn promote(&self, ring: &SigningKeyring, kid: &str) -> Result<(), SigningKeyringError> {
        if let Some(state) = self.load()? {
            ring.apply(&state)?;
        }
        ring.promote(kid)?;
        self.save(&ring.state())
    }

    /// Takes on the file's state, if there is one and it differs from the
    /// ring's; returns whether the active key changed. Call it
    /// periodically (well within the publish lead).
    pub fn sync(&self, ring: &SigningKeyring) -> Result<bool, SigningKeyringError> {
        match self.load()? {
            Some(state) if state != ring.state() => ring.apply(&state),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate_ed25519().expect("key").with_kid(kid)
    }

    #[test]
    fn the_lifecycle_staged_active_retired_dropped() {
        let t0 = SystemTime::now();
        let ring = SigningKeyring::new(key("k1"))
            .retention(Duration::from_secs(60))
            .publish_lead(Duration::from_secs(10));
        ring.stage_at(key("k2"), t0).expect("stage");
        assert_eq!(ring.published_kids_at(t0), ["k1", "k2"], "staged keys are published");
        assert_eq!(ring.active_kid().as_deref(), Some("k1"), "but do not sign");

        let early = ring.promote_at("k2", t0 + Duration::from_secs(5));
        assert!(
            matches!(early, Err(SigningKeyringError::StagedTooRecently { ref kid, .. }) if kid == "k2"),
            "{early:?}"
        );
        assert_eq!(
            ring.active_kid().as_deref(),
            Some("k1"),
            "a refused promotion changes nothing"
        );
        assert_eq!(
            ring.promote_at("k1", t0 + Duration::from_secs(11)),
            Err(SigningKeyringError::NotStaged("k1".into()))
        );
        assert_eq!(
            ring.promote_at("k9", t0),
            Err(SigningKeyringError::UnknownKid("k9".into()))
        );

        let t1 = t0 + Duration::from_secs(11);
        ring.promote_at("k2", t1).expect("promote");
        assert_eq!(ring.active_kid().as_deref(), Some("k2"));
        assert_eq!(
            ring.published_kids_at(t1),
            ["k2", "k1"],
            "the retired key stays published"
        );
        assert_eq!(ring.verifying_keys().len(), 2);
        assert!(
            ring.prune_at(t1 + Duration::from_secs(59)).is_empty(),
            "within retention"
        );
        assert_eq!(
            ring.published_kids_at(t1 + Duration::from_secs(60)),
            ["k2"],
            "not published past its retention"
        );
        assert_eq!(ring.prune_at(t1 + Duration::from_secs(60)), ["k1"]);
        assert_eq!(ring.statuses().len(), 1);
    }

    #[test]
    fn duplicates_and_unnamed_keys_are_refused() {
        let k1 = key("k1");
        let copy = k1.clone().with_kid("other-name");
        let ring = SigningKeyring::new(k1);
        assert_eq!(ring.stage(key("k1")), Err(SigningKeyringError::Duplicate("k1".into())));
        assert_eq!(
            ring.stage(copy),
            Err(SigningKeyringError::Duplicate("other-name".into())),
            "the same key under another name"
        );
        let unnamed = SigningKey::hmac(crate::Algorithm::HS256, &[1; 32]).expect("hmac");
        assert_eq!(ring.stage(unnamed), Err(SigningKeyringError::MissingKid));
        assert!(matches!(
            SigningKeyring::from_keys(Vec::new(), Vec::new()),
            Err(SigningKeyringError::BadState(_))
        ));
        assert_eq!(ring.statuses().len(), 1, "nothing was added");
    }

    #[test]
    fn replicas_agree_through_the_state_and_refuse_keys_they_lack() {
        let (k1, k2) = (key("k1"), key("k2"));
        let one = SigningKeyring::from_keys([k1.clone()], [k2.clone()])
            .expect("ring")
            .publish_lead(Duration::ZERO);
        let two = SigningKeyring::from_keys([k1.clone()], [k2]).expect("ring");
        one.promote("k2").expect("promote");
        assert!(two.apply(&one.state()).expect("apply"), "the active key changed");
        assert_eq!(two.active_kid().as_deref(), Some("k2"));
        assert_eq!(two.state(), one.state(), "both replicas hold one state");

        let lacking = SigningKeyring::new(k1);
        assert!(matches!(
            lacking.apply(&one.state()),
            Err(SigningKeyringError::BadState(_))
        ));
        assert_eq!(
            lacking.active_kid().as_deref(),
            Some("k1"),
            "a refused state changes nothing"
        );
    }

    /// The Flask failure, asserted directly: after a promotion the issuer
    /// signs with the new key alone (its `kid`, and only its key verifies),
    /// never with a published fallback.
    #[test]
    fn an_issuer_signs_with_the_active_key_only() {
        let ring = SigningKeyring::new(key("k1")).publish_lead(Duration::ZERO);
        let issuer = crate::JwtIssuer::with_keyring(ring.clone(), "https://iss.test", "api");
        let k1 = issuer.verifying_key();
        let before = issuer.mint("alice", ["a"]).expect("mint");
        ring.stage(key("k2")).expect("stage");
        let staged = issuer.mint("alice", ["a"]).expect("mint");
        ring.promote("k2").expect("promote");
        let after = issuer.mint("alice", ["a"]).expect("mint");
        let k2 = issuer.verifying_key();
        let verifies = |token: &str, key: &crate::VerifyingKey| {
            let (signed, signature) = token.rsplit_once('.').expect("jws");
            let signature = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .expect("base64url");
            key.verify(signed.as_bytes(), &signature)
        };
        let kid = |token: &str| {
            let header = token.split('.').next().expect("header");
            let header =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).expect("b64");
            serde_json::from_slice::<serde_json::Value>(&header).expect("json")["kid"].clone()
        };
        assert!(verifies(&before, &k1) && !verifies(&before, &k2));
        assert_eq!(kid(&staged), "k1", "a staged key never signs");
        assert!(verifies(&staged, &k1) && !verifies(&staged, &k2));
        assert_eq!(kid(&after), "k2");
        assert!(verifies(&after, &k2), "signed by the new key");
        assert!(!verifies(&after, &k1), "not by the retired one");
        assert_eq!(
            issuer.jwks()["keys"].as_array().map(Vec::len),
            Some(2),
            "both published"
        );
        assert_eq!(issuer.jwks_cache_control(), "public, max-age=0");
    }
}
