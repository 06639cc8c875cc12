//! Origins: parsing, normalising, matching, and the origin rules.

use http::HeaderMap;
use http::header::{HOST, HeaderName, ORIGIN, REFERER};

/// `Sec-Fetch-Site`, as a ready name: a `&str` lookup would parse and
/// validate the name on every request.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// `http` or `https`, the only schemes an origin we accept can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else if text.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else {
            None
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// An origin as found in a request, borrowed (no allocation per check):
/// compared case-insensitively, the default port left out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OriginRef<'a> {
    scheme: Scheme,
    host: &'a str,
    port: Option<u16>,
}

/// A configured origin (or pattern), normalised: lowercase host, the
/// default port left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: Scheme,
    host: String,
    port: Option<u16>,
}

/// `host[:port]` of an authority, validated.
fn authority(scheme: Scheme, authority: &str) -> Option<OriginRef<'_>> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if host.contains(':') && !host.starts_with('[') {
                return None;
            }
            (host, Some(port.parse::<u16>().ok()?))
        }
        _ => (authority, None),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*[]:".contains(&b))
    {
        return None;
    }
    Some(OriginRef {
        scheme,
        host,
        port: port.filter(|port| *port != scheme.default_port()),
    })
}

impl<'a> OriginRef<'a> {
    /// Parses `scheme://host[:port]`, with at most a trailing `/`; a path
    /// is allowed only when `allow_path` (a `Referer`).
    pub(crate) fn parse(text: &'a str, allow_path: bool) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = Scheme::parse(scheme)?;
        let (host_port, path) = match rest.find(['/', '?', '#']) {
            Some(index) => rest.split_at(index),
            None => (rest, ""),
        };
        if !allow_path && !path.is_empty() && path != "/" {
            return None;
        }
        authority(scheme, host_port)
    }

    /// The request's own origin from its `Host` header and the scheme the
    /// service is served over.
    pub(crate) fn of_host(headers: &'a HeaderMap, scheme: &str) -> Option<Self> {
        let host = headers.get(HOST)?.to_str().ok()?;
        authority(Scheme::parse(scheme)?, host)
    }

    fn same(&self, other: &OriginRef<'_>) -> bool {
        self.scheme == other.scheme && self.port == other.port && self.host.eq_ignore_ascii_case(other.host)
    }
}

impl Origin {
    /// Parses and normalises a configured origin.
    pub(crate) fn parse(text: &str, allow_path: bool) -> Option<Self> {
        let origin = OriginRef::parse(text, allow_path)?;
        Some(Self {
            scheme: origin.scheme,
            host: origin.host.to_ascii_lowercase(),
            port: origin.port,
        })
    }

    pub(crate) fn as_ref(&self) -> OriginRef<'_> {
        OriginRef {
            scheme: self.scheme,
            host: &self.host,
            port: self.port,
        }
    }

    /// Whether `self`, as a configured pattern, admits `origin`: equal, or
    /// for a `*.` host any subdomain of the rest (same scheme and port).
    pub(crate) fn admits(&self, origin: &OriginRef<'_>) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(parent) => {
                let host = origin.host;
                host.len() > parent.len() + 1
                    && host.is_char_boundary(host.len() - parent.len())
                    && host[host.len() - parent.len()..].eq_ignore_ascii_case(parent)
                    && host.as_bytes()[host.len() - parent.len() - 1] == b'.'
            }
            None => self.host.eq_ignore_ascii_case(origin.host),
        }
    }
}

/// Why an origin check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OriginFailure {
    /// `Sec-Fetch-Site` says another site (or another origin of this
    /// site, when that is not allowed), and `Origin` is not trusted.
    CrossSite,
    /// `Origin` (or `Referer`) is not the request's own nor trusted.
    Untrusted,
}

/// The site's own origin: configured, or the request's `Host` under the
/// layer's scheme, parsed only when a rule needs it (a same-origin
/// `Sec-Fetch-Site` never does).
#[derive(Clone, Copy)]
pub(crate) enum Own<'a> {
    Known(Option<OriginRef<'a>>),
    FromHost(&'a HeaderMap, &'static str),
}

impl<'a> Own<'a> {
    fn get(self) -> Option<OriginRef<'a>> {
        match self {
            Self::Known(own) => own,
            Self::FromHost(headers, scheme) => OriginRef::of_host(headers, scheme),
        }
    }
}

pub(crate) struct OriginPolicy<'a> {
    pub(crate) own: Own<'a>,
    pub(crate) trusted: &'a [Origin],
    pub(crate) allow_same_site: bool,
}

impl OriginPolicy<'_> {
    fn trusts(&self, origin: &OriginRef<'_>) -> bool {
        self.own.get().is_some_and(|own| own.same(origin)) || self.trusted.iter().any(|pattern| pattern.admits(origin))
    }

    fn header_origin_trusted(&self, headers: &HeaderMap) -> Option<bool> {
        let value = headers.get(ORIGIN)?;
        // `Origin: null` (sandboxed frames, some redirects) and anything
        // unparsable is never trusted.
        Some(
            value
                .to_str()
                .ok()
                .and_then(|text| OriginRef::parse(text.trim(), false))
                .is_some_and(|origin| self.trusts(&origin)),
        )
    }

    /// The origin rules, in order: `Sec-Fetch-Site`, else `Origin`, else
    /// `Referer`; none of them (an old browser, or not a browser) passes
    /// here, and the token check decides.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), OriginFailure> {
        if let Some(site) = headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok()) {
            let is = |value: &str| site.eq_ignore_ascii_case(value);
            // `none`: a user-initiated navigation (typed, bookmarked).
            return if is("same-origin") || is("none") || (self.allow_same_site && is("same-site")) {
                Ok(())
            } else {
                match self.header_origin_trusted(headers) {
                    Some(true) => Ok(()),
                    _ => Err(OriginFailure::CrossSite),
                }
            };
        }
        if let Some(trusted) = self.header_origin_trusted(headers) {
            return if trusted { Ok(()) } else { Err(OriginFailure::Untrusted) };
        }
        if let Some(referer) = headers.get(REFERER) {
            let origin = referer
                .to_str()
                .ok()
                .and_then(|text| OriginRef::parse(text.trim(), true));
            return match origin {
                Some(origin) if self.trusts(&origin) => Ok(()),
                _ => Err(OriginFailure::Untrusted),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn origin(text: &str) -> Origin {
        Origin::parse(text, false).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn parsing_normalises_case_default_ports_and_a_trailing_slash() {
        assert_eq!(origin("HTTPS://App.Example.COM"), origin("https://app.example.com"));
        assert_eq!(origin("https://app.example.com/"), origin("https://app.example.com"));
        assert_eq!(origin("https://app.example.com:443"), origin("https://app.example.com"));
        assert_ne!(
            origin("https://app.example.com:8443"),
            origin("https://app.example.com")
        );
        assert_ne!(origin("http://app.example.com"), origin("https://app.example.com"));
        assert_eq!(origin("http://127.0.0.1:3000"), origin("http://127.0.0.1:3000/"));
        for bad in [
            "null",
            "app.example.com",
            "ftp://app.example.com",
            "https://",
            "https://user@app.example.com",
            "https://app.example.com/path",
            "https://app.example.com:99999",
            "https://exa mple.com",
        ] {
            assert_eq!(Origin::parse(bad, false), None, "{bad}");
        }
        assert_eq!(
            Origin::parse("https://app.example.com/a/b?c#d", true),
            Some(origin("https://app.example.com"))
        );
    }

    #[test]
    fn wildcard_patterns_admit_subdomains_only() {
        let pattern = origin("https://*.example.com");
        let admits = |text: &str| pattern.admits(&origin(text).as_ref());
        assert!(admits("https://a.example.com"));
        assert!(admits("https://a.b.example.com"));
        let mixed_case = OriginRef::parse("https://A.Example.COM", false).expect("parses");
        assert!(pattern.admits(&mixed_case), "any case");
        assert!(!admits("https://example.com"), "the apex is not a subdomain");
        assert!(!admits("https://evilexample.com"));
        assert!(!admits("http://a.example.com"), "scheme counts");
        assert!(!admits("https://a.example.com:8443"), "port counts");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn the_rules_in_order() {
        let own = origin("https://app.example.com");
        let trusted = [origin("https://*.partner.example"), origin("https://admin.example.com")];
        let policy = OriginPolicy {
            own: Own::Known(Some(own.as_ref())),
            trusted: &trusted,
            allow_same_site: false,
        };
        type Case<'a> = (&'a [(&'static str, &'a str)], Result<(), OriginFailure>);
        let cases: &[Case<'_>] = &[
            (&[("sec-fetch-site", "same-origin")], Ok(())),
            (&[("sec-fetch-site", "none")], Ok(())),
            (&[("sec-fetch-site", "cross-site")], Err(OriginFailure::CrossSite)),
            (
                &[("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
                Err(OriginFailure::CrossSite),
            ),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://x.partner.example"),
                ],
                Ok(()),
            ),
            (&[("sec-fetch-site", "same-site")], Err(OriginFailure::CrossSite)),
            (
                &[("sec-fetch-site", "same-site"), ("origin", "https://admin.example.com")],
                Ok(()),
            ),
            (&[("origin", "https://app.example.com")], Ok(())),
            (&[("origin", "HTTPS://APP.example.com/")], Ok(())),
            (&[("origin", "null")], Err(OriginFailure::Untrusted)),
            (&[("origin", "https://evil.example")], Err(OriginFailure::Untrusted)),
            (
                &[("origin", "https://app.example.com.evil.example")],
                Err(OriginFailure::Untrusted),
            ),
            (&[("referer", "https://app.example.com/form?x=1")], Ok(())),
            (
                &[("referer", "https://evil.example/app.example.com")],
                Err(OriginFailure::Untrusted),
            ),
            (&[("referer", "garbage")], Err(OriginFailure::Untrusted)),
            (&[], Ok(())),
        ];
        for (pairs, expected) in cases {
            assert_eq!(policy.check(&headers(pairs)), *expected, "{pairs:?}");
        }
        let lenient = OriginPolicy {
            allow_same_site: true,
            ..policy
        };
        assert_eq!(lenient.check(&headers(&[("sec-fetch-site", "same-site")])), Ok(()));
    }
}
