//! The CSRF checks: origin, referer and fetch-metadata headers, the token
//! header, and the form body (urlencoded or multipart), on a request with
//! a live session. Invariant: no panic, and a request the fuzzer builds
//! never passes with a token (it never saw one).
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use portcullis::csrf::{CsrfBody, CsrfLayer};
use portcullis::session::{MemoryStore, Session, SessionLayer};
use tower::{ServiceBuilder, ServiceExt};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    sessions: SessionLayer,
    cookie: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let sessions = SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http();
        // One live session, logged in, for every input.
        let login = ServiceBuilder::new()
            .layer(sessions.clone())
            .service_fn(|request: Request<()>| async move {
                if let Some(session) = request.extensions().get::<Session>() {
                    session.login("alice", ["notes:write"]);
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
            });
        let response = runtime
            .block_on(login.oneshot(Request::get("/").body(()).expect("request")))
            .expect("infallible");
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        Fixture {
            runtime,
            sessions,
            cookie,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    // Split the input into up to five header values and a body.
    let mut parts = data.splitn(6, |&b| b == 0);
    let mut request = Request::post("/notes").header("cookie", fixture.cookie.as_str());
    for name in ["origin", "referer", "sec-fetch-site", "content-type", "x-csrf-token"] {
        if let Some(bytes) = parts.next()
            && !bytes.is_empty()
            && let Ok(value) = http::HeaderValue::from_bytes(bytes)
        {
            request = request.header(name, value);
        }
    }
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let Ok(request) = request.body(Full::new(body.clone())) else {
        return;
    };
    let service = ServiceBuilder::new()
        .layer(fixture.sessions.clone())
        .layer(CsrfLayer::new().insecure_http())
        .service_fn(move |request: Request<CsrfBody<Full<Bytes>>>| async move {
            let carried_token = request.headers().contains_key("x-csrf-token")
                || request.headers().get("content-type").is_some_and(|v| {
                    v.as_bytes().starts_with(b"application/x-www-form") || v.as_bytes().starts_with(b"multipart")
                });
            assert!(!carried_token, "a token the fuzzer invented was accepted");
            Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
        });
    let response = fixture.runtime.block_on(service.oneshot(request)).expect("infallible");
    assert!(!response.status().is_server_error(), "{}", response.status());
});
