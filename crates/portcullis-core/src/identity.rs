use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// The authenticated caller, as every Portcullis layer and handler sees it.
///
/// `Identity` is one non-generic type for every way in: a session cookie
/// and a bearer token both end as an `Identity` in the request's extensions.
/// It is cheap to clone (one `Arc`).
///
/// ```
/// use portcullis_core::{AuthMethod, Identity};
///
/// let identity = Identity::builder("bob", AuthMethod::session("3f2a9c01"))
///     .scopes(["notes:read"])
///     .build();
/// assert_eq!(identity.subject(), "bob");
/// assert_eq!(identity.issuer(), "", "no issuer set: the empty issuer");
/// assert!(matches!(identity.method(), AuthMethod::Session { .. }));
/// assert_eq!(identity.scopes(), ["notes:read"]);
/// assert!(identity.claims_json().is_none());
/// ```
#[derive(Clone)]
pub struct Identity(Arc<Inner>);

struct Inner {
    principal: Principal,
    method: AuthMethod,
    scopes: Box<[String]>,
    issued_at: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    claims: Option<Arc<str>>,
}

/// How a caller authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A server-side session, found through its cookie.
    Session {
        /// A short fingerprint of the session id. Never the id itself:
        /// the id is the caller's secret.
        session_fingerprint: Arc<str>,
    },
    /// A signed bearer token (JWT).
    Bearer {
        /// The token's `jti`, when it has one.
        token_id: Option<Arc<str>>,
        /// The token's `iss`, when it has one.
        issuer: Option<Arc<str>>,
        /// Where the token was read from.
        transport: TokenTransport,
    },
}

impl AuthMethod {
    /// A session method, from the session id's fingerprint.
    pub fn session(session_fingerprint: impl Into<Arc<str>>) -> Self {
        Self::Session {
            session_fingerprint: session_fingerprint.into(),
        }
    }

    /// A bearer-token method read from the `Authorization` header.
    pub fn bearer(token_id: Option<Arc<str>>, issuer: Option<Arc<str>>) -> Self {
        Self::Bearer {
            token_id,
            issuer,
            transport: TokenTransport::AuthorizationHeader,
        }
    }

    /// `"session"` or `"bearer"`: a stable name for logs and APIs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Session { .. } => "session",
            Self::Bearer { .. } => "bearer",
        }
    }
}

/// Where a bearer token came from.
///
/// A token from a cookie is sent by the browser on its own, so it needs the
/// same CSRF protection as a session cookie; one from the `Authorization`
/// header cannot be forged cross-site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenTransport {
    /// `Authorization: Bearer …`.
    AuthorizationHeader,
    /// A cookie named in the layer's configuration.
    Cookie,
}

/// A marker an authenticator layer puts in the request's extensions when it
/// found no credential (an [`Identity`] in the extensions says as much by
/// itself).
///
/// Extractors and guards use it to tell "no credential" (401) from "no
/// authenticator layer in the stack" (a misconfiguration, 500).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthenticatorRan;

/// Who a caller is: a subject *within its issuer*.
///
/// A `sub` is unique only within the issuer that assigned it (OIDC Core
/// §2, RFC 7519 §4.1.2): `("https://accounts.example", "alice")` and
/// `("https://app.example", "alice")` are two different people. Every
/// subject-keyed API in Portcullis (the session index, "log out
/// everywhere", refresh-family and subject revocation) takes a `Principal`,
/// never a bare subject. Mapping an external principal onto a local account
/// is the application's explicit decision (look it up, then use the local
/// principal).
///
/// ```
/// use portcullis_core::Principal;
///
/// let local = Principal::new("https://app.example", "alice");
/// let external = Principal::new("https://accounts.example", "alice");
/// assert_ne!(local, external, "same sub, another issuer: another person");
/// assert_eq!(local.subject(), "alice");
/// // The canonical key cannot be forged by moving characters between the
/// // two parts.
/// assert_ne!(Principal::new("a", "bc").key(), Principal::new("ab", "c").key());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    issuer: Arc<str>,
    subject: Arc<str>,
}

impl Principal {
    /// The principal `subject` of `issuer`.
    pub fn new(issuer: impl Into<Arc<str>>, subject: impl Into<Arc<str>>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// The issuer (`iss` of a token; the configured local issuer of a
    /// session). Empty for a token that carried no `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject, unique within [`issuer`](Principal::issuer) only.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The canonical, unambiguous text form stores index by:
    /// `{issuer length in bytes}:{issuer}{subject}`.
    pub fn key(&self) -> String {
        format!("{}:{}{}", self.issuer.len(), self.issuer, self.subject)
    }

    /// Parses [`key`](Principal::key)'s form back; `None` if malformed.
    pub fn from_key(key: &str) -> Option<Self> {
        let (length, rest) = key.split_once(':')?;
        let (issuer, subject) = rest.split_at_checked(length.parse().ok()?)?;
        Some(Self::new(issuer, subject))
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({:?}, {:?})", self.issuer, self.subject)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.subject, self.issuer)
    }
}

impl Identity {
    /// Starts building an identity for `subject`. Its issuer is the one a
    /// bearer `method` names, else the empty one, until
    /// [`IdentityBuilder::issuer`] sets it.
    pub fn builder(subject: impl Into<Arc<str>>, method: AuthMethod) -> IdentityBuilder {
        IdentityBuilder {
            issuer: None,
            subject: subject.into(),
            method,
            scopes: Vec::new(),
            issued_at: None,
            expires_at: None,
            claims: None,
        }
    }

    /// Starts building an identity for `principal` (its parts shared, not
    /// copied).
    pub fn for_principal(principal: Principal, method: AuthMethod) -> IdentityBuilder {
        IdentityBuilder {
            issuer: Some(principal.issuer),
            subject: principal.subject,
            method,
            scopes: Vec::new(),
            issued_at: None,
            expires_at: None,
            claims: None,
        }
    }

    /// The caller's subject (`sub` of a token, the user of a session).
    ///
    /// Unique only within [`issuer`](Identity::issuer): key anything
    /// per-user by [`principal`](Identity::principal).
    pub fn subject(&self) -> &str {
        self.0.principal.subject()
    }

    /// The issuer of the credential: a token's `iss` (empty when it had
    /// none), the session layer's configured local issuer for a session.
    pub fn issuer(&self) -> &str {
        self.0.principal.issuer()
    }

    /// The caller as `(issuer, subject)`: what per-user data is keyed by.
    pub fn principal(&self) -> &Principal {
        &self.0.principal
    }

    /// How the caller authenticated.
    pub fn method(&self) -> &AuthMethod {
        &self.0.method
    }

    /// The scopes (or roles) granted to the caller.
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// Whether the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }

    /// When the credential was issued, when known.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.0.issued_at
    }

    /// When the credential stops being valid, when known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.expires_at
    }

    /// The verified claims of a token, as the JSON object it carried.
    /// `None` for a session.
    pub fn claims_json(&self) -> Option<&str> {
        self.0.claims.as_deref()
    }

    /// Deserializes the verified claims into `T`.
    ///
    /// Returns `None` when the identity has no claims (a session).
    pub fn claims<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.claims_json().map(serde_json::from_str)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims can hold personal data: print only what names the caller.
        f.debug_struct("Identity")
            .field("principal", &self.0.principal)
            .field("method", &self.0.method)
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Identity`]; see [`Identity::builder`].
#[derive(Debug)]
#[must_use]
pub struct IdentityBuilder {
    issuer: Option<Arc<str>>,
    subject: Arc<str>,
    method: AuthMethod,
    scopes: Vec<String>,
    issued_at: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    claims: Option<Arc<str>>,
}

impl IdentityBuilder {
    /// Sets the issuer the subject belongs to.
    pub fn issuer(mut self, issuer: impl Into<Arc<str>>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the granted scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets when the credential was issued.
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// Sets when the credential expires.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Attaches the verified claims, as a JSON object.
    pub fn claims_json(mut self, claims: impl Into<Arc<str>>) -> Self {
        self.claims = Some(claims.into());
        self
    }

    /// Finishes the identity.
    pub fn build(self) -> Identity {
        // A bearer method names its token's issuer: the principal's, unless
        // set otherwise.
        let issuer = self.issuer.unwrap_or_else(|| match &self.method {
            AuthMethod::Bearer {
                issuer: Some(issuer), ..
            } => issuer.clone(),
            _ => Arc::from(""),
        });
        Identity(Arc::new(Inner {
            principal: Principal::new(issuer, self.subject),
            method: self.method,
            scopes: self.scopes.into_boxed_slice(),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            claims: self.claims,
        }))
    }
}
