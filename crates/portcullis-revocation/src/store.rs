//! The `RevocationStore` trait, and `Revocations`, the handle that revokes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{Identity, Principal, SharedClock, SystemClock};

use crate::denylist::{Revocation, Revoked};

pub use portcullis_core::{StoreError, StoreFuture, StoreKind};

/// Where revocations live.
///
/// Contract (checked by the conformance suite, feature `conformance`):
/// - [`revoke`](RevocationStore::revoke) merges: a later cutoff or a later
///   expiry wins, a revocation is never weakened.
/// - [`check`](RevocationStore::check) finds a token revoked by its
///   `(iss, jti)`, by a cutoff of its subject, or by a cutoff of its `sid`
///   claim, for tokens issued at or before the cutoff.
/// - Entries are forgotten only after they expire.
pub trait RevocationStore: Send + Sync + fmt::Debug + 'static {
    /// Records `revocation`.
    fn revoke(&self, revocation: Revocation) -> StoreFuture<'_, ()>;

    /// Whether the bearer-token `identity` is revoked.
    fn check(&self, identity: Identity) -> StoreFuture<'_, Option<Revoked>>;

    /// The answer [`check`](RevocationStore::check) would give, when the
    /// store has it without waiting (an in-process store or mirror). The
    /// layer then allocates and polls no future. `None`: ask `check`.
    fn check_now(&self, identity: &Identity) -> Option<Result<Option<Revoked>, StoreError>> {
        let _ = identity;
        None
    }

    /// Every unexpired revocation (for mirrors and administration).
    fn entries(&self) -> StoreFuture<'_, Vec<Revocation>>;
}

/// The handle that revokes: cheap to clone, shared by the layer, the
/// refresh engine and the application's logout code.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_revocation::{MemoryRevocationStore, Revocations};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let revocations = Revocations::new(Arc::new(MemoryRevocationStore::new()));
/// let alice = portcullis_core::Principal::new("https://auth.example", "alice");
/// revocations.cut_off_subject(&alice).await?; // "log out everywhere"
/// # Ok::<(), portcullis_revocation::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Revocations {
    store: Arc<dyn RevocationStore>,
    keep_cutoffs_for: Duration,
    clock_skew: Duration,
    clock: SharedClock,
}

/// How far ahead of this node's clock another issuing node's clock may run
/// (default 5 s): a cutoff covers tokens stamped up to that much later, so
/// one minted just before the cutoff by a node running ahead is cut off too.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How long subject and session cutoffs are kept by default: a day, past
/// the lifetime of any access token worth accepting.
pub const DEFAULT_KEEP_CUTOFFS_FOR: Duration = Duration::from_secs(24 * 3600);

impl Revocations {
    /// A handle on `store`.
    pub fn new(store: Arc<dyn RevocationStore>) -> Self {
        Self {
            store,
            keep_cutoffs_for: DEFAULT_KEEP_CUTOFFS_FOR,
            clock_skew: DEFAULT_CLOCK_SKEW,
            clock: Arc::new(SystemClock),
        }
    }

    /// How long a subject or session cutoff is kept (default a day): the
    /// revocation horizon. A [`RevocationLayer`](crate::RevocationLayer)
    /// built from this handle refuses tokens that live longer (`exp - iat`
    /// past it), since a cutoff could be forgotten while they are still
    /// accepted: raise it to the longest token lifetime you accept.
    #[must_use]
    pub fn keep_cutoffs_for(mut self, keep_for: Duration) -> Self {
        self.keep_cutoffs_for = keep_for;
        self
    }

    /// The revocation horizon (see [`keep_cutoffs_for`](Revocations::keep_cutoffs_for)).
    pub fn horizon(&self) -> Duration {
        self.keep_cutoffs_for
    }

    /// The clock-skew margin added to cutoffs (default
    /// [`DEFAULT_CLOCK_SKEW`]). Tokens minted within it after a cutoff are
    /// cut off too: the safe side.
    #[must_use]
    pub fn clock_skew(mut self, margin: Duration) -> Self {
        self.clock_skew = margin;
        self
    }

    /// The clock cutoffs are stamped with (tests use a manual one).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn RevocationStore> {
        &self.store
    }

    /// Revokes the token `(issuer, jti)` until `token_expires`.
    pub async fn revoke_token(&self, issuer: &str, jti: &str, token_expires: SystemTime) -> Result<(), StoreError> {
        self.store.revoke(Revocation::token(issuer, jti, token_expires)).await
    }

    /// Revokes the token behind a verified bearer `identity` (logout of one
    /// token). `false` when it carries no `iss`/`jti`/`exp` to revoke it by:
    /// cut off its subject instead.
    pub async fn revoke_identity(&self, identity: &Identity) -> Result<bool, StoreError> {
        let Some(facts) = crate::denylist::TokenFacts::of(identity) else {
            return Ok(false);
        };
        match (facts.issuer, facts.jti, identity.expires_at()) {
            (Some(issuer), Some(jti), Some(expires)) => {
                self.revoke_token(issuer, jti, expires).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Revokes every token of `principal` issued until now (log out
    /// everywhere, password change, account lock). Tokens of another
    /// issuer with the same `sub` are another person's and stay valid.
    pub async fn cut_off_subject(&self, principal: &Principal) -> Result<(), StoreError> {
        let now = self.clock.now() + self.clock_skew;
        self.store
            .revoke(Revocation::subject(principal.clone(), now, self.keep_cutoffs_for))
            .await
    }

    /// Revokes every token carrying `sid` issued until now.
    pub async fn cut_off_session(&self, sid: &str) -> Result<(), StoreError> {
        let now = self.clock.now() + self.clock_skew;
        self.store
            .revoke(Revocation::session(sid, now, self.keep_cutoffs_for))
            .await
    }
}
/// What a node does when its replicated mirror (Redis or PostgreSQL) has
/// lost its feed for longer than the allowed staleness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FeedLossPolicy {
    /// Refuse bearer requests with a 503 (gRPC `UNAVAILABLE`): no revoked
    /// token can slip through. The default.
    #[default]
    FailClosed,
    /// Keep answering from the stale mirror, with a warning audit event
    /// (at most one a second): availability first, knowingly.
    FailOpen,
}
