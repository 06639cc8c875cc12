//! [`JwtLayer`]: bearer-token authentication.

mod builder;
mod service;

pub use builder::{JwtLayer, JwtLayerBuilder};
pub use service::{JwtService, Refetch, RefetchWait};
