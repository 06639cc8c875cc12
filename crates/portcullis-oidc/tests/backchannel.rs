//! Back-channel logout end to end over a real session store (the
//! in-process one; the Redis and PostgreSQL ones run the same conformance
//! rule, and the reference stack's browser test runs this over both): a
//! token with `sid` ends that provider session's logins only, whatever its
//! `sub`; one with `sub` alone ends all of the user's; a replay, a `nonce`
//! or a missing `events` member ends nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Response;
use portcullis_core::{Principal, Route, SecretKeyring};
use portcullis_jwt::{KeySet, Keys, SigningKey, sign_compact};
use portcullis_oidc::{BACKCHANNEL_LOGOUT_EVENT, ClientConfig, MemoryReplayCache, OidcClient, ProviderMetadata};
use portcullis_session::{MemoryStore, SessionKey, SessionRecord, SessionStore, Sessions};
use serde_json::{Value, json};
use tower::BoxError;
use tower::util::BoxCloneSyncService;

const ISSUER: &str = "https://provider.test";

struct Fixture {
    key: SigningKey,
    client: OidcClient,
    store: Arc<MemoryStore>,
    sessions: Sessions,
}

fn fixture() -> Fixture {
    // Back-channel logout never calls the provider: an HTTP side that
    // fails proves it.
    let http = BoxCloneSyncService::new(tower::service_fn(|_request: http::Request<Bytes>| async {
        Err::<Response<Bytes>, BoxError>("no network here".into())
    }));
    let key = SigningKey::generate_p256().expect("key").with_kid("k1");
    let client = OidcClient::from_metadata(
        ProviderMetadata::new(
            ISSUER,
            "https://provider.test/auth",
            "https://provider.test/token",
            "https://provider.test/jwks",
        ),
        ClientConfig::new("stack", "secret", "https://app.test/login/oidc/callback"),
        Keys::Static(KeySet::new([key.verifying_key()])),
        &SecretKeyring::single(&[7; 32]).expect("ring"),
        Arc::new(MemoryReplayCache::default()),
        http,
    )
    .expect("client");
    let store = Arc::new(MemoryStore::new());
    Fixture {
        key,
        client,
        sessions: Sessions::new(store.clone()),
        store,
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

impl Fixture {
    /// A session of `subject` logged in through the provider session `sid`.
    async fn session(&self, n: u8, subject: &str, sid: &str) -> SessionKey {
        let principal = Principal::new(ISSUER, subject);
        let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
        record.principal = Some(principal.clone());
        record.provider_session = Some(sid.to_owned());
        let key = SessionKey::from_bytes([n; 32]).with_route(Route::of(&principal));
        self.store
            .create(&key, &record, Duration::from_secs(600))
            .await
            .expect("create");
        key
    }

    async fn live(&self, key: &SessionKey) -> bool {
        self.store.load(key).await.expect("load").is_some()
    }

    /// The form body of a logout token with `claims` over the defaults.
    fn body(&self, jti: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut claims = json!({
            "iss": ISSUER, "aud": "stack", "iat": now(), "exp": now() + 120, "jti": jti,
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        edit(&mut claims);
        let token = sign_compact(
            &self.key,
            &json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"}),
            &claims,
        )
        .expect("sign");
        format!("logout_token={token}").into_bytes()
    }
}

#[tokio::test]
async fn a_logout_token_with_a_sid_ends_that_provider_sessions_logins_only() {
    let fixture = fixture();
    let (a1, a2) = (
        fixture.session(1, "alice", "s1").await,
        fixture.session(2, "alice", "s1").await,
    );
    let a3 = fixture.session(3, "alice", "s2").await;
    let bob = fixture.session(4, "bob", "s3").await;

    let body = fixture.body("jti-1", |claims| {
        claims["sid"] = json!("s1");
        claims["sub"] = json!("alice");
    });
    let ended = fixture
        .client
        .backchannel_logout(&fixture.sessions, &body)
        .await
        .expect("accepted");
    assert_eq!(ended, 2, "both logins of provider session s1 end");
    assert!(
        !fixture.live(&a1).await && !fixture.live(&a2).await,
        "s1's sessions are gone"
    );
    assert!(
        fixture.live(&a3).await,
        "alice's login of another provider session stays"
    );
    assert!(fixture.live(&bob).await, "another user's session stays");

    // The same token again: refused by its jti, ending nothing more.
    let error = fixture
        .client
        .backchannel_logout(&fixture.sessions, &body)
        .await
        .expect_err("a replay is refused");
    assert_eq!(error.reason(), "logout token replayed");
    assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);

    // `sid` alone (no `sub`) is enough.
    let body = fixture.body("jti-2", |claims| claims["sid"] = json!("s2"));
    assert_eq!(
        fixture
            .client
            .backchannel_logout(&fixture.sessions, &body)
            .await
            .expect("accepted"),
        1,
        "a token with sid alone ends its provider session"
    );
    assert!(!fixture.live(&a3).await);
    assert!(fixture.live(&bob).await, "bob's session still stays");
}

#[tokio::test]
async fn a_logout_token_with_a_sub_alone_ends_all_the_users_sessions() {
    let fixture = fixture();
    let keys = [
        fixture.session(1, "alice", "s1").await,
        fixture.session(2, "alice", "s2").await,
    ];
    let bob = fixture.session(3, "bob", "s3").await;
    let body = fixture.body("jti-1", |claims| claims["sub"] = json!("alice"));
    assert_eq!(
        fixture
            .client
            .backchannel_logout(&fixture.sessions, &body)
            .await
            .expect("accepted"),
        2
    );
    for key in &keys {
        assert!(!fixture.live(key).await, "every session of alice ends");
    }
    assert!(fixture.live(&bob).await, "bob's stays");
}

#[tokio::test]
async fn refused_logout_tokens_end_nothing() {
    let fixture = fixture();
    let alice = fixture.session(1, "alice", "s1").await;
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "logout token nonce",
            fixture.body("jti-1", |claims| {
                claims["sid"] = json!("s1");
                claims["nonce"] = json!("n");
            }),
        ),
        (
            "logout token events",
            fixture.body("jti-2", |claims| {
                claims["sid"] = json!("s1");
                claims.as_object_mut().expect("object").remove("events");
            }),
        ),
        ("logout token names no session", fixture.body("jti-3", |_| {})),
        ("no logout token", b"token=nothing".to_vec()),
    ];
    for (reason, body) in cases {
        let error = fixture
            .client
            .backchannel_logout(&fixture.sessions, &body)
            .await
            .expect_err("refused");
        assert_eq!(error.reason(), reason);
        assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{reason}");
        assert!(fixture.live(&alice).await, "{reason}: nothing ended");
    }
}
