//! The relying party: discovery, the authorization request, the callback
//! (code exchange and ID token), RP-initiated logout and the logout token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, StatusCode};
use portcullis_core::{Principal, SecretKeyring, StoreError, SystemClock};
use portcullis_jwt::remote::{RemoteKeys, RemoteOptions};
use portcullis_jwt::{JwtError, JwtIssuer, JwtVerifier, Keys, Validation};
use portcullis_session::{Session, Sessions};
use serde::Deserialize;
use tower::ServiceExt;

use crate::http::{HttpClient, default_client, transport_allowed};
use crate::seal::Sealer;
use crate::upstream::{Refreshes, UpstreamTokens};
use crate::{
    IdTokenClaims, IdTokenError, IdTokenExpectations, LoginTransactions, LogoutToken, LogoutTokenError,
    LogoutTokenExpectations, ReplayCache, ReturnPath, TransactionError, validate_id_token, validate_logout_token,
};

/// How this client authenticates at the token endpoint.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `private_key_jwt` (OIDC Core §9, RFC 7523): a short-lived assertion
    /// signed by this [`JwtIssuer`]'s key, no shared secret. The issuer's
    /// name must be the `client_id`, and its audience what the provider
    /// accepts (its token endpoint URL, or its issuer identifier); publish
    /// its [`jwks`](JwtIssuer::jwks) in the client's registration. Each
    /// assertion lives 60 s with a fresh `jti`, whatever the issuer's own
    /// token lifetime.
    ///
    /// ```
    /// use portcullis_jwt::{JwtIssuer, SigningKey};
    /// use portcullis_oidc::{ClientAuth, ClientConfig};
    ///
    /// let assertions = JwtIssuer::new(SigningKey::generate_p256()?.with_kid("app-1"), "app", "https://idp.example/token");
    /// let mut config = ClientConfig::new("app", "", "https://app.example/login/oidc/callback");
    /// config.auth = ClientAuth::PrivateKeyJwt(assertions);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    PrivateKeyJwt(JwtIssuer),
}

/// How long one client assertion lives.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// This relying party, as registered at the provider.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// The callback URL registered at the provider.
    pub redirect_uri: String,
    /// Scopes asked for (`openid` is always sent).
    pub scopes: Vec<String>,
    /// How the client authenticates at the token endpoint.
    pub auth: ClientAuth,
    /// The oldest ID token `iat` accepted at a callback (default 10 min).
    pub max_id_token_age: Duration,
    /// Clock skew allowed on token times (default 60 s).
    pub leeway: Duration,
    /// **Insecure**: reach the provider over plain `http://` beyond
    /// loopback (default `false`).
    pub insecure_allow_http: bool,
    /// Keep the provider's access and refresh tokens, sealed, in the
    /// session store (never in a cookie), for
    /// [`OidcClient::access_token`] (default `false`: an app that does not
    /// call the provider's APIs keeps nothing it could leak).
    pub keep_upstream_tokens: bool,
    /// Refresh a kept access token once it has less than this left
    /// (default 30 s).
    pub refresh_ahead: Duration,
}

impl ClientConfig {
    /// A confidential client with `client_secret_basic`, scope `openid`.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
            scopes: Vec::new(),
            auth: ClientAuth::default(),
            max_id_token_age: Duration::from_secs(600),
            leeway: Duration::from_secs(60),
            insecure_allow_http: false,
            keep_upstream_tokens: false,
            refresh_ahead: Duration::from_secs(30),
        }
    }

    /// Keeps the provider's tokens, sealed in the session store, for
    /// [`OidcClient::access_token`]; the scopes asked for are `scopes`
    /// (`offline_access`, for instance, for a refresh token).
    ///
    /// ```
    /// use portcullis_oidc::ClientConfig;
    /// let config = ClientConfig::new("app", "secret", "https://app.example/login/oidc/callback")
    ///     .keep_upstream_tokens(["offline_access", "api:read"]);
    /// assert!(config.keep_upstream_tokens);
    /// assert_eq!(config.scopes, ["offline_access", "api:read"]);
    /// ```
    #[must_use]
    pub fn keep_upstream_tokens<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keep_upstream_tokens = true;
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The provider's discovery document, the members a relying party uses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// `issuer`, equal to the configured one.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `end_session_endpoint` (RP-initiated logout), if offered.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// `code_challenge_methods_supported`.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: the provider sends `iss` with every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl ProviderMetadata {
    /// Metadata with the required endpoints, PKCE S256, no logout endpoint.
    pub fn new(
        issuer: impl Into<String>,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
        jwks_uri: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            authorization_endpoint: authorization_endpoint.into(),
            token_endpoint: token_endpoint.into(),
            jwks_uri: jwks_uri.into(),
            end_session_endpoint: None,
            code_challenge_methods_supported: vec!["S256".into()],
            authorization_response_iss_parameter_supported: false,
        }
    }
}

/// Why discovery failed; the client cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer or an endpoint is not `https` (loopback excepted).
    #[error("{0}: provider URLs must be https (loopback and insecure_allow_http excepted)")]
    Transport(String),
    /// The document could not be fetched or read.
    #[error("provider discovery failed: {0}")]
    Fetch(String),
    /// The document names another issuer (OIDC Discovery §4.3: exact match).
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's.
        found: String,
    },
    /// The provider does not offer PKCE with S256.
    #[error("the provider does not support PKCE with S256")]
    NoPkce,
    /// The client's configuration cannot work (a `private_key_jwt` issuer
    /// not named after the `client_id`).
    #[error("client configuration: {0}")]
    Config(&'static str),
}

/// Why a callback was refused. No session is made; the reason is named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The query is not a callback (no `code`/`state`, repeated or oversized).
    #[error("malformed callback: {0}")]
    Malformed(&'static str),
    /// The provider answered with an error (`access_denied`, …).
    #[error("the provider refused the login: {0}")]
    Provider(String),
    /// No transaction, a tampered one, or an expired one.
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// The state was used already (a replayed callback).
    #[error("callback replayed")]
    Replayed,
    /// RFC 9207 `iss` missing (when the provider promises it) or not the issuer.
    #[error("the callback's iss is not the provider's")]
    Issuer,
    /// The token endpoint refused the code (`invalid_grant`: a code of
    /// another login, a PKCE mismatch, a code used twice).
    #[error("the token endpoint refused the code: {0}")]
    CodeRefused(String),
    /// The token response is not what OIDC requires (no `id_token`).
    #[error("malformed token response: {0}")]
    TokenResponse(&'static str),
    /// The ID token broke a rule.
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    /// The provider or the replay cache could not be reached: a 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl CallbackError {
    /// The reason, short and safe to show (no address, no driver error).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed callback",
            Self::Provider(_) => "provider refused the login",
            Self::Transaction(error) => error.reason(),
            Self::Replayed => "replayed callback",
            Self::Issuer => "callback issuer",
            Self::CodeRefused(_) => "code refused",
            Self::TokenResponse(_) => "malformed token response",
            Self::IdToken(error) => error.reason(),
            Self::Unavailable(_) => "provider unavailable",
        }
    }

    /// 503 for an outage, 400 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) | Self::IdToken(IdTokenError::Jwt(JwtError::KeysUnavailable { .. })) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Why a back-channel logout request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackchannelError {
    /// No single `logout_token` form field.
    #[error("no logout_token in the request")]
    Malformed,
    /// The token broke a rule (replays included).
    #[error(transparent)]
    Token(#[from] LogoutTokenError),
    /// The provider's keys or the replay cache could not be reached: 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl BackchannelError {
    /// The reason, short and safe to show.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "no logout token",
            Self::Token(error) => error.reason(),
            Self::Unavailable(_) => "logout unavailable",
        }
    }

    /// 503 for an outage, 400 for everything else (Back-Channel Logout §2.8).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A login redirect: send the browser to `url`, with `set_cookie`.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoginRedirect {
    /// The provider's authorization URL for this login.
    pub url: String,
    /// The `Set-Cookie` value of this login's transaction.
    pub set_cookie: String,
}

/// A callback accepted: who signed in, and where they go.
#[non_exhaustive]
pub struct CompletedLogin {
    /// `(provider issuer, sub)`.
    pub principal: Principal,
    /// The ID token's claims (`sid` among them).
    pub claims: IdTokenClaims,
    /// The validated same-origin path to redirect to.
    pub return_to: ReturnPath,
    /// The `Set-Cookie` value that removes the transaction cookie.
    pub remove_cookie: String,
    /// The raw ID token (the `id_token_hint` of an RP-initiated logout).
    pub id_token: String,
    /// The provider's access token.
    pub access_token: String,
    /// The provider's refresh token, if it sent one.
    pub refresh_token: Option<String>,
    /// When the access token expires, if the provider said (`expires_in`).
    pub access_token_expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for CompletedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletedLogin")
            .field("principal", &self.principal)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) access_token: Option<String>,
    #[serde(default)]
    pub(crate) id_token: Option<String>,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    /// Seconds the access token lives.
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

/// What can go wrong at the token endpoint.
pub(crate) enum TokenEndpointError {
    /// A 4xx, with the OAuth `error` (`invalid_grant`, …).
    Refused(String),
    /// A 2xx that is not a JSON token response.
    Malformed,
    /// Unreachable, or a 5xx.
    Unavailable(String),
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
}

/// An OpenID Connect relying party for one provider.
///
/// Built by [`OidcClient::discover`]; cheap to clone.
#[derive(Clone)]
pub struct OidcClient(pub(crate) Arc<Inner>);

#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) metadata: ProviderMetadata,
    pub(crate) config: ClientConfig,
    pub(crate) keys: Keys,
    pub(crate) verifier: JwtVerifier,
    http: HttpClient,
    transactions: LoginTransactions,
    replay: Arc<dyn ReplayCache>,
    /// Seals the tokens kept in the session store.
    pub(crate) tokens: Arc<Sealer>,
    /// Upstream-token refreshes in flight or just done, one per refresh
    /// token (see `upstream.rs`).
    pub(crate) refreshes: Arc<Refreshes>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.0.metadata.issuer)
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

const STATE_NAMESPACE: &str = "oidc-state";
const JTI_NAMESPACE: &str = "oidc-logout-jti";

impl OidcClient {
    /// Discovers `issuer` (its `/.well-known/openid-configuration`, whose
    /// `issuer` must be exactly `issuer`), with the default HTTP client.
    /// `secrets` seal login transactions; `replay` is shared by every node.
    pub async fn discover(
        issuer: &str,
        config: ClientConfig,
        secrets: &SecretKeyring,
        replay: Arc<dyn ReplayCache>,
    ) -> Result<Self, DiscoveryError> {
        Self::discover_with_client(issuer, config, secrets, replay, default_client()).await
    }

    /// [`discover`](Self::discover) with your own HTTP client.
    pub async fn discover_with_client(
        issuer: &str,
        config: ClientConfig,
        secrets: &SecretKeyring,
        replay: Arc<dyn ReplayCache>,
        http: HttpClient,
    ) -> Result<Self, DiscoveryError> {
        let allowed = |url: &str| {
            transport_allowed(url, config.insecure_allow_http)
                .then_some(())
                .ok_or_else(|| DiscoveryError::Transport(url.to_owned()))
        };
        allowed(issuer)?;
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let request = Request::get(&url)
            .header(ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|error| DiscoveryError::Fetch(error.to_string()))?;
        let response = http
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| DiscoveryError::Fetch(error.to_string()))?;
        if !response.status().is_success() {
            return Err(DiscoveryError::Fetch(format!("{url} answered {}", response.status())));
        }
        let metadata: ProviderMetadata = serde_json::from_slice(response.body())
            .map_err(|error| DiscoveryError::Fetch(format!("{url}: {error}")))?;
        if metadata.issuer != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: metadata.issuer,
            });
        }
        let mut options = RemoteOptions::default();
        options.insecure_allow_http = config.insecure_allow_http;
        let keys = Keys::Remote(RemoteKeys::jwks_url(metadata.jwks_uri.clone(), options));
        Self::from_metadata(metadata, config, keys, secrets, replay, http)
    }

    /// A client for a provider whose metadata and keys you already have
    /// (static configuration, tests): the same checks as discovery, no
    /// fetch. `keys` verify ID and logout tokens.
    pub fn from_metadata(
        metadata: ProviderMetadata,
        config: ClientConfig,
        keys: Keys,
        secrets: &SecretKeyring,
        replay: Arc<dyn ReplayCache>,
        http: HttpClient,
    ) -> Result<Self, DiscoveryError> {
        let allowed = |url: &str| {
            transport_allowed(url, config.insecure_allow_http)
                .then_some(())
                .ok_or_else(|| DiscoveryError::Transport(url.to_owned()))
        };
        for endpoint in [
            &metadata.issuer,
            &metadata.authorization_endpoint,
            &metadata.token_endpoint,
            &metadata.jwks_uri,
        ]
        .into_iter()
        .chain(metadata.end_session_endpoint.as_ref())
        {
            allowed(endpoint)?;
        }
        if !metadata
            .code_challenge_methods_supported
            .iter()
            .any(|method| method == "S256")
        {
            return Err(DiscoveryError::NoPkce);
        }
        let mut config = config;
        if let ClientAuth::PrivateKeyJwt(assertions) = &config.auth {
            if assertions.issuer() != config.client_id {
                return Err(DiscoveryError::Config(
                    "a private_key_jwt issuer must be named after the client_id",
                ));
            }
            // An assertion is no access token: short-lived, and no `at+jwt` type.
            config.auth =
                ClientAuth::PrivateKeyJwt(assertions.clone().access_token_ttl(ASSERTION_LIFETIME).token_type(None));
        }
        let validation = Validation::new()
            .issuer(metadata.issuer.clone())
            .audience(config.client_id.clone())
            .leeway(config.leeway);
        let verifier = JwtVerifier::with_keys(keys.clone(), validation, Arc::new(SystemClock), None)
            .map_err(|error| DiscoveryError::Fetch(error.to_string()))?;
        let transactions = if metadata.issuer.starts_with("http://") || config.redirect_uri.starts_with("http://") {
            LoginTransactions::new(secrets).insecure_http()
        } else {
            LoginTransactions::new(secrets)
        };
        Ok(Self(Arc::new(Inner {
            metadata,
            config,
            keys,
            verifier,
            http,
            transactions,
            replay,
            tokens: Arc::new(Sealer::new(secrets, "portcullis-oidc session tokens")),
            refreshes: Arc::new(Refreshes::default()),
        })))
    }

    /// The provider's metadata.
    pub fn metadata(&self) -> &ProviderMetadata {
        &self.0.metadata
    }

    /// The login transactions (to change their lifetime, build the client
    /// with [`with_transactions`](Self::with_transactions)).
    pub fn transactions(&self) -> &LoginTransactions {
        &self.0.transactions
    }

    /// This client with other login transactions (a lifetime, plain HTTP).
    #[must_use]
    pub fn with_transactions(self, transactions: LoginTransactions) -> Self {
        let mut inner = (*self.0).clone();
        inner.transactions = transactions;
        Self(Arc::new(inner))
    }

    /// Begins a login: the authorization URL (code flow, PKCE S256,
    /// `state`, `nonce`) and the cookie of its transaction.
    pub fn begin_login(&self, return_to: ReturnPath) -> LoginRedirect {
        let inner = &*self.0;
        let pending = inner.transactions.begin(return_to, SystemTime::now());
        let scope = std::iter::once("openid")
            .chain(
                inner
                    .config
                    .scopes
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != "openid"),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &inner.config.client_id)
            .append_pair("redirect_uri", &inner.config.redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", pending.state())
            .append_pair("nonce", pending.nonce())
            .append_pair("code_challenge", &pending.code_challenge())
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if inner.metadata.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        LoginRedirect {
            url: format!("{}{separator}{query}", inner.metadata.authorization_endpoint),
            set_cookie: pending.set_cookie().to_owned(),
        }
    }

    /// Completes a login at its callback: `query` is the callback URL's
    /// query, `headers` the request's (its cookies hold the transaction).
    pub async fn complete_login(&self, headers: &HeaderMap, query: &str) -> Result<CompletedLogin, CallbackError> {
        let inner = &*self.0;
        let params = CallbackParams::parse(query)?;
        let state = params.state.as_deref().ok_or(CallbackError::Malformed("no state"))?;
        let now = SystemTime::now();
        let transaction = inner.transactions.take(headers, state, now)?;
        let remember_until = now + Duration::from_secs(3600);
        let first = inner
            .replay
            .first_use(STATE_NAMESPACE, state, remember_until)
            .await
            .map_err(unavailable)?;
        if !first {
            return Err(CallbackError::Replayed);
        }
        // RFC 9207: a response from another provider (mix-up) is refused.
        match params.iss.as_deref() {
            Some(iss) if iss != inner.metadata.issuer => return Err(CallbackError::Issuer),
            None if inner.metadata.authorization_response_iss_parameter_supported => {
                return Err(CallbackError::Issuer);
            }
            _ => {}
        }
        if let Some(error) = params.error {
            return Err(CallbackError::Provider(error));
        }
        let code = params.code.ok_or(CallbackError::Malformed("no code"))?;
        let tokens = self.exchange(&code, transaction.code_verifier()).await?;
        let id_token = tokens.id_token.ok_or(CallbackError::TokenResponse("no id_token"))?;
        let access_token = tokens
            .access_token
            .ok_or(CallbackError::TokenResponse("no access_token"))?;
        let expect = IdTokenExpectations {
            client_id: &inner.config.client_id,
            nonce: Some(transaction.nonce()),
            refresh: false,
            access_token: Some(&access_token),
            max_age: inner.config.max_id_token_age,
            now,
        };
        let claims = self.validate_id_token(&id_token, &expect).await?;
        Ok(CompletedLogin {
            principal: Principal::new(claims.issuer.clone(), claims.subject.clone()),
            claims,
            return_to: transaction.return_to().clone(),
            remove_cookie: transaction.remove_cookie().to_owned(),
            id_token,
            access_token,
            refresh_token: tokens.refresh_token,
            access_token_expires_at: tokens.expires_in.map(|lifetime| now + Duration::from_secs(lifetime)),
        })
    }

    /// [`validate_id_token`] with this client's verifier, once more after
    /// refetching the provider's keys when the token names a key not seen
    /// yet (one the provider rotated in since the last fetch).
    pub(crate) async fn validate_id_token(
        &self,
        token: &str,
        expect: &IdTokenExpectations<'_>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let inner = &*self.0;
        match validate_id_token(&inner.verifier, token, expect) {
            Err(IdTokenError::Jwt(JwtError::UnknownKeyId)) if refetch_keys(&inner.keys).await => {
                validate_id_token(&inner.verifier, token, expect)
            }
            result => result,
        }
    }

    async fn exchange(&self, code: &str, code_verifier: &str) -> Result<TokenResponse, CallbackError> {
        let config = &self.0.config;
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &config.redirect_uri),
            ("code_verifier", code_verifier),
        ];
        self.token_request(&grant).await.map_err(|error| match error {
            TokenEndpointError::Refused(error) => CallbackError::CodeRefused(error),
            TokenEndpointError::Malformed => CallbackError::TokenResponse("not a JSON token response"),
            TokenEndpointError::Unavailable(error) => CallbackError::Unavailable(error),
        })
    }

    /// One request to the token endpoint: `grant`, plus the client's
    /// authentication.
    pub(crate) async fn token_request(&self, grant: &[(&str, &str)]) -> Result<TokenResponse, TokenEndpointError> {
        let inner = &*self.0;
        let config = &inner.config;
        // Built before any await: the form serializer is not `Send`.
        let (body, basic) = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.extend_pairs(grant);
            let basic = match &config.auth {
                ClientAuth::ClientSecretBasic => {
                    let encode = |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
                    let credentials = format!("{}:{}", encode(&config.client_id), encode(&config.client_secret));
                    Some(format!("Basic {}", STANDARD.encode(credentials)))
                }
                ClientAuth::ClientSecretPost => {
                    form.append_pair("client_id", &config.client_id)
                        .append_pair("client_secret", &config.client_secret);
                    None
                }
                ClientAuth::PrivateKeyJwt(assertions) => {
                    let assertion = assertions
                        .mint(&config.client_id, Vec::<String>::new())
                        .map_err(|error| TokenEndpointError::Unavailable(format!("client assertion: {error}")))?;
                    form.append_pair("client_id", &config.client_id)
                        .append_pair(
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        )
                        .append_pair("client_assertion", &assertion);
                    None
                }
            };
            (form.finish(), basic)
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&inner.metadata.token_endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if let Some(basic) = basic {
            request = request.header(AUTHORIZATION, basic);
        }
        let request = request
            .body(Bytes::from(body))
            .map_err(|error| TokenEndpointError::Unavailable(error.to_string()))?;
        let response = inner
            .http
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| TokenEndpointError::Unavailable(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return serde_json::from_slice(response.body()).map_err(|_| TokenEndpointError::Malformed);
        }
        if status.is_client_error() {
            let error = serde_json::from_slice::<TokenErrorResponse>(response.body())
                .map_or_else(|_| status.to_string(), |body| body.error);
            return Err(TokenEndpointError::Refused(error));
        }
        Err(TokenEndpointError::Unavailable(format!(
            "token endpoint answered {status}"
        )))
    }

    /// The provider's logout URL (RP-initiated logout 1.0), if it has an
    /// `end_session_endpoint`. End the local session first.
    pub fn logout_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Option<String> {
        let inner = &*self.0;
        let endpoint = inner.metadata.end_session_endpoint.as_deref()?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("client_id", &inner.config.client_id);
        if let Some(hint) = id_token_hint {
            query.append_pair("id_token_hint", hint);
        }
        if let Some(uri) = post_logout_redirect_uri {
            query.append_pair("post_logout_redirect_uri", uri);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Some(format!("{endpoint}{separator}{}", query.finish()))
    }

    /// Validates a back-channel logout request body
    /// (`application/x-www-form-urlencoded` with one `logout_token`),
    /// its `jti` single-use across every node.
    pub async fn verify_backchannel_logout(&self, body: &[u8]) -> Result<LogoutToken, BackchannelError> {
        let inner = &*self.0;
        let mut tokens = form_urlencoded::parse(body).filter(|(name, _)| name == "logout_token");
        let (Some((_, token)), None) = (tokens.next(), tokens.next()) else {
            return Err(BackchannelError::Malformed);
        };
        let expect = LogoutTokenExpectations {
            issuer: &inner.metadata.issuer,
            client_id: &inner.config.client_id,
            now: SystemTime::now(),
            leeway: inner.config.leeway,
        };
        let current = || match &inner.keys {
            Keys::Static(keys) => Ok(keys.clone()),
            Keys::Remote(remote) => remote
                .current()
                .map_err(|error| BackchannelError::Unavailable(error.to_string())),
            _ => Err(BackchannelError::Unavailable("an unknown kind of key source".into())),
        };
        let logout = match validate_logout_token(&current()?, &token, &expect) {
            Err(LogoutTokenError::Jwt(JwtError::UnknownKeyId | JwtError::InvalidSignature))
                if refetch_keys(&inner.keys).await =>
            {
                validate_logout_token(&current()?, &token, &expect)
            }
            result => result,
        }?;
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(logout.expires_at) + inner.config.leeway;
        let first = inner
            .replay
            .first_use(JTI_NAMESPACE, &logout.token_id, until)
            .await
            .map_err(|error| BackchannelError::Unavailable(error.to_string()))?;
        if !first {
            return Err(LogoutTokenError::Replayed.into());
        }
        Ok(logout)
    }

    /// Back-channel logout, whole: verifies the body's logout token
    /// ([`verify_backchannel_logout`](Self::verify_backchannel_logout)),
    /// then ends what it names on every node sharing `sessions`' store —
    /// with a `sid`, the sessions that provider session started (the
    /// `(issuer, sid)` index, see [`log_in`](Self::log_in)), and the
    /// user's other sessions stay; with a `sub` alone, every session of
    /// `(issuer, sub)`. Returns how many ended. Answer 200 on `Ok` (also
    /// when nothing was left to end), and the error's
    /// [`status`](BackchannelError::status) otherwise.
    pub async fn backchannel_logout(&self, sessions: &Sessions, body: &[u8]) -> Result<usize, BackchannelError> {
        let logout = self.verify_backchannel_logout(body).await?;
        let ended = match (&logout.session_id, &logout.subject) {
            (Some(session), _) => sessions.end_provider_session(&logout.issuer, session).await,
            (None, Some(subject)) => {
                sessions
                    .end_all(&Principal::new(logout.issuer.as_str(), subject.as_str()))
                    .await
            }
            // Refused by the validation: never both absent.
            (None, None) => return Err(LogoutTokenError::NoTarget.into()),
        };
        ended.map_err(|error| BackchannelError::Unavailable(error.to_string()))
    }
}

/// The session entry an OIDC login leaves: the provider's session, and
/// the ID token (sealed: the session store never holds it in the clear)
/// for the `id_token_hint` of an RP-initiated logout.
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct SessionEntry {
    pub(crate) issuer: String,
    pub(crate) sid: Option<String>,
    pub(crate) id_token: String,
    /// The upstream tokens, sealed, when the client keeps them
    /// ([`ClientConfig::keep_upstream_tokens`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tokens: Option<String>,
}

impl OidcClient {
    /// The session key of the OIDC entry (`portcullis.oidc`).
    pub const SESSION_KEY: &'static str = "portcullis.oidc";

    /// Logs the user of `login` into `session`: principal `(provider
    /// issuer, sub)`, the session id rotated when the response is saved,
    /// the provider's `sid` recorded and indexed (its back-channel logout
    /// ends this session: [`backchannel_logout`](Self::backchannel_logout)),
    /// the ID token sealed for logout, and — with
    /// [`ClientConfig::keep_upstream_tokens`] — the access and refresh
    /// tokens sealed for [`access_token`](Self::access_token). Call it in
    /// the callback's handler.
    pub fn log_in(&self, session: &Session, login: &CompletedLogin) -> Result<(), serde_json::Error> {
        session.login_from_provider(
            login.principal.clone(),
            login.claims.session_id.clone(),
            Vec::<String>::new(),
        );
        let tokens = if self.0.config.keep_upstream_tokens {
            let tokens = UpstreamTokens {
                access_token: login.access_token.clone(),
                refresh_token: login.refresh_token.clone(),
                expires_at: login
                    .access_token_expires_at
                    .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|at| at.as_secs()),
                nonce: login
                    .claims
                    .raw
                    .get("nonce")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
            };
            let context = UpstreamTokens::context(&login.principal);
            Some(self.0.tokens.seal(&serde_json::to_vec(&tokens)?, &context))
        } else {
            None
        };
        let entry = SessionEntry {
            issuer: login.claims.issuer.clone(),
            sid: login.claims.session_id.clone(),
            id_token: self
                .0
                .tokens
                .seal(login.id_token.as_bytes(), login.principal.key().as_bytes()),
            tokens,
        };
        session.insert(Self::SESSION_KEY, &entry)
    }

    /// The provider's `(issuer, sid)` of a session logged in by OIDC.
    pub fn provider_session(session: &Session) -> Option<(String, Option<String>)> {
        let entry: SessionEntry = session.get(Self::SESSION_KEY).ok().flatten()?;
        Some((entry.issuer, entry.sid))
    }

    /// RP-initiated logout: ends the local session first, then returns the
    /// provider's logout URL (with the ID token as `id_token_hint`) to
    /// redirect the browser to; `None` when the session was not an OIDC
    /// one of this provider or the provider has no `end_session_endpoint`
    /// (the local session is ended either way).
    pub fn end_session(
        &self,
        session: &Session,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Option<String> {
        let entry: Option<SessionEntry> = session.get(Self::SESSION_KEY).ok().flatten();
        let principal = session.principal();
        session.logout();
        let entry = entry.filter(|entry| entry.issuer == self.0.metadata.issuer)?;
        let hint = principal
            .and_then(|principal| self.0.tokens.open(&entry.id_token, principal.key().as_bytes()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        self.logout_url(hint.as_deref(), post_logout_redirect_uri, state)
    }
}

/// Refetches remote keys after an unknown `kid` (rate-limited by the key
/// set); `true` if there may be new keys to try.
async fn refetch_keys(keys: &Keys) -> bool {
    match keys {
        Keys::Remote(remote) => remote.refresh_for_unknown_kid().await,
        _ => false,
    }
}

fn unavailable(error: StoreError) -> CallbackError {
    CallbackError::Unavailable(error.to_string())
}

/// The callback query, each parameter at most once.
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

impl CallbackParams {
    const MAX_QUERY: usize = 4096;

    fn parse(query: &str) -> Result<Self, CallbackError> {
        if query.len() > Self::MAX_QUERY {
            return Err(CallbackError::Malformed("query too long"));
        }
        let mut params = Self {
            code: None,
            state: None,
            iss: None,
            error: None,
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*name {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(CallbackError::Malformed("a parameter is repeated"));
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_queries_are_read_strictly() {
        let params = CallbackParams::parse("code=abc&state=xyz&iss=https%3A%2F%2Fp.test").expect("parsed");
        assert_eq!(params.code.as_deref(), Some("abc"));
        assert_eq!(params.iss.as_deref(), Some("https://p.test"));
        assert!(matches!(
            CallbackParams::parse("code=a&code=b&state=s"),
            Err(CallbackError::Malformed("a parameter is repeated"))
        ));
        assert!(matches!(
            CallbackParams::parse(&"a".repeat(5000)),
            Err(CallbackError::Malformed("query too long"))
        ));
    }
}

#[cfg(test)]
mod send_check {
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn futures_are_send(client: &super::OidcClient, headers: &http::HeaderMap) {
        is_send(client.complete_login(headers, ""));
        is_send(client.verify_backchannel_logout(b""));
    }
}
