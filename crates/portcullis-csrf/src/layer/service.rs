use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use http_body::Body;
use portcullis_core::audit::{Decision, Outcome};
use portcullis_core::cookie;
use portcullis_core::guard::{Check, Guard, GuardService};
use portcullis_core::{AuthMethod, AuthenticatorRan, Identity, Rejection, SharedResponder, TokenTransport};
use portcullis_session::Session;

use super::future::{FormRead, PreCookie, Verdict, read_form};
use super::{Config, CsrfLayer};
use crate::body::{CsrfBody, FormKind, form_kind};
use crate::origin::{OriginFailure, OriginPolicy, Own};
use crate::token::{Binding, Expected, PreSession, SECRET_KEY, expected_of, is_secret};
use crate::{CsrfToken, LAYER, PRE_SESSION_COOKIE};

/// [`CsrfToken::HEADER`] as a ready name (a `&str` lookup parses it on
/// every request).
const TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static(CsrfToken::HEADER);

/// The service of [`CsrfLayer`].
pub type CsrfService<S> = GuardService<CsrfLayer, S>;

/// What the headers alone decide.
pub(super) enum HeaderCheck {
    /// Not subject to the check, or passed it.
    Pass { checked_origin: bool },
    /// Refused, for this reason.
    Fail(&'static str),
    /// No authenticator ran before the layer: it cannot know which
    /// credential the request carries (500, never a silent pass).
    Misconfigured,
    /// The token is in the form body: read it, then compare.
    ReadForm { kind: FormKind, expected: Option<Expected> },
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Whether `path` is `prefix` or below it, on a path-segment boundary:
/// `/hooks` covers `/hooks` and `/hooks/stripe`, never `/hooksevil`.
fn is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// The ambient (browser-sent) credential a request carries, worked out
/// once per request.
pub(super) enum Ambient<'a> {
    /// A live session, by its cookie (borrowed from the request: the one
    /// clone a request takes is the token's).
    Session(&'a Session),
    /// A JWT read from a cookie, bound by its principal's canonical key.
    CookieToken(String),
    /// None: an anonymous visitor (a login form), or a request
    /// authenticated by something a browser does not send on its own.
    Nothing,
}

/// What the request carries, as the authenticators before this layer
/// left it; `None` when none ran.
pub(super) fn ambient_of<B>(request: &Request<B>) -> Option<Ambient<'_>> {
    let extensions = request.extensions();
    let session = extensions.get::<Session>();
    let identity = extensions.get::<Identity>();
    if session.is_none() && identity.is_none() && extensions.get::<AuthenticatorRan>().is_none() {
        return None;
    }
    if let Some(session) = session.filter(|session| session.is_live()) {
        return Some(Ambient::Session(session));
    }
    if let Some(identity) = identity
        && let AuthMethod::Bearer {
            transport: TokenTransport::Cookie,
            ..
        } = identity.method()
    {
        return Some(Ambient::CookieToken(identity.principal().key()));
    }
    Some(Ambient::Nothing)
}

impl Config {
    /// The pre-session cookie's name: `__Host-csrf`, or `csrf` over plain
    /// HTTP (where `__Host-` cannot be set).
    pub(super) fn pre_session_cookie(&self) -> &'static str {
        if self.scheme == "http" {
            "csrf"
        } else {
            PRE_SESSION_COOKIE
        }
    }

    /// The pre-session secret the request's cookie presents, if it is one
    /// we could have minted.
    pub(super) fn presented_pre_session<'a, B>(&self, request: &'a Request<B>) -> Option<&'a str> {
        cookie::find(request.headers(), self.pre_session_cookie()).filter(|value| is_secret(value))
    }

    /// The decision from the headers, given what the authenticators left
    /// (`ambient`, `None` when none ran) and the pre-session secret the
    /// request's cookie presents.
    pub(super) fn check<B>(
        &self,
        request: &Request<B>,
        ambient: Option<&Ambient<'_>>,
        presented: Option<&str>,
    ) -> HeaderCheck {
        if is_safe(request.method()) {
            return HeaderCheck::Pass { checked_origin: false };
        }
        let path = request.uri().path();
        if self.exempt.iter().any(|prefix| is_under(path, prefix)) {
            Decision::new(LAYER, Outcome::Passed)
                .reason("insecure_exempt route")
                .record();
            return HeaderCheck::Pass { checked_origin: false };
        }
        let Some(ambient) = ambient else {
            return HeaderCheck::Misconfigured;
        };
        // Authenticated by an `Authorization` header alone: a browser
        // cannot attach one cross-site without the target's CORS consent.
        if matches!(ambient, Ambient::Nothing) && request.headers().contains_key(AUTHORIZATION) {
            return HeaderCheck::Pass { checked_origin: false };
        }
        // The origin rules cover every other unsafe request, with or
        // without a credential: a cross-site login form is login CSRF.
        let own = match &self.public_origin {
            Some(origin) => Own::Known(Some(origin.as_ref())),
            None => Own::FromHost(request.headers(), self.scheme),
        };
        let policy = OriginPolicy {
            own,
            trusted: &self.trusted,
            allow_same_site: self.allow_same_site,
        };
        match policy.check(request.headers()) {
            Err(OriginFailure::CrossSite) => return HeaderCheck::Fail("cross-site request"),
            Err(OriginFailure::Untrusted) => return HeaderCheck::Fail("untrusted origin"),
            Ok(()) => {}
        }
        if !self.tokens {
            return HeaderCheck::Pass { checked_origin: true };
        }
        // The token rule applies wherever a cookie credential is present.
        // Where a visitor holds a pre-session cookie, a form they post (the
        // login form) carries its token too: the defence against login
        // CSRF from browsers that send no origin signal.
        let expected = match ambient {
            Ambient::Session(session) => match expected_of(session, &self.keys, self.keys_tag) {
                Some(expected) => Some(expected),
                // A session stored without our secret (a write elsewhere
                // while anonymous) adopts the visitor's pre-session one, so
                // their open forms stay valid.
                None => self.presented_pre_session(request).map(|secret| {
                    let _ = session.insert(SECRET_KEY, secret);
                    Expected::secret(&self.keys, secret)
                }),
            },
            Ambient::CookieToken(principal) => Some(Expected::principal(&self.keys, principal)),
            Ambient::Nothing => match presented {
                Some(secret) => Some(Expected::secret(&self.keys, secret)),
                None => return HeaderCheck::Pass { checked_origin: true },
            },
        };
        if let Some(header) = request.headers().get(&TOKEN_HEADER) {
            let valid = match (&expected, header.to_str()) {
                (Some(expected), Ok(presented)) => expected.matches(presented),
                _ => false,
            };
            return if valid {
                HeaderCheck::Pass { checked_origin: true }
            } else {
                HeaderCheck::Fail("token mismatch")
            };
        }
        let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        match form_kind(content_type) {
            Some(kind) => HeaderCheck::ReadForm { kind, expected },
            None => HeaderCheck::Fail("missing token"),
        }
    }

    /// A refusal: the rejection, or, in report-only mode, `None` (pass)
    /// after the audit event.
    pub(super) fn refusal(&self, reason: &'static str) -> Option<Rejection> {
        if self.report_only {
            Decision::new(LAYER, Outcome::WouldReject).reason(reason).record();
            return None;
        }
        Decision::new(LAYER, Outcome::Rejected).reason(reason).record();
        Some(Rejection::forbidden(LAYER, reason))
    }
}

impl<B> Guard<B> for CsrfLayer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Body = CsrfBody<B>;
    type Finish = Verdict;
    type Pending = FormRead<B>;

    fn check(&self, mut request: Request<B>) -> Check<B, CsrfBody<B>, Verdict, FormRead<B>> {
        let config = &self.config;
        let ambient = ambient_of(&request);
        // An anonymous visitor's secret is in their pre-session cookie.
        let presented = match &ambient {
            Some(Ambient::Nothing) => config.presented_pre_session(&request),
            _ => None,
        };
        let (binding, pre) = match &ambient {
            Some(Ambient::CookieToken(principal)) => (Some(Binding::Principal(principal.as_str().into())), None),
            Some(Ambient::Session(session)) => (Some(Binding::Session((*session).clone())), None),
            // No stored session for an anonymous visitor: the secret lives
            // in their own cookie until something stores one.
            Some(Ambient::Nothing) => {
                let session = request.extensions().get::<Session>().cloned();
                let pre = Arc::new(PreSession::new(presented.map(str::to_owned), session));
                (Some(Binding::PreSession(pre.clone())), Some(pre))
            }
            None => (None, None),
        };
        // Decided while the request is only borrowed; the token goes into
        // it afterwards (nothing in the check reads it).
        let decision = config.check(&request, ambient.as_ref(), presented);
        let issued = binding.map(|binding| {
            let token = CsrfToken::new(binding, config.keys.clone());
            let issued = token.issued_flag();
            request.extensions_mut().insert(token);
            issued
        });
        let pre = pre.map(|pre| PreCookie {
            pre,
            name: config.pre_session_cookie(),
            secure: config.scheme == "https",
        });
        let verdict = |checked_origin| Verdict {
            checked_origin,
            issued,
            pre,
        };
        match decision {
            HeaderCheck::Pass { checked_origin } => Check::Pass(request.map(CsrfBody::inner), verdict(checked_origin)),
            HeaderCheck::Misconfigured => {
                let reason = "CsrfLayer needs an authenticator (SessionLayer or JwtLayer) before it";
                Decision::new(LAYER, Outcome::Rejected).reason(reason).record();
                Check::Reject(Rejection::misconfigured(LAYER, reason), request)
            }
            HeaderCheck::Fail(reason) => match config.refusal(reason) {
                Some(rejection) => Check::Reject(rejection, request),
                None => Check::Pass(request.map(CsrfBody::inner), verdict(true)),
            },
            HeaderCheck::ReadForm { kind, expected } => {
                Check::Pending(read_form(request, kind, expected, self.config.clone(), verdict(true)))
            }
        }
    }

    fn responder(&self) -> Option<&SharedResponder> {
        self.config.responder.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn exempt_routes_end_on_a_path_segment_boundary() {
        for (path, prefix, expected) in [
            ("/hooks", "/hooks", true),
            ("/hooks/stripe", "/hooks", true),
            ("/hooks/stripe", "/hooks/", true),
            ("/hooks", "/hooks/", true),
            ("/hooksevil", "/hooks", false),
            ("/hooks-evil/x", "/hooks/", false),
            ("/hook", "/hooks", false),
            ("/anything", "/", true),
        ] {
            assert_eq!(is_under(path, prefix), expected, "{path} under {prefix}");
        }
    }
}
