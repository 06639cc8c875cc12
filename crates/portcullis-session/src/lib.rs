//! `SessionLayer`: server-side sessions for first-party web apps.
//!
//! An opaque cookie in the browser, the state on the server, instant
//! logout. The layer puts a [`Session`] handle into every request's
//! extensions and, when the session is logged in, the caller's
//! [`Identity`](portcullis_core::Identity) (method `session`).
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use portcullis_core::Identity;
//! use portcullis_session::{MemoryStore, Session, SessionLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SessionLayer::new(Arc::new(MemoryStore::new()));
//! let app = ServiceBuilder::new().layer(layer).service_fn(|request: Request<()>| async move {
//!     let session = request.extensions().get::<Session>().expect("SessionLayer ran").clone();
//!     if request.uri().path() == "/login" {
//!         session.login("alice", ["notes:read"]);
//!     }
//!     let who = request.extensions().get::<Identity>().map(|i| i.subject().to_owned());
//!     Ok::<_, Infallible>(Response::new(Bytes::from(who.unwrap_or_default())))
//! });
//!
//! // Log in: the response sets a fresh, hardened cookie.
//! let response = app.clone().oneshot(Request::get("/login").body(())?).await?;
//! let set_cookie = response.headers()["set-cookie"].to_str()?.to_owned();
//! assert!(set_cookie.starts_with("__Host-session="));
//! assert!(set_cookie.ends_with("; HttpOnly; SameSite=Lax; Secure; Path=/"));
//!
//! // The cookie authenticates the next request.
//! let cookie = set_cookie.split(';').next().unwrap().to_owned();
//! let request = Request::get("/me").header("cookie", cookie).body(())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! - Ids are 256 bits from the system CSPRNG. The store keys sessions by a
//!   keyed SHA-256 of the id under the layer's secret: a leaked store dump
//!   yields no usable cookie; logs carry only a fingerprint.
//! - An id the store does not know is never adopted; the cookie is cleared.
//! - `login` and `cycle_id` rotate the id (fixation). A rotated-away id of
//!   the same logged-in subject keeps working for a short grace (requests
//!   in flight); after a login that changes who is logged in, the old id is
//!   dead at once.
//! - Idle and absolute timeouts, both checked on every request; the idle
//!   deadline is refreshed only past half its window (one cheap write, not
//!   a rewrite per request).
//! - Writes are per key: concurrent requests writing different keys both
//!   keep them; a logout is final, and a slower request cannot revive the
//!   session.
//! - A store outage is a 503 (gRPC `UNAVAILABLE`), never a silent logout
//!   or a fresh empty session. Nothing is saved after a 5xx.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "axum")]
mod extract;
mod handle;
mod id;
mod layer;
mod memory;
mod store;

pub use cache::{CacheOptions, CacheStats, FeedHeartbeat, LoadTicket, SessionCache};
pub use handle::{DEFAULT_ISSUER, Session, SessionInfo, Sessions};
pub use id::SessionKey;
pub use layer::{ConfigError, DEFAULT_COOKIE_NAME, ResponseFuture, SameSite, SessionLayer, SessionService};
pub use memory::MemoryStore;
pub use store::{
    Changes, SessionRecord, SessionStore, StoreError, StoreFuture, StoreKind, Touch, provider_session_key,
};

pub(crate) const LAYER: &str = "session";
