//! The OIDC relying party's two doors a stranger can knock on: the login
//! callback (a fuzzed query and `Cookie` header) and the back-channel
//! logout endpoint (a fuzzed form body). Invariants: no panic; no callback
//! is accepted (the fuzzer never saw the transaction key, so it cannot
//! seal a transaction; the token endpoint is never even reached); no
//! logout token is accepted (it cannot sign one).
#![no_main]

use std::sync::{Arc, OnceLock, atomic::AtomicU64, atomic::Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use libfuzzer_sys::fuzz_target;
use portcullis::SecretKeyring;
use portcullis::jwt::{KeySet, Keys, SigningKey};
use portcullis::oidc::{ClientConfig, MemoryReplayCache, OidcClient, ProviderMetadata};
use tower::BoxError;
use tower::util::BoxCloneSyncService;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    client: OidcClient,
    token_requests: Arc<AtomicU64>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let token_requests = Arc::new(AtomicU64::new(0));
        let counter = token_requests.clone();
        // The provider's HTTP side: counts calls and answers nothing useful.
        let http = BoxCloneSyncService::new(tower::service_fn(move |_request: http::Request<Bytes>| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Err::<Response<Bytes>, BoxError>("no network in the fuzzer".into()) }
        }));
        let key = SigningKey::generate_p256().expect("key").with_kid("k1");
        let client = OidcClient::from_metadata(
            ProviderMetadata::new(
                "https://provider.test",
                "https://provider.test/auth",
                "https://provider.test/token",
                "https://provider.test/jwks",
            ),
            ClientConfig::new("stack", "secret", "https://app.test/login/oidc/callback"),
            Keys::Static(KeySet::new([key.verifying_key()])),
            &SecretKeyring::single(&[5; 32]).expect("ring"),
            Arc::new(MemoryReplayCache::default()),
            http,
        )
        .expect("client");
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
            client,
            token_requests,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    // First byte picks the door; the rest is split at the first NUL into
    // the query (or body) and the cookie header.
    let Some((&door, rest)) = data.split_first() else { return };
    let (first, second) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    fixture.runtime.block_on(async {
        if door % 2 == 0 {
            let query = String::from_utf8_lossy(first);
            let mut headers = HeaderMap::new();
            if let Ok(cookie) = HeaderValue::from_bytes(second) {
                headers.insert(http::header::COOKIE, cookie);
            }
            let outcome = fixture.client.complete_login(&headers, &query).await;
            assert!(outcome.is_err(), "a forged callback was accepted");
            assert_eq!(
                fixture.token_requests.load(Ordering::Relaxed),
                0,
                "a forged callback reached the token endpoint"
            );
        } else {
            let outcome = fixture.client.verify_backchannel_logout(first).await;
            assert!(outcome.is_err(), "a forged logout token was accepted");
        }
    });
});
