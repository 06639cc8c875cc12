//! Reading the token from a form body without taking the body from the
//! handler: the body is buffered (up to a limit) and handed on intact.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::CsrfToken;

pin_project! {
    /// The request body the inner service sees: the original, untouched,
    /// or the buffered bytes of a form the layer read its token from.
    pub struct CsrfBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Original { #[pin] body: B },
        Buffered { bytes: Option<Bytes> },
    }
}

impl<B> CsrfBody<B> {
    pub(crate) fn original(body: B) -> Self {
        Self {
            inner: Inner::Original { body },
        }
    }

    pub(crate) fn buffered(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Buffered { bytes: Some(bytes) },
        }
    }
}

impl<B> Body for CsrfBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Original { body } => body.poll_frame(cx),
            InnerProj::Buffered { bytes } => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Original { body } => body.is_end_stream(),
            Inner::Buffered { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Original { body } => body.size_hint(),
            Inner::Buffered { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl<B> std::fmt::Debug for CsrfBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfBody")
    }
}

/// What kind of form a `Content-Type` announces.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FormKind {
    UrlEncoded,
    Multipart { boundary: String },
}

pub(crate) fn form_kind(content_type: Option<&str>) -> Option<FormKind> {
    let content_type = content_type?;
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => Some(FormKind::UrlEncoded),
        "multipart/form-data" => parts.find_map(|param| {
            let (name, value) = param.split_once('=')?;
            (name.trim().eq_ignore_ascii_case("boundary")).then(|| FormKind::Multipart {
                boundary: value.trim().trim_matches('"').to_owned(),
            })
        }),
        _ => None,
    }
}

/// The `csrf_token` field of a buffered form body.
pub(crate) fn token_in_form(kind: &FormKind, body: &[u8]) -> Option<String> {
    match kind {
        FormKind::UrlEncoded => form_urlencoded::parse(body)
            .find(|(name, _)| name == CsrfToken::FIELD)
            .map(|(_, value)| value.into_owned()),
        FormKind::Multipart { boundary } => token_in_multipart(boundary, body),
    }
}

/// Finds the part named `csrf_token` in a multipart body: each part is
/// `--boundary CRLF headers CRLF CRLF value CRLF`.
fn token_in_multipart(boundary: &str, body: &[u8]) -> Option<String> {
    if boundary.is_empty() || boundary.len() > 70 {
        return None;
    }
    let delimiter = format!("--{boundary}");
    // Binary file parts may come first; the token field itself is text.
    let text = String::from_utf8_lossy(body);
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break; // the closing delimiter
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((headers, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let named_token = headers.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("content-disposition:")
                && line.contains("form-data")
                && line
                    .split(';')
                    .any(|param| param.trim() == format!("name=\"{}\"", CsrfToken::FIELD))
        });
        if named_token {
            return Some(value.strip_suffix("\r\n").unwrap_or(value).to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_field_of_either_form() {
        let urlencoded = form_kind(Some("application/x-www-form-urlencoded; charset=utf-8")).expect("form");
        assert_eq!(
            token_in_form(&urlencoded, b"note=hi+there&csrf_token=abc%2D1"),
            Some("abc-1".into())
        );
        assert_eq!(token_in_form(&urlencoded, b"note=hi"), None);

        let multipart = form_kind(Some(r#"multipart/form-data; boundary="XyZ""#)).expect("form");
        assert_eq!(multipart, FormKind::Multipart { boundary: "XyZ".into() });
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\xff\xfe\x00\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"csrf_token\"\r\n\r\ntok-123\r\n--XyZ--\r\n";
        assert_eq!(token_in_form(&multipart, body), Some("tok-123".into()));
        let without = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token_x\"\r\n\r\nnope\r\n--XyZ--\r\n";
        assert_eq!(
            token_in_form(&multipart, without),
            None,
            "a similar name is not the field"
        );
        assert_eq!(form_kind(Some("multipart/form-data")), None, "no boundary");
        assert_eq!(form_kind(Some("application/json")), None);
        assert_eq!(form_kind(None), None);
    }
}
