//! Cookies: the one place every layer reads its cookie (the session id, a
//! cookie-borne JWT, the pre-session CSRF secret) and writes a
//! `Set-Cookie` (through the `cookie` crate).

use http::HeaderMap;
use http::header::COOKIE;

pub use cookie::SameSite;

/// The value of the first cookie called `name` across every `Cookie`
/// header, if any. Headers that are not visible ASCII cannot hold a cookie
/// of ours and are skipped, and so are pairs without `=`; blanks around a
/// name or value are trimmed, and a value in double quotes is unquoted.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use portcullis_core::cookie;
///
/// let mut headers = HeaderMap::new();
/// headers.append("cookie", HeaderValue::from_static("a=1; session=\"xyz\""));
/// headers.append("cookie", HeaderValue::from_static("session=later"));
/// assert_eq!(cookie::find(&headers, "session"), Some("xyz"));
/// assert_eq!(cookie::find(&headers, "sess"), None);
///
/// let mut spaced = HeaderMap::new();
/// spaced.append("cookie", HeaderValue::from_static("broken; a=1;\tsession = abc ;b=2"));
/// assert_eq!(cookie::find(&spaced, "session"), Some("abc"));
/// assert_eq!(cookie::find(&spaced, "broken"), None);
/// ```
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        // Most lookups miss (a pre-session cookie beside a session one):
        // parse only a header that can hold the name.
        if !text.contains(name) {
            continue;
        }
        // `name=value` pairs split on `;`, blanks around each part trimmed
        // (RFC 6265 §5.4, as browsers send them); split by hand, on every
        // request's path, without building a parsed cookie per pair.
        for pair in text.split(';') {
            let Some((pair_name, value)) = pair.split_once('=') else {
                continue;
            };
            if pair_name.trim_ascii() == name {
                let value = value.trim_ascii();
                return Some(
                    value
                        .strip_prefix('"')
                        .and_then(|inner| inner.strip_suffix('"'))
                        .unwrap_or(value),
                );
            }
        }
    }
    None
}

/// A `Set-Cookie` value with the attributes every Portcullis cookie
/// carries: `HttpOnly`, `Path=/`, no `Domain`, the given `SameSite`, and
/// `Secure` unless `secure` is off (plain-HTTP development). With a
/// `__Host-` name and `secure`, the browser refuses it from a subdomain.
///
/// ```
/// use portcullis_core::cookie::{self, SameSite};
///
/// let set = cookie::set("__Host-session", "abc", true, SameSite::Lax);
/// assert_eq!(set, "__Host-session=abc; HttpOnly; SameSite=Lax; Secure; Path=/");
/// ```
pub fn set(name: &str, value: &str, secure: bool, same_site: SameSite) -> String {
    cookie::Cookie::build((name, value))
        .http_only(true)
        .secure(secure)
        .same_site(same_site)
        .path("/")
        .build()
        .to_string()
}

/// A `Set-Cookie` value that removes the cookie `name` (empty,
/// `Max-Age=0`), with the same attributes as [`set`].
///
/// ```
/// use portcullis_core::cookie::{self, SameSite};
///
/// let removal = cookie::removal("session", false, SameSite::Lax);
/// assert_eq!(removal, "session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
/// ```
pub fn removal(name: &str, secure: bool, same_site: SameSite) -> String {
    cookie::Cookie::build((name, ""))
        .http_only(true)
        .secure(secure)
        .same_site(same_site)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}
