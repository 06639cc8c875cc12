//! The session cookie: reading it from a request, and the `Set-Cookie`
//! values that set or remove it (through `portcullis_core::cookie`, with
//! the layer's name, `Secure` and `SameSite`).

use http::HeaderMap;
use portcullis_core::cookie;

use super::{Config, SameSite};
use crate::id::SessionId;

fn same_site(config: &Config) -> cookie::SameSite {
    match config.same_site {
        SameSite::Strict => cookie::SameSite::Strict,
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::None => cookie::SameSite::None,
    }
}

pub(super) fn session_cookie(config: &Config, id: &SessionId) -> String {
    cookie::set(&config.cookie_name, &id.encode(), config.secure, same_site(config))
}

pub(super) fn removal_cookie(config: &Config) -> String {
    cookie::removal(&config.cookie_name, config.secure, same_site(config))
}

/// `None`: no session cookie. `Some(None)`: a cookie that is not an id we
/// could have issued. The first cookie of that name counts.
pub(super) fn find_cookie(headers: &HeaderMap, name: &str) -> Option<Option<SessionId>> {
    portcullis_core::cookie::find_raw(headers, name).map(SessionId::parse)
}
