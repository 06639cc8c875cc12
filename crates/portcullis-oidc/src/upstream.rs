//! The provider's own tokens, kept for the app's calls to the provider's
//! APIs: sealed in the session store (never in a cookie), and refreshed
//! once per session however many requests need them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use portcullis_core::Principal;
use portcullis_jwt::JwtError;
use portcullis_session::Session;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::client::{OidcClient, SessionEntry, TokenEndpointError};
use crate::{IdTokenError, IdTokenExpectations};

/// The provider's tokens as the session store keeps them, sealed.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamTokens {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    /// Seconds since the Unix epoch; `None` when the provider sent no
    /// `expires_in`.
    pub(crate) expires_at: Option<u64>,
    /// The login's nonce: a refreshed ID token that carries one must carry
    /// this one (OIDC Core §12.2).
    pub(crate) nonce: Option<String>,
}

impl UpstreamTokens {
    /// The sealing context: the tokens are bound to the principal and to
    /// their purpose (a sealed ID token swapped in does not open).
    pub(crate) fn context(principal: &Principal) -> Vec<u8> {
        format!("upstream-tokens\0{}", principal.key()).into_bytes()
    }
}

/// An upstream access token, ready to send to the provider's APIs.
#[derive(Clone)]
#[non_exhaustive]
pub struct UpstreamAccessToken {
    /// The token itself (a secret: `Debug` leaves it out).
    pub token: String,
    /// When it expires, if the provider said.
    pub expires_at: Option<SystemTime>,
    /// Whether this call refreshed it (or shared a concurrent refresh).
    pub refreshed: bool,
}

impl std::fmt::Debug for UpstreamAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamAccessToken")
            .field("expires_at", &self.expires_at)
            .field("refreshed", &self.refreshed)
            .finish_non_exhaustive()
    }
}

/// Why no upstream access token could be had.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamTokenError {
    /// The session holds no upstream tokens of this provider: not an OIDC
    /// login here, or tokens not kept
    /// ([`ClientConfig::keep_upstream_tokens`](crate::ClientConfig::keep_upstream_tokens)).
    #[error("the session holds no upstream tokens")]
    NotKept,
    /// The access token expired and there is no refresh token: sign in
    /// again.
    #[error("the upstream access token expired and there is no refresh token")]
    Expired,
    /// The provider refused the refresh token (`invalid_grant`: revoked,
    /// expired, reused): the grant is over; sign in again.
    #[error("the provider refused the refresh: {0}")]
    RefreshRefused(String),
    /// The refresh response broke a rule: not a token response, no access
    /// token, or an ID token of someone else.
    #[error("malformed refresh response: {0}")]
    RefreshResponse(&'static str),
    /// The refreshed ID token broke a rule (its reason).
    #[error("refreshed id token refused: {0}")]
    IdToken(&'static str),
    /// The sealed tokens do not open (a secret no longer in the ring, or
    /// tampering): sign in again.
    #[error("the stored upstream tokens do not open")]
    Sealed,
    /// The provider could not be reached: a 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl UpstreamTokenError {
    /// The reason, short and safe to show (no address, no token).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotKept => "no upstream tokens",
            Self::Expired => "upstream token expired",
            Self::RefreshRefused(_) => "upstream refresh refused",
            Self::RefreshResponse(_) => "malformed refresh response",
            Self::IdToken(reason) => reason,
            Self::Sealed => "upstream tokens do not open",
            Self::Unavailable(_) => "provider unavailable",
        }
    }

    /// 503 for an outage, 502 when the provider answered wrongly, 401
    /// (sign in again) otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RefreshResponse(_) | Self::IdToken(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// How long a refresh's outcome is remembered under the refresh token it
/// spent: a request that loaded the session before the refreshed tokens
/// were saved still holds the old refresh token, and must share the
/// outcome rather than spend that token again (which a provider that
/// rotates refresh tokens treats as theft, revoking the grant).
const REMEMBERED: Duration = Duration::from_secs(60);

type Outcome = Result<UpstreamTokens, UpstreamTokenError>;

/// One refresh's outcome, shared by every request waiting for it.
type SharedOutcome = Arc<OnceCell<Outcome>>;

/// Refreshes in flight or just done, by the digest of the refresh token
/// they spend: one refresh per session however many requests ask at once.
#[derive(Default)]
pub(crate) struct Refreshes(Mutex<HashMap<[u8; 32], (Instant, SharedOutcome)>>);

impl Refreshes {
    /// The one cell of `refresh_token`'s refresh (made if none), after
    /// dropping the outcomes older than [`REMEMBERED`].
    fn cell(&self, refresh_token: &str) -> SharedOutcome {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, refresh_token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, (made, _)| now.duration_since(*made) < REMEMBERED);
        map.entry(key)
            .or_insert_with(|| (now, Arc::new(OnceCell::new())))
            .1
            .clone()
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

impl OidcClient {
    /// The provider's access token of this session's login, for the app's
    /// calls to the provider's APIs: the kept one while it has more than
    /// [`ClientConfig::refresh_ahead`](crate::ClientConfig::refresh_ahead)
    /// left, else a fresh one from the refresh token.
    ///
    /// The refresh is **single-flight per session** in this process:
    /// concurrent requests of one session share one call to the token
    /// endpoint (and a request that still holds the spent refresh token
    /// shares its outcome for a minute after). A refreshed ID token must
    /// be of the same subject, and may leave the `nonce` out (OIDC Core
    /// §12.2). The refreshed tokens are written back to the session,
    /// sealed, when the response is saved.
    ///
    /// Across nodes, two requests of one session on two nodes at the same
    /// moment may each refresh once; keep a session's requests on one node
    /// if the provider rotates refresh tokens with reuse detection.
    pub async fn access_token(&self, session: &Session) -> Result<UpstreamAccessToken, UpstreamTokenError> {
        let inner = &*self.0;
        let entry: SessionEntry = session
            .get(Self::SESSION_KEY)
            .ok()
            .flatten()
            .filter(|entry: &SessionEntry| entry.issuer == inner.metadata.issuer)
            .ok_or(UpstreamTokenError::NotKept)?;
        let (Some(sealed), Some(principal)) = (&entry.tokens, session.principal()) else {
            return Err(UpstreamTokenError::NotKept);
        };
        let context = UpstreamTokens::context(&principal);
        let tokens: UpstreamTokens = inner
            .tokens
            .open(sealed, &context)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(UpstreamTokenError::Sealed)?;
        let now = unix_seconds(SystemTime::now());
        let ahead = inner.config.refresh_ahead.as_secs();
        let current = |tokens: &UpstreamTokens, refreshed| UpstreamAccessToken {
            token: tokens.access_token.clone(),
            expires_at: tokens.expires_at.map(|at| UNIX_EPOCH + Duration::from_secs(at)),
            refreshed,
        };
        match (tokens.expires_at, &tokens.refresh_token) {
            // No lifetime given: nothing tells us to refresh.
            (None, _) => return Ok(current(&tokens, false)),
            (Some(at), _) if now.saturating_add(ahead) < at => return Ok(current(&tokens, false)),
            (Some(at), None) if now < at => return Ok(current(&tokens, false)),
            (Some(_), None) => return Err(UpstreamTokenError::Expired),
            (Some(_), Some(_)) => {}
        }
        let refresh_token = tokens.refresh_token.clone().unwrap_or_default();
        let cell = inner.refreshes.cell(&refresh_token);
        let fresh = cell.get_or_init(|| self.refresh(&principal, &tokens)).await.clone()?;
        let sealed = inner.tokens.seal(
            &serde_json::to_vec(&fresh).map_err(|_| UpstreamTokenError::RefreshResponse("unserialisable"))?,
            &context,
        );
        let entry = SessionEntry {
            tokens: Some(sealed),
            ..entry
        };
        session
            .insert(Self::SESSION_KEY, &entry)
            .map_err(|_| UpstreamTokenError::RefreshResponse("unserialisable"))?;
        Ok(current(&fresh, true))
    }

    /// One refresh at the token endpoint, its ID token (if any) checked.
    async fn refresh(&self, principal: &Principal, tokens: &UpstreamTokens) -> Outcome {
        let inner = &*self.0;
        let refresh_token = tokens.refresh_token.as_deref().unwrap_or_default();
        let grant = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        let response = self.token_request(&grant).await.map_err(|error| match error {
            TokenEndpointError::Refused(error) => UpstreamTokenError::RefreshRefused(error),
            TokenEndpointError::Malformed => UpstreamTokenError::RefreshResponse("not a JSON token response"),
            TokenEndpointError::Unavailable(error) => UpstreamTokenError::Unavailable(error),
        })?;
        let access_token = response
            .access_token
            .ok_or(UpstreamTokenError::RefreshResponse("no access_token"))?;
        let now = SystemTime::now();
        if let Some(id_token) = &response.id_token {
            let expect = IdTokenExpectations {
                client_id: &inner.config.client_id,
                nonce: tokens.nonce.as_deref(),
                refresh: true,
                access_token: Some(&access_token),
                max_age: inner.config.max_id_token_age,
                now,
            };
            let claims = self
                .validate_id_token(id_token, &expect)
                .await
                .map_err(|error| match error {
                    IdTokenError::Jwt(JwtError::KeysUnavailable { .. }) => {
                        UpstreamTokenError::Unavailable("the provider's keys".into())
                    }
                    error => UpstreamTokenError::IdToken(error.reason()),
                })?;
            if claims.subject != principal.subject() || claims.issuer != principal.issuer() {
                return Err(UpstreamTokenError::RefreshResponse("an id token of another subject"));
            }
        }
        Ok(UpstreamTokens {
            access_token,
            // A provider that does not rotate sends none: the old one stays.
            refresh_token: response.refresh_token.or_else(|| tokens.refresh_token.clone()),
            expires_at: response
                .expires_in
                .map(|lifetime| unix_seconds(now).saturating_add(lifetime)),
            nonce: tokens.nonce.clone(),
        })
    }
}
