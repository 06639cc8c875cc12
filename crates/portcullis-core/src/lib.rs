//! The shared vocabulary of Portcullis.
//!
//! Every Portcullis layer speaks in the types of this crate:
//!
//! - [`Identity`]: who the caller is, however they authenticated (session
//!   cookie or bearer token). Authenticator layers insert it into the
//!   request's extensions; handlers read it.
//! - [`Rejection`]: why a request was refused, rendered as an HTTP response
//!   (RFC 6750 challenge, `application/problem+json` body) or as a gRPC
//!   trailers-only response, depending on the request.
//! - [`audit`]: one `tracing` event per decision, under the fixed target
//!   [`audit::TARGET`], that never carries a secret.
//! - [`Clock`]: the time every layer reads, which tests can move.
//! - [`RequireAuthLayer`]: the guard that refuses requests that reached it
//!   without an [`Identity`], or without the scopes it asks for.
//!
//! ```
//! use portcullis_core::{AuthMethod, Identity};
//!
//! let identity = Identity::builder("alice", AuthMethod::bearer(Some("t-1".into()), Some("https://issuer".into())))
//!     .scopes(["notes:read", "notes:write"])
//!     .build();
//! assert_eq!(identity.subject(), "alice");
//! assert!(identity.has_scope("notes:write"));
//! assert!(!identity.has_scope("admin"));
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod base64url;
mod body;
mod clock;
pub mod cookie;
#[cfg(feature = "axum")]
mod extract;
pub mod guard;
mod identity;
mod keyring;
mod rejection;
mod replay;
pub mod require_auth;
mod responder;
mod route;
mod store;

pub use body::{LayerBody, ResponseBody};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, duration_millis, epoch_millis, random_bytes};
#[cfg(feature = "axum")]
pub use extract::Claims;
pub use identity::{AuthMethod, AuthenticatorRan, Identity, IdentityBuilder, Principal, TokenTransport};
pub use keyring::{KeyringError, SecretKeyring};
pub use rejection::{DefaultResponder, Protocol, Rejection, RejectionKind, RequestContext, Responder, SharedResponder};
pub use replay::{MemoryReplayCache, ReplayCache};
pub use require_auth::{RequireAuth, RequireAuthLayer};
pub use responder::{RenderedRejection, ResponderLayer, ResponderService, StackResponder, responder_for};
pub use route::Route;
pub use store::{StoreError, StoreFuture, StoreKind};

/// Whether `host` (a URI's host: a name, an IPv4 address or a bracketed
/// IPv6 address) is this machine's loopback: `localhost`, 127.0.0.0/8 or
/// `::1`. Key sources and OpenID providers may use plain `http://` there
/// (local development and tests) and nowhere else without an opt-in.
///
/// ```
/// use portcullis_core::is_loopback_host;
///
/// assert!(is_loopback_host("127.0.0.2") && is_loopback_host("[::1]") && is_loopback_host("LOCALHOST"));
/// assert!(!is_loopback_host("login.example.com") && !is_loopback_host("10.0.0.1"));
/// ```
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}
