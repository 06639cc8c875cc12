//! Reading a cookie from request headers: the one place every layer finds
//! its cookie (the session id, a cookie-borne JWT, the pre-session CSRF
//! secret).

use http::HeaderMap;
use http::header::COOKIE;

/// The value of the first cookie called `name` across every `Cookie`
/// header, if any. Headers that are not visible ASCII cannot hold a cookie
/// of ours and are skipped; a value in double quotes is unquoted.
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
/// ```
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=')
                && key == name
            {
                let value = value.trim();
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
