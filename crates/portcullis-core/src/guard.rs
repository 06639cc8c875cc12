//! One machine for every layer that checks a request before the inner
//! service: [`Guard`] is the decision, [`GuardService`] and [`GuardFuture`]
//! the plumbing.
//!
//! A guard looks at a request and either passes it on (possibly with a new
//! body type, and with something to add to the response), refuses it with
//! a [`Rejection`], or returns a pending check — a store lookup, a key
//! refetch, a form body read — that resolves to one of the two. The
//! service and future own, once for every layer:
//!
//! - `poll_ready` delegation to the inner service;
//! - the clone-and-replace rule: the inner service polled ready goes into
//!   the future of a pending check, a fresh clone stays behind (a request
//!   decided at once calls the inner service directly, with no clone);
//! - rendering every rejection through the [`Responder`](crate::Responder) the
//!   guard was given, the stack's ([`ResponderLayer`](crate::ResponderLayer)) or the default;
//! - what polling after completion does (it panics, as `async fn`s do: it
//!   is a caller's bug, not a request's).
//!
//! The model is tower-http's `AsyncRequireAuthorization`, with a
//! synchronous fast path: a decision made from the headers costs no
//! allocation and no boxed future.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{HeaderMap, Request, Response, StatusCode};
//! use portcullis_core::guard::{Check, Guard, GuardService, Resolved};
//! use portcullis_core::{Rejection, SharedResponder};
//! use tower::{ServiceExt, service_fn};
//!
//! /// Refuses requests without an `x-api-version` header.
//! #[derive(Clone)]
//! struct NeedsVersion;
//!
//! impl<B> Guard<B> for NeedsVersion {
//!     type Body = B;
//!     type Finish = ();
//!     type Pending = std::future::Pending<Resolved<B, ()>>;
//!
//!     fn check(&self, request: Request<B>) -> Check<B, B, (), Self::Pending> {
//!         if request.headers().contains_key("x-api-version") {
//!             Check::Pass(request, ())
//!         } else {
//!             Check::Reject(Rejection::forbidden("version", "x-api-version required"), request)
//!         }
//!     }
//!
//!     fn responder(&self) -> Option<&SharedResponder> {
//!         None // the stack's, or the default
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::from("ok"))) });
//! let service = GuardService::new(NeedsVersion, inner);
//! let response = service.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! let request = Request::builder().header("x-api-version", "2").body(()).unwrap();
//! assert_eq!(service.oneshot(request).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{Rejection, RequestContext, ResponseBody, SharedResponder, responder_for};

/// What a guard decided from the request as it arrived.
///
/// `B` is the body the guard received, `T` the body the inner service
/// receives, `A` what finishes the response, `P` the pending check.
#[derive(Debug)]
pub enum Check<B, T, A, P> {
    /// Call the inner service with this request; `A` finishes its response.
    Pass(Request<T>, A),
    /// Refuse the request with this rejection.
    Reject(Rejection, Request<B>),
    /// Decide once this future resolves.
    Pending(P),
}

/// What a pending check resolved to.
#[derive(Debug)]
pub enum Resolved<T, A> {
    /// Call the inner service with this request; `A` finishes its response.
    Pass(Request<T>, A),
    /// Refuse the request (described by its head) with this rejection.
    Reject(Rejection, Parts),
}

/// What a guard adds to the responses of the requests it decided.
pub trait Finish {
    /// Finishes the inner service's response to a request that passed.
    fn response(self, headers: &mut HeaderMap);

    /// Finishes a rejection's response. Nothing, unless a guard says so.
    fn rejection(_headers: &mut HeaderMap) {}
}

/// Nothing to add.
impl Finish for () {
    fn response(self, _headers: &mut HeaderMap) {}
}

/// A check a layer makes before the inner service: the decision alone.
/// [`GuardService`] does the rest.
pub trait Guard<B> {
    /// The request body the inner service receives (`B` unless the guard
    /// reads the body and hands on a replacement).
    type Body;
    /// What finishes the response of a request this guard decided.
    type Finish: Finish;
    /// A check that needs to wait (`std::future::Pending` for a guard that
    /// always decides at once).
    type Pending: Future<Output = Resolved<Self::Body, Self::Finish>>;

    /// Decides `request`, or returns the pending check that will.
    fn check(&self, request: Request<B>) -> Check<B, Self::Body, Self::Finish, Self::Pending>;

    /// The responder this guard was given, if any: it renders the guard's
    /// rejections instead of the stack's ([`ResponderLayer`](crate::ResponderLayer))
    /// or the default.
    fn responder(&self) -> Option<&SharedResponder>;
}

/// The service of every guard layer: `guard` decides, `inner` answers
/// what passes.
#[derive(Clone, Debug)]
pub struct GuardService<G, S> {
    guard: G,
    inner: S,
}

impl<G, S> GuardService<G, S> {
    /// `inner`, guarded by `guard`.
    pub fn new(guard: G, inner: S) -> Self {
        Self { guard, inner }
    }

    /// The guard.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn render<A: Finish>(
    own: Option<&SharedResponder>,
    extensions: &http::Extensions,
    rejection: &Rejection,
    context: &RequestContext<'_>,
) -> Response<Bytes> {
    let mut response = responder_for(own, extensions).respond(rejection, context);
    A::rejection(response.headers_mut());
    response
}

impl<G, S, B, ResBody> Service<Request<B>> for GuardService<G, S>
where
    G: Guard<B>,
    S: Service<Request<G::Body>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = GuardFuture<G::Pending, S::Future, S, G::Finish>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.guard.check(request) {
            Check::Pass(request, finish) => GuardFuture::called(self.inner.call(request), finish),
            Check::Reject(rejection, request) => GuardFuture::rejected(render::<G::Finish>(
                self.guard.responder(),
                request.extensions(),
                &rejection,
                &RequestContext::of(&request),
            )),
            Check::Pending(check) => {
                // The clone polled ready goes into the future; a fresh one
                // stays (tower-service's rule).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                GuardFuture::pending(check, inner, self.guard.responder().cloned())
            }
        }
    }
}

pin_project! {
    /// The response future of [`GuardService`]: a pending check, then the
    /// inner service's future (`F`) or a rejection.
    pub struct GuardFuture<P, F, S, A> {
        #[pin]
        state: State<P, F, A>,
        // Kept outside the state: only a pending check holds one, and it
        // is taken exactly once, when the check resolves.
        waiting: Option<(S, Option<SharedResponder>)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<P, F, A> {
        Pending { #[pin] check: P },
        Called { #[pin] future: F, finish: Option<A> },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<P, F, S, A> GuardFuture<P, F, S, A> {
    fn called(future: F, finish: A) -> Self {
        Self {
            state: State::Called {
                future,
                finish: Some(finish),
            },
            waiting: None,
        }
    }

    fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            waiting: None,
        }
    }

    fn pending(check: P, inner: S, responder: Option<SharedResponder>) -> Self {
        Self {
            state: State::Pending { check },
            waiting: Some((inner, responder)),
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "GuardFuture polled after completion";

impl<P, F, S, A, T, ResBody, E> Future for GuardFuture<P, F, S, A>
where
    P: Future<Output = Resolved<T, A>>,
    S: Service<Request<T>, Response = Response<ResBody>, Future = F, Error = E>,
    F: Future<Output = Result<Response<ResBody>, E>>,
    A: Finish,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Pending { check } => {
                    let resolved = ready!(check.poll(cx));
                    let (mut inner, responder) = this.waiting.take().expect(POLLED_AFTER_COMPLETION);
                    let next = match resolved {
                        Resolved::Pass(request, finish) => State::Called {
                            future: inner.call(request),
                            finish: Some(finish),
                        },
                        Resolved::Reject(rejection, parts) => {
                            let context = RequestContext::new(&parts.method, &parts.uri, &parts.headers);
                            State::Rejected {
                                response: Some(render::<A>(
                                    responder.as_ref(),
                                    &parts.extensions,
                                    &rejection,
                                    &context,
                                )),
                            }
                        }
                    };
                    self.as_mut().project().state.set(next);
                }
                StateProj::Called { future, finish } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(finish) = finish.take() {
                        finish.response(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
            }
        }
    }
}

impl<P, F, S, A> std::fmt::Debug for GuardFuture<P, F, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardFuture")
    }
}

pin_project! {
    /// A pending check made of a wait that does not need the request (a
    /// store lookup, a key refetch) and a decision once it is over, which
    /// does: [`Resume::resume`] gets the wait's output and the request.
    pub struct Deferred<W, B, R> {
        #[pin]
        wait: W,
        rest: Option<(Request<B>, R)>,
    }
}

impl<W, B, R> Deferred<W, B, R> {
    /// Waits for `wait`, then lets `resume` decide `request`.
    pub fn new(wait: W, request: Request<B>, resume: R) -> Self {
        Self {
            wait,
            rest: Some((request, resume)),
        }
    }
}

/// The decision a [`Deferred`] check makes once its wait is over.
pub trait Resume<B, T> {
    /// The request body the inner service receives.
    type Body;
    /// What finishes the response.
    type Finish;
    /// Decides `request`, given what the wait produced.
    fn resume(self, output: T, request: Request<B>) -> Resolved<Self::Body, Self::Finish>;
}

impl<W, B, R> Future for Deferred<W, B, R>
where
    W: Future,
    R: Resume<B, W::Output>,
{
    type Output = Resolved<R::Body, R::Finish>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.wait.poll(cx));
        let (request, resume) = this.rest.take().expect("Deferred polled after completion");
        Poll::Ready(resume.resume(output, request))
    }
}

impl<W, B, R> std::fmt::Debug for Deferred<W, B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

/// The [`Resume`] of a wait that decides alone: the request passes unless
/// the wait produced a rejection.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassUnlessRejected;

impl<B> Resume<B, Option<Rejection>> for PassUnlessRejected {
    type Body = B;
    type Finish = ();

    fn resume(self, output: Option<Rejection>, request: Request<B>) -> Resolved<B, ()> {
        match output {
            None => Resolved::Pass(request, ()),
            Some(rejection) => Resolved::Reject(rejection, request.into_parts().0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::RejectionKind;

    type Wait = Pin<Box<dyn Future<Output = Option<Rejection>> + Send>>;

    /// Defers every decision to a wait whose verdict is the `x-verdict`
    /// header: `refuse` rejects, anything else passes.
    #[derive(Clone)]
    struct Later;

    impl<B> Guard<B> for Later {
        type Body = B;
        type Finish = ();
        type Pending = Deferred<Wait, B, PassUnlessRejected>;

        fn check(&self, request: Request<B>) -> Check<B, B, (), Self::Pending> {
            let refuse = request.headers().get("x-verdict").is_some_and(|v| v == "refuse");
            let wait: Wait = Box::pin(async move {
                tokio::task::yield_now().await;
                refuse.then(|| Rejection::forbidden("later", "refused after the wait"))
            });
            Check::Pending(Deferred::new(wait, request, PassUnlessRejected))
        }

        fn responder(&self) -> Option<&SharedResponder> {
            None
        }
    }

    /// An inner service that insists on being called only once it was
    /// polled ready — the instance itself, not a clone of it.
    struct Strict {
        ready: bool,
        calls: Arc<AtomicUsize>,
    }

    impl Clone for Strict {
        fn clone(&self) -> Self {
            Self {
                ready: false,
                calls: self.calls.clone(),
            }
        }
    }

    impl Service<Request<()>> for Strict {
        type Response = Response<Bytes>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Bytes>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.ready = true;
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<()>) -> Self::Future {
            assert!(self.ready, "called without poll_ready on this instance");
            self.ready = false;
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(Bytes::from_static(b"inner"))))
        }
    }

    fn service(calls: &Arc<AtomicUsize>) -> GuardService<Later, Strict> {
        let inner = Strict {
            ready: false,
            calls: calls.clone(),
        };
        GuardService::new(Later, inner)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pending_check_calls_the_instance_that_was_polled_ready() {
        let calls = Arc::new(AtomicUsize::new(0));
        let response = service(&calls).oneshot(Request::new(())).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pending_refusal_is_rendered_by_the_responder_and_never_reaches_the_inner_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let request = Request::builder()
            .header("x-verdict", "refuse")
            .body(())
            .expect("request");
        let response = service(&calls).oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let rejection = response.extensions().get::<Rejection>().expect("typed rejection");
        assert_eq!(rejection.kind(), RejectionKind::Forbidden);
        assert_eq!(rejection.reason(), "refused after the wait");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
