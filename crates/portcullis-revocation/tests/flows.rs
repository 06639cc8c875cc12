//! RevocationLayer behind JwtLayer, on the in-memory store.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Clock, Identity, ManualClock, Principal, Rejection, RejectionKind, SharedClock};
use portcullis_jwt::{JwtIssuer, JwtLayer, JwtVerifier, SigningKey, Validation, VerifyingKey};
use portcullis_revocation::{
    DEFAULT_CLOCK_SKEW, MemoryRevocationStore, RevocationLayer, RevocationStore, Revocations, Revoked, StoreError,
    StoreFuture, StoreKind,
};
use tower::{ServiceBuilder, ServiceExt};

const ISS: &str = "https://auth.test";
const AUD: &str = "notes-api";

struct Fixture {
    issuer: JwtIssuer,
    clock: ManualClock,
    revocations: Revocations,
    key: VerifyingKey,
}

impl Fixture {
    fn new() -> Self {
        Self::with_store(Arc::new(MemoryRevocationStore::new()))
    }

    fn with_store(store: Arc<dyn RevocationStore>) -> Self {
        let key = SigningKey::generate_ed25519().expect("key");
        let clock = ManualClock::new(SystemTime::now());
        let shared: SharedClock = Arc::new(clock.clone());
        let verifying = key.verifying_key();
        let issuer = JwtIssuer::new(key, ISS, AUD).clock(shared.clone());
        let revocations = Revocations::new(store).clock(shared);
        Self {
            issuer,
            clock,
            revocations,
            key: verifying,
        }
    }

    fn verifier(&self) -> JwtVerifier {
        JwtVerifier::new(self.key.clone().into(), Validation::new().issuer(ISS).audience(AUD)).expect("verifier")
    }

    /// JwtLayer → RevocationLayer → a handler answering with the subject.
    async fn call(&self, token: &str) -> Response<Bytes> {
        let jwt = JwtLayer::new(self.key.clone(), Validation::new().issuer(ISS).audience(AUD))
            .expect("jwt layer")
            .clock(Arc::new(self.clock.clone()));
        let service = ServiceBuilder::new()
            .layer(jwt)
            .layer(RevocationLayer::new(&self.revocations))
            .service_fn(|request: Request<Full<Bytes>>| async move {
                let subject = request
                    .extensions()
                    .get::<Identity>()
                    .map(|identity| identity.subject().to_owned())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(subject))))
            });
        let request = Request::get("/notes")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = service.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Response::from_parts(parts, body)
    }
}

fn assert_revoked(response: &Response<Bytes>) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().expect("ascii");
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("token revoked"),
        "challenge names the reason: {challenge}"
    );
    let rejection = response.extensions().get::<Rejection>().expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::InvalidCredentials);
    assert_eq!(rejection.reason(), "token revoked");
    assert_eq!(rejection.layer(), "revocation");
}

/// The memory store against the RevocationStore contract, one test per
/// rule.
mod memory_store_conformance {
    use super::*;

    portcullis_revocation::revocation_store_conformance!(async {
        let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocationStore::new());
        (store, ())
    });
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_others_pass() {
    let fixture = Fixture::new();
    let token = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    let other = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    assert_eq!(fixture.call(&token).await.body(), "alice");

    let identity = fixture.verifier().verify(&token).expect("verify");
    assert!(fixture.revocations.revoke_identity(&identity).await.expect("revoke"));
    assert_revoked(&fixture.call(&token).await);
    assert_eq!(
        fixture.call(&other).await.body(),
        "alice",
        "another jti of the subject passes"
    );
}

#[tokio::test]
async fn a_subject_cutoff_revokes_earlier_tokens_only() {
    let fixture = Fixture::new();
    let before = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    let bob = fixture.issuer.mint("bob", ["notes:read"]).expect("mint");
    fixture
        .revocations
        .cut_off_subject(&Principal::new(ISS, "alice"))
        .await
        .expect("cut off");
    assert_revoked(&fixture.call(&before).await);
    assert_eq!(fixture.call(&bob).await.body(), "bob");

    // iat has one-second resolution, and the cutoff covers the clock-skew
    // margin: a token of the second after both is new.
    fixture.clock.advance(DEFAULT_CLOCK_SKEW + Duration::from_secs(1));
    let after = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    assert_eq!(fixture.call(&after).await.body(), "alice", "issued after the cutoff");
}

/// Defect: a cutoff had no clock-skew margin (a token minted just before it
/// by a node whose clock runs ahead escaped), and cutoffs were forgotten
/// after 24 h whatever the lifetime of the tokens accepted.
#[tokio::test]
async fn cutoffs_cover_clock_skew_and_tokens_never_outlive_them() {
    let fixture = Fixture::new();
    // A node 3 s ahead mints a token (iat = now + 3 s) just before the cutoff.
    let skewed_clock = ManualClock::new(fixture.clock.now() + Duration::from_secs(3));
    let skewed = fixture.issuer.clone().clock(Arc::new(skewed_clock));
    let minted_ahead = skewed.mint("alice", ["notes:read"]).expect("mint");
    fixture
        .revocations
        .cut_off_subject(&Principal::new(ISS, "alice"))
        .await
        .expect("cut off");
    assert_revoked(&fixture.call(&minted_ahead).await);

    // A token living longer than cutoffs are kept is refused, with why.
    let short_memory = Revocations::new(fixture.revocations.store().clone())
        .keep_cutoffs_for(Duration::from_secs(1800))
        .clock(Arc::new(fixture.clock.clone()));
    let long_lived = fixture
        .issuer
        .clone()
        .access_token_ttl(Duration::from_secs(3600))
        .mint("bob", ["notes:read"])
        .expect("mint");
    let jwt = JwtLayer::new(fixture.key.clone(), Validation::new().issuer(ISS).audience(AUD))
        .expect("jwt layer")
        .clock(Arc::new(fixture.clock.clone()));
    let service = ServiceBuilder::new()
        .layer(jwt)
        .layer(RevocationLayer::new(&short_memory))
        .service_fn(|_: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) });
    let call = |token: String| {
        let service = service.clone();
        async move {
            let request = Request::get("/notes")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            service.oneshot(request).await.expect("infallible")
        }
    };
    let refused = call(long_lived).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let rejection = refused.extensions().get::<Rejection>().expect("typed rejection");
    assert_eq!(rejection.reason(), "token outlives the revocation horizon");
    let fits = fixture.issuer.mint("bob", ["notes:read"]).expect("mint");
    assert_eq!(
        call(fits).await.status(),
        StatusCode::OK,
        "a 15-minute token fits in 30 minutes"
    );
}

/// A store that must be asked over the "network": no `check_now`, and it
/// can be switched off.
#[derive(Debug, Default)]
struct RemoteStore {
    inner: MemoryRevocationStore,
    down: std::sync::atomic::AtomicBool,
}

impl RevocationStore for RemoteStore {
    fn revoke(&self, revocation: portcullis_revocation::Revocation) -> StoreFuture<'_, ()> {
        self.inner.revoke(revocation)
    }

    fn check(&self, identity: Identity) -> StoreFuture<'_, Option<Revoked>> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::unavailable(StoreKind::Revocation, "connection refused")) });
        }
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.check(identity).await
        })
    }

    fn entries(&self) -> StoreFuture<'_, Vec<portcullis_revocation::Revocation>> {
        self.inner.entries()
    }
}

#[tokio::test]
async fn an_asynchronous_store_is_awaited_and_its_outage_is_a_503() {
    let store = Arc::new(RemoteStore::default());
    let fixture = Fixture::with_store(store.clone());
    let token = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    assert_eq!(fixture.call(&token).await.body(), "alice");
    let identity = fixture.verifier().verify(&token).expect("verify");
    fixture.revocations.revoke_identity(&identity).await.expect("revoke");
    assert_revoked(&fixture.call(&token).await);

    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let fresh = fixture.issuer.mint("bob", ["notes:read"]).expect("mint");
    let response = fixture.call(&fresh).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never a silent pass"
    );
    let rejection = response.extensions().get::<Rejection>().expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::Unavailable);
    assert_eq!(rejection.reason(), "revocation store unavailable");
    assert_eq!(
        rejection.source_as::<StoreError>().map(StoreError::reason),
        Some("connection refused")
    );
}

/// A RevocationLayer no authenticator stands before cannot tell a revoked
/// token from no token: a loud 500 (`misconfigured`, with the reason),
/// never a silent pass. Behind an authenticator, an anonymous request
/// passes (RequireAuth decides about it).
#[tokio::test]
async fn a_revocation_layer_with_no_authenticator_before_it_is_a_loud_misconfiguration() {
    let fixture = Fixture::new();
    let token = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    let handler =
        |_: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("reached")))) };
    let alone = ServiceBuilder::new()
        .layer(RevocationLayer::new(&fixture.revocations))
        .service_fn(handler);
    let request = Request::get("/notes")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = alone.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .cloned()
        .expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::Misconfigured);
    assert_eq!(rejection.layer(), "revocation");
    assert!(
        rejection.reason().contains("needs an authenticator"),
        "{}",
        rejection.reason()
    );
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("reached"));

    let jwt = JwtLayer::new(fixture.key.clone(), Validation::new().issuer(ISS).audience(AUD))
        .expect("jwt layer")
        .clock(Arc::new(fixture.clock.clone()))
        .optional();
    let behind = ServiceBuilder::new()
        .layer(jwt)
        .layer(RevocationLayer::new(&fixture.revocations))
        .service_fn(handler);
    let anonymous = Request::get("/notes").body(Full::new(Bytes::new())).expect("request");
    let response = behind.oneshot(anonymous).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}
