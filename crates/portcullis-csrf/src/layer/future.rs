//! The pending check of [`CsrfService`](super::CsrfService) (a boxed read
//! of a form body, only when the token is not in a header) and what the
//! layer adds to responses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{HeaderValue, SET_COOKIE, VARY};
use http::{HeaderMap, Request};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::guard::{Finish, Resolved};
use portcullis_core::{Rejection, cookie};

use super::Config;
use crate::LAYER;
use crate::body::{CsrfBody, FormKind, token_in_form};
use crate::token::{Expected, PreSession};

/// What the response needs to say about how it was decided.
pub struct Verdict {
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

/// The pending check of a [`CsrfLayer`](super::CsrfLayer): a form body
/// read (up to the buffer limit) for its token, the body handed on intact.
pub type FormRead<B> = Pin<Box<dyn Future<Output = Resolved<CsrfBody<B>, Verdict>> + Send>>;

/// Reads `request`'s form body for its token and compares it with
/// `expected`.
pub(super) fn read_form<B>(
    request: Request<B>,
    kind: FormKind,
    expected: Option<Expected>,
    config: Arc<Config>,
    verdict: Verdict,
) -> FormRead<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Box::pin(async move {
        let (parts, body) = request.into_parts();
        let bytes = match Limited::new(body, config.body_limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            // Part of the body is gone: it cannot be passed on, even in
            // report-only mode.
            Err(_) => {
                let reason =
                    "form body unreadable or over the CSRF buffer limit: send the token in the X-CSRF-Token header";
                Decision::new(LAYER, Outcome::Rejected).reason(reason).record();
                return Resolved::Reject(Rejection::too_large(LAYER, reason), parts);
            }
        };
        let outcome = match token_in_form(&kind, &bytes).await {
            None => Err("missing token"),
            Some(token) if expected.as_ref().is_some_and(|expected| expected.matches(&token)) => Ok(()),
            Some(_) => Err("token mismatch"),
        };
        if let Err(reason) = outcome
            && let Some(rejection) = config.refusal(reason)
        {
            return Resolved::Reject(rejection, parts);
        }
        Resolved::Pass(Request::from_parts(parts, CsrfBody::full(bytes)), verdict)
    })
}

impl Finish for Verdict {
    fn response(self, headers: &mut HeaderMap) {
        if let Some(cookie) = self.pre.as_ref().and_then(PreCookie::settle) {
            headers.append(SET_COOKIE, cookie);
        }
        if self.checked_origin {
            headers.append(VARY, HeaderValue::from_static("Origin, Sec-Fetch-Site"));
        }
        if self.issued.is_some_and(|issued| issued.load(Ordering::Relaxed)) {
            headers.append(VARY, HeaderValue::from_static("Cookie"));
        }
    }

    fn rejection(headers: &mut HeaderMap) {
        headers.append(VARY, HeaderValue::from_static("Origin, Sec-Fetch-Site"));
    }
}
