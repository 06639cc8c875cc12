//! The response future of [`RevocationService`](super::RevocationService):
//! with a local store, just the inner future; with a remote one, a boxed
//! check first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::{Identity, RequestContext, ResponseBody, SharedResponder};
use tower_service::Service;

use super::service::rejection;
use crate::denylist::Revoked;
use crate::store::StoreError;

pub(super) type CheckFuture = Pin<Box<dyn Future<Output = (Identity, Result<Option<Revoked>, StoreError>)> + Send>>;

pin_project! {
    /// The response future of [`RevocationService`](super::RevocationService).
    pub struct ResponseFuture<S, B, F> {
        #[pin]
        state: State<S, B, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Checking {
            check: CheckFuture,
            inner: Option<S>,
            request: Option<Request<B>>,
            responder: SharedResponder,
        },
        Called { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<S, B, F> ResponseFuture<S, B, F> {
    pub(super) fn called(future: F) -> Self {
        Self {
            state: State::Called { future },
        }
    }

    pub(super) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn checking(check: CheckFuture, inner: S, request: Request<B>, responder: SharedResponder) -> Self {
        Self {
            state: State::Checking {
                check,
                inner: Some(inner),
                request: Some(request),
                responder,
            },
        }
    }
}

fn server_error() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

impl<S, B, F, ResBody, E> Future for ResponseFuture<S, B, F>
where
    S: Service<Request<B>, Response = Response<ResBody>, Future = F, Error = E>,
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Checking {
                    check,
                    inner,
                    request,
                    responder,
                } => {
                    let (identity, verdict) = ready!(check.as_mut().poll(cx));
                    let (Some(mut inner), Some(request)) = (inner.take(), request.take()) else {
                        return Poll::Ready(Ok(server_error().map(ResponseBody::full)));
                    };
                    let next = match rejection(&identity, verdict) {
                        None => State::Called {
                            future: inner.call(request),
                        },
                        Some(rejection) => State::Rejected {
                            response: Some(responder.respond(&rejection, &RequestContext::of(&request))),
                        },
                    };
                    self.as_mut().project().state.set(next);
                }
                StateProj::Called { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_else(server_error);
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
            }
        }
    }
}

impl<S, B, F> std::fmt::Debug for ResponseFuture<S, B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("revocation::ResponseFuture")
    }
}
