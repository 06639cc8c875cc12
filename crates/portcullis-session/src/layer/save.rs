//! What happens around the inner call: the identity a record yields, and
//! saving what the request changed, once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Response};
use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::{AuthMethod, Identity, Rejection, RequestContext, ResponseBody, Route, SharedResponder};

use super::Config;
use super::cookie::{removal_cookie, session_cookie};
use crate::LAYER;
use crate::handle::{Pending, State};
use crate::id::SessionId;
use crate::store::{Changes, SessionRecord, StoreError, Touch, millis};
use crate::{SessionKey, Sessions};

pub(super) fn identity_of(record: &SessionRecord, key: Option<&SessionKey>) -> Option<Identity> {
    let principal = record.principal.as_ref()?;
    let issued_at = SystemTime::UNIX_EPOCH + Duration::from_millis(record.created_ms);
    let expires_at = SystemTime::UNIX_EPOCH + Duration::from_millis(record.deadline_ms());
    let build = || {
        // The public handle (a prefix of the keyed hash): safe to log.
        let fingerprint = key.map(SessionKey::handle).unwrap_or_default();
        Identity::for_principal(principal.clone(), AuthMethod::session(fingerprint))
            .scopes(record.scopes.iter().cloned())
            .issued_at(issued_at)
            .expires_at(expires_at)
            .build()
    };
    let Some(key) = key else {
        return Some(build());
    };
    // A shared, unchanged record (an in-process store, the local cache)
    // yields the identity it yielded before: one reference count, not a
    // build with its allocations. Checked against the record every time.
    let (memo_key, identity) = record.identity.get_or_init(*key, build);
    let current = memo_key == key
        && identity.principal() == principal
        && identity.scopes() == record.scopes.as_slice()
        && identity.issued_at() == Some(issued_at)
        && identity.expires_at() == Some(expires_at);
    Some(if current { identity.clone() } else { build() })
}

pub(super) fn render_unavailable<R>(
    responder: &SharedResponder,
    context: &RequestContext<'_>,
    error: &StoreError,
) -> Response<ResponseBody<R>> {
    Decision::new(LAYER, Outcome::Unavailable)
        .reason(&error.to_string())
        .record();
    let rejection = Rejection::unavailable(LAYER, "session store unavailable");
    responder.respond(&rejection, context).map(ResponseBody::full)
}

/// What saving a request takes, decided without a store call.
pub(super) enum Plan {
    /// Nothing to write: send this `Set-Cookie`, if any (the common
    /// read-only request).
    Done(Option<String>),
    /// Only per-key changes (and perhaps an idle refresh) to an existing
    /// session: one small store call.
    Update { key: SessionKey, changes: Changes },
    /// A login, logout, rotation or new session, or an expired record to
    /// delete: the full [`save`] of the session's state.
    Full,
}

/// The one decision of what saving takes. `expired` is a record found
/// expired on the way in, deleted on the way out. Looks at the state in
/// place (it is moved only for a full save); an update takes its changes.
pub(super) fn plan(state: &mut State, config: &Config, now: SystemTime, clear_cookie: bool, expired: bool) -> Plan {
    if state.pending != Pending::Nothing || expired {
        return Plan::Full;
    }
    match (state.key, &state.record) {
        (Some(key), Some(record)) => {
            let mut changes = std::mem::take(&mut state.changes);
            if refresh_due(record, config, now) {
                changes.touch = Some(touch(record, config, now));
            }
            if changes.is_empty() {
                Plan::Done(None)
            } else {
                // The request lets go of the record first, so an in-process
                // store changes its own in place: a shared one is copied on
                // write, and loses the identity memoised on it.
                state.record = None;
                Plan::Update { key, changes }
            }
        }
        _ if state.changes.set.is_empty() => Plan::Done(clear_cookie.then(|| removal_cookie(config))),
        _ => Plan::Full,
    }
}

/// Saves what the request changed, once. Returns the `Set-Cookie` value to
/// send, if any.
pub(super) async fn save(
    sessions: Sessions,
    config: std::sync::Arc<Config>,
    mut state: State,
    now: SystemTime,
    user_agent: Option<HeaderValue>,
    clear_cookie: bool,
    expired: Option<SessionKey>,
) -> Result<Option<String>, StoreError> {
    if let Some(expired) = expired {
        // Best effort: the store's own expiry removes it anyway.
        let _ = sessions.store().delete(&expired).await;
    }
    let user_agent = user_agent
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect::<String>());
    let (config, sessions, state) = (&*config, &sessions, &mut state);
    let store = sessions.store();
    let had_cookie = state.key.is_some() || clear_cookie;
    match std::mem::take(&mut state.pending) {
        Pending::Logout => {
            if let Some(key) = &state.key {
                store.delete(key).await?;
                if let Some(principal) = state.record.as_ref().and_then(|r| r.principal.as_ref()) {
                    Decision::new(LAYER, Outcome::Accepted)
                        .reason("logout")
                        .subject(principal.subject())
                        .record();
                }
            }
            Ok(had_cookie.then(|| removal_cookie(config)))
        }
        pending @ (Pending::Login(_) | Pending::Cycle) => {
            let previous = state.record.as_ref().and_then(|r| r.principal.clone());
            let existed = state.record.is_some();
            let mut record = match (&pending, state.record.take()) {
                // A login starts the absolute timeout anew.
                (Pending::Login(login), Some(old)) => {
                    let old = Arc::unwrap_or_clone(old);
                    let mut fresh = SessionRecord::new(now, config.idle, config.absolute);
                    fresh.data = old.data;
                    if previous.as_ref().is_some_and(|previous| *previous != login.principal) {
                        // Another person's data (and CSRF secret) never
                        // carries over; only what the app asked to keep.
                        fresh
                            .data
                            .retain(|key, _| config.keep_on_login.iter().any(|kept| kept == key));
                    }
                    fresh.user_agent = old.user_agent.or(user_agent);
                    fresh
                }
                (_, Some(old)) => Arc::unwrap_or_clone(old),
                (_, None) => {
                    let mut fresh = SessionRecord::new(now, config.idle, config.absolute);
                    fresh.user_agent = user_agent;
                    fresh
                }
            };
            apply(&mut record.data, &state.changes);
            if let Pending::Login(login) = &pending {
                record.principal = Some(login.principal.clone());
                record.scopes = login.scopes.clone();
                record.provider_session = login.provider_session.clone();
            }
            refresh(&mut record, config, now);
            // A logged-in session lives on its principal's shard; an
            // anonymous one keeps the shard it was on (one atomic step).
            let route = match (&record.principal, &state.key) {
                (Some(principal), _) => Route::of(principal),
                (None, Some(old)) => old.route(),
                (None, None) => Route::random(),
            };
            let id = SessionId::generate(route);
            let key = SessionKey::derive(config.current_hasher(), &id);
            let ttl = record.ttl(now);
            match &state.key {
                Some(old) => {
                    // Grace only when the same subject stays logged in: an
                    // old id must never resolve to a freshly logged-in
                    // session (fixation).
                    let same_subject = existed && previous.is_some() && previous == record.principal;
                    let grace = same_subject.then_some(config.rotation_grace);
                    if !store.rotate(old, &key, &record, ttl, grace).await? {
                        // Ended meanwhile: a logout is final. A login is a
                        // fresh authentication and starts a fresh session,
                        // with nothing of the ended one; anything else ends.
                        let Pending::Login(login) = &pending else {
                            return Ok(Some(removal_cookie(config)));
                        };
                        let mut fresh = SessionRecord::new(now, config.idle, config.absolute);
                        fresh.user_agent = record.user_agent.take();
                        fresh.principal = Some(login.principal.clone());
                        fresh.scopes = login.scopes.clone();
                        fresh.provider_session = login.provider_session.clone();
                        store.create(&key, &fresh, fresh.ttl(now)).await?;
                    }
                }
                None => store.create(&key, &record, ttl).await?,
            }
            if let (Pending::Login(login), Some(max)) = (&pending, config.max_per_subject) {
                let principal = &login.principal;
                Decision::new(LAYER, Outcome::Accepted)
                    .reason("login")
                    .subject(principal.subject())
                    .credential(id.fingerprint())
                    .record();
                let live = store.sessions_of(principal).await?;
                let excess = live.len().saturating_sub(max);
                for (old_key, _) in live.iter().filter(|(k, _)| *k != key).take(excess) {
                    store.delete(old_key).await?;
                }
            } else if let Pending::Login(login) = &pending {
                Decision::new(LAYER, Outcome::Accepted)
                    .reason("login")
                    .subject(login.principal.subject())
                    .credential(id.fingerprint())
                    .record();
            }
            Ok(Some(session_cookie(config, &id)))
        }
        // `plan` sends an existing session's changes as `Plan::Update`:
        // here there is no stored session (none, or one found expired).
        Pending::Nothing => {
            if !state.changes.set.is_empty() {
                let mut record = SessionRecord::new(now, config.idle, config.absolute);
                record.user_agent = user_agent;
                apply(&mut record.data, &state.changes);
                let id = SessionId::generate(Route::random());
                let key = SessionKey::derive(config.current_hasher(), &id);
                store.create(&key, &record, record.ttl(now)).await?;
                return Ok(Some(session_cookie(config, &id)));
            }
            Ok(clear_cookie.then(|| removal_cookie(config)))
        }
    }
}

fn apply(data: &mut std::collections::BTreeMap<String, String>, changes: &Changes) {
    for (k, v) in &changes.set {
        data.insert(k.clone(), v.clone());
    }
    for k in &changes.removed {
        data.remove(k);
    }
}

/// After an update of an existing session: `still_there` is false when it
/// ended meanwhile (a logout elsewhere), and then it is never recreated —
/// the client's cookie is removed.
pub(super) fn after_update(still_there: bool, config: &Config) -> Option<String> {
    (!still_there).then(|| removal_cookie(config))
}

/// The idle deadline is refreshed only once less than `refresh_fraction`
/// of the idle window remains used… i.e. once more than half of it has
/// passed by default: one cheap write per half-window, not one per request.
pub(super) fn refresh_due(record: &SessionRecord, config: &Config, now: SystemTime) -> bool {
    let idle_ms = u64::try_from(config.idle.as_millis()).unwrap_or(u64::MAX);
    let remaining = record.idle_deadline_ms.saturating_sub(millis(now));
    (remaining as f64) < idle_ms as f64 * config.refresh_fraction
        && record.idle_deadline_ms < record.absolute_deadline_ms
}

/// The refreshed deadlines of `record` at `now`: the idle deadline moves
/// to a full window ahead (never past the absolute one).
fn touch(record: &SessionRecord, config: &Config, now: SystemTime) -> Touch {
    let now_ms = millis(now);
    let idle_ms = u64::try_from(config.idle.as_millis()).unwrap_or(u64::MAX);
    let idle_deadline_ms = now_ms.saturating_add(idle_ms).min(record.absolute_deadline_ms);
    Touch {
        idle_deadline_ms,
        last_seen_ms: now_ms,
        ttl: Duration::from_millis(idle_deadline_ms.saturating_sub(now_ms)),
    }
}

fn refresh(record: &mut SessionRecord, config: &Config, now: SystemTime) {
    let touch = touch(record, config, now);
    record.idle_deadline_ms = touch.idle_deadline_ms;
    record.last_seen_ms = touch.last_seen_ms;
}

#[cfg(test)]
mod tests {
    use portcullis_core::{AuthMethod, Principal};

    use super::*;

    fn key(n: u8) -> SessionKey {
        SessionKey::from_hex(&format!("{n:02x}").repeat(32)).expect("hex")
    }

    #[test]
    fn the_remembered_identity_never_outlives_what_the_record_says() {
        let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(60), Duration::from_secs(600));
        record.principal = Some(Principal::new("local", "alice"));
        record.scopes = vec!["notes:read".into()];
        let first = identity_of(&record, Some(&key(1))).expect("identity");
        let again = identity_of(&record, Some(&key(1))).expect("identity");
        assert_eq!(first.scopes(), again.scopes());
        // Changed in place: the memo is not believed.
        record.scopes = vec!["notes:write".into()];
        let changed = identity_of(&record, Some(&key(1))).expect("identity");
        assert_eq!(changed.scopes(), ["notes:write".to_owned()]);
        record.principal = Some(Principal::new("local", "bob"));
        assert_eq!(identity_of(&record, Some(&key(1))).expect("identity").subject(), "bob");
        record.idle_deadline_ms += 1_000;
        record.absolute_deadline_ms += 1_000;
        let later = identity_of(&record, Some(&key(1))).expect("identity");
        assert_eq!(
            later.expires_at(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(record.deadline_ms()))
        );
        // Read under another key (a grace alias): that key's fingerprint.
        let other = identity_of(&record, Some(&key(2))).expect("identity");
        assert_eq!(
            other.method(),
            &AuthMethod::session(key(2).handle()),
            "the fingerprint of the key it was read by"
        );
    }
}
