//! The session cookie parser, through SessionLayer: arbitrary `Cookie`
//! header bytes. Invariant: no panic, never an authenticated identity (no
//! session was ever created, so no cookie can name one).
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::Request;
use libfuzzer_sys::fuzz_target;
use portcullis::Identity;
use portcullis::session::{MemoryStore, SessionLayer};
use tower::{ServiceBuilder, ServiceExt};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    layer: SessionLayer,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        runtime: tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
        layer: SessionLayer::new(Arc::new(MemoryStore::new())),
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let request = Request::get("/").header("cookie", value).body(()).expect("request");
    let service = ServiceBuilder::new()
        .layer(fixture.layer.clone())
        .service_fn(|request: Request<()>| async move {
            assert!(
                request.extensions().get::<Identity>().is_none(),
                "a forged cookie authenticated"
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
        });
    let response = fixture.runtime.block_on(service.oneshot(request)).expect("infallible");
    assert!(!response.status().is_server_error(), "{}", response.status());
});
