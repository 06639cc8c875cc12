use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::ResponseBody;

pin_project! {
    /// The response future of a Portcullis layer that decides synchronously:
    /// either the inner service's future, or a rejection ready at once.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<F> ResponseFuture<F> {
    /// The request went on to the inner service.
    pub fn called(future: F) -> Self {
        Self {
            state: State::Called { future },
        }
    }

    /// The request was refused with `response`.
    pub fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            StateProj::Rejected { response } => {
                // A second poll after completion is a caller bug; answer with
                // an empty 500 rather than panicking.
                let response = response.take().unwrap_or_else(|| {
                    let mut fallback = Response::new(Bytes::new());
                    *fallback.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    fallback
                });
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
