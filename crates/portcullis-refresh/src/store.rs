//! The `RefreshStore` trait and what it keeps: one record per family,
//! whatever the number of rotations.

use std::fmt;
use std::time::Duration;

use portcullis_core::StoreFuture;

/// A family: the chain of refresh tokens grown from one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// Random id; access tokens minted from the family carry it as `sid`.
    /// It starts with its subject's [`Route`](portcullis_core::Route)
    /// ([`Route::of_subject`](portcullis_core::Route::of_subject), four hex
    /// digits), so a partitioned store keeps a subject's families on one
    /// shard; such a store refuses a family whose id is routed elsewhere.
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
    /// The live token, but sooner after the last rotation than
    /// [`SpendRules::min_interval`] allows: nothing changed, the token
    /// still works later.
    Throttled,
    /// No such token.
    Unknown,
}

/// The rules a spend is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpendRules {
    /// How long after a rotation the token just spent still gets the same
    /// successor (an honest retry).
    pub grace: Duration,
    /// How long a newly live token stays valid unused.
    pub idle: Duration,
    /// The shortest time between two rotations of one family (zero: no
    /// cap). A faster client gets [`Spend::Throttled`].
    pub min_interval: Duration,
}

impl SpendRules {
    /// `grace` and `idle`, no rate cap.
    pub fn new(grace: Duration, idle: Duration) -> Self {
        Self {
            grace,
            idle,
            min_interval: Duration::ZERO,
        }
    }

    /// With a rate cap: at most one rotation per `interval`.
    #[must_use]
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }
}

/// Where refresh-token families live: **one record per family**, however
/// often it rotates. Tokens identify themselves (family id, sequence
/// number, MAC: see [`RefreshTokens`](crate::RefreshTokens)), so a store
/// keeps the family's live sequence number and when it last rotated, never
/// a record per spent token. Every method is atomic on its own: two
/// concurrent spends of one token never both rotate.
///
/// Contract (checked by the conformance suite, feature `conformance`):
/// - A new family's token `0` is live. [`spend`](RefreshStore::spend) of
///   the live number makes the next one live for `idle` (never past the
///   absolute deadline) and returns `Rotated`.
/// - A spend of the number just before the live one, within `grace` of
///   that rotation, returns `Retry` (same successor) and changes nothing.
/// - A spend of the live number sooner than `min_interval` after the last
///   rotation returns `Throttled` and changes nothing.
/// - A spend of any other number (an earlier token, or one the store never
///   made live) revokes the family and returns `Reused`.
/// - A revoked, expired or idled-out family's tokens spend as `Ended`; an
///   unknown family's as `Unknown`.
pub trait RefreshStore: Send + Sync + fmt::Debug + 'static {
    /// Starts `family`, its token `0` live for `idle`.
    fn create(&self, family: &Family, idle: Duration) -> StoreFuture<'_, ()>;

    /// Spends token number `seq` of the family `id`, at `now_ms`, by `rules`.
    fn spend(&self, id: &str, seq: u64, now_ms: u64, rules: SpendRules) -> StoreFuture<'_, Spend>;

    /// The family `id` (live, spent or revoked), changing nothing; `None`
    /// when unknown. Lets a request be refused (a scope it may not have)
    /// before a token is spent.
    fn family(&self, id: &str) -> StoreFuture<'_, Option<Family>>;

    /// Revokes the family `id`; returns it, or `None` when unknown.
    fn revoke_family(&self, id: &str) -> StoreFuture<'_, Option<Family>>;

    /// Revokes every family of `subject`; returns their ids.
    fn revoke_subject(&self, subject: &str) -> StoreFuture<'_, Vec<String>>;
}
