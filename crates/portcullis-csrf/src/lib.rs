//! CSRF protection for every ambient credential: a session cookie, a JWT
//! read from a cookie, and no credential at all (a login form). Origin
//! checks first, then a token bound to the session (or the cookie JWT's
//! principal, or an anonymous visitor's stateless pre-session cookie),
//! masked per response.
//!
//! Put [`CsrfLayer`] after the authenticators (`SessionLayer`,
//! `JwtLayer`); handlers that render forms take the [`CsrfToken`] from the
//! request extensions (or the axum extractor, feature `axum`).
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_csrf::CsrfLayer;
//! use portcullis_session::{MemoryStore, SessionLayer};
//! use tower::ServiceBuilder;
//!
//! let stack = ServiceBuilder::new()
//!     .layer(SessionLayer::new(Arc::new(MemoryStore::new())))
//!     .layer(CsrfLayer::new().public_origin("https://app.example.com")?);
//! # let _ = stack;
//! # Ok::<(), portcullis_csrf::ConfigError>(())
//! ```
//!
//! Compared with `tower_http::csrf` (origin checks only), this layer adds
//! the bound token for browsers that send neither `Sec-Fetch-Site` nor
//! `Origin`, `Referer` as a last resort, trusted subdomain patterns,
//! report-only mode, and requests authenticated by an `Authorization`
//! header alone exempt by construction.
//!
//! # Security
//! - Unsafe requests with no origin signal at all come from no browser and
//!   pass the origin rules (Go's `CrossOriginProtection` does the same);
//!   the token rule still applies wherever a cookie credential, or a
//!   pre-session cookie, is present.
//! - An anonymous visitor costs no server state: the secret behind their
//!   form tokens lives in their own `__Host-csrf` cookie and moves into the
//!   session at login.
//! - A `CsrfLayer` with no authenticator before it answers 500.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
#[cfg(feature = "axum")]
mod extract;
mod layer;
mod origin;
mod token;

pub use body::CsrfBody;
pub use layer::{ConfigError, CsrfLayer, CsrfService, FormRead, Verdict};
pub use token::{CsrfError, CsrfToken};

pub(crate) const LAYER: &str = "csrf";

/// The cookie an anonymous visitor's CSRF secret lives in (no server
/// state until something stores a session): `HttpOnly`, `Secure`,
/// `SameSite=Lax`, `Path=/`, no `Domain`, for the browser session. Over
/// plain HTTP ([`CsrfLayer::insecure_http`]) it is called `csrf`.
pub const PRE_SESSION_COOKIE: &str = "__Host-csrf";
