//! `RefreshTokens`: the rotation engine.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::audit::{Decision, Fingerprint, Outcome};
use portcullis_core::{Principal, SecretKeyring, SharedClock, SystemClock};
use portcullis_jwt::{IssueError, JwtIssuer};
use serde_json::{Map, Value};

use portcullis_core::{StoreError, epoch_millis as millis};
use portcullis_revocation::Revocations;

use crate::store::{Family, RefreshStore, Spend, SpendRules};

const LAYER: &str = "refresh";

/// A new access token and the refresh token to use next.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenPair {
    /// A signed access token from the configured `JwtIssuer`, carrying the
    /// family id as `sid`.
    pub access_token: String,
    /// The opaque refresh token to present next time (single use).
    pub refresh_token: String,
    /// The access token's lifetime.
    pub expires_in: Duration,
    /// The scopes granted, space-separated.
    pub scope: String,
    /// The family id (`sid` of the access tokens).
    pub family: String,
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The refresh token is not usable: OAuth `invalid_grant`, with the
    /// reason (`malformed refresh token`, `unknown refresh token`,
    /// `refresh token expired or revoked`, `refresh token reused; family revoked`).
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// The requested `scope` is malformed or wider than the family's:
    /// OAuth `invalid_scope`. Nothing was spent; the token still works.
    #[error("invalid scope: {0}")]
    InvalidScope(&'static str),
    /// The family rotated less than the configured minimum interval ago
    /// ([`RefreshTokensBuilder::min_rotation_interval`]): nothing was spent;
    /// the same refresh token works again after `retry_after`.
    #[error("refresh too frequent; retry after {retry_after:?}")]
    Throttled {
        /// At most this long until the token may rotate again.
        retry_after: Duration,
    },
    /// A store could not answer: a 503, never a silent success.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
    /// The access token could not be minted.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// Invalid configuration of [`RefreshTokens`].
#[derive(Debug, thiserror::Error)]
pub enum RefreshConfigError {
    /// The secret refresh tokens are hashed and derived under is too short.
    #[error("the refresh-token secret is too short: {got} bytes, at least {needed} required")]
    ShortSecret {
        /// The secret's length.
        got: usize,
        /// The minimum length.
        needed: usize,
    },
    /// The grace window is not shorter than the idle lifetime.
    #[error("the grace window must be shorter than the idle lifetime")]
    GraceTooLong,
}

/// Issues and rotates opaque refresh tokens, in families.
///
/// - A refresh token names its family (128 random bits) and its sequence
///   number in the family's chain, with a MAC under the secret: it is
///   unforgeable, and the store keeps **one record per family** (its live
///   number and last rotation), never one per spent token, so any number
///   of rotations costs constant space. The store never holds a usable
///   token (it has no MAC key). Each use spends it atomically and returns a
///   new access token (minted by the [`JwtIssuer`], with the family id as
///   `sid`) and its successor.
/// - The successor is the next number of the family, so an honest retry
///   within the grace window (default 5 s: a lost response) gets the
///   *same* successor, never a second branch.
/// - Any earlier token presented again after the grace window is a replay
///   (detected from its number alone): its whole family is revoked, and the family's access tokens are cut off
///   through [`Revocations`] (and, with
///   [`cut_off_subject_on_reuse`](RefreshTokensBuilder::cut_off_subject_on_reuse),
///   every access token of the subject).
/// - A family has an idle lifetime (default 14 days, per token) and an
///   absolute one (default 30 days, from login).
///
/// ```
/// use std::sync::Arc;
/// use portcullis_jwt::{JwtIssuer, SigningKey};
/// use portcullis_refresh::{MemoryRefreshStore, RefreshError, RefreshTokens};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let issuer = JwtIssuer::new(SigningKey::generate_ed25519().unwrap(), "https://auth.example", "api");
/// let tokens = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), issuer, &[7; 32]).build().unwrap();
/// let login = tokens.issue("alice", ["notes:read"]).await?;
/// let next = tokens.refresh(&login.refresh_token).await?;
/// assert_ne!(next.refresh_token, login.refresh_token);
/// # Ok::<(), RefreshError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct RefreshTokens {
    inner: Arc<Engine>,
}

struct Engine {
    store: Arc<dyn RefreshStore>,
    issuer: JwtIssuer,
    revocations: Option<Revocations>,
    /// One MAC key per secret of the keyring, current first: the current
    /// one alone makes tokens, every one verifies.
    mac_keys: Vec<hmac::Key>,
    grace: Duration,
    idle: Duration,
    absolute: Duration,
    min_interval: Duration,
    cut_off_subject_on_reuse: bool,
    clock: SharedClock,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("store", &self.store)
            .field("grace", &self.grace)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .finish_non_exhaustive()
    }
}

/// Configures [`RefreshTokens`].
#[must_use]
pub struct RefreshTokensBuilder {
    store: Arc<dyn RefreshStore>,
    issuer: JwtIssuer,
    secret: Vec<u8>,
    ring: Option<SecretKeyring>,
    revocations: Option<Revocations>,
    grace: Duration,
    idle: Duration,
    absolute: Duration,
    min_interval: Duration,
    cut_off_subject_on_reuse: bool,
    clock: SharedClock,
}

impl std::fmt::Debug for RefreshTokensBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokensBuilder").finish_non_exhaustive()
    }
}

impl RefreshTokensBuilder {
    /// Where revoked families' access tokens are cut off (their `sid`).
    /// Without it, a revoked family's access tokens live out their (short)
    /// lifetime.
    pub fn revocations(mut self, revocations: &Revocations) -> Self {
        self.revocations = Some(revocations.clone());
        self
    }

    /// How long after a rotation a retry with the spent token gets the same
    /// successor (default 5 s). Zero: every second use is a replay.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long an unused refresh token stays valid (default 14 days).
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// How long a family lives from login, whatever its use (default 30 days).
    pub fn absolute(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// A per-family rate cap: a family rotates at most once per `interval`
    /// (default none). A faster refresh is answered
    /// [`RefreshError::Throttled`] (429 at the endpoint) and spends
    /// nothing; an honest retry within the grace window is not throttled.
    /// Bounds what one stolen or buggy client can cost the store and the
    /// issuer.
    pub fn min_rotation_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// On a replay, also cut off every access token of the subject, not
    /// only the family's (default off: a replay proves one family leaked).
    pub fn cut_off_subject_on_reuse(mut self, enabled: bool) -> Self {
        self.cut_off_subject_on_reuse = enabled;
        self
    }

    /// The keyring refresh tokens are MACed under, current secret first
    /// (replaces the builder's single secret). New tokens, successors
    /// included, are made with the current secret only; a token made with
    /// any secret of the ring is accepted. A family rotated during the
    /// overlap has moved to the current secret; one left unused through
    /// it is refused ("unknown refresh token") once its secret is gone.
    /// The store holds no MAC, so nothing is rewritten.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use portcullis_core::SecretKeyring;
    /// use portcullis_jwt::{JwtIssuer, SigningKey};
    /// use portcullis_refresh::{MemoryRefreshStore, RefreshTokens};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryRefreshStore::new());
    /// let issuer = JwtIssuer::new(SigningKey::generate_ed25519().unwrap(), "https://auth.example", "api");
    /// let old = RefreshTokens::builder(store.clone(), issuer.clone(), &[1; 32]).build().unwrap();
    /// let login = old.issue("alice", ["notes:read"]).await.unwrap();
    ///
    /// let ring = SecretKeyring::new([[2u8; 32], [1u8; 32]]).unwrap();
    /// let rotated = RefreshTokens::builder(store, issuer, &[2; 32]).secrets(&ring).build().unwrap();
    /// let next = rotated.refresh(&login.refresh_token).await.unwrap();
    /// // The successor was made with the new secret: the old engine refuses it.
    /// assert!(old.refresh(&next.refresh_token).await.is_err());
    /// # });
    /// ```
    pub fn secrets(mut self, ring: &SecretKeyring) -> Self {
        self.ring = Some(ring.clone());
        self
    }

    /// The clock deadlines are computed with (tests use a manual one).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The engine, or why the configuration is unsafe.
    pub fn build(self) -> Result<RefreshTokens, RefreshConfigError> {
        let ring = match self.ring {
            Some(ring) => ring,
            None if self.secret.len() < SecretKeyring::MIN_LEN => {
                return Err(RefreshConfigError::ShortSecret {
                    got: self.secret.len(),
                    needed: SecretKeyring::MIN_LEN,
                });
            }
            None => SecretKeyring::single(&self.secret).map_err(|_| RefreshConfigError::ShortSecret {
                got: self.secret.len(),
                needed: SecretKeyring::MIN_LEN,
            })?,
        };
        if self.grace >= self.idle {
            return Err(RefreshConfigError::GraceTooLong);
        }
        // The token MAC keys, domain-separated from anything else the
        // secrets may key.
        let mac_keys = ring
            .iter()
            .map(|secret| {
                let mac_secret = digest::digest(&digest::SHA256, &[secret, b"portcullis refresh token mac"].concat());
                hmac::Key::new(hmac::HMAC_SHA256, mac_secret.as_ref())
            })
            .collect();
        Ok(RefreshTokens {
            inner: Arc::new(Engine {
                store: self.store,
                issuer: self.issuer,
                revocations: self.revocations,
                mac_keys,
                grace: self.grace,
                idle: self.idle,
                absolute: self.absolute,
                min_interval: self.min_interval,
                cut_off_subject_on_reuse: self.cut_off_subject_on_reuse,
                clock: self.clock,
            }),
        })
    }
}

/// A refresh token: it names its family and its place in the chain, and
/// proves both with a MAC under the engine's secret, so a store keeps one
/// record per family instead of one per spent token. As sent:
/// `version ‖ family id (16 bytes) ‖ sequence number (8, big-endian) ‖
/// MAC (16)`, base64url (55 characters).
#[derive(Clone, Copy)]
struct RawToken {
    family: [u8; FAMILY_BYTES],
    seq: u64,
}

const TOKEN_VERSION: u8 = 1;
const FAMILY_BYTES: usize = 16;
const MAC_BYTES: usize = 16;
const TOKEN_BYTES: usize = 1 + FAMILY_BYTES + 8 + MAC_BYTES;
const TOKEN_CHARS: usize = 55;

impl RawToken {
    /// The family's id: its route (the first two bytes, as four hex
    /// digits, so a partitioned store finds the subject's shard from the id
    /// alone), then the 112 random bits in base64url.
    fn family_id(&self) -> String {
        let route = portcullis_core::Route::from_bytes([self.family[0], self.family[1]]);
        format!("{route}{}", URL_SAFE_NO_PAD.encode(&self.family[2..]))
    }

    fn successor(&self) -> Self {
        Self {
            family: self.family,
            seq: self.seq.saturating_add(1),
        }
    }

    /// The bytes the MAC covers (and the audit fingerprint is taken of).
    fn body(&self) -> [u8; 1 + FAMILY_BYTES + 8] {
        let mut body = [0u8; 1 + FAMILY_BYTES + 8];
        body[0] = TOKEN_VERSION;
        body[1..1 + FAMILY_BYTES].copy_from_slice(&self.family);
        body[1 + FAMILY_BYTES..].copy_from_slice(&self.seq.to_be_bytes());
        body
    }

    fn mac(&self, key: &hmac::Key) -> [u8; MAC_BYTES] {
        let tag = hmac::sign(key, &self.body());
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&tag.as_ref()[..MAC_BYTES]);
        mac
    }

    /// A token of ours, its MAC checked in constant time: `Err` with the
    /// reason for anything else (not of our shape, or not made with our
    /// secret).
    fn parse(text: &str, keys: &[hmac::Key]) -> Result<Self, &'static str> {
        const MALFORMED: &str = "malformed refresh token";
        if text.len() != TOKEN_CHARS {
            return Err(MALFORMED);
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        if URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) != Ok(TOKEN_BYTES) || bytes[0] != TOKEN_VERSION {
            return Err(MALFORMED);
        }
        let mut family = [0u8; FAMILY_BYTES];
        family.copy_from_slice(&bytes[1..1 + FAMILY_BYTES]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[1 + FAMILY_BYTES..1 + FAMILY_BYTES + 8]);
        let token = Self {
            family,
            seq: u64::from_be_bytes(seq),
        };
        // The current key first: one MAC in the common case.
        let presented = &bytes[TOKEN_BYTES - MAC_BYTES..];
        if keys
            .iter()
            .any(|key| constant_time::verify_slices_are_equal(&token.mac(key), presented).is_ok())
        {
            Ok(token)
        } else {
            Err("unknown refresh token")
        }
    }

    fn encode(&self, key: &hmac::Key) -> String {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[..TOKEN_BYTES - MAC_BYTES].copy_from_slice(&self.body());
        bytes[TOKEN_BYTES - MAC_BYTES..].copy_from_slice(&self.mac(key));
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// 32 random bytes for [`RefreshTokens::builder`]'s secret, for a single
/// process or a demo. Several instances, or tokens that must survive a
/// restart, need one stable secret from configuration instead.
///
/// ```
/// assert_ne!(portcullis_refresh::generate_secret(), portcullis_refresh::generate_secret());
/// ```
pub fn generate_secret() -> [u8; 32] {
    portcullis_core::random_bytes()
}

/// A `scope` parameter (RFC 6749 §3.3): scope tokens of `%x21 / %x23-5B /
/// %x5D-7E` separated by single spaces, in order, without repeats. `None`
/// when malformed or empty.
fn parse_scope(scope: &str) -> Option<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for token in scope.split(' ') {
        let valid = !token.is_empty()
            && token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !valid {
            return None;
        }
        if !scopes.iter().any(|seen| seen == token) {
            scopes.push(token.to_owned());
        }
    }
    Some(scopes)
}

/// A new family's bytes: `subject`'s route, then random bits.
fn routed_family(subject: &str) -> [u8; FAMILY_BYTES] {
    let mut family: [u8; FAMILY_BYTES] = portcullis_core::random_bytes();
    family[..2].copy_from_slice(&portcullis_core::Route::of_subject(subject).to_bytes());
    family
}

impl RefreshTokens {
    /// Configures an engine over `store`, minting access tokens with
    /// `issuer`; `secret` (at least 32 bytes, kept stable across restarts
    /// and nodes) keys the token hashes and successors.
    pub fn builder(store: Arc<dyn RefreshStore>, issuer: JwtIssuer, secret: &[u8]) -> RefreshTokensBuilder {
        RefreshTokensBuilder {
            store,
            issuer,
            secret: secret.to_vec(),
            ring: None,
            revocations: None,
            grace: Duration::from_secs(5),
            idle: Duration::from_secs(14 * 24 * 3600),
            absolute: Duration::from_secs(30 * 24 * 3600),
            min_interval: Duration::ZERO,
            cut_off_subject_on_reuse: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// The issuer access tokens are minted with.
    pub fn issuer(&self) -> &JwtIssuer {
        &self.inner.issuer
    }

    /// The next pair: an access token with `scopes` (the family's, or a
    /// narrower set asked for), and the refresh token, which keeps the
    /// family's full scope (RFC 6749 §6).
    fn pair(&self, family: &Family, scopes: &[String], refresh: &RawToken) -> Result<TokenPair, RefreshError> {
        let mut extra = Map::new();
        extra.insert("sid".into(), Value::String(family.id.clone()));
        let access_token = self.inner.issuer.mint_with(&family.subject, scopes, extra)?;
        Ok(TokenPair {
            access_token,
            refresh_token: refresh.encode(&self.inner.mac_keys[0]),
            expires_in: self.inner.issuer.ttl(),
            scope: scopes.join(" "),
            family: family.id.clone(),
        })
    }

    /// Starts a family for `subject` (after a login): its first access and
    /// refresh tokens.
    pub async fn issue<I, S>(&self, subject: &str, scopes: I) -> Result<TokenPair, RefreshError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let now = self.inner.clock.now();
        let created_ms = millis(now);
        let first = RawToken {
            family: routed_family(subject),
            seq: 0,
        };
        let family = Family {
            id: first.family_id(),
            subject: subject.to_owned(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            created_ms,
            absolute_deadline_ms: created_ms
                .saturating_add(u64::try_from(self.inner.absolute.as_millis()).unwrap_or(u64::MAX)),
        };
        self.inner.store.create(&family, self.inner.idle).await?;
        self.pair(&family, &family.scopes, &first)
    }

    /// Spends `refresh_token` and returns the next pair, with the family's
    /// scopes.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        self.refresh_with_scope(refresh_token, None).await
    }

    /// Spends `refresh_token` and returns the next pair; with `scope`
    /// (space-separated, RFC 6749 §3.3), the new access token carries only
    /// those scopes, which must all be the family's (RFC 6749 §6). The
    /// scope is checked before anything is spent: an `invalid_scope`
    /// answer leaves the refresh token usable.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use portcullis_jwt::{JwtIssuer, SigningKey};
    /// use portcullis_refresh::{MemoryRefreshStore, RefreshError, RefreshTokens};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let issuer = JwtIssuer::new(SigningKey::generate_ed25519().unwrap(), "https://auth.example", "api");
    /// let tokens = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), issuer, &[7; 32]).build().unwrap();
    /// let login = tokens.issue("alice", ["notes:read", "notes:write"]).await?;
    /// let wider = tokens.refresh_with_scope(&login.refresh_token, Some("admin")).await;
    /// assert!(matches!(wider, Err(RefreshError::InvalidScope(_))));
    /// let narrow = tokens.refresh_with_scope(&login.refresh_token, Some("notes:read")).await?;
    /// assert_eq!(narrow.scope, "notes:read");
    /// # Ok::<(), RefreshError>(())
    /// # }).unwrap();
    /// ```
    pub async fn refresh_with_scope(
        &self,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenPair, RefreshError> {
        let token = match RawToken::parse(refresh_token, &self.inner.mac_keys) {
            Ok(token) => token,
            Err(reason) => return Err(self.refused(reason, None)),
        };
        let requested = match scope {
            Some(scope) => Some(parse_scope(scope).ok_or_else(|| self.invalid_scope("malformed scope"))?),
            None => None,
        };
        if let Some(requested) = &requested {
            // A read first, so a refusal spends nothing.
            let Some(family) = self.inner.store.family(&token.family_id()).await? else {
                return Err(self.refused("unknown refresh token", Some(Fingerprint::of(&token.body()))));
            };
            if !requested.iter().all(|wanted| family.scopes.contains(wanted)) {
                return Err(self.invalid_scope("scope exceeds the grant"));
            }
        }
        // The successor is the next number of the same family: an honest
        // retry within the grace window gets the same one.
        let successor = token.successor();
        let now_ms = millis(self.inner.clock.now());
        let spend = self
            .inner
            .store
            .spend(
                &token.family_id(),
                token.seq,
                now_ms,
                SpendRules::new(self.inner.grace, self.inner.idle).min_interval(self.inner.min_interval),
            )
            .await?;
        let fingerprint = Fingerprint::of(&token.body());
        match spend {
            Spend::Rotated(family) | Spend::Retry(family) => {
                Decision::new(LAYER, Outcome::Accepted)
                    .subject(&family.subject)
                    .credential(fingerprint)
                    .record();
                let scopes = requested.as_deref().unwrap_or(&family.scopes);
                self.pair(&family, scopes, &successor)
            }
            Spend::Reused(family) => {
                self.cut_off(&family, self.inner.cut_off_subject_on_reuse).await?;
                Decision::new(LAYER, Outcome::Rejected)
                    .reason("refresh token reused; family revoked")
                    .subject(&family.subject)
                    .credential(fingerprint)
                    .record();
                Err(RefreshError::InvalidGrant("refresh token reused; family revoked"))
            }
            Spend::Ended => Err(self.refused("refresh token expired or revoked", Some(fingerprint))),
            Spend::Throttled => {
                Decision::new(LAYER, Outcome::Rejected)
                    .reason("refresh too frequent")
                    .credential(fingerprint)
                    .record();
                Err(RefreshError::Throttled {
                    retry_after: self.inner.min_interval,
                })
            }
            Spend::Unknown => Err(self.refused("unknown refresh token", Some(fingerprint))),
        }
    }

    fn invalid_scope(&self, reason: &'static str) -> RefreshError {
        Decision::new(LAYER, Outcome::Rejected).reason(reason).record();
        RefreshError::InvalidScope(reason)
    }

    fn refused(&self, reason: &'static str, fingerprint: Option<Fingerprint>) -> RefreshError {
        let mut decision = Decision::new(LAYER, Outcome::Rejected).reason(reason);
        if let Some(fingerprint) = fingerprint {
            decision = decision.credential(fingerprint);
        }
        decision.record();
        RefreshError::InvalidGrant(reason)
    }

    /// Cuts off the access tokens of a revoked family (and of its subject).
    async fn cut_off(&self, family: &Family, subject_too: bool) -> Result<(), StoreError> {
        if let Some(revocations) = &self.inner.revocations {
            revocations.cut_off_session(&family.id).await?;
            if subject_too {
                revocations.cut_off_subject(&self.principal_of(family)).await?;
            }
        }
        Ok(())
    }

    /// Revokes the family of `refresh_token` and cuts off its access
    /// tokens. `false` for a token that is malformed or unknown.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool, StoreError> {
        let Ok(token) = RawToken::parse(refresh_token, &self.inner.mac_keys) else {
            return Ok(false);
        };
        let Some(family) = self.inner.store.revoke_family(&token.family_id()).await? else {
            return Ok(false);
        };
        self.cut_off(&family, false).await?;
        Decision::new(LAYER, Outcome::Accepted)
            .reason("refresh family revoked")
            .subject(&family.subject)
            .record();
        Ok(true)
    }

    /// The principal a family belongs to: its subject, of this engine's
    /// issuer.
    fn principal_of(&self, family: &Family) -> Principal {
        Principal::new(self.inner.issuer.issuer(), family.subject.as_str())
    }

    /// Revokes every family of `principal` and cuts off their access
    /// tokens; returns how many families were revoked.
    ///
    /// Every family this engine issues belongs to its issuer's principals
    /// (the store keeps one issuer's families, so it indexes them by
    /// subject): another issuer's principal owns none, whatever its `sub`.
    pub async fn revoke_subject(&self, principal: &Principal) -> Result<usize, StoreError> {
        if principal.issuer() != self.inner.issuer.issuer() {
            return Ok(0);
        }
        let families = self.inner.store.revoke_subject(principal.subject()).await?;
        if let Some(revocations) = &self.inner.revocations {
            for id in &families {
                revocations.cut_off_session(id).await?;
            }
        }
        Ok(families.len())
    }
}
