//! One login transaction per `state`: the values the callback needs
//! (`nonce`, the PKCE verifier, where to return), sealed into a cookie of
//! its own, so logins started in several tabs never overwrite each other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::ReturnPath;
use crate::seal::{Sealer, Unseal};

/// The prefix of every transaction cookie's name; the rest is the first
/// [`STATE_IN_NAME`] characters of its `state`.
const COOKIE_PREFIX: &str = "__Host-oidc-";
/// The prefix over plain HTTP (browsers refuse `__Host-` without `Secure`).
const INSECURE_COOKIE_PREFIX: &str = "oidc-";
const STATE_IN_NAME: usize = 16;

/// A login in flight, between the redirect to the provider and the callback.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LoginTransaction {
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) code_verifier: String,
    pub(crate) return_to: ReturnPath,
    /// Seconds since the Unix epoch.
    pub(crate) expires_at: u64,
}

/// Why a transaction cookie was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransactionRefused {
    Forged,
    Expired,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator does not fail");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

impl LoginTransaction {
    /// A fresh transaction: 256-bit random `state`, `nonce` and PKCE verifier.
    pub(crate) fn begin(return_to: ReturnPath, now: SystemTime, lifetime: Duration) -> Self {
        Self {
            state: random_token(),
            nonce: random_token(),
            code_verifier: random_token(),
            return_to,
            expires_at: unix_seconds(now + lifetime),
        }
    }

    /// The PKCE `code_challenge` (S256) of the verifier.
    pub(crate) fn code_challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, self.code_verifier.as_bytes()))
    }

    /// The cookie that carries the transaction whose state is `state`, if
    /// `state` can name one (base64url of 32 bytes, as we make them).
    pub(crate) fn cookie_name(state: &str, secure: bool) -> Option<String> {
        let well_formed = state.len() == 43
            && state
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let prefix = if secure { COOKIE_PREFIX } else { INSECURE_COOKIE_PREFIX };
        well_formed.then(|| format!("{prefix}{}", &state[..STATE_IN_NAME]))
    }

    /// The cookie value: the transaction, encrypted and bound to its state.
    pub(crate) fn seal(&self, sealer: &Sealer) -> String {
        let json = serde_json::to_vec(self).expect("a transaction serialises");
        sealer.seal(&json, self.state.as_bytes())
    }

    /// The transaction sealed in `value` for `state`, if still current.
    pub(crate) fn open(sealer: &Sealer, state: &str, value: &str, now: SystemTime) -> Result<Self, TransactionRefused> {
        let json = sealer.open(value, state.as_bytes()).map_err(|error| match error {
            Unseal::Malformed | Unseal::Forged => TransactionRefused::Forged,
        })?;
        let transaction: Self = serde_json::from_slice(&json).map_err(|_| TransactionRefused::Forged)?;
        // The state is the authenticated context already; compared again
        // so a sealing bug could never pair one state with another's values.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            transaction.state.as_bytes(),
            state.as_bytes(),
        )) {
            return Err(TransactionRefused::Forged);
        }
        if unix_seconds(now) >= transaction.expires_at {
            return Err(TransactionRefused::Expired);
        }
        Ok(transaction)
    }
}

/// Login transactions: begun when a login redirects to the provider,
/// taken (once) at its callback.
///
/// ```
/// use std::time::SystemTime;
/// use http::HeaderMap;
/// use portcullis_core::SecretKeyring;
/// use portcullis_oidc::{LoginTransactions, ReturnPath, TransactionError};
///
/// let transactions = LoginTransactions::new(&SecretKeyring::single(&[7; 32])?);
/// let now = SystemTime::now();
/// let login = transactions.begin(ReturnPath::parse("/notes")?, now);
/// assert_eq!(login.code_challenge().len(), 43, "S256, base64url");
///
/// // The browser comes back with the cookie the login set.
/// let mut headers = HeaderMap::new();
/// let cookie = login.set_cookie().split(';').next().unwrap_or_default().to_owned();
/// headers.insert(http::header::COOKIE, cookie.parse()?);
/// let taken = transactions.take(&headers, login.state(), now)?;
/// assert_eq!(taken.return_to().as_str(), "/notes");
/// assert_eq!(taken.nonce(), login.nonce());
///
/// // Another state, or none at all, finds nothing.
/// let other = transactions.begin(ReturnPath::root(), now);
/// assert_eq!(transactions.take(&headers, other.state(), now).err(), Some(TransactionError::Unknown));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LoginTransactions {
    sealer: std::sync::Arc<Sealer>,
    lifetime: Duration,
    secure: bool,
}

impl std::fmt::Debug for LoginTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginTransactions")
            .field("lifetime", &self.lifetime)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// Why a callback's transaction was refused. [`reason`](Self::reason) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The `state` is not one we make, or no cookie holds it: another
    /// tab's or another browser's callback, a forged state, or a
    /// transaction already taken.
    #[error("no login transaction for this state")]
    Unknown,
    /// The cookie does not open under this state (tampered or forged).
    #[error("the login transaction cookie was tampered with")]
    Forged,
    /// The login took longer than the transaction lives.
    #[error("the login transaction expired")]
    Expired,
}

impl TransactionError {
    /// The reason, short and safe to show.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown state",
            Self::Forged => "tampered state",
            Self::Expired => "login expired",
        }
    }
}

/// A login just begun: what goes into the authorization request, and the
/// cookie that remembers it.
#[derive(Debug)]
pub struct PendingLogin {
    transaction: LoginTransaction,
    set_cookie: String,
}

impl PendingLogin {
    /// The `state` parameter.
    pub fn state(&self) -> &str {
        &self.transaction.state
    }

    /// The `nonce` parameter.
    pub fn nonce(&self) -> &str {
        &self.transaction.nonce
    }

    /// The `code_challenge` parameter (`code_challenge_method=S256`).
    pub fn code_challenge(&self) -> String {
        self.transaction.code_challenge()
    }

    /// The `Set-Cookie` header value of this login's transaction cookie.
    pub fn set_cookie(&self) -> &str {
        &self.set_cookie
    }
}

/// A transaction taken at its callback.
#[derive(Debug)]
pub struct TakenTransaction {
    transaction: LoginTransaction,
    remove_cookie: String,
}

impl TakenTransaction {
    /// The `nonce` the ID token must carry.
    pub fn nonce(&self) -> &str {
        &self.transaction.nonce
    }

    /// The PKCE `code_verifier` for the token request.
    pub fn code_verifier(&self) -> &str {
        &self.transaction.code_verifier
    }

    /// Where the user goes once logged in.
    pub fn return_to(&self) -> &ReturnPath {
        &self.transaction.return_to
    }

    /// The `state`.
    pub fn state(&self) -> &str {
        &self.transaction.state
    }

    /// The `Set-Cookie` header value that removes the transaction cookie.
    pub fn remove_cookie(&self) -> &str {
        &self.remove_cookie
    }
}

impl LoginTransactions {
    /// Transactions sealed under `secrets` (the first seals, all open),
    /// living 10 minutes, in `__Host-` cookies.
    pub fn new(secrets: &portcullis_core::SecretKeyring) -> Self {
        Self {
            sealer: std::sync::Arc::new(Sealer::new(secrets, "portcullis-oidc login transaction")),
            lifetime: Duration::from_secs(600),
            secure: true,
        }
    }

    /// How long a login may take, from the redirect to the callback.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// **Insecure**: cookies without `Secure` and without the `__Host-`
    /// prefix, for plain-HTTP development only.
    pub fn insecure_http(mut self) -> Self {
        self.secure = false;
        self
    }

    /// Begins a login that returns to `return_to`.
    pub fn begin(&self, return_to: ReturnPath, now: SystemTime) -> PendingLogin {
        let transaction = LoginTransaction::begin(return_to, now, self.lifetime);
        let name =
            LoginTransaction::cookie_name(&transaction.state, self.secure).expect("our own states name a cookie");
        // SameSite=Lax: the callback is a top-level GET from the provider.
        let set_cookie = format!(
            "{}; Max-Age={}",
            portcullis_core::cookie::set(
                &name,
                &transaction.seal(&self.sealer),
                self.secure,
                portcullis_core::cookie::SameSite::Lax
            ),
            self.lifetime.as_secs()
        );
        PendingLogin {
            transaction,
            set_cookie,
        }
    }

    /// The transaction of `state`, from the callback request's cookies.
    /// The caller removes the cookie ([`TakenTransaction::remove_cookie`])
    /// and marks the state used in a [`crate::ReplayCache`]: a
    /// transaction is single-use.
    pub fn take(
        &self,
        headers: &http::HeaderMap,
        state: &str,
        now: SystemTime,
    ) -> Result<TakenTransaction, TransactionError> {
        let name = LoginTransaction::cookie_name(state, self.secure).ok_or(TransactionError::Unknown)?;
        let value = portcullis_core::cookie::find(headers, &name).ok_or(TransactionError::Unknown)?;
        let transaction = LoginTransaction::open(&self.sealer, state, value, now).map_err(|refused| match refused {
            TransactionRefused::Forged => TransactionError::Forged,
            TransactionRefused::Expired => TransactionError::Expired,
        })?;
        let remove_cookie =
            portcullis_core::cookie::removal(&name, self.secure, portcullis_core::cookie::SameSite::Lax);
        Ok(TakenTransaction {
            transaction,
            remove_cookie,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::SecretKeyring;

    fn sealer() -> Sealer {
        Sealer::new(&SecretKeyring::single(&[9; 32]).expect("ring"), "transaction")
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        // RFC 7636, appendix B.
        let mut transaction = LoginTransaction::begin(ReturnPath::root(), SystemTime::now(), Duration::from_secs(60));
        transaction.code_verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into();
        assert_eq!(
            transaction.code_challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_transaction_opens_for_its_own_state_only_and_expires() {
        let now = SystemTime::now();
        let sealer = sealer();
        let first = LoginTransaction::begin(ReturnPath::root(), now, Duration::from_secs(600));
        let second = LoginTransaction::begin(ReturnPath::root(), now, Duration::from_secs(600));
        assert_ne!(first.state, second.state);
        assert_ne!(
            LoginTransaction::cookie_name(&first.state, true),
            LoginTransaction::cookie_name(&second.state, true),
            "each tab's login has its own cookie"
        );
        let sealed = first.seal(&sealer);
        assert_eq!(
            LoginTransaction::open(&sealer, &first.state, &sealed, now),
            Ok(first.clone())
        );
        assert_eq!(
            LoginTransaction::open(&sealer, &second.state, &sealed, now),
            Err(TransactionRefused::Forged),
            "another tab's state does not open this transaction"
        );
        assert_eq!(
            LoginTransaction::open(&sealer, &first.state, &sealed, now + Duration::from_secs(600)),
            Err(TransactionRefused::Expired)
        );
    }

    #[test]
    fn only_states_we_could_have_made_name_a_cookie() {
        assert!(LoginTransaction::cookie_name("short", true).is_none());
        assert!(LoginTransaction::cookie_name(&"a".repeat(44), true).is_none());
        assert!(LoginTransaction::cookie_name(&format!("{};x", "a".repeat(41)), true).is_none());
        assert_eq!(
            LoginTransaction::cookie_name(&"a".repeat(43), true).as_deref(),
            Some("__Host-oidc-aaaaaaaaaaaaaaaa")
        );
    }
}
