//! CSRF protection for cookie-authenticated requests: origin checks first,
//! then a token bound to the session, masked per response.
//!
//! Put [`CsrfLayer`] after `SessionLayer`; handlers that render forms take
//! the [`CsrfToken`] from the request extensions (or the axum extractor,
//! feature `axum`).
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
//! the session-bound token for browsers that send neither `Sec-Fetch-Site`
//! nor `Origin`, `Referer` as a last resort, trusted subdomain patterns,
//! report-only mode, and bearer-token requests exempt by construction.

mod body;
#[cfg(feature = "axum")]
mod extract;
mod layer;
mod origin;
mod token;

pub use body::CsrfBody;
pub use layer::{ConfigError, CsrfLayer, CsrfService, ResponseFuture};
pub use token::{CsrfError, CsrfToken};

pub(crate) const LAYER: &str = "csrf";

/// The cookie an anonymous visitor's CSRF secret lives in (no server
/// state until something stores a session): `HttpOnly`, `Secure`,
/// `SameSite=Lax`, `Path=/`, no `Domain`, for the browser session. Over
/// plain HTTP ([`CsrfLayer::insecure_http`]) it is called `csrf`.
pub const PRE_SESSION_COOKIE: &str = "__Host-csrf";
