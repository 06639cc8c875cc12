use std::fmt;

/// A JWS signature algorithm (RFC 7518), as pinned to a key.
///
/// `none` is not an algorithm here: it cannot be configured and a token
/// that names it is always rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variant names are the RFC 7518 names
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The key type an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Algorithm {
    /// The algorithm's RFC 7518 name, as it appears in a token's `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` value. Names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Self::HS256,
            "HS384" => Self::HS384,
            "HS512" => Self::HS512,
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "EdDSA" => Self::EdDSA,
            _ => return None,
        })
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => Family::Hmac,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => Family::Rsa,
            Self::ES256 | Self::ES384 => Family::Ec,
            Self::EdDSA => Family::Ed,
        }
    }

    /// Every algorithm, in declaration order (see [`Algorithm::index`]).
    pub(crate) const ALL: [Self; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// This algorithm's position in [`Algorithm::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The same algorithm as jsonwebtoken names it.
    pub(crate) fn engine(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as Engine;
        match self {
            Self::HS256 => Engine::HS256,
            Self::HS384 => Engine::HS384,
            Self::HS512 => Engine::HS512,
            Self::RS256 => Engine::RS256,
            Self::RS384 => Engine::RS384,
            Self::RS512 => Engine::RS512,
            Self::PS256 => Engine::PS256,
            Self::PS384 => Engine::PS384,
            Self::PS512 => Engine::PS512,
            Self::ES256 => Engine::ES256,
            Self::ES384 => Engine::ES384,
            Self::EdDSA => Engine::EdDSA,
        }
    }

    /// The shortest HMAC secret accepted: the hash output's length
    /// (RFC 7518 §3.2). `None` for the asymmetric algorithms.
    pub(crate) fn min_secret_len(self) -> Option<usize> {
        match self {
            Self::HS256 => Some(32),
            Self::HS384 => Some(48),
            Self::HS512 => Some(64),
            _ => None,
        }
    }

    /// The aws-lc-rs algorithm a public key is checked against when it is
    /// loaded (a key that does not parse is refused then, not at the first
    /// token).
    pub(crate) fn verification(self) -> Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm> {
        use aws_lc_rs::signature as sig;
        Some(match self {
            Self::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Self::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Self::EdDSA => &sig::ED25519,
            Self::HS256 | Self::HS384 | Self::HS512 => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = crate::KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or(crate::KeyError::UnsupportedAlgorithm)
    }
}
