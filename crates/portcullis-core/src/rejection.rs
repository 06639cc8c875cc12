use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Response, StatusCode, Uri};

/// Why a request was refused. Every Portcullis layer refuses this way.
///
/// A rejection becomes a *response*, never a service error: an error would
/// close the connection without an answer. How it is rendered depends on the
/// request ([`Protocol`]) and on the layer's [`Responder`]; the default,
/// [`DefaultResponder`], follows RFC 6750 and RFC 9457 for HTTP and the gRPC
/// status mapping for gRPC. The rendered response carries the `Rejection`
/// in its extensions, so outer layers can tell rejections apart.
///
/// ```
/// use http::{HeaderMap, Method, StatusCode, Uri};
/// use portcullis_core::{DefaultResponder, Rejection, RequestContext, Responder};
///
/// let rejection = Rejection::invalid_credentials("jwt", "token expired");
/// let headers = HeaderMap::new();
/// let (method, uri) = (Method::GET, Uri::from_static("/me"));
/// let response = DefaultResponder.respond(&rejection, &RequestContext::new(&method, &uri, &headers));
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer error="invalid_token", error_description="token expired""#
/// );
/// assert_eq!(response.extensions().get::<Rejection>().unwrap().reason(), "token expired");
/// ```
#[derive(Clone)]
pub struct Rejection {
    kind: RejectionKind,
    layer: &'static str,
    reason: Cow<'static, str>,
    scope: Option<Cow<'static, str>>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

/// The class of a [`Rejection`], which decides its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credential where one is required: 401 with a bare challenge,
    /// gRPC `UNAUTHENTICATED`.
    MissingCredentials,
    /// A credential was presented and is not valid: 401 with
    /// `error="invalid_token"`, gRPC `UNAUTHENTICATED`.
    InvalidCredentials,
    /// Authenticated, but without a scope the route needs: 403 with
    /// `error="insufficient_scope"`, gRPC `PERMISSION_DENIED`.
    InsufficientScope,
    /// Refused for another policy reason (CSRF): 403, gRPC
    /// `PERMISSION_DENIED`.
    Forbidden,
    /// A store or key set needed for the decision is unreachable: 503, gRPC
    /// `UNAVAILABLE`. Never reported as 401, so an outage is never mistaken
    /// for a logout.
    Unavailable,
    /// The stack is misconfigured (a guard with no authenticator before it):
    /// 500, gRPC `INTERNAL`.
    Misconfigured,
    /// The request is larger than the layer can read for its check (a CSRF
    /// form body over the buffer limit): 413, gRPC `RESOURCE_EXHAUSTED`.
    TooLarge,
}

impl Rejection {
    /// A rejection of `kind` from `layer`, for `reason`.
    ///
    /// `reason` is short, stable and safe to show the client (it is sent in
    /// the challenge and the body); never put a credential in it.
    pub fn new(kind: RejectionKind, layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            layer,
            reason: reason.into(),
            scope: None,
            source: None,
        }
    }

    /// No credential was presented.
    pub fn missing_credentials(layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::MissingCredentials, layer, reason)
    }

    /// The credential presented is not valid.
    pub fn invalid_credentials(layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::InvalidCredentials, layer, reason)
    }

    /// The caller lacks `scope`.
    pub fn insufficient_scope(layer: &'static str, scope: impl Into<Cow<'static, str>>) -> Self {
        let mut rejection = Self::new(RejectionKind::InsufficientScope, layer, "insufficient scope");
        rejection.scope = Some(scope.into());
        rejection
    }

    /// Refused by policy (CSRF and the like).
    pub fn forbidden(layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::Forbidden, layer, reason)
    }

    /// A dependency of the decision is unavailable.
    pub fn unavailable(layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::Unavailable, layer, reason)
    }

    /// The request is too large for the layer's check.
    pub fn too_large(layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::TooLarge, layer, reason)
    }

    /// The stack is misconfigured.
    pub fn misconfigured(layer: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectionKind::Misconfigured, layer, reason)
    }

    /// Attaches the typed error behind the rejection, for outer layers and
    /// tests to inspect with [`Rejection::source_as`].
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The class of the rejection.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The layer that refused (`"jwt"`, `"session"`, `"csrf"`, …).
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// The short, client-safe reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The scope that was missing, for [`RejectionKind::InsufficientScope`].
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The typed error behind the rejection, if it is an `E`.
    pub fn source_as<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.as_deref().and_then(|e| e.downcast_ref::<E>())
    }

    /// The HTTP status this rejection maps to.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::MissingCredentials | RejectionKind::InvalidCredentials => StatusCode::UNAUTHORIZED,
            RejectionKind::InsufficientScope | RejectionKind::Forbidden => StatusCode::FORBIDDEN,
            RejectionKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            RejectionKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The gRPC status code this rejection maps to.
    pub fn grpc_code(&self) -> u8 {
        match self.kind {
            RejectionKind::MissingCredentials | RejectionKind::InvalidCredentials => 16,
            RejectionKind::InsufficientScope | RejectionKind::Forbidden => 7,
            RejectionKind::Unavailable => 14,
            RejectionKind::Misconfigured => 13,
            RejectionKind::TooLarge => 8,
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge, where one applies.
    pub fn challenge(&self) -> Option<String> {
        match self.kind {
            RejectionKind::MissingCredentials => Some("Bearer".to_owned()),
            RejectionKind::InvalidCredentials => Some(format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                quoted_safe(&self.reason)
            )),
            RejectionKind::InsufficientScope => Some(format!(
                r#"Bearer error="insufficient_scope", error_description="{}", scope="{}""#,
                quoted_safe(&self.reason),
                quoted_safe(self.scope.as_deref().unwrap_or_default())
            )),
            _ => None,
        }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("kind", &self.kind)
            .field("layer", &self.layer)
            .field("reason", &self.reason)
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rejected the request: {}", self.layer, self.reason)
    }
}

impl StdError for Rejection {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// RFC 6750 §3: `error_description` and `scope` may not carry `"` or `\`
/// or control characters; replace anything outside the allowed set.
fn quoted_safe(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| (' '..='~').contains(&c) && c != '"' && c != '\\';
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().map(|c| if allowed(c) { c } else { '?' }).collect())
    }
}

/// The wire protocol of a request, which decides how a rejection is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP: status code, challenge and problem body.
    Http,
    /// gRPC (`content-type: application/grpc…`): HTTP 200 with a
    /// trailers-only status.
    Grpc,
}

impl Protocol {
    /// Reads the protocol off a request's headers.
    pub fn of(headers: &HeaderMap) -> Self {
        match headers.get(CONTENT_TYPE) {
            Some(value) if value.as_bytes().starts_with(b"application/grpc") => Self::Grpc,
            _ => Self::Http,
        }
    }
}

/// What a [`Responder`] may look at of the refused request.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestContext<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's URI.
    pub uri: &'a Uri,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The request's protocol.
    pub protocol: Protocol,
}

impl<'a> RequestContext<'a> {
    /// The context of a request with these parts.
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            uri,
            headers,
            protocol: Protocol::of(headers),
        }
    }

    /// The context of `request`.
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        Self::new(request.method(), request.uri(), request.headers())
    }
}

/// Turns a [`Rejection`] into the response the client gets.
///
/// Replace the default to, say, redirect browsers to a login page. A
/// responder should keep the rejection in the response's extensions, as
/// [`DefaultResponder`] does, so outer layers can see it.
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, StatusCode};
/// use portcullis_core::{DefaultResponder, Protocol, Rejection, RequestContext, Responder};
///
/// #[derive(Debug)]
/// struct LoginRedirect;
///
/// impl Responder for LoginRedirect {
///     fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes> {
///         if request.protocol == Protocol::Http && rejection.status() == StatusCode::UNAUTHORIZED {
///             let mut response = Response::new(Bytes::new());
///             *response.status_mut() = StatusCode::SEE_OTHER;
///             response.headers_mut().insert("location", "/login".parse().unwrap());
///             response.extensions_mut().insert(rejection.clone());
///             return response;
///         }
///         DefaultResponder.respond(rejection, request)
///     }
/// }
/// ```
pub trait Responder: Send + Sync + fmt::Debug + 'static {
    /// Renders `rejection` for the request described by `request`.
    fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes>;
}

/// A responder shared by the clones of a layer.
pub type SharedResponder = Arc<dyn Responder>;

/// The default rendering of rejections.
///
/// - HTTP: the status of [`Rejection::status`], the RFC 6750 challenge of
///   [`Rejection::challenge`], and an RFC 9457 `application/problem+json`
///   body with `title`, `status` and `detail` (the reason).
/// - gRPC: HTTP 200, `content-type: application/grpc`, `grpc-status` from
///   [`Rejection::grpc_code`] and the percent-encoded reason as
///   `grpc-message`, with an empty body (a trailers-only response).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultResponder;

impl DefaultResponder {
    /// The process-wide default, shared.
    pub fn shared() -> SharedResponder {
        crate::responder::default_responder().clone()
    }
}

impl Responder for DefaultResponder {
    fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes> {
        let mut response = match request.protocol {
            Protocol::Grpc => grpc_response(rejection),
            Protocol::Http => http_response(rejection),
        };
        response.extensions_mut().insert(rejection.clone());
        response
    }
}

fn http_response(rejection: &Rejection) -> Response<Bytes> {
    let status = rejection.status();
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": rejection.reason(),
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if let Some(challenge) = rejection.challenge() {
        // `quoted_safe` keeps the challenge visible ASCII, so this holds.
        if let Ok(value) = HeaderValue::try_from(challenge) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

fn grpc_response(rejection: &Rejection) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(rejection.grpc_code())));
    if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(rejection.reason())) {
        headers.insert("grpc-message", message);
    }
    response
}

/// The gRPC spec's percent-encoding of `grpc-message`: every byte outside
/// printable ASCII, and `%` itself, as `%XX`.
fn grpc_percent_encode(message: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(rejection: &Rejection, headers: &HeaderMap) -> Response<Bytes> {
        let (method, uri) = (Method::POST, Uri::from_static("/x"));
        DefaultResponder.respond(rejection, &RequestContext::new(&method, &uri, headers))
    }

    #[test]
    fn missing_credentials_get_a_bare_challenge() {
        let response = render(
            &Rejection::missing_credentials("jwt", "bearer token required"),
            &HeaderMap::new(),
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body: serde_json::Value = serde_json::from_slice(response.body()).expect("json body");
        assert_eq!(body["status"], 401);
        assert_eq!(body["detail"], "bearer token required");
    }

    #[test]
    fn insufficient_scope_is_403_with_the_scope() {
        let response = render(
            &Rejection::insufficient_scope("require_auth", "notes:write"),
            &HeaderMap::new(),
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", error_description="insufficient scope", scope="notes:write""#
        );
    }

    #[test]
    fn unavailable_is_503_without_a_challenge() {
        let response = render(
            &Rejection::unavailable("session", "session store unavailable"),
            &HeaderMap::new(),
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn challenge_text_is_sanitized() {
        let rejection = Rejection::invalid_credentials("jwt", "bad \"quote\" \\ and\nnewline");
        assert_eq!(
            rejection.challenge().as_deref(),
            Some(r#"Bearer error="invalid_token", error_description="bad ?quote? ? and?newline""#)
        );
    }

    #[test]
    fn grpc_requests_get_trailers_only_status() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        let response = render(
            &Rejection::invalid_credentials("jwt", "token expired: 100% sure é"),
            &headers,
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["grpc-message"], "token expired: 100%25 sure %C3%A9");
        assert!(response.body().is_empty());
        let forbidden = render(&Rejection::forbidden("csrf", "cross-site request"), &headers);
        assert_eq!(forbidden.headers()["grpc-status"], "7");
        let unavailable = render(&Rejection::unavailable("revocation", "feed lost"), &headers);
        assert_eq!(unavailable.headers()["grpc-status"], "14");
    }

    #[test]
    fn typed_source_survives() {
        #[derive(Debug)]
        struct Expired;
        impl fmt::Display for Expired {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("expired")
            }
        }
        impl StdError for Expired {}
        let rejection = Rejection::invalid_credentials("jwt", "token expired").with_source(Expired);
        let response = render(&rejection, &HeaderMap::new());
        let carried = response
            .extensions()
            .get::<Rejection>()
            .expect("rejection in extensions");
        assert!(carried.source_as::<Expired>().is_some());
    }
}
