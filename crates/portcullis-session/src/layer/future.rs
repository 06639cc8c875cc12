//! The response future of [`SessionService`](super::SessionService): a
//! small state machine (load → call → save) that boxes only the store
//! calls, and skips the save step entirely when nothing needs writing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use portcullis_core::audit::{self, Decision, Outcome};
use portcullis_core::{
    AuthenticatorRan, DefaultResponder, RequestContext, ResponseBody, SharedResponder, StackResponder,
};
use tower_service::Service;

use super::Config;
use super::save::{Plan, after_update, identity_of, plan, render_unavailable, save};
use crate::handle::State as SessionState;
use crate::id::SessionId;
use crate::store::{SessionRecord, StoreError};
use crate::{LAYER, Session, SessionKey, Sessions};

/// A load's answer, and the key the session is under now (the current
/// secret's, unless it was found only under a previous one and could not
/// be moved).
type Found = (Option<Arc<SessionRecord>>, SessionKey);
type LoadFuture = Pin<Box<dyn Future<Output = Result<Found, StoreError>> + Send>>;
type SaveFuture = Pin<Box<dyn Future<Output = Result<Option<String>, StoreError>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`](super::SessionService).
    pub struct ResponseFuture<S, B, F, ResBody> {
        #[pin]
        state: State<S, B, F, ResBody>,
        context: Box<RequestInfo>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F, ResBody> {
        Loading {
            load: LoadFuture,
            inner: Option<S>,
            request: Option<Request<B>>,
            id: Option<SessionId>,
        },
        Calling { #[pin] future: F },
        Saving { save: SaveFuture, response: Option<Response<ResBody>> },
        Unavailable { error: Option<StoreError> },
        Done,
    }
}

/// What the future keeps of the layer and the request between its steps.
struct RequestInfo {
    sessions: Sessions,
    config: Arc<Config>,
    now: SystemTime,
    session: Option<Session>,
    user_agent: Option<HeaderValue>,
    clear_cookie: bool,
    expired: Option<SessionKey>,
    method: Method,
    uri: Uri,
    /// `Content-Type` and `Accept` of the request.
    headers: [Option<HeaderValue>; 2],
    /// The stack's responder ([`portcullis_core::ResponderLayer`]), kept
    /// only when the layer has none of its own.
    stack_responder: Option<SharedResponder>,
}

impl RequestInfo {
    fn unavailable<R>(&self, error: &StoreError) -> Response<ResponseBody<R>> {
        let mut headers = HeaderMap::new();
        for (name, value) in [http::header::CONTENT_TYPE, http::header::ACCEPT]
            .into_iter()
            .zip(&self.headers)
        {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
        let context = RequestContext::new(&self.method, &self.uri, &headers);
        let responder = match self.config.responder.as_ref().or(self.stack_responder.as_ref()) {
            Some(responder) => responder.clone(),
            None => DefaultResponder::shared(),
        };
        render_unavailable(&responder, &context, error)
    }
}

/// What the service read off the layer and the request before the call.
pub(super) struct Incoming {
    pub(super) sessions: Sessions,
    pub(super) config: Arc<Config>,
    pub(super) now: SystemTime,
    /// `None`: no session cookie; `Some(None)`: one we could not have
    /// issued; else the id and its keyed hash.
    pub(super) cookie: Option<Option<(SessionKey, SessionId)>>,
    pub(super) user_agent: Option<HeaderValue>,
    /// What a responder needs to render a late 503 (the request itself is
    /// gone by then): its `Content-Type` and `Accept`.
    pub(super) context_headers: [Option<HeaderValue>; 2],
}

impl<S, B, F, ResBody> ResponseFuture<S, B, F, ResBody>
where
    S: Service<Request<B>, Response = Response<ResBody>, Future = F> + Clone,
{
    /// Starts on `inner`, the service polled ready. A load the store
    /// answers at once calls it at once; only a load that must wait takes
    /// it into the future (leaving a fresh clone behind: tower-service's
    /// rule), so the common case clones nothing of the inner stack.
    pub(super) fn start(inner: &mut S, request: Request<B>, incoming: Incoming) -> Self {
        let Incoming {
            sessions,
            config,
            now,
            cookie,
            user_agent,
            context_headers: headers,
        } = incoming;
        let has_own_responder = config.responder.is_some();
        let mut context = Box::new(RequestInfo {
            sessions,
            config,
            now,
            session: None,
            user_agent,
            clear_cookie: false,
            expired: None,
            method: request.method().clone(),
            uri: request.uri().clone(),
            stack_responder: if has_own_responder {
                None
            } else {
                request
                    .extensions()
                    .get::<StackResponder>()
                    .map(|stack| stack.0.clone())
            },
            headers,
        });
        let state = match cookie {
            Some(Some((key, id))) => match context.sessions.store().load_now(&key) {
                // An in-process store answers at once: no future to box or
                // poll (unless a miss must try the previous secrets).
                Some(result) if !matches!(result, Ok(None)) || context.config.hashers.len() == 1 => {
                    match loaded(&mut context, result.map(|record| (record, key)), id) {
                        Ok(state) => State::Calling {
                            future: call(&mut context, inner, request, state),
                        },
                        Err(error) => State::Unavailable { error: Some(error) },
                    }
                }
                answered => {
                    let sessions = context.sessions.clone();
                    let config = context.config.clone();
                    let load_id = id.clone();
                    let load: LoadFuture = Box::pin(async move {
                        let record = match answered {
                            Some(answer) => answer?,
                            None => sessions.store().load(&key).await?,
                        };
                        match record {
                            Some(record) => Ok((Some(record), key)),
                            None => find_under_previous(&sessions, &config, &load_id, key).await,
                        }
                    });
                    let clone = inner.clone();
                    State::Loading {
                        load,
                        inner: Some(std::mem::replace(inner, clone)),
                        request: Some(request),
                        id: Some(id),
                    }
                }
            },
            Some(None) => {
                Decision::new(LAYER, Outcome::Rejected)
                    .reason("malformed session cookie")
                    .record();
                context.clear_cookie = true;
                let future = call(&mut context, inner, request, SessionState::default());
                State::Calling { future }
            }
            None => {
                let future = call(&mut context, inner, request, SessionState::default());
                State::Calling { future }
            }
        };
        Self { state, context }
    }
}

/// A session missing under the current secret's key, looked for under
/// each previous secret's (newest first) and moved to the current key when
/// found there. Several requests may race: one moves it, the others find
/// it under the current key.
async fn find_under_previous(
    sessions: &Sessions,
    config: &Config,
    id: &SessionId,
    current: SessionKey,
) -> Result<Found, StoreError> {
    let store = sessions.store();
    for hasher in &config.hashers[1..] {
        let old = SessionKey::derive(hasher, id);
        let Some(record) = store.load(&old).await? else {
            continue;
        };
        if record.expired_at(config.clock.now()) {
            return Ok((Some(record), old));
        }
        let grace = (!config.rotation_grace.is_zero()).then_some(config.rotation_grace);
        if store.rekey(&old, &current, grace).await? {
            sessions.count_rekeyed();
            Decision::new(LAYER, Outcome::Accepted)
                .reason("session re-keyed to the current secret")
                .credential(id.fingerprint())
                .record();
            return Ok((Some(record), current));
        }
        // Another request moved it first; or `old` is only a grace alias
        // (then the session stays where it is until its next rotation).
        if let Some(record) = store.load(&current).await? {
            return Ok((Some(record), current));
        }
        return Ok((store.load(&old).await?, old));
    }
    Ok((None, current))
}

/// The session state a load's answer gives; a store error is the
/// caller's to render (a 503, never a fresh empty session).
fn loaded(
    context: &mut RequestInfo,
    result: Result<Found, StoreError>,
    id: SessionId,
) -> Result<SessionState, StoreError> {
    let mut state = SessionState::default();
    let (record, key) = result?;
    match record {
        Some(record) if !record.expired_at(context.now) => {
            state.id = Some(id);
            state.key = Some(key);
            state.record = Some(record);
        }
        Some(_) => {
            Decision::new(LAYER, Outcome::Rejected)
                .reason("session expired")
                .credential(id.fingerprint())
                .record();
            context.expired = Some(key);
            context.clear_cookie = true;
        }
        None => {
            // Never adopted: a later login gets a fresh id.
            Decision::new(LAYER, Outcome::Rejected)
                .reason("unknown session id")
                .credential(id.fingerprint())
                .record();
            context.clear_cookie = true;
        }
    }
    Ok(state)
}

/// Puts the session (and its identity) into the request and calls `inner`.
fn call<S, B>(context: &mut RequestInfo, inner: &mut S, mut request: Request<B>, state: SessionState) -> S::Future
where
    S: Service<Request<B>>,
{
    match state
        .record
        .as_ref()
        .and_then(|record| identity_of(record, state.key.as_ref()))
    {
        Some(identity) => {
            if audit::enabled() {
                let mut decision = Decision::new(LAYER, Outcome::Accepted).subject(identity.subject());
                if let Some(id) = &state.id {
                    decision = decision.credential(id.fingerprint());
                }
                decision.record();
            }
            request.extensions_mut().insert(identity);
        }
        None => {
            request.extensions_mut().insert(AuthenticatorRan);
        }
    }
    let session = Session::new(context.sessions.clone(), state);
    request.extensions_mut().insert(session.clone());
    context.session = Some(session);
    inner.call(request)
}

/// Each state's `Option`s are taken once, as it ends; only a poll after
/// completion (a caller's bug, as for any future) finds them empty.
const POLLED_AFTER_COMPLETION: &str = "session ResponseFuture polled after completion";

impl<S, B, F, ResBody, E> Future for ResponseFuture<S, B, F, ResBody>
where
    S: Service<Request<B>, Response = Response<ResBody>, Future = F, Error = E>,
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let context = this.context;
            match this.state.project() {
                StateProj::Loading {
                    load,
                    inner,
                    request,
                    id,
                } => {
                    let result = ready!(load.as_mut().poll(cx));
                    let (Some(mut inner), Some(request), Some(id)) = (inner.take(), request.take(), id.take()) else {
                        panic!("{POLLED_AFTER_COMPLETION}");
                    };
                    let state = match loaded(context, result, id) {
                        Ok(state) => state,
                        Err(error) => {
                            let response = context.unavailable(&error);
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                    };
                    let future = call(context, &mut inner, request, state);
                    self.as_mut().project().state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    // Nothing is saved after a server error.
                    let Some(session) = context.session.take() else {
                        return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                    };
                    if response.status().is_server_error() {
                        return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                    }
                    let state = std::mem::take(&mut *session.state());
                    let plan = plan(
                        state,
                        &context.config,
                        context.now,
                        context.clear_cookie,
                        context.expired.is_some(),
                    );
                    let save: SaveFuture = match plan {
                        Plan::Done(cookie) => return Poll::Ready(Ok(with_cookie(response, cookie))),
                        Plan::Update { key, changes } => {
                            if let Some(result) = context.sessions.store().update_now(&key, &changes) {
                                let output = match result {
                                    Ok(still_there) => {
                                        with_cookie(response, after_update(still_there, &context.config))
                                    }
                                    Err(error) => context.unavailable(&error),
                                };
                                return Poll::Ready(Ok(output));
                            }
                            let store = context.sessions.store().clone();
                            let config = context.config.clone();
                            Box::pin(async move {
                                let still_there = store.update(&key, &changes).await?;
                                Ok(after_update(still_there, &config))
                            })
                        }
                        Plan::Full(state) => Box::pin(save(
                            context.sessions.clone(),
                            context.config.clone(),
                            state,
                            context.now,
                            context.user_agent.take(),
                            context.clear_cookie,
                            context.expired.take(),
                        )),
                    };
                    self.as_mut().project().state.set(State::Saving {
                        save,
                        response: Some(response),
                    });
                }
                StateProj::Saving { save, response } => {
                    let result = ready!(save.as_mut().poll(cx));
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    let output = match result {
                        Ok(cookie) => with_cookie(response, cookie),
                        Err(error) => context.unavailable(&error),
                    };
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(Ok(output));
                }
                StateProj::Unavailable { error } => {
                    let response = context.unavailable(&error.take().expect(POLLED_AFTER_COMPLETION));
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("{POLLED_AFTER_COMPLETION}"),
            }
        }
    }
}

fn with_cookie<R>(response: Response<R>, cookie: Option<String>) -> Response<ResponseBody<R>> {
    let mut response = response.map(ResponseBody::inner);
    if let Some(cookie) = cookie
        && let Ok(value) = HeaderValue::try_from(cookie)
    {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

impl<S, B, F, ResBody> std::fmt::Debug for ResponseFuture<S, B, F, ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("session::ResponseFuture")
    }
}
