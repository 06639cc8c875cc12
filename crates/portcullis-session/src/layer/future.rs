//! The response future of [`SessionService`](super::SessionService): a
//! small state machine (load → call → save) that boxes only the store
//! calls, and skips the save step entirely when nothing needs writing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::header::{ACCEPT, CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use portcullis_core::audit::{self, Decision, Outcome};
use portcullis_core::{
    AuthenticatorRan, DefaultResponder, Protocol, RequestContext, ResponseBody, SharedResponder, StackResponder,
};
use tower_service::Service;

use super::cookie::find_cookie;
use super::save::{Plan, after_update, identity_of, plan, render_unavailable, save};
use super::{Config, SessionLayer};
use crate::handle::Live;
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
        // Inline, not boxed: an allocation a request costs more than
        // moving these few words with the future (`bench/instructions`).
        context: RequestInfo,
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
    /// The request's `User-Agent`, as the raw header (turned into text
    /// only if a record is created): kept only when a save could record
    /// it (no live record, or one without).
    user_agent: Option<HeaderValue>,
    clear_cookie: bool,
    expired: Option<SessionKey>,
    late: LateContext,
}

/// What a 503 rendered after the request moved into the inner service (a
/// load that had to wait, a failed save) is rendered from: captured up
/// front, and only what the responder that will render it reads.
enum LateContext {
    /// [`DefaultResponder`] reads the protocol alone: nothing of the
    /// request is cloned on the path every request takes.
    Default(Protocol),
    /// A responder of the app's (the layer's own or the stack's) may read
    /// the method, the URI and the content negotiation. Boxed: the future
    /// that holds it is moved, and this is the rarer case.
    Custom(Box<CustomLate>),
}

struct CustomLate {
    responder: SharedResponder,
    method: Method,
    uri: Uri,
    /// `Content-Type` and `Accept`.
    headers: [Option<HeaderValue>; 2],
}

impl LateContext {
    fn of<B>(config: &Config, request: &Request<B>) -> Self {
        let stack = || {
            request
                .extensions()
                .get::<StackResponder>()
                .map(|stack| stack.0.clone())
        };
        match config.responder.clone().or_else(stack) {
            None => Self::Default(Protocol::of(request.headers())),
            Some(responder) => Self::Custom(Box::new(CustomLate {
                responder,
                method: request.method().clone(),
                uri: request.uri().clone(),
                headers: [CONTENT_TYPE, ACCEPT].map(|name| request.headers().get(name).cloned()),
            })),
        }
    }
}

impl RequestInfo {
    fn unavailable<R>(&self, error: &StoreError) -> Response<ResponseBody<R>> {
        match &self.late {
            LateContext::Default(protocol) => {
                let (method, uri, headers) = (Method::default(), Uri::default(), HeaderMap::new());
                let mut context = RequestContext::new(&method, &uri, &headers);
                context.protocol = *protocol;
                render_unavailable(&DefaultResponder::shared(), &context, error)
            }
            LateContext::Custom(late) => {
                let CustomLate {
                    responder,
                    method,
                    uri,
                    headers: values,
                } = &**late;
                let mut headers = HeaderMap::new();
                for (name, value) in [CONTENT_TYPE, ACCEPT].into_iter().zip(values) {
                    if let Some(value) = value {
                        headers.insert(name, value.clone());
                    }
                }
                render_unavailable(responder, &RequestContext::new(method, uri, &headers), error)
            }
        }
    }
}

impl<S, B, F, ResBody> ResponseFuture<S, B, F, ResBody>
where
    S: Service<Request<B>, Response = Response<ResBody>, Future = F> + Clone,
{
    /// Starts `request` on `inner`, the service polled ready. A load the
    /// store answers at once calls it at once; only a load that must wait
    /// takes it into the future (leaving a fresh clone behind:
    /// tower-service's rule), so the common case clones nothing of the
    /// inner stack.
    ///
    /// The request stays in this frame, changed in place, until the one
    /// call that moves it into `inner`: each move of a request (a few
    /// hundred bytes) and of the inner future is a copy on every request.
    pub(super) fn start(inner: &mut S, layer: &SessionLayer, mut request: Request<B>) -> Self {
        let SessionLayer { sessions, config } = layer;
        let headers = request.headers();
        let cookie = find_cookie(headers, &config.cookie_name)
            .map(|id| id.map(|id| (SessionKey::derive(config.current_hasher(), &id), id)));
        let mut context = RequestInfo {
            sessions: sessions.clone(),
            config: config.clone(),
            now: config.clock.now(),
            session: None,
            user_agent: None,
            clear_cookie: false,
            expired: None,
            late: LateContext::of(config, &request),
        };
        let live = match cookie {
            Some(Some((key, id))) => match context.sessions.store().load_now(&key) {
                // An in-process store answers at once: no future to box or
                // poll (unless a miss must try the previous secrets).
                Some(result) if !matches!(result, Ok(None)) || context.config.hashers.len() == 1 => {
                    match loaded(&mut context, result.map(|record| (record, key)), id) {
                        Ok(live) => live,
                        Err(error) => {
                            return Self {
                                state: State::Unavailable { error: Some(error) },
                                context,
                            };
                        }
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
                    return Self {
                        state: State::Loading {
                            load,
                            inner: Some(std::mem::replace(inner, clone)),
                            request: Some(request),
                            id: Some(id),
                        },
                        context,
                    };
                }
            },
            Some(None) => {
                Decision::new(LAYER, Outcome::Rejected)
                    .reason("malformed session cookie")
                    .record();
                context.clear_cookie = true;
                None
            }
            None => None,
        };
        attach(&mut context, &mut request, live);
        Self {
            state: State::Calling {
                future: inner.call(request),
            },
            context,
        }
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

/// The live session a load's answer gives, if any; a store error is the
/// caller's to render (a 503, never a fresh empty session).
fn loaded(
    context: &mut RequestInfo,
    result: Result<Found, StoreError>,
    id: SessionId,
) -> Result<Option<Live>, StoreError> {
    let (record, key) = result?;
    match record {
        Some(record) if !record.expired_at(context.now) => return Ok(Some(Live { id, key, record })),
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
    Ok(None)
}

/// Puts the session (and its identity) into the request.
fn attach<B>(context: &mut RequestInfo, request: &mut Request<B>, live: Option<Live>) {
    if live.as_ref().is_none_or(|live| live.record.user_agent.is_none()) {
        context.user_agent = request.headers().get(USER_AGENT).cloned();
    }
    let extensions = request.extensions_mut();
    match live
        .as_ref()
        .and_then(|live| Some((identity_of(&live.record, Some(&live.key))?, live)))
    {
        Some((identity, live)) => {
            if audit::enabled() {
                Decision::new(LAYER, Outcome::Accepted)
                    .subject(identity.subject())
                    .credential(live.id.fingerprint())
                    .record();
            }
            extensions.insert(identity);
        }
        None => {
            extensions.insert(AuthenticatorRan);
        }
    }
    let session = Session::new(context.sessions.clone(), live);
    extensions.insert(session.clone());
    context.session = Some(session);
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
                    let (Some(mut inner), Some(mut request), Some(id)) = (inner.take(), request.take(), id.take())
                    else {
                        panic!("{POLLED_AFTER_COMPLETION}");
                    };
                    let live = match loaded(context, result, id) {
                        Ok(live) => live,
                        Err(error) => {
                            let response = context.unavailable(&error);
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                    };
                    attach(context, &mut request, live);
                    self.as_mut().project().state.set(State::Calling {
                        future: inner.call(request),
                    });
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
                    let plan = plan(
                        &mut session.state(),
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
                        Plan::Full => Box::pin(save(
                            context.sessions.clone(),
                            context.config.clone(),
                            std::mem::take(&mut *session.state()),
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
