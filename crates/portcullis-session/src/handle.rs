//! `Session`: the handle handlers use, and `Sessions`, for use outside a
//! request.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::Principal;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::id::SessionId;
use crate::store::{Changes, SessionRecord, StoreError};
use crate::{SessionKey, SessionStore};

/// The session of the current request, in its extensions (and an axum
/// extractor with feature `axum`). Cheap to clone; all clones are one
/// session.
///
/// Reads and writes are local until the response is ready; then the layer
/// saves once, only what changed, and never after a 5xx.
///
/// ```
/// # use portcullis_session::Session;
/// fn visit(session: &Session) -> Result<u64, serde_json::Error> {
///     let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
///     session.insert("visits", &visits)?;
///     Ok(visits)
/// }
/// ```
#[derive(Clone)]
pub struct Session(Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) sessions: Sessions,
    pub(crate) state: Mutex<State>,
}

/// A session found live: its id, the key it is under now, its record.
pub(crate) struct Live {
    pub(crate) id: SessionId,
    pub(crate) key: SessionKey,
    pub(crate) record: Arc<SessionRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) id: Option<SessionId>,
    pub(crate) key: Option<SessionKey>,
    pub(crate) record: Option<Arc<SessionRecord>>,
    pub(crate) changes: Changes,
    pub(crate) pending: Pending,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    #[default]
    Nothing,
    /// Boxed: the state is moved on every request, a login is rare.
    Login(Box<Login>),
    Cycle,
    Logout,
}

/// A login the response will store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) principal: Principal,
    pub(crate) scopes: Vec<String>,
    pub(crate) provider_session: Option<String>,
}

impl Session {
    /// The handle of a request that carried `live`, or none. Built from
    /// the parts in place: the state is moved on every request.
    pub(crate) fn new(sessions: Sessions, live: Option<Live>) -> Self {
        let (id, key, record) = match live {
            Some(Live { id, key, record }) => (Some(id), Some(key), Some(record)),
            None => (None, None, None),
        };
        Self(Arc::new(Shared {
            sessions,
            state: Mutex::new(State {
                id,
                key,
                record,
                changes: Changes::default(),
                pending: Pending::Nothing,
            }),
        }))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `key`, deserialized as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, serde_json::Error> {
        let state = self.state();
        if state.pending == Pending::Logout || state.changes.removed.iter().any(|k| k == key) {
            return Ok(None);
        }
        let text = state
            .changes
            .set
            .get(key)
            .or_else(|| state.record.as_ref().and_then(|r| r.data.get(key)));
        text.map(|t| serde_json::from_str(t)).transpose()
    }

    /// `derive` applied to the JSON text of data entry `key` as this
    /// request sees it (`None` when there is no such entry), remembered
    /// on the stored record: while the record is shared (the memory
    /// store, the local cache) and the entry unchanged, later requests get
    /// a clone of the value instead of deriving it again. For work on a
    /// secret a session keeps that costs more than a clone (a MAC, a key
    /// derivation; the CSRF layer keeps its expected token this way).
    ///
    /// `tag` names what else the value depends on (the key of the MAC,
    /// say): a value remembered under another tag, entry or text is never
    /// handed out. Values of the request's own writes, not yet saved, are
    /// derived each time.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use portcullis_session::{MemoryStore, Session, SessionLayer};
    /// # use tower::{Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let layer = SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http();
    /// # let mut app = tower::ServiceBuilder::new().layer(layer).service_fn(|request: http::Request<()>| async move {
    /// let session = request.extensions().get::<Session>().expect("SessionLayer runs first");
    /// session.insert("greeting", "hello")?;
    /// let length = session.derived("greeting", 1, |json| json.len());
    /// assert_eq!(length, Some("\"hello\"".len()));
    /// assert_eq!(session.derived("missing", 1, |json| json.len()), None);
    /// # Ok::<_, serde_json::Error>(http::Response::new(String::new()))
    /// # });
    /// # app.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
    /// # }
    /// ```
    pub fn derived<T: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        tag: u64,
        derive: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let record = {
            let state = self.state();
            if state.pending == Pending::Logout || state.changes.removed.iter().any(|k| k == key) {
                return None;
            }
            if let Some(text) = state.changes.set.get(key) {
                let text = text.clone();
                drop(state);
                return Some(derive(&text));
            }
            state.record.clone()?
        };
        // Derived outside the lock: `derive` may use the session.
        let text = record.data.get(key)?;
        Some(record.derived.get(key, tag, text, derive))
    }

    /// Sets `key` to `value`. Creates the session (and its cookie) if there
    /// is none yet.
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), serde_json::Error> {
        let text = serde_json::to_string(value)?;
        let mut state = self.state();
        let unchanged = !state.changes.set.contains_key(key)
            && !state.changes.removed.iter().any(|k| k == key)
            && state.record.as_ref().and_then(|r| r.data.get(key)) == Some(&text);
        if unchanged {
            // Setting a key to the value it has is not a write.
            return Ok(());
        }
        state.changes.removed.retain(|k| k != key);
        state.changes.set.insert(key.to_owned(), text);
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        let mut state = self.state();
        state.changes.set.remove(key);
        if !state.changes.removed.iter().any(|k| k == key) {
            state.changes.removed.push(key.to_owned());
        }
    }

    /// Logs the local user `subject` in with `scopes`: the principal is
    /// `(the layer's issuer, subject)` (see [`SessionLayer::issuer`](crate::SessionLayer::issuer)).
    /// The session id is rotated when the response is saved (fixation
    /// defence): a cookie set before login is never the one after it.
    ///
    /// When another principal was logged in on this session, its data
    /// (the CSRF secret included) does not carry over, but for the keys of
    /// [`SessionLayer::keep_on_login`](crate::SessionLayer::keep_on_login).
    pub fn login<I, S>(&self, subject: impl Into<String>, scopes: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let principal = Principal::new(self.0.sessions.issuer(), subject.into());
        self.login_as(principal, scopes);
    }

    /// Logs `principal` in: a user of another issuer (an OpenID provider's
    /// `(iss, sub)`), as [`login`](Session::login) does for local users.
    pub fn login_as<I, S>(&self, principal: Principal, scopes: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.login_from_provider(principal, None, scopes);
    }

    /// Logs `principal` in as [`login_as`](Session::login_as) does, and
    /// records the identity provider's session the login came from (an
    /// OpenID provider's `sid`): the store indexes it, so the provider's
    /// back-channel logout of that session ends this one
    /// ([`Sessions::end_provider_session`]).
    pub fn login_from_provider<I, S>(&self, principal: Principal, provider_session: Option<String>, scopes: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.state().pending = Pending::Login(Box::new(Login {
            principal,
            scopes: scopes.into_iter().map(Into::into).collect(),
            provider_session,
        }));
    }

    /// Whether the request carried the cookie of a live session (one the
    /// store knew and that had not expired): the ambient credential
    /// `CsrfLayer`'s token rule protects.
    pub fn is_live(&self) -> bool {
        self.state().id.is_some()
    }

    /// Whether saving this response will keep a stored session: a live one
    /// (not logged out), or a new one a login or a write creates. Layers
    /// that keep state for anonymous visitors elsewhere (`CsrfLayer`'s
    /// pre-session secret) move it into the session when this turns true.
    pub fn will_be_stored(&self) -> bool {
        let state = self.state();
        match state.pending {
            Pending::Logout => false,
            Pending::Login(_) | Pending::Cycle => true,
            Pending::Nothing => state.id.is_some() || !state.changes.set.is_empty(),
        }
    }

    /// Ends the session: the record is deleted and the cookie cleared. A
    /// slower request of the same session that finishes later cannot bring
    /// it back.
    pub fn logout(&self) {
        let mut state = self.state();
        state.pending = Pending::Logout;
        state.changes = Changes::default();
    }

    /// Gives the session a new id, keeping its data (call on a privilege
    /// change). Requests in flight with the old id keep working for the
    /// layer's rotation grace.
    pub fn cycle_id(&self) {
        let mut state = self.state();
        if state.pending == Pending::Nothing {
            state.pending = Pending::Cycle;
        }
    }

    /// The logged-in subject, if any (as of the start of the request, or
    /// of a `login` in it). Unique only within its issuer: key per-user
    /// data by [`principal`](Session::principal).
    pub fn subject(&self) -> Option<String> {
        self.principal().map(|principal| principal.subject().to_owned())
    }

    /// Who is logged in, if anyone, as `(issuer, subject)`.
    pub fn principal(&self) -> Option<Principal> {
        let state = self.state();
        match &state.pending {
            Pending::Login(login) => Some(login.principal.clone()),
            Pending::Logout => None,
            _ => state.record.as_ref().and_then(|r| r.principal.clone()),
        }
    }

    /// The principal the stored session belongs to (not a pending login).
    fn stored_principal(&self) -> Option<Principal> {
        self.state().record.as_ref().and_then(|r| r.principal.clone())
    }

    /// The short public handle of this session (see [`SessionInfo::handle`]).
    pub fn handle(&self) -> Option<String> {
        self.state().key.map(|k| k.handle())
    }

    /// The sessions of the logged-in principal ("my devices"), oldest first.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let current = self.state().key;
        let Some(principal) = self.stored_principal() else {
            return Ok(Vec::new());
        };
        let mut sessions = self.0.sessions.list(&principal).await?;
        for info in &mut sessions {
            info.current = current.is_some_and(|k| k.handle() == info.handle);
        }
        Ok(sessions)
    }

    /// Ends another session of the same principal, by handle. Returns
    /// whether there was one.
    pub async fn end(&self, handle: &str) -> Result<bool, StoreError> {
        let Some(principal) = self.stored_principal() else {
            return Ok(false);
        };
        self.0.sessions.end(&principal, handle).await
    }

    /// "Log out everywhere": ends every session of the principal, this one
    /// included. Returns how many ended.
    pub async fn end_all(&self) -> Result<usize, StoreError> {
        let Some(principal) = self.stored_principal() else {
            return Ok(0);
        };
        let ended = self.0.sessions.end_all(&principal).await?;
        self.logout();
        Ok(ended)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("id", &state.id)
            .field("principal", &state.record.as_ref().and_then(|r| r.principal.as_ref()))
            .field("pending", &state.pending)
            .finish_non_exhaustive()
    }
}

/// One session of a subject, as "list my devices" shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// A short public handle (not the id, not the store key).
    pub handle: String,
    /// When the session was created (at login).
    pub created: SystemTime,
    /// When it was last seen (to the idle-refresh granularity).
    pub last_seen: SystemTime,
    /// The `User-Agent` that created it.
    pub user_agent: Option<String>,
    /// Whether it is the session of the request that asked.
    pub current: bool,
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A principal's sessions, outside any request: an admin ending a user's
/// sessions, a password change, the revocation layer.
///
/// Keyed by [`Principal`] `(issuer, subject)`, never by a bare subject:
/// a token of another issuer with `sub: "alice"` is not the local alice.
///
/// ```
/// use std::sync::Arc;
/// use portcullis_session::{MemoryStore, Sessions};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), portcullis_session::StoreError> {
/// let sessions = Sessions::new(Arc::new(MemoryStore::new()));
/// let alice = sessions.local("alice");
/// assert_eq!(alice.issuer(), portcullis_session::DEFAULT_ISSUER);
/// assert_eq!(sessions.end_all(&alice).await?, 0);
/// assert!(sessions.list(&alice).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Sessions(Arc<SessionsShared>);

/// One allocation behind every clone: a request clones the handle more
/// than once, and each clone is one reference count, not three.
#[derive(Clone, Debug)]
struct SessionsShared {
    store: Arc<dyn SessionStore>,
    issuer: Arc<str>,
    /// Sessions this handle's layers moved from a previous secret to the
    /// current one (shared by the copies `set_issuer` makes).
    rekeyed: Arc<std::sync::atomic::AtomicU64>,
}

/// The issuer of local session logins unless
/// [`SessionLayer::issuer`](crate::SessionLayer::issuer) names one.
pub const DEFAULT_ISSUER: &str = "local";

impl Sessions {
    /// Over `store`, for local users of [`DEFAULT_ISSUER`].
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self(Arc::new(SessionsShared {
            store,
            issuer: DEFAULT_ISSUER.into(),
            rekeyed: Arc::default(),
        }))
    }

    /// How many sessions the layer moved from a previous secret of its
    /// keyring to the current one ([`SessionLayer::secrets`](crate::SessionLayer::secrets)),
    /// since this process started: the metric to watch during a secret
    /// rotation (it levels off once the active sessions have moved).
    pub fn rekeyed_sessions(&self) -> u64 {
        self.0.rekeyed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_rekeyed(&self) {
        self.0.rekeyed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn set_issuer(&mut self, issuer: Arc<str>) {
        Arc::make_mut(&mut self.0).issuer = issuer;
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.0.store
    }

    /// The issuer [`Session::login`] logs local users in under.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The principal of the local user `subject`.
    pub fn local(&self, subject: impl Into<Arc<str>>) -> Principal {
        Principal::new(self.0.issuer.clone(), subject)
    }

    /// The live sessions of `principal`, oldest first.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<SessionInfo>, StoreError> {
        Ok(self
            .0
            .store
            .sessions_of(principal)
            .await?
            .into_iter()
            .map(|(key, record)| SessionInfo {
                handle: key.handle(),
                created: at(record.created_ms),
                last_seen: at(record.last_seen_ms),
                user_agent: record.user_agent,
                current: false,
            })
            .collect())
    }

    /// Ends the session of `principal` with `handle`.
    pub async fn end(&self, principal: &Principal, handle: &str) -> Result<bool, StoreError> {
        let sessions = self.0.store.sessions_of(principal).await?;
        match sessions.into_iter().find(|(key, _)| key.handle() == handle) {
            Some((key, _)) => {
                self.0.store.delete(&key).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Ends every session of `principal`.
    pub async fn end_all(&self, principal: &Principal) -> Result<usize, StoreError> {
        self.0.store.delete_all_of(principal).await
    }

    /// Ends every session logged in through the identity provider's
    /// session `session` of `issuer` (see
    /// [`Session::login_from_provider`]), on every node that shares the
    /// store; returns how many there were. The principal's other sessions
    /// (another device, another provider session) stay.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use portcullis_core::Principal;
    /// use portcullis_session::{MemoryStore, SessionKey, SessionRecord, SessionStore, Sessions};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), portcullis_session::StoreError> {
    /// let store = Arc::new(MemoryStore::new());
    /// let alice = Principal::new("https://idp.example", "alice");
    /// for (n, sid) in [(1u8, "s1"), (2, "s2")] {
    ///     let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600));
    ///     record.principal = Some(alice.clone());
    ///     record.provider_session = Some(sid.into());
    ///     // A logged-in session's key starts with its principal's route.
    ///     let hex = format!("{}{}", portcullis_core::Route::of(&alice), format!("{n:02x}").repeat(30));
    ///     let key = SessionKey::from_hex(&hex).expect("64 hex digits");
    ///     store.create(&key, &record, Duration::from_secs(60)).await?;
    /// }
    /// let sessions = Sessions::new(store);
    /// assert_eq!(sessions.end_provider_session("https://idp.example", "s1").await?, 1);
    /// assert_eq!(sessions.list(&alice).await?.len(), 1, "the session of s2 stays");
    /// # Ok(()) }
    /// ```
    pub async fn end_provider_session(&self, issuer: &str, session: &str) -> Result<usize, StoreError> {
        self.0.store.delete_provider_session(issuer, session).await
    }
}
