//! [`RequireAuthLayer`]: refuse requests that reached it unauthenticated.
//!
//! Place it after the authenticators (`SessionLayer`, `JwtLayer`) and the
//! guards. A request with no [`Identity`](crate::Identity) gets 401 with a
//! bare `Bearer` challenge; one without a required scope gets 403
//! `insufficient_scope` naming the scope. A request that no authenticator
//! layer saw is a misconfigured stack and gets 500, so a forgotten layer
//! cannot pass for "not logged in".
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use portcullis_core::{AuthMethod, AuthenticatorRan, Identity, RequireAuthLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequireAuthLayer::new().scope("notes:write"))
//!     .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::from("ok"))) });
//!
//! // An authenticator ran but found no credential: 401.
//! let mut request = Request::new(());
//! request.extensions_mut().insert(AuthenticatorRan);
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//!
//! // Authenticated, but read-only: 403.
//! let mut request = Request::new(());
//! request.extensions_mut().insert(AuthenticatorRan);
//! request.extensions_mut().insert(
//!     Identity::builder("bob", AuthMethod::session("f00d")).scopes(["notes:read"]).build(),
//! );
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//!
//! // Authenticated with the scope: through.
//! let mut request = Request::new(());
//! request.extensions_mut().insert(AuthenticatorRan);
//! request.extensions_mut().insert(
//!     Identity::builder("alice", AuthMethod::session("beef")).scopes(["notes:write"]).build(),
//! );
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # }
//! ```
//!
//! # Security
//!
//! Scope checks run on every request, after any cache an authenticator
//! keeps, so a scope is never granted by a stale decision.

mod layer;
mod service;

pub use layer::RequireAuthLayer;
pub use service::RequireAuth;
