use std::future::Future;
use std::pin::Pin;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request};
use portcullis_core::audit::{self, Decision, Fingerprint, Outcome};
use portcullis_core::guard::{Check, Deferred, Guard, GuardService, Resolved, Resume};
use portcullis_core::{AuthMethod, AuthenticatorRan, Rejection, SharedResponder, TokenTransport};

use super::JwtLayer;
use crate::{JwtError, LAYER};

/// The service of [`JwtLayer`].
pub type JwtService<S> = GuardService<JwtLayer, S>;

/// Resolves to whether fresh keys may be there.
pub type RefetchWait = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The pending check of a [`JwtLayer`]: with remote keys and an unknown
/// `kid`, a bounded wait for fresh keys, then a second verification.
pub type Refetch<B> = Deferred<RefetchWait, B, JwtLayer>;

impl<B> Guard<B> for JwtLayer {
    type Body = B;
    type Finish = ();
    type Pending = Refetch<B>;

    fn check(&self, mut request: Request<B>) -> Check<B, B, (), Refetch<B>> {
        let outcome = match find_token(request.headers(), self.cookie.as_deref()) {
            Ok(Some((token, transport))) => Some(self.authenticate(token, transport)),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        };
        match outcome {
            // An identity says an authenticator ran; the marker is only
            // needed where there is none (one map insert fewer per request).
            Some(Ok(identity)) => {
                request.extensions_mut().insert(identity);
                Check::Pass(request, ())
            }
            #[cfg(feature = "remote")]
            Some(Err(JwtError::UnknownKeyId)) => {
                // With remote keys the provider may have rotated: fetch
                // (once per cooldown, one at a time) and verify again,
                // waiting a bounded time.
                let Some(remote) = self.remote_keys_of(&request) else {
                    return Check::Reject(JwtError::UnknownKeyId.into_rejection(), request);
                };
                let wait_for = remote.options().request_wait;
                let wait: RefetchWait = Box::pin(async move {
                    tokio::time::timeout(wait_for, remote.refresh_for_unknown_kid())
                        .await
                        .unwrap_or(false)
                });
                Check::Pending(Deferred::new(wait, request, self.clone()))
            }
            Some(Err(error)) => Check::Reject(error.into_rejection(), request),
            None if self.required => {
                Decision::new(LAYER, Outcome::Rejected)
                    .reason("bearer token required")
                    .record();
                Check::Reject(Rejection::missing_credentials(LAYER, "bearer token required"), request)
            }
            None => {
                Decision::new(LAYER, Outcome::Passed).record();
                if request.extensions().get::<portcullis_core::Identity>().is_none() {
                    request.extensions_mut().insert(AuthenticatorRan);
                }
                Check::Pass(request, ())
            }
        }
    }

    fn responder(&self) -> Option<&SharedResponder> {
        self.responder.as_ref()
    }
}

/// Authenticates the request again, once new keys may have arrived.
impl<B> Resume<B, bool> for JwtLayer {
    type Body = B;
    type Finish = ();

    fn resume(self, _fresh: bool, mut request: Request<B>) -> Resolved<B, ()> {
        // Whatever the fetch did, verify again: the keys decide.
        let result = match find_token(request.headers(), self.cookie.as_deref()) {
            Ok(Some((token, transport))) => self.authenticate(token, transport),
            Ok(None) => Err(JwtError::MalformedAuthorizationHeader),
            Err(error) => Err(error),
        };
        match result {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Resolved::Pass(request, ())
            }
            Err(error) => Resolved::Reject(error.into_rejection(), request.into_parts().0),
        }
    }
}

impl JwtLayer {
    /// Verifies `token`, recording the audit event.
    pub(super) fn authenticate(
        &self,
        token: &str,
        transport: TokenTransport,
    ) -> Result<portcullis_core::Identity, JwtError> {
        let result = self.verifier.verify_from(token, transport);
        if audit::enabled() {
            let fingerprint = Fingerprint::of(token.as_bytes());
            match &result {
                Ok(identity) => {
                    let mut decision = Decision::new(LAYER, Outcome::Accepted)
                        .subject(identity.subject())
                        .credential(fingerprint);
                    if let AuthMethod::Bearer {
                        token_id: Some(jti), ..
                    } = identity.method()
                    {
                        decision = decision.token_id(jti);
                    }
                    decision.record();
                }
                Err(error) => {
                    let reason = error.to_string();
                    let outcome = match error {
                        JwtError::KeysUnavailable { .. } => Outcome::Unavailable,
                        _ => Outcome::Rejected,
                    };
                    Decision::new(LAYER, outcome)
                        .reason(&reason)
                        .credential(fingerprint)
                        .record();
                }
            }
        }
        result
    }
}

impl JwtLayer {
    #[cfg(feature = "remote")]
    fn remote_keys_of<B>(&self, request: &Request<B>) -> Option<crate::remote::RemoteKeys> {
        let (token, _) = find_token(request.headers(), self.cookie.as_deref()).ok()??;
        self.verifier.remote_keys_for(token).cloned()
    }
}

/// The bearer token of a request: the `Authorization: Bearer` header, else
/// the configured cookie. A non-Bearer `Authorization` scheme is not ours
/// and counts as no token.
fn find_token<'h>(headers: &'h HeaderMap, cookie: Option<&str>) -> Result<Option<(&'h str, TokenTransport)>, JwtError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(JwtError::MultipleAuthorizationHeaders);
        }
        let value = value.to_str().map_err(|_| JwtError::MalformedAuthorizationHeader)?;
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = credential.trim_matches(' ');
            if token.is_empty() || token.contains(' ') {
                return Err(JwtError::MalformedAuthorizationHeader);
            }
            return Ok(Some((token, TokenTransport::AuthorizationHeader)));
        }
    }
    let Some(name) = cookie else { return Ok(None) };
    Ok(portcullis_core::cookie::find(headers, name)
        .filter(|value| !value.is_empty())
        .map(|value| (value, TokenTransport::Cookie)))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn reads_the_bearer_scheme_case_insensitively() {
        let map = headers(&[("authorization", "bEaReR abc.def.ghi")]);
        assert_eq!(
            find_token(&map, None),
            Ok(Some(("abc.def.ghi", TokenTransport::AuthorizationHeader)))
        );
    }

    #[test]
    fn other_schemes_are_not_ours() {
        let map = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(find_token(&map, None), Ok(None));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let map = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(find_token(&map, None), Err(JwtError::MultipleAuthorizationHeaders));
    }

    #[test]
    fn an_empty_or_spaced_credential_is_malformed() {
        for value in ["Bearer", "Bearer ", "Bearer a b"] {
            let mut map = HeaderMap::new();
            map.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(
                find_token(&map, None),
                Err(JwtError::MalformedAuthorizationHeader),
                "{value}"
            );
        }
    }

    #[test]
    fn non_ascii_header_bytes_are_malformed() {
        let mut map = HeaderMap::new();
        map.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("opaque bytes"),
        );
        assert_eq!(find_token(&map, None), Err(JwtError::MalformedAuthorizationHeader));
    }

    #[test]
    fn the_cookie_is_read_only_when_configured_and_after_the_header() {
        let map = headers(&[("cookie", "theme=dark; access_token=tok.en.x")]);
        assert_eq!(find_token(&map, None), Ok(None));
        assert_eq!(
            find_token(&map, Some("access_token")),
            Ok(Some(("tok.en.x", TokenTransport::Cookie)))
        );
        let both = headers(&[("cookie", "access_token=c.c.c"), ("authorization", "Bearer h.h.h")]);
        assert_eq!(
            find_token(&both, Some("access_token")),
            Ok(Some(("h.h.h", TokenTransport::AuthorizationHeader)))
        );
    }
}
