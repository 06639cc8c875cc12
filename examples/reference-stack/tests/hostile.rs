//! Hostile input over the wire against the reference stack: each is
//! refused with a clear 4xx, and the server keeps serving.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use portcullis_tests::example::Example;
use portcullis_tests::{get, post_form, send};

fn forged_token(claims: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"at+jwt"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.as_bytes());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

async fn with_header(addr: std::net::SocketAddr, name: &'static str, value: HeaderValue) -> StatusCode {
    let request = Request::get(format!("http://{addr}/me"))
        .header(name, value)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(request).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_with_a_4xx_and_the_server_keeps_serving() {
    let stack = Example::start(
        env!("CARGO_BIN_EXE_reference-stack"),
        &[("PORTCULLIS_INSECURE_HTTP", "1")],
    )
    .await;
    let addr = stack.addr;

    // A token with 10,000 claims: refused by size before any decoding.
    let many: Vec<String> = (0..10_000).map(|n| format!("\"c{n}\":{n}")).collect();
    let huge = forged_token(&format!("{{{}}}", many.join(",")));
    let answer = get(addr, "/me", Some(&huge)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.header("www-authenticate").contains("too large"),
        "{}",
        answer.header("www-authenticate")
    );

    // Deeply nested JSON claims within the size limit: refused, no stack overflow.
    let nested = format!("{{\"sub\":{}1{}}}", "[".repeat(3_000), "]".repeat(3_000));
    let answer = get(addr, "/me", Some(&forged_token(&nested))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);

    // Non-UTF-8 bytes in the Authorization header.
    let bytes = HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").expect("opaque header");
    assert_eq!(
        with_header(addr, "authorization", bytes).await,
        StatusCode::UNAUTHORIZED
    );

    // Thousands of cookies, and a giant session cookie value.
    let cookies: Vec<String> = (0..3_000).map(|n| format!("c{n}=v{n}")).collect();
    let jar = HeaderValue::from_str(&cookies.join("; ")).expect("cookie header");
    assert_eq!(
        with_header(addr, "cookie", jar).await,
        StatusCode::UNAUTHORIZED,
        "no session among them"
    );
    let giant = HeaderValue::from_str(&format!("session={}", "A".repeat(32 * 1024))).expect("cookie");
    assert_eq!(
        with_header(addr, "cookie", giant).await,
        StatusCode::UNAUTHORIZED,
        "not an id we issued"
    );

    // An oversized header block: refused by the HTTP server itself.
    let oversized = HeaderValue::from_str(&"x".repeat(1024 * 1024)).expect("value");
    let status = with_header(addr, "x-filler", oversized).await;
    assert!(status.is_client_error(), "{status}");

    // Malformed percent-encoding and garbage in the OAuth forms.
    for form in [
        "grant_type=password&username=%ZZ&password=%",
        "%%%&&&===",
        "grant_type=refresh_token&refresh_token=%FF%FE",
    ] {
        let answer = post_form(addr, "/oauth/token", form).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{form}: {}", answer.body);
    }
    let answer = post_form(addr, "/oauth/revoke", "token=%E0%A4%A").await;
    assert_eq!(answer.status, StatusCode::OK, "unknown tokens are a 200 (RFC 7009)");

    // Still serving.
    assert_eq!(get(addr, "/healthz", None).await.status, StatusCode::OK);
}
