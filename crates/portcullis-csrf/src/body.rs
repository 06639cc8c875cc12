//! Reading the token from a form body without taking the body from the
//! handler: the body is buffered (up to a limit) and handed on intact.

use bytes::Bytes;

use crate::CsrfToken;

/// The request body the inner service sees behind `CsrfLayer`: the
/// original, untouched, or the buffered bytes of a form the layer read its
/// token from.
pub type CsrfBody<B> = portcullis_core::LayerBody<B>;

/// What kind of form a `Content-Type` announces.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FormKind {
    UrlEncoded,
    Multipart { boundary: String },
}

pub(crate) fn form_kind(content_type: Option<&str>) -> Option<FormKind> {
    let content_type = content_type?;
    let media = content_type.split(';').next()?.trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Some(FormKind::UrlEncoded);
    }
    if media.eq_ignore_ascii_case("multipart/form-data") {
        // multer reads the boundary parameter (quoted or not).
        return multer::parse_boundary(content_type)
            .ok()
            .map(|boundary| FormKind::Multipart { boundary });
    }
    None
}

/// At most this many parts are looked at for the token.
const MAX_PARTS: usize = 256;
/// The token field's largest accepted size (a masked token is 86 bytes).
const MAX_TOKEN_FIELD: u64 = 1024;

/// The `csrf_token` field of a buffered form body (already within the
/// layer's body limit). Anything malformed is "no token".
pub(crate) async fn token_in_form(kind: &FormKind, body: &Bytes) -> Option<String> {
    match kind {
        FormKind::UrlEncoded => form_urlencoded::parse(body)
            .find(|(name, _)| name == CsrfToken::FIELD)
            .map(|(_, value)| value.into_owned()),
        FormKind::Multipart { boundary } => token_in_multipart(boundary, body.clone()).await,
    }
}

/// Finds the part named `csrf_token` with multer, within the limits: the
/// whole (buffered) body, `MAX_PARTS` parts, `MAX_TOKEN_FIELD` bytes for
/// the token field itself.
async fn token_in_multipart(boundary: &str, body: Bytes) -> Option<String> {
    let limits = multer::SizeLimit::new()
        .whole_stream(body.len() as u64)
        .for_field(CsrfToken::FIELD, MAX_TOKEN_FIELD);
    let stream = futures_util::stream::once(std::future::ready(Ok::<Bytes, std::convert::Infallible>(body)));
    let mut multipart =
        multer::Multipart::with_constraints(stream, boundary, multer::Constraints::new().size_limit(limits));
    for _ in 0..MAX_PARTS {
        let field = multipart.next_field().await.ok()??;
        if field.name() == Some(CsrfToken::FIELD) {
            return field.text().await.ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_field_of_either_form() {
        let urlencoded = form_kind(Some("application/x-www-form-urlencoded; charset=utf-8")).expect("form");
        assert_eq!(
            token_in_form(&urlencoded, &Bytes::from_static(b"note=hi+there&csrf_token=abc%2D1")).await,
            Some("abc-1".into())
        );
        assert_eq!(token_in_form(&urlencoded, &Bytes::from_static(b"note=hi")).await, None);

        let multipart = form_kind(Some(r#"multipart/form-data; boundary="XyZ""#)).expect("form");
        assert_eq!(multipart, FormKind::Multipart { boundary: "XyZ".into() });
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\xff\xfe\x00\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"csrf_token\"\r\n\r\ntok-123\r\n--XyZ--\r\n";
        assert_eq!(
            token_in_form(&multipart, &Bytes::from_static(body)).await,
            Some("tok-123".into())
        );
        let without = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token_x\"\r\n\r\nnope\r\n--XyZ--\r\n";
        assert_eq!(
            token_in_form(&multipart, &Bytes::from_static(without)).await,
            None,
            "a similar name is not the field"
        );
        assert_eq!(form_kind(Some("multipart/form-data")), None, "no boundary");
        let oversized = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{}\r\n--XyZ--\r\n",
            "a".repeat(2048)
        );
        assert_eq!(
            token_in_form(&multipart, &Bytes::from(oversized)).await,
            None,
            "a token field past its size limit is no token"
        );
        let many: String = (0..300)
            .map(|n| format!("--XyZ\r\nContent-Disposition: form-data; name=\"f{n}\"\r\n\r\nx\r\n"))
            .chain(std::iter::once(
                "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nlate\r\n--XyZ--\r\n".to_owned(),
            ))
            .collect();
        assert_eq!(
            token_in_form(&multipart, &Bytes::from(many)).await,
            None,
            "past the part-count limit, no token is looked for"
        );
        let truncated = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\ntok";
        assert_eq!(token_in_form(&multipart, &Bytes::from_static(truncated)).await, None);
        assert_eq!(form_kind(Some("application/json")), None);
        assert_eq!(form_kind(None), None);
    }
}
