use portcullis_core::Rejection;

/// Why a bearer token was refused. The `Display` text is the short reason
/// sent to the client in the RFC 6750 challenge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// More than one `Authorization` header.
    #[error("multiple authorization headers")]
    MultipleAuthorizationHeaders,
    /// The `Authorization` header is not valid visible ASCII, or its
    /// bearer credential is empty.
    #[error("malformed authorization header")]
    MalformedAuthorizationHeader,
    /// The token is longer than the configured limit (checked before any
    /// decoding).
    #[error("token too large")]
    TooLarge,
    /// The token is not a compact JWS (three base64url parts).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token names `alg: none`, in any spelling.
    #[error("alg none is not accepted")]
    AlgNone,
    /// The token names an algorithm this library does not verify.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The token carries a header that points at key material (`jku`,
    /// `x5u`, `jwk`, `x5c`). Such headers are never followed, and a token
    /// that carries one is refused outright.
    #[error("token header {0} is not accepted")]
    KeyReferenceHeader(&'static str),
    /// The token lists `crit` extensions, none of which are understood.
    #[error("unsupported critical header")]
    CriticalHeader,
    /// No configured key has the token's `kid`.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The token's `alg` is not the algorithm pinned to the key (or to any
    /// key, when the token has no `kid`).
    #[error("algorithm not allowed for this key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// A claim that must be present is not.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// A claim has the wrong type or an impossible value.
    #[error("malformed claim {0}")]
    InvalidClaim(&'static str),
    /// `iss` is not one of the configured issuers.
    #[error("issuer not accepted")]
    IssuerMismatch,
    /// `aud` names none of the configured audiences.
    #[error("audience not accepted")]
    AudienceMismatch,
    /// The header's `typ` is not the configured one.
    #[error("unexpected token type")]
    TypeMismatch,
    /// jsonwebtoken, the engine, refused a token Portcullis's own checks
    /// accept (a header member it cannot read, say). Refused all the same;
    /// the reason is the engine's, without its detail.
    #[error("refused by the JWT engine: {0}")]
    EngineRefused(&'static str),
    /// jsonwebtoken has no process-level crypto provider in this build
    /// (both of its backends enabled, none installed): a 500, since no
    /// token can be checked. The fix is
    /// [`install_crypto_provider`](crate::install_crypto_provider) at the
    /// start of `main`.
    #[error("{}", crate::engine::PROVIDER_FIX)]
    CryptoProvider,
    /// The keys to verify with are unavailable (a remote key set not yet
    /// loaded, or stale past its bound): a 503, since the token may be fine.
    #[error("{reason}: {detail}")]
    KeysUnavailable {
        /// What failed, fit for a response body: `signing keys not loaded
        /// yet`, `signing keys stale`, `signing keys unavailable`.
        reason: &'static str,
        /// Why, for the audit event only: it can name the key source's URL
        /// and the transport's error.
        detail: String,
    },
}

impl JwtError {
    /// The rejection this error becomes: 401 `invalid_token`, or 503 when
    /// the keys are unavailable.
    pub fn into_rejection(self) -> Rejection {
        match self {
            // The detail (a URL, a transport error) is for the audit event
            // and the source, never the body.
            Self::KeysUnavailable { reason, .. } => Rejection::unavailable(crate::LAYER, reason).with_source(self),
            Self::CryptoProvider => {
                Rejection::misconfigured(crate::LAYER, "no JWT crypto provider installed").with_source(self)
            }
            _ => Rejection::invalid_credentials(crate::LAYER, self.to_string()).with_source(self),
        }
    }
}

impl From<JwtError> for Rejection {
    fn from(error: JwtError) -> Self {
        error.into_rejection()
    }
}

/// Why a key could not be loaded or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM text could not be parsed.
    #[error("invalid PEM")]
    InvalidPem,
    /// The PEM block holds something other than what was asked for.
    #[error("unexpected PEM block {0:?}")]
    UnexpectedPemLabel(String),
    /// The DER or JWK key material is malformed or of an unsupported type.
    #[error("invalid or unsupported key: {0}")]
    InvalidKey(&'static str),
    /// The algorithm does not fit the key's type.
    #[error("algorithm {0} does not fit this key")]
    AlgorithmMismatch(crate::Algorithm),
    /// Not an algorithm this library supports.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// An HMAC secret shorter than the hash output (RFC 7518 §3.2).
    #[error("the HMAC secret is too short: {got} bytes, at least {needed} required")]
    ShortSecret {
        /// The secret's length.
        got: usize,
        /// The minimum length for the algorithm.
        needed: usize,
    },
    /// The JWK is marked for another use (`use`/`key_ops`).
    #[error("key is not for signature verification")]
    WrongKeyUse,
    /// Signing failed.
    #[error("signing failed")]
    SigningFailed,
    /// jsonwebtoken has no process-level crypto provider in this build;
    /// see [`install_crypto_provider`](crate::install_crypto_provider).
    #[error("{}", crate::engine::PROVIDER_FIX)]
    CryptoProvider,
}

/// Why a layer configuration is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No key to verify with.
    #[error("the key set is empty")]
    NoKeys,
    /// No audience configured. Without one, a token minted for any other
    /// service of the same issuer would be accepted. Configure
    /// `Validation::audience(…)`, or opt out with
    /// `Validation::insecure_accept_any_audience()`.
    #[error("no audience configured (set one, or call insecure_accept_any_audience)")]
    NoAudience,
    /// No issuer configured. Configure `Validation::issuer(…)`, or opt out
    /// with `Validation::insecure_accept_any_issuer()`.
    #[error("no issuer configured (set one, or call insecure_accept_any_issuer)")]
    NoIssuer,
    /// The token size limit is zero.
    #[error("the maximum token size must be above zero")]
    ZeroTokenSize,
    /// A multi-issuer verifier needs verifiers with exactly one issuer
    /// each, all different.
    #[error("multi-issuer verifier: {0}")]
    Issuers(String),
    /// jsonwebtoken has no process-level crypto provider in this build
    /// (both of its backends enabled in the dependency tree, none
    /// installed); see
    /// [`install_crypto_provider`](crate::install_crypto_provider).
    #[error("{}", crate::engine::PROVIDER_FIX)]
    CryptoProvider,
}
