//! The `RefreshStore` trait and what it keeps.

use std::fmt;
use std::time::Duration;

use crate::store::StoreFuture;

/// What a store keys a refresh token by: a keyed SHA-256 of the token, so
/// a leaked store yields no usable refresh token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    /// Lowercase hex, for stores that key by text.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Parses [`TokenHash::to_hex`]'s form.
    ///
    /// ```
    /// use portcullis_revocation::TokenHash;
    /// let hex = "ab".repeat(32);
    /// assert_eq!(TokenHash::from_hex(&hex).map(|h| h.to_hex()), Some(hex));
    /// assert!(TokenHash::from_hex("xyz").is_none());
    /// ```
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..12])
    }
}

/// A family: the chain of refresh tokens grown from one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// Random id; access tokens minted from the family carry it as `sid`.
    pub id: String,
    /// The subject the family was issued to.
    pub subject: String,
    /// The scopes granted at login.
    pub scopes: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// The absolute deadline, ms since the epoch: no rotation extends it.
    pub absolute_deadline_ms: u64,
}

/// What spending a refresh token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spend {
    /// The token was live: it is now spent and its successor is live.
    Rotated(Family),
    /// The token was spent moments ago (within the grace window) for the
    /// same successor: an honest retry; nothing changed.
    Retry(Family),
    /// The token was spent before, outside the grace window: a replay. The
    /// whole family is now revoked.
    Reused(Family),
    /// The family was revoked or has expired, or the token idled out.
    Ended,
    /// No such token.
    Unknown,
}

/// Where refresh tokens live. Every method is atomic on its own: two
/// concurrent spends of one token never both rotate.
///
/// Contract (checked by the conformance suite, feature `conformance`):
/// - [`spend`](RefreshStore::spend) of a live token marks it spent, records
///   `successor` as live for `idle`, and returns `Rotated`; a second spend
///   within `grace` naming the same successor returns `Retry`; any other
///   second spend revokes the family and returns `Reused`.
/// - A revoked or expired family's tokens spend as `Ended`.
pub trait RefreshStore: Send + Sync + fmt::Debug + 'static {
    /// Starts `family` with its first token `first`, live for `idle`.
    fn create(&self, first: &TokenHash, family: &Family, idle: Duration) -> StoreFuture<'_, ()>;

    /// Spends `token` for `successor`, at `now_ms`.
    fn spend(
        &self,
        token: &TokenHash,
        successor: &TokenHash,
        now_ms: u64,
        grace: Duration,
        idle: Duration,
    ) -> StoreFuture<'_, Spend>;

    /// The family `token` belongs to (live, spent or revoked), without
    /// changing anything; `None` when the token is unknown. Lets a request
    /// be refused (a scope it may not have) before a token is spent.
    fn family_of(&self, token: &TokenHash) -> StoreFuture<'_, Option<Family>>;

    /// Revokes the family `token` belongs to; returns it, or `None` when
    /// the token is unknown.
    fn revoke_family_of(&self, token: &TokenHash) -> StoreFuture<'_, Option<Family>>;

    /// Revokes every family of `subject`; returns their ids.
    fn revoke_subject(&self, subject: &str) -> StoreFuture<'_, Vec<String>>;
}
