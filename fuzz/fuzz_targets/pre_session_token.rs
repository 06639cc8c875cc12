//! The stateless pre-session CSRF token: an anonymous visitor's form post
//! (a login form) with a fuzzed pre-session cookie, token header and form
//! body. Invariants: no panic; nothing the fuzzer invented passes the token
//! rule (it never saw the layer's key), so a post that reaches the handler
//! carried no pre-session cookie of a valid shape at all; and the store
//! never gains a session for an anonymous post.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use portcullis::csrf::{CsrfBody, CsrfLayer};
use portcullis::session::{MemoryStore, SessionLayer};
use tower::{ServiceBuilder, ServiceExt};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: Arc<MemoryStore>,
    sessions: SessionLayer,
    csrf: CsrfLayer,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = Arc::new(MemoryStore::new());
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
            sessions: SessionLayer::new(store.clone()).insecure_http(),
            csrf: CsrfLayer::new().insecure_http(),
            store,
        }
    })
}

/// A pre-session secret of the shape the layer mints (43 base64url).
fn valid_shape(value: &[u8]) -> bool {
    value.len() == 43
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    // cookie value \0 token \0 content-type \0 body
    let mut parts = data.splitn(4, |&b| b == 0);
    let cookie = parts.next().unwrap_or_default();
    let mut request = Request::post("/login").header("sec-fetch-site", "same-origin");
    if !cookie.is_empty()
        && let Ok(value) = http::HeaderValue::from_bytes(&[b"csrf=".as_slice(), cookie].concat())
    {
        request = request.header("cookie", value);
    }
    for name in ["x-csrf-token", "content-type"] {
        if let Some(bytes) = parts.next()
            && !bytes.is_empty()
            && let Ok(value) = http::HeaderValue::from_bytes(bytes)
        {
            request = request.header(name, value);
        }
    }
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let Ok(request) = request.body(Full::new(body)) else {
        return;
    };
    let presented = valid_shape(cookie);
    let service = ServiceBuilder::new()
        .layer(fixture.sessions.clone())
        .layer(fixture.csrf.clone())
        .service_fn(move |_: Request<CsrfBody<Full<Bytes>>>| async move {
            assert!(!presented, "a pre-session token the fuzzer invented was accepted");
            Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
        });
    let response = fixture.runtime.block_on(service.oneshot(request)).expect("infallible");
    assert!(!response.status().is_server_error(), "{}", response.status());
    assert_eq!(fixture.store.len(), 0, "an anonymous post stored a session");
});
