//! The error and future types every Portcullis store shares: session,
//! revocation and refresh stores, in this workspace or yours.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A store's boxed future (object-safe store traits return it).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Which store failed: it names the store in messages and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// A `SessionStore`.
    Session,
    /// A `RevocationStore`.
    Revocation,
    /// A `RefreshStore`.
    Refresh,
    /// A replay cache (single-use OIDC `state`s and logout-token `jti`s).
    Replay,
}

impl StoreKind {
    /// The lower-case name used in messages: `session`, `revocation`,
    /// `refresh`, `replay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Revocation => "revocation",
            Self::Refresh => "refresh",
            Self::Replay => "replay",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A store could not answer.
///
/// A layer that meets it answers 503 (gRPC `UNAVAILABLE`) with a generic
/// body: the reason goes to the logs, never to the client, because it may
/// name an address or a driver error. It is never a silent pass and never
/// a silent logout.
///
/// ```
/// use portcullis_core::{StoreError, StoreKind};
///
/// let error = StoreError::unavailable(StoreKind::Session, "connection refused");
/// assert!(error.is_unavailable());
/// assert_eq!(error.store(), StoreKind::Session);
/// assert_eq!(error.reason(), "connection refused");
/// assert_eq!(error.to_string(), "session store unavailable: connection refused");
///
/// let error = StoreError::corrupt(StoreKind::Refresh, "field spent");
/// assert_eq!(error.to_string(), "refresh store returned a corrupt record: field spent");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable, timed out or refused the command.
    Unavailable {
        /// The store that failed.
        store: StoreKind,
        /// Why, for the logs.
        reason: String,
    },
    /// The backend answered with data this version cannot read.
    Corrupt {
        /// The store that failed.
        store: StoreKind,
        /// What could not be read, for the logs.
        reason: String,
    },
}

impl StoreError {
    /// The backend could not answer.
    pub fn unavailable(store: StoreKind, reason: impl fmt::Display) -> Self {
        Self::Unavailable {
            store,
            reason: reason.to_string(),
        }
    }

    /// The backend answered with a record this version cannot read.
    pub fn corrupt(store: StoreKind, reason: impl fmt::Display) -> Self {
        Self::Corrupt {
            store,
            reason: reason.to_string(),
        }
    }

    /// The store that failed.
    pub fn store(&self) -> StoreKind {
        match self {
            Self::Unavailable { store, .. } | Self::Corrupt { store, .. } => *store,
        }
    }

    /// Why it failed, for the logs.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unavailable { reason, .. } | Self::Corrupt { reason, .. } => reason,
        }
    }

    /// Whether the backend was unreachable (rather than corrupt).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { store, reason } => write!(f, "{store} store unavailable: {reason}"),
            Self::Corrupt { store, reason } => write!(f, "{store} store returned a corrupt record: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {}
