//! Cookies: the one place every layer reads its cookie (the session id, a
//! cookie-borne JWT, the pre-session CSRF secret) and writes a
//! `Set-Cookie` (through the `cookie` crate).

use http::HeaderMap;
use http::header::COOKIE;

pub use cookie::SameSite;

/// The value of the first cookie called `name` across every `Cookie`
/// header, if any. Pairs without `=` are skipped; blanks around a name or
/// value are trimmed, and a value in double quotes is unquoted. Only the
/// value returned must be visible ASCII (as [`HeaderValue::to_str`](http::HeaderValue::to_str)
/// requires): another cookie with raw UTF-8 in the same header (another
/// app on the domain, a script's `document.cookie`) hides nothing. The
/// first pair of that name decides: when its value is not visible ASCII,
/// the answer is `None`, never a later pair of the same name.
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
///
/// let mut mixed = HeaderMap::new();
/// mixed.append("cookie", HeaderValue::from_bytes("name=José; session=abc".as_bytes())?);
/// assert_eq!(cookie::find(&mixed, "session"), Some("abc"));
/// assert_eq!(cookie::find(&mixed, "name"), None);
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    // A header value holds no control bytes but tab: ASCII is visible
    // ASCII here, as `HeaderValue::to_str` requires.
    find_raw(headers, name).and_then(|value| std::str::from_utf8(value).ok().filter(|value| value.is_ascii()))
}

/// [`find`]'s value as the bytes that came, unvalidated: for a caller
/// that decodes it by rules of its own, stricter than visible ASCII (a
/// session id decodes only from base64url), and so reads it once. The
/// same pair decides as for [`find`].
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use portcullis_core::cookie;
///
/// let mut headers = HeaderMap::new();
/// headers.append("cookie", HeaderValue::from_bytes("session=caf\u{e9}; session=later".as_bytes())?);
/// assert_eq!(cookie::find_raw(&headers, "session"), Some("caf\u{e9}".as_bytes()));
/// assert_eq!(cookie::find(&headers, "session"), None);
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn find_raw<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .find_map(|header| pair_in(header.as_bytes(), name.as_bytes()))
}

/// The value of the first `name=…` pair in one `Cookie` header, trimmed
/// and unquoted. Split by hand on bytes, each byte looked at once, on
/// every request's path: nothing is validated or built for the pairs that
/// are not ours (a browser's `Cookie` header can run to kilobytes of
/// other cookies).
fn pair_in<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut rest = header;
    loop {
        // A pair's name runs to its `=`; a `;` first ends a pair without one.
        let stop = rest.iter().position(|&byte| byte == b'=' || byte == b';')?;
        if rest[stop] == b';' {
            rest = &rest[stop + 1..];
            continue;
        }
        let (pair_name, after) = (&rest[..stop], &rest[stop + 1..]);
        let value_end = after.iter().position(|&byte| byte == b';');
        if pair_name.trim_ascii() == name {
            let value = after[..value_end.unwrap_or(after.len())].trim_ascii();
            return Some(
                value
                    .strip_prefix(b"\"")
                    .and_then(|inner| inner.strip_suffix(b"\""))
                    .unwrap_or(value),
            );
        }
        rest = &after[value_end? + 1..];
    }
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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::find;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                http::header::COOKIE,
                HeaderValue::from_bytes(value).expect("header bytes"),
            );
        }
        headers
    }

    #[test]
    fn another_cookie_with_raw_utf8_hides_nothing_of_ours() {
        // Another app's cookie, set by script with raw UTF-8: the whole
        // header is not visible ASCII, and ours is in it all the same.
        let mixed = headers(&["prénom=José; session=abc".as_bytes()]);
        assert_eq!(find(&mixed, "session"), Some("abc"));
        assert_eq!(
            find(&mixed, "prénom"),
            None,
            "a value that is not visible ASCII is never returned"
        );
        let before = headers(&["session=abc; motto=\u{2713}".as_bytes()]);
        assert_eq!(find(&before, "session"), Some("abc"));
    }

    #[test]
    fn the_first_pair_of_a_name_decides_even_when_its_value_is_refused() {
        // A later pair of the same name (a planted one) never stands in
        // for a first one that is refused.
        let planted = headers(&["session=caf\u{e9}; session=planted".as_bytes()]);
        assert_eq!(find(&planted, "session"), None);
        let across = headers(&[b"a=1", "session=\u{e9}".as_bytes(), b"session=planted"]);
        assert_eq!(find(&across, "session"), None);
        let raw = headers(&[b"session=ab\xffc; session=planted"]);
        assert_eq!(find(&raw, "session"), None, "a byte that is not UTF-8 at all");
    }

    #[test]
    fn ours_is_found_after_kilobytes_of_other_cookies() {
        let mut long = (0..200)
            .map(|n| format!("analytics_{n}=v{n}"))
            .collect::<Vec<_>>()
            .join("; ");
        long.push_str("; session=last");
        assert!(long.len() > 3_000);
        assert_eq!(find(&headers(&[long.as_bytes()]), "session"), Some("last"));
        assert_eq!(find(&headers(&[long.as_bytes()]), "analytics_199"), Some("v199"));
        assert_eq!(find(&headers(&[long.as_bytes()]), "analytics_2000"), None);
        assert_eq!(
            find(&headers(&[b"=x; session"]), "session"),
            None,
            "a name without = is no pair"
        );
    }
}
