//! What a revocation is, and the in-process denylist that answers "is this
//! token revoked?" with local lookups only (the memory store and the Redis
//! mirror both keep one).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use portcullis_core::{AuthMethod, Identity, Principal};

/// How long a token's denylist entry outlives the token's `exp`: longer
/// than any sane clock-skew leeway, so a token accepted within its
/// authenticator's leeway is still found revoked.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// What a revocation applies to. Every part comes from verified claims,
/// never from a token's bytes (ECDSA signatures are malleable: two byte
/// strings can carry one valid token).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// One token, by its issuer and `jti`.
    Token {
        /// The token's `iss`.
        issuer: String,
        /// The token's `jti`.
        jti: String,
    },
    /// Every token of a principal `(issuer, subject)` issued at or before
    /// the cutoff. Another issuer's token with the same `sub` is another
    /// person's, and is not cut off.
    Subject(Principal),
    /// Every token carrying this `sid` claim issued at or before the
    /// cutoff (a refresh-token family, or a login session).
    Session(String),
}

impl Target {
    /// An unambiguous text form, used as a key by stores
    /// ([`store_support::encode_target`](crate::store_support::encode_target)).
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Token { issuer, jti } => format!("t:{}:{issuer}{jti}", issuer.len()),
            Self::Subject(principal) => format!("s:{}", principal.key()),
            Self::Session(sid) => format!("d:{sid}"),
        }
    }

    /// Parses [`Target::encode`]'s form.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_at_checked(2)?;
        match kind {
            "s:" => Principal::from_key(rest).map(Self::Subject),
            "d:" => Some(Self::Session(rest.to_owned())),
            "t:" => {
                let (length, rest) = rest.split_once(':')?;
                let (issuer, jti) = rest.split_at_checked(length.parse().ok()?)?;
                Some(Self::Token {
                    issuer: issuer.to_owned(),
                    jti: jti.to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// One revocation: what it applies to, its cutoff, and when it may be
/// forgotten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// What is revoked.
    pub target: Target,
    /// For subject and session cutoffs: tokens whose `iat` is at or before
    /// this second are revoked. `iat` has one-second resolution, so a token
    /// minted in the same second as the cutoff, even just after it, is
    /// revoked too: the safe side. Unused (0) for a single token.
    pub cutoff_secs: u64,
    /// When the entry may be dropped, ms since the epoch: once no token it
    /// could revoke can still be accepted.
    pub expires_ms: u64,
}

impl Revocation {
    /// Revokes the token `(issuer, jti)`, which expires at `token_expires`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use portcullis_revocation::{Revocation, Target};
    ///
    /// let exp = SystemTime::now() + Duration::from_secs(900);
    /// let revocation = Revocation::token("https://auth.example", "abc", exp);
    /// assert!(matches!(revocation.target, Target::Token { .. }));
    /// ```
    pub fn token(issuer: impl Into<String>, jti: impl Into<String>, token_expires: SystemTime) -> Self {
        Self {
            target: Target::Token {
                issuer: issuer.into(),
                jti: jti.into(),
            },
            cutoff_secs: 0,
            expires_ms: millis(token_expires + EXPIRY_MARGIN),
        }
    }

    /// Revokes every token of `principal` issued at or before `at`; the
    /// cutoff is kept for `keep_for` (at least the longest lifetime of a
    /// token you accept).
    pub fn subject(principal: Principal, at: SystemTime, keep_for: Duration) -> Self {
        Self::cutoff(Target::Subject(principal), at, keep_for)
    }

    /// Revokes every token whose `sid` claim is `sid`, issued at or before
    /// `at`; kept for `keep_for`.
    pub fn session(sid: impl Into<String>, at: SystemTime, keep_for: Duration) -> Self {
        Self::cutoff(Target::Session(sid.into()), at, keep_for)
    }

    fn cutoff(target: Target, at: SystemTime, keep_for: Duration) -> Self {
        Self {
            target,
            cutoff_secs: at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            expires_ms: millis(at + keep_for + EXPIRY_MARGIN),
        }
    }

    /// The value half of the text form stores keep: `cutoff:expires`.
    pub(crate) fn encode_value(&self) -> String {
        format!("{}:{}", self.cutoff_secs, self.expires_ms)
    }

    /// Rebuilds a revocation from [`Target::encode`] and
    /// [`Revocation::encode_value`].
    pub(crate) fn decode(target: &str, value: &str) -> Option<Self> {
        let (cutoff, expires) = value.split_once(':')?;
        Some(Self {
            target: Target::decode(target)?,
            cutoff_secs: cutoff.parse().ok()?,
            expires_ms: expires.parse().ok()?,
        })
    }
}

/// Why a token was found revoked (the rejection's reason is always
/// `token revoked`; this is for audit events and callers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// Its `(iss, jti)` is on the denylist.
    Token,
    /// Its subject was cut off after it was issued.
    Subject,
    /// Its `sid` was cut off after it was issued.
    Session,
    /// Its `sid` claim is neither a string nor a number: it cannot be
    /// checked against session cutoffs, so it is refused rather than let
    /// through unchecked.
    UnreadableSession,
}

impl Revoked {
    /// A short name, for audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token denylisted",
            Self::Subject => "subject cut off",
            Self::Session => "session cut off",
            Self::UnreadableSession => "unreadable sid",
        }
    }
}

/// The parts of an `Identity` a revocation can match.
#[derive(Debug)]
pub struct TokenFacts<'a> {
    /// `iss`.
    pub issuer: Option<&'a str>,
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `(iss, sub)`.
    pub principal: &'a Principal,
    /// `iat`, seconds since the epoch.
    pub issued_at_secs: Option<u64>,
    identity: &'a Identity,
}

impl<'a> TokenFacts<'a> {
    /// The facts of a bearer-token identity; `None` for other identities
    /// (a session is revoked in its own store).
    pub fn of(identity: &'a Identity) -> Option<Self> {
        let AuthMethod::Bearer { token_id, issuer, .. } = identity.method() else {
            return None;
        };
        Some(Self {
            issuer: issuer.as_deref(),
            jti: token_id.as_deref(),
            principal: identity.principal(),
            issued_at_secs: identity
                .issued_at()
                .map(|at| at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()),
            identity,
        })
    }

    /// Whether a subject or session cutoff (`cutoff_secs`, kept until
    /// `expires_ms`) revokes this token at `now_ms`: it was issued at or
    /// before the cutoff, or has no `iat` to prove otherwise. The one rule
    /// every store applies.
    pub fn cut_off_by(&self, cutoff_secs: u64, expires_ms: u64, now_ms: u64) -> bool {
        expires_ms > now_ms && self.issued_at_secs.is_none_or(|iat| iat <= cutoff_secs)
    }

    /// The token's `sid` claim, parsed from its raw claims only when asked:
    /// `Ok(None)` when absent or `null`; a number reads as its decimal
    /// text; anything else is [`Revoked::UnreadableSession`], never a
    /// silent "no sid".
    pub fn session_id(&self) -> Result<Option<String>, Revoked> {
        #[derive(serde::Deserialize)]
        struct Sid {
            sid: Option<serde_json::Value>,
        }
        let Some(claims) = self.identity.claims_json() else {
            return Ok(None);
        };
        let parsed = serde_json::from_str::<Sid>(claims).map_err(|_| Revoked::UnreadableSession)?;
        match parsed.sid {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(sid)) => Ok(Some(sid)),
            Some(serde_json::Value::Number(number)) => Ok(Some(number.to_string())),
            Some(_) => Err(Revoked::UnreadableSession),
        }
    }
}

/// A denylisted token; its names are kept only to list entries.
#[derive(Debug)]
struct TokenEntry {
    expires_ms: u64,
    issuer: Box<str>,
    jti: Box<str>,
}

#[derive(Clone, Copy, Debug)]
struct Cutoff {
    cutoff_secs: u64,
    expires_ms: u64,
}

/// The in-process denylist: tokens by a keyed 64-bit hash of `(iss, jti)`,
/// cutoffs by subject and by `sid`. A check allocates nothing and costs one
/// hash and one probe per map.
///
/// Tokens are found by hash alone, without comparing strings: a collision
/// (about one in 2⁴⁴ per check with a million entries, under a per-process
/// random key no client knows) can only revoke a token wrongly, never
/// accept a revoked one. The memory store keeps one, and so does each
/// node's mirror of a shared store.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use portcullis_revocation::Revocation;
/// use portcullis_revocation::store_support::Denylist;
/// use portcullis_core::epoch_millis;
///
/// let denylist = Denylist::default();
/// let now = SystemTime::now();
/// let alice = portcullis_core::Principal::new("https://app.example", "alice");
/// denylist.insert(&Revocation::subject(alice, now, Duration::from_secs(60)), epoch_millis(now));
/// assert_eq!(denylist.len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct Denylist {
    tokens: DashMap<u64, TokenEntry, Hasher>,
    token_key: Hasher,
    subjects: DashMap<Principal, Cutoff, Hasher>,
    sessions: DashMap<Box<str>, Cutoff, Hasher>,
    last_sweep_ms: AtomicU64,
}

/// foldhash, seeded per map: several times cheaper than SipHash on short
/// keys, and the keys come from verified claims of revoked tokens (an
/// attacker cannot choose them freely), so its flooding resistance is
/// enough.
type Hasher = foldhash::quality::RandomState;

/// Sweeps run at most this often, triggered by inserts: bounded memory
/// without a background task, and no O(n) walk per insert.
const SWEEP_INTERVAL_MS: u64 = 30_000;

impl Denylist {
    /// Adds `revocation`, merged with what is there (the later cutoff and
    /// the later expiry win: a revocation is never weakened).
    pub fn insert(&self, revocation: &Revocation, now_ms: u64) {
        if revocation.expires_ms <= now_ms {
            return;
        }
        let merge = |entry: &mut Cutoff| {
            entry.cutoff_secs = entry.cutoff_secs.max(revocation.cutoff_secs);
            entry.expires_ms = entry.expires_ms.max(revocation.expires_ms);
        };
        const NONE: Cutoff = Cutoff {
            cutoff_secs: 0,
            expires_ms: 0,
        };
        match &revocation.target {
            Target::Token { issuer, jti } => {
                let mut entry = self
                    .tokens
                    .entry(self.token_key.hash_one((issuer.as_str(), jti.as_str())))
                    .or_insert_with(|| TokenEntry {
                        expires_ms: 0,
                        issuer: issuer.as_str().into(),
                        jti: jti.as_str().into(),
                    });
                entry.expires_ms = entry.expires_ms.max(revocation.expires_ms);
            }
            Target::Subject(principal) => merge(&mut self.subjects.entry(principal.clone()).or_insert(NONE)),
            Target::Session(sid) => merge(&mut self.sessions.entry(sid.as_str().into()).or_insert(NONE)),
        }
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= SWEEP_INTERVAL_MS
            && self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now_ms);
        }
    }

    /// Whether the token described by `facts` is revoked at `now_ms`.
    pub fn verdict(&self, facts: &TokenFacts<'_>, now_ms: u64) -> Option<Revoked> {
        if let (Some(issuer), Some(jti)) = (facts.issuer, facts.jti)
            && let Some(entry) = self.tokens.get(&self.token_key.hash_one((issuer, jti)))
            && entry.expires_ms > now_ms
        {
            return Some(Revoked::Token);
        }
        // A token without `iat` cannot prove it was issued after a cutoff.
        let cut = |cutoff: &Cutoff| facts.cut_off_by(cutoff.cutoff_secs, cutoff.expires_ms, now_ms);
        if !self.subjects.is_empty()
            && let Some(cutoff) = self.subjects.get(facts.principal)
            && cut(&cutoff)
        {
            return Some(Revoked::Subject);
        }
        if !self.sessions.is_empty() {
            let sid = match facts.session_id() {
                Ok(sid) => sid,
                Err(unreadable) => return Some(unreadable),
            };
            if let Some(sid) = sid
                && let Some(cutoff) = self.sessions.get(sid.as_str())
                && cut(&cutoff)
            {
                return Some(Revoked::Session);
            }
        }
        None
    }

    /// Drops every entry that has expired by `now_ms`.
    pub fn sweep(&self, now_ms: u64) {
        self.tokens.retain(|_, entry| entry.expires_ms > now_ms);
        self.subjects.retain(|_, cutoff| cutoff.expires_ms > now_ms);
        self.sessions.retain(|_, cutoff| cutoff.expires_ms > now_ms);
    }

    /// How many entries are held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len() + self.sessions.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.subjects.is_empty() && self.sessions.is_empty()
    }

    /// Every unexpired entry.
    pub fn entries(&self, now_ms: u64) -> Vec<Revocation> {
        let mut entries = Vec::new();
        for entry in self.tokens.iter() {
            if entry.expires_ms > now_ms {
                entries.push(Revocation {
                    target: Target::Token {
                        issuer: entry.issuer.to_string(),
                        jti: entry.jti.to_string(),
                    },
                    cutoff_secs: 0,
                    expires_ms: entry.expires_ms,
                });
            }
        }
        let cutoff = |target: Target, cutoff: &Cutoff| Revocation {
            target,
            cutoff_secs: cutoff.cutoff_secs,
            expires_ms: cutoff.expires_ms,
        };
        for entry in self.subjects.iter().filter(|entry| entry.expires_ms > now_ms) {
            entries.push(cutoff(Target::Subject(entry.key().clone()), entry.value()));
        }
        for entry in self.sessions.iter().filter(|entry| entry.expires_ms > now_ms) {
            entries.push(cutoff(Target::Session(entry.key().to_string()), entry.value()));
        }
        entries
    }
}

/// Milliseconds since the epoch (re-exported as `denylist_millis`).
pub(crate) use portcullis_core::epoch_millis as millis;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_even_with_separators_inside() {
        for target in [
            Target::Token {
                issuer: "https://a:b".into(),
                jti: "1:2".into(),
            },
            Target::Subject(Principal::new("https://a:1", "s:x")),
            Target::Subject(Principal::new("", "")),
            Target::Session(String::new()),
        ] {
            assert_eq!(Target::decode(&target.encode()), Some(target.clone()));
        }
        assert_eq!(Target::decode("t:99:short"), None, "a length past the end");
        assert_eq!(Target::decode("x:what"), None);
        assert_eq!(Target::decode(""), None);
        assert_eq!(Revocation::decode("s:1:ab", "1:2").map(|r| r.expires_ms), Some(2));
        assert_eq!(Revocation::decode("s:1:ab", "1"), None);
        assert_eq!(Target::decode("s:alice"), None, "a subject without its issuer");
    }
}
