//! The response future of [`CsrfService`](super::CsrfService): the inner
//! call, or a boxed read of a form body first (only when the token is not
//! in a header), or a refusal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use portcullis_core::{RequestContext, ResponseBody, cookie};
use tower_service::Service;

use super::Config;
use crate::body::{CsrfBody, FormKind, token_in_form};
use crate::token::{PreSession, verify};

/// What the response needs to say about how it was decided.
pub(super) struct Verdict {
    pub(super) checked_origin: bool,
    pub(super) issued: Option<Arc<AtomicBool>>,
    pub(super) pre: Option<PreCookie>,
}

/// An anonymous visitor's pre-session secret, and how to set its cookie.
pub(super) struct PreCookie {
    pub(super) pre: Arc<PreSession>,
    pub(super) name: &'static str,
    pub(super) secure: bool,
}

impl PreCookie {
    /// Moves the secret into a session this response stores; otherwise,
    /// when one was minted, the `Set-Cookie` that hands it to the visitor.
    fn settle(&self) -> Option<HeaderValue> {
        self.pre.carry_over();
        let minted = self.pre.minted()?;
        if self.pre.stored() {
            return None;
        }
        HeaderValue::from_str(&cookie::set(self.name, minted, self.secure, cookie::SameSite::Lax)).ok()
    }
}

enum Read<B> {
    Pass(Request<CsrfBody<B>>),
    Refuse(Response<Bytes>),
}

type ReadFuture<B> = Pin<Box<dyn Future<Output = Read<B>> + Send>>;

pin_project! {
    /// The response future of [`CsrfService`](super::CsrfService).
    pub struct ResponseFuture<S, B, F> {
        #[pin]
        state: State<S, B, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Reading { read: ReadFuture<B>, inner: Option<S>, verdict: Option<Verdict> },
        Calling { #[pin] future: F, verdict: Option<Verdict> },
        Rejected { response: Option<Response<Bytes>> },
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(text.as_bytes()));
    *response.status_mut() = status;
    response
}

impl<S, B, F> ResponseFuture<S, B, F> {
    pub(super) fn calling(future: F, verdict: Verdict) -> Self {
        Self {
            state: State::Calling {
                future,
                verdict: Some(verdict),
            },
        }
    }

    pub(super) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn reading(
        inner: S,
        request: Request<B>,
        kind: FormKind,
        expected: Option<[u8; 32]>,
        config: Arc<Config>,
        verdict: Verdict,
    ) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let read: ReadFuture<B> = Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, config.body_limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                // Part of the body is gone: it cannot be passed on, even in
                // report-only mode.
                Err(_) => {
                    return Read::Refuse(plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "form body unreadable or over the CSRF buffer limit: send the token in the X-CSRF-Token header",
                    ));
                }
            };
            let outcome = match token_in_form(&kind, &bytes).await {
                None => Err("missing token"),
                Some(token) if expected.is_some_and(|expected| verify(&expected, &token)) => Ok(()),
                Some(_) => Err("token mismatch"),
            };
            if let Err(reason) = outcome {
                let context = RequestContext::new(&parts.method, &parts.uri, &parts.headers);
                if let Some(response) = config.refuse(reason, &context) {
                    return Read::Refuse(response);
                }
            }
            Read::Pass(Request::from_parts(parts, CsrfBody::buffered(bytes)))
        });
        Self {
            state: State::Reading {
                read,
                inner: Some(inner),
                verdict: Some(verdict),
            },
        }
    }
}

fn finish<R>(mut response: Response<R>, verdict: Option<Verdict>) -> Response<ResponseBody<R>> {
    if let Some(verdict) = verdict {
        let headers = response.headers_mut();
        if let Some(cookie) = verdict.pre.as_ref().and_then(PreCookie::settle) {
            headers.append(SET_COOKIE, cookie);
        }
        if verdict.checked_origin {
            headers.append(VARY, HeaderValue::from_static("Origin, Sec-Fetch-Site"));
        }
        if verdict.issued.is_some_and(|issued| issued.load(Ordering::Relaxed)) {
            headers.append(VARY, HeaderValue::from_static("Cookie"));
        }
    }
    response.map(ResponseBody::inner)
}

impl<S, B, F, ResBody, E> Future for ResponseFuture<S, B, F>
where
    S: Service<Request<CsrfBody<B>>, Response = Response<ResBody>, Future = F, Error = E>,
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Reading { read, inner, verdict } => {
                    let next = match ready!(read.as_mut().poll(cx)) {
                        Read::Refuse(response) => State::Rejected {
                            response: Some(response),
                        },
                        Read::Pass(request) => match inner.take() {
                            Some(mut inner) => State::Calling {
                                future: inner.call(request),
                                verdict: verdict.take(),
                            },
                            None => State::Rejected {
                                response: Some(plain(StatusCode::INTERNAL_SERVER_ERROR, "")),
                            },
                        },
                    };
                    self.as_mut().project().state.set(next);
                }
                StateProj::Calling { future, verdict } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(finish(response, verdict.take())));
                }
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .unwrap_or_else(|| plain(StatusCode::INTERNAL_SERVER_ERROR, ""));
                    let mut response = response.map(ResponseBody::full);
                    response
                        .headers_mut()
                        .append(VARY, HeaderValue::from_static("Origin, Sec-Fetch-Site"));
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

impl<S, B, F> std::fmt::Debug for ResponseFuture<S, B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("csrf::ResponseFuture")
    }
}
