//! The response future of [`JwtService`](super::JwtService): the inner
//! call, a refusal, or (remote keys, unknown `kid`) a bounded wait for
//! fresh keys and a second verification first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::ResponseBody;
use tower_service::Service;

use super::JwtLayer;

/// Resolves to whether fresh keys may be there.
pub(super) type RefetchFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

pin_project! {
    /// The response future of [`JwtService`](super::JwtService).
    pub struct ResponseFuture<S, B, F> {
        #[pin]
        state: State<S, B, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Called { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
        Refetching {
            wait: RefetchFuture,
            inner: Option<S>,
            request: Option<Request<B>>,
            layer: JwtLayer,
        },
    }
}

fn server_error() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
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

    #[cfg(feature = "remote")]
    pub(super) fn refetching(wait: RefetchFuture, inner: S, request: Request<B>, layer: JwtLayer) -> Self {
        Self {
            state: State::Refetching {
                wait,
                inner: Some(inner),
                request: Some(request),
                layer,
            },
        }
    }
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
                StateProj::Called { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_else(server_error);
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
                StateProj::Refetching {
                    wait,
                    inner,
                    request,
                    layer,
                } => {
                    // Whatever the fetch did, verify again: the keys decide.
                    let _fresh = ready!(wait.as_mut().poll(cx));
                    let (Some(mut inner), Some(mut request)) = (inner.take(), request.take()) else {
                        return Poll::Ready(Ok(server_error().map(ResponseBody::full)));
                    };
                    let next = match layer.reauthenticate(&mut request) {
                        None => State::Called {
                            future: inner.call(request),
                        },
                        Some(response) => State::Rejected {
                            response: Some(response),
                        },
                    };
                    self.as_mut().project().state.set(next);
                }
            }
        }
    }
}

impl<S, B, F> std::fmt::Debug for ResponseFuture<S, B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("jwt::ResponseFuture")
    }
}
