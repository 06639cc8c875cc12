//! [`JwtLayer`]: bearer-token authentication.

mod builder;
mod future;
mod service;

pub use builder::{JwtLayer, JwtLayerBuilder};
pub use future::ResponseFuture;
pub use service::JwtService;
