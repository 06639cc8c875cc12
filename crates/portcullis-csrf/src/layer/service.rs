use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use http_body::Body;
use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::{Rejection, RequestContext, ResponseBody};
use portcullis_session::Session;
use tower_service::Service;

use super::Config;
use super::future::{ResponseFuture, Verdict};
use crate::body::{CsrfBody, FormKind, form_kind};
use crate::origin::{OriginFailure, OriginPolicy, OriginRef};
use crate::token::{secret_of, unmasked, verify};
use crate::{CsrfToken, LAYER};

/// The service of [`CsrfLayer`](super::CsrfLayer).
#[derive(Clone, Debug)]
pub struct CsrfService<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

/// What the headers alone decide.
pub(super) enum Check {
    /// Not subject to the check, or passed it.
    Pass { checked_origin: bool },
    /// Refused, for this reason.
    Fail(&'static str),
    /// The token is in the form body: read it, then compare.
    ReadForm { kind: FormKind, expected: Option<[u8; 32]> },
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

impl Config {
    pub(super) fn check<B>(&self, request: &Request<B>) -> Check {
        if is_safe(request.method()) {
            return Check::Pass { checked_origin: false };
        }
        let Some(session) = request.extensions().get::<Session>() else {
            // No SessionLayer before us: no cookie session to protect.
            return Check::Pass { checked_origin: false };
        };
        if !session.is_live() {
            return Check::Pass { checked_origin: false };
        }
        let path = request.uri().path();
        if self.exempt.iter().any(|prefix| path.starts_with(prefix.as_str())) {
            Decision::new(LAYER, Outcome::Passed)
                .reason("insecure_exempt route")
                .record();
            return Check::Pass { checked_origin: false };
        }
        let own = match &self.public_origin {
            Some(origin) => Some(origin.as_ref()),
            None => OriginRef::of_host(request.headers(), self.scheme),
        };
        let policy = OriginPolicy {
            own,
            trusted: &self.trusted,
            allow_same_site: self.allow_same_site,
        };
        match policy.check(request.headers()) {
            Err(OriginFailure::CrossSite) => return Check::Fail("cross-site request"),
            Err(OriginFailure::Untrusted) => return Check::Fail("untrusted origin"),
            Ok(()) => {}
        }
        if !self.tokens {
            return Check::Pass { checked_origin: true };
        }
        let expected = secret_of(session).map(|secret| unmasked(&self.key, &secret));
        if let Some(header) = request.headers().get(CsrfToken::HEADER) {
            let valid = match (&expected, header.to_str()) {
                (Some(expected), Ok(presented)) => verify(expected, presented),
                _ => false,
            };
            return if valid {
                Check::Pass { checked_origin: true }
            } else {
                Check::Fail("token mismatch")
            };
        }
        let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        match form_kind(content_type) {
            Some(kind) => Check::ReadForm { kind, expected },
            None => Check::Fail("missing token"),
        }
    }

    /// A refusal: the response to send, or, in report-only mode, `None`
    /// (pass) after the audit event.
    pub(super) fn refuse(&self, reason: &'static str, context: &RequestContext<'_>) -> Option<Response<Bytes>> {
        if self.report_only {
            Decision::new(LAYER, Outcome::WouldReject).reason(reason).record();
            return None;
        }
        Decision::new(LAYER, Outcome::Rejected).reason(reason).record();
        Some(self.responder.respond(&Rejection::forbidden(LAYER, reason), context))
    }
}

impl<S, B, ResBody> Service<Request<B>> for CsrfService<S>
where
    S: Service<Request<CsrfBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let issued = request.extensions().get::<Session>().cloned().map(|session| {
            let token = CsrfToken::new(session, self.config.key.clone());
            let issued = token.issued_flag();
            request.extensions_mut().insert(token);
            issued
        });
        match self.config.check(&request) {
            Check::Pass { checked_origin } => {
                let future = self.inner.call(request.map(CsrfBody::original));
                ResponseFuture::calling(future, Verdict { checked_origin, issued })
            }
            Check::Fail(reason) => match self.config.refuse(reason, &RequestContext::of(&request)) {
                Some(response) => ResponseFuture::rejected(response),
                None => {
                    let future = self.inner.call(request.map(CsrfBody::original));
                    ResponseFuture::calling(
                        future,
                        Verdict {
                            checked_origin: true,
                            issued,
                        },
                    )
                }
            },
            Check::ReadForm { kind, expected } => {
                // The clone polled ready goes into the future; a fresh one
                // stays (tower-service's rule).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::reading(inner, request, kind, expected, self.config.clone(), issued)
            }
        }
    }
}
