//! Where a login returns to: a path on this site, never another origin.

use serde::{Deserialize, Serialize};

/// A validated same-origin return path (`/notes?tab=2`): it starts with
/// one `/`, holds no backslash, whitespace or control character, and is at
/// most 512 bytes. Browsers read `//host`, `/\host` and `\\host` as
/// another origin, so each is refused (the open-redirect family).
///
/// ```
/// use portcullis_oidc::ReturnPath;
///
/// assert_eq!(ReturnPath::parse("/notes?tab=2").map(|p| p.to_string()), Ok("/notes?tab=2".into()));
/// for attack in ["https://evil.example", "//evil.example", "/\\evil.example", "/\tevil", "notes"] {
///     assert!(ReturnPath::parse(attack).is_err(), "{attack}");
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReturnPath(String);

/// Why a return path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReturnPathError {
    /// It does not start with `/` (an absolute URL, or a relative path).
    #[error("the return path must start with /")]
    NotAPath,
    /// It would leave the site: `//host`, `/\host`, or a backslash anywhere.
    #[error("the return path names another origin")]
    OtherOrigin,
    /// Whitespace or control characters.
    #[error("the return path holds whitespace or control characters")]
    Unprintable,
    /// Over 512 bytes.
    #[error("the return path is too long")]
    TooLong,
}

impl ReturnPath {
    const MAX_LEN: usize = 512;

    /// `/`.
    pub fn root() -> Self {
        Self("/".into())
    }

    /// Validates `path`.
    pub fn parse(path: &str) -> Result<Self, ReturnPathError> {
        if path.len() > Self::MAX_LEN {
            return Err(ReturnPathError::TooLong);
        }
        if !path.starts_with('/') {
            return Err(ReturnPathError::NotAPath);
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii()) {
            return Err(ReturnPathError::Unprintable);
        }
        if path.starts_with("//") || path.contains('\\') {
            return Err(ReturnPathError::OtherOrigin);
        }
        Ok(Self(path.to_owned()))
    }

    /// The `return` parameter of a login route's query (`/` when absent),
    /// validated.
    ///
    /// ```
    /// use portcullis_oidc::ReturnPath;
    ///
    /// assert_eq!(ReturnPath::from_query(Some("return=%2Fnotes%3Ftab%3D2")).map(|p| p.to_string()), Ok("/notes?tab=2".into()));
    /// assert_eq!(ReturnPath::from_query(None), Ok(ReturnPath::root()));
    /// assert!(ReturnPath::from_query(Some("return=//evil.example")).is_err());
    /// ```
    pub fn from_query(query: Option<&str>) -> Result<Self, ReturnPathError> {
        let requested = query.and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "return")
                .map(|(_, value)| value)
        });
        requested.map_or_else(|| Ok(Self::root()), |path| Self::parse(&path))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReturnPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ReturnPath {
    type Error = ReturnPathError;

    fn try_from(path: String) -> Result<Self, Self::Error> {
        Self::parse(&path)
    }
}

impl From<ReturnPath> for String {
    fn from(path: ReturnPath) -> Self {
        path.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_open_redirect_shape_is_refused_with_its_reason() {
        let cases = [
            ("https://evil.example/", ReturnPathError::NotAPath),
            ("javascript:alert(1)", ReturnPathError::NotAPath),
            ("", ReturnPathError::NotAPath),
            ("//evil.example", ReturnPathError::OtherOrigin),
            ("/\\evil.example", ReturnPathError::OtherOrigin),
            ("/a\\b", ReturnPathError::OtherOrigin),
            ("/\t/evil.example", ReturnPathError::Unprintable),
            ("/ /evil.example", ReturnPathError::Unprintable),
            ("/caf\u{e9}", ReturnPathError::Unprintable),
        ];
        for (path, reason) in cases {
            assert_eq!(ReturnPath::parse(path), Err(reason), "{path:?}");
        }
        assert_eq!(
            ReturnPath::parse(&format!("/{}", "a".repeat(512))),
            Err(ReturnPathError::TooLong)
        );
        assert!(ReturnPath::parse("/notes/%2F%2Fstill-a-path?x=1#top").is_ok());
    }
}
