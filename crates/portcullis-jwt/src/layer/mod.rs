//! [`JwtLayer`]: bearer-token authentication.

mod config;
mod service;

pub use config::JwtLayer;
pub use service::{JwtService, Refetch, RefetchWait};
