//! The bearer-token path: header extraction, size check, header and claims
//! parsing and validation, with a real key. Invariant: no panic, and no
//! input the fuzzer makes is accepted (it cannot sign).
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http::Request;
use libfuzzer_sys::fuzz_target;
use portcullis::{Identity, JwtIssuer, JwtLayer, SigningKey, Validation};
use tower::{ServiceBuilder, ServiceExt};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    layer: JwtLayer,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), "https://iss", "aud");
        let layer = JwtLayer::new(
            issuer.verifying_key(),
            Validation::new().issuer("https://iss").audience("aud"),
        )
        .expect("layer");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        Fixture { runtime, layer }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let request = Request::get("/")
        .header("authorization", value)
        .body(())
        .expect("request");
    let service = ServiceBuilder::new()
        .layer(fixture.layer.clone())
        .service_fn(|request: Request<()>| async move {
            assert!(
                request.extensions().get::<Identity>().is_none(),
                "accepted an unsigned token"
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
        });
    let response = fixture.runtime.block_on(service.oneshot(request)).expect("infallible");
    assert!(response.status().is_client_error() || response.status().is_success());
    // Also the verifier directly, on the raw text.
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(fixture.layer.verifier().verify(text).is_err());
    }
});
