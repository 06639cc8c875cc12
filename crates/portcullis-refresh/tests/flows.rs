//! The refresh engine and the OAuth endpoints, with JwtLayer and
//! RevocationLayer in front of the access tokens they mint, on the
//! in-memory stores.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Identity, ManualClock, Principal, Rejection, RejectionKind, SharedClock};
use portcullis_jwt::{JwtIssuer, JwtLayer, JwtVerifier, SigningKey, Validation, VerifyingKey};
use portcullis_refresh::{MemoryRefreshStore, RefreshEndpoint, RefreshError, RefreshTokens, RevocationEndpoint};
use portcullis_revocation::{MemoryRevocationStore, RevocationLayer, RevocationStore, Revocations};
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};

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

/// The memory store against the RefreshStore contract, one test per rule.
mod memory_store_conformance {
    use super::*;
    use portcullis_refresh::RefreshStore;

    portcullis_refresh::refresh_store_conformance!(async {
        let store: Arc<dyn RefreshStore> = Arc::new(MemoryRefreshStore::new());
        (store, ())
    });
}

fn engine(fixture: &Fixture, grace: Duration) -> RefreshTokens {
    RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), fixture.issuer.clone(), &[9; 32])
        .revocations(&fixture.revocations)
        .grace(grace)
        .clock(Arc::new(fixture.clock.clone()))
        .build()
        .expect("engine")
}

#[tokio::test]
async fn rotation_retry_and_reuse_detection() {
    let fixture = Fixture::new();
    let tokens = engine(&fixture, Duration::from_secs(5));
    let login = tokens.issue("alice", ["notes:read"]).await.expect("issue");
    assert_eq!(fixture.call(&login.access_token).await.body(), "alice");
    let claims = fixture.verifier().verify(&login.access_token).expect("verify");
    let sid = claims.claims::<Value>().expect("claims").expect("json")["sid"].clone();
    assert_eq!(
        sid,
        Value::String(login.family.clone()),
        "access tokens carry the family as sid"
    );

    let first = tokens.refresh(&login.refresh_token).await.expect("rotate");
    assert_ne!(first.refresh_token, login.refresh_token, "a new refresh token");
    let retry = tokens.refresh(&login.refresh_token).await.expect("honest retry");
    assert_eq!(
        retry.refresh_token, first.refresh_token,
        "the retry gets the same successor"
    );
    let second = tokens.refresh(&first.refresh_token).await.expect("rotate again");
    assert_eq!(fixture.call(&second.access_token).await.body(), "alice");

    // Past the grace window, presenting a spent token is a replay.
    fixture.clock.advance(Duration::from_secs(6));
    let replay = tokens.refresh(&login.refresh_token).await;
    assert!(
        matches!(
            replay,
            Err(RefreshError::InvalidGrant("refresh token reused; family revoked"))
        ),
        "{replay:?}"
    );
    let newest = tokens.refresh(&second.refresh_token).await;
    assert!(
        matches!(
            newest,
            Err(RefreshError::InvalidGrant("refresh token expired or revoked"))
        ),
        "the successor stops working too: {newest:?}"
    );
    assert_revoked(&fixture.call(&second.access_token).await);

    // Another login is another family, untouched.
    fixture.clock.advance(Duration::from_secs(1));
    let other = tokens.issue("alice", ["notes:read"]).await.expect("issue");
    assert_eq!(fixture.call(&other.access_token).await.body(), "alice");
    assert!(matches!(
        tokens.refresh("not-a-token").await,
        Err(RefreshError::InvalidGrant("malformed refresh token"))
    ));
    // Well-formed, but not ours: another engine's (another secret), or one
    // with a byte changed. The MAC tells.
    let stranger = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), fixture.issuer.clone(), &[8; 32])
        .build()
        .expect("engine");
    let foreign = stranger.issue("alice", ["notes:read"]).await.expect("issue");
    assert!(matches!(
        tokens.refresh(&foreign.refresh_token).await,
        Err(RefreshError::InvalidGrant("unknown refresh token"))
    ));
    let mut tampered = other.refresh_token.clone().into_bytes();
    tampered[30] = if tampered[30] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(matches!(
        tokens.refresh(&tampered).await,
        Err(RefreshError::InvalidGrant("unknown refresh token"))
    ));
    assert!(matches!(
        tokens.refresh(&"A".repeat(43)).await,
        Err(RefreshError::InvalidGrant("malformed refresh token"))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_double_use_has_exactly_one_winner() {
    let fixture = Fixture::new();
    let tokens = engine(&fixture, Duration::ZERO);
    let login = tokens.issue("alice", ["notes:read"]).await.expect("issue");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let tokens = tokens.clone();
            let refresh = login.refresh_token.clone();
            tokio::spawn(async move { tokens.refresh(&refresh).await })
        })
        .collect();
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.expect("join").is_ok() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "one token, one rotation");
}

async fn post_form<S>(service: S, body: &'static str) -> (StatusCode, Value)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    let request = Request::post("/oauth")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    let response = service.oneshot(request).await.expect("infallible");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json body"))
}

#[tokio::test]
async fn the_token_endpoint_follows_rfc_6749() {
    let fixture = Fixture::new();
    let tokens = engine(&fixture, Duration::from_secs(5));
    let endpoint = RefreshEndpoint::new(tokens.clone());
    let login = tokens
        .issue("alice", ["notes:read", "notes:write"])
        .await
        .expect("issue");

    let body: &'static str = format!("grant_type=refresh_token&refresh_token={}", login.refresh_token).leak();
    let (status, answer) = post_form(endpoint.clone(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 900);
    assert_eq!(answer["scope"], "notes:read notes:write");
    let access = answer["access_token"].as_str().expect("access token");
    assert_eq!(fixture.call(access).await.body(), "alice");

    for (body, error) in [
        ("refresh_token=x", "invalid_request"),
        ("grant_type=password&username=a", "unsupported_grant_type"),
        ("grant_type=refresh_token", "invalid_request"),
        (
            "grant_type=refresh_token&grant_type=refresh_token&refresh_token=x",
            "invalid_request",
        ),
        ("grant_type=refresh_token&refresh_token=garbage", "invalid_grant"),
    ] {
        let (status, answer) = post_form(endpoint.clone(), body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error)),
            "{body}"
        );
        assert!(answer["error_description"].is_string());
    }
    // The spent login token, replayed past the grace window.
    fixture.clock.advance(Duration::from_secs(10));
    let (status, answer) = post_form(endpoint.clone(), body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_grant");
    assert_eq!(answer["error_description"], "refresh token reused; family revoked");

    // Not a form: invalid_request; not a POST: 405.
    let request = Request::post("/oauth")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let response = endpoint.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let request = Request::get("/oauth").body(Full::new(Bytes::new())).expect("request");
    let response = endpoint.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
}

#[tokio::test]
async fn the_revocation_endpoint_follows_rfc_7009() {
    let fixture = Fixture::new();
    let tokens = engine(&fixture, Duration::from_secs(5));
    let endpoint = RevocationEndpoint::new(tokens.clone(), Some(fixture.verifier()), fixture.revocations.clone());

    // A refresh token revokes its family and the family's access tokens.
    let login = tokens.issue("alice", ["notes:read"]).await.expect("issue");
    let body: &'static str = format!("token={}&token_type_hint=refresh_token", login.refresh_token).leak();
    assert_eq!(post_form(endpoint.clone(), body).await.0, StatusCode::OK);
    assert!(matches!(
        tokens.refresh(&login.refresh_token).await,
        Err(RefreshError::InvalidGrant("refresh token expired or revoked"))
    ));
    assert_revoked(&fixture.call(&login.access_token).await);

    // An access token is denylisted by its jti (hint or not).
    let access = fixture.issuer.mint("bob", ["notes:read"]).expect("mint");
    let untouched = fixture.issuer.mint("bob", ["notes:read"]).expect("mint");
    let body: &'static str = format!("token={access}").leak();
    assert_eq!(post_form(endpoint.clone(), body).await.0, StatusCode::OK);
    assert_revoked(&fixture.call(&access).await);
    assert_eq!(fixture.call(&untouched).await.body(), "bob");

    // Unknown and forged tokens: 200, nothing revoked; no token: 400.
    assert_eq!(post_form(endpoint.clone(), "token=unknown").await.0, StatusCode::OK);
    let (status, answer) = post_form(endpoint, "token_type_hint=access_token").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn reuse_can_cut_off_the_subject_and_a_subject_can_be_revoked_whole() {
    let fixture = Fixture::new();
    let strict = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), fixture.issuer.clone(), &[9; 32])
        .revocations(&fixture.revocations)
        .grace(Duration::ZERO)
        .cut_off_subject_on_reuse(true)
        .clock(Arc::new(fixture.clock.clone()))
        .build()
        .expect("engine");
    let phone = strict.issue("alice", ["notes:read"]).await.expect("issue");
    let laptop = strict.issue("alice", ["notes:read"]).await.expect("issue");
    let plain = fixture.issuer.mint("alice", ["notes:read"]).expect("mint");
    strict.refresh(&phone.refresh_token).await.expect("rotate");
    assert!(strict.refresh(&phone.refresh_token).await.is_err(), "replay");
    for token in [&laptop.access_token, &plain] {
        assert_revoked(&fixture.call(token).await);
    }
    assert!(
        strict.refresh(&laptop.refresh_token).await.is_ok(),
        "other families' refresh tokens still rotate"
    );

    // Revoke all of a subject's families at once.
    fixture.clock.advance(Duration::from_secs(1));
    let tokens = engine(&fixture, Duration::from_secs(5));
    let one = tokens.issue("bob", ["notes:read"]).await.expect("issue");
    let two = tokens.issue("bob", ["notes:read"]).await.expect("issue");
    assert_eq!(
        tokens
            .revoke_subject(&Principal::new("https://other-issuer.test", "bob"))
            .await
            .expect("revoke"),
        0,
        "another issuer's bob owns none of our bob's families"
    );
    assert_eq!(
        tokens
            .revoke_subject(&Principal::new(ISS, "bob"))
            .await
            .expect("revoke"),
        2
    );
    for pair in [&one, &two] {
        assert!(tokens.refresh(&pair.refresh_token).await.is_err());
        assert_revoked(&fixture.call(&pair.access_token).await);
    }
    assert!(
        RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), fixture.issuer.clone(), &[1; 16])
            .build()
            .is_err(),
        "a short secret is refused"
    );
}

#[tokio::test]
async fn the_memory_store_sweeps_expired_entries() {
    let store = MemoryRevocationStore::new();
    for n in 0..1_000 {
        let mut revocation = portcullis_revocation::Revocation::token(ISS, format!("j{n}"), SystemTime::now());
        revocation.expires_ms = portcullis_core::epoch_millis(SystemTime::now()) + 50;
        store.revoke(revocation).await.expect("revoke");
    }
    assert_eq!(store.len(), 1_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.sweep();
    assert!(store.is_empty(), "expired entries are dropped");
}

/// The optional per-family rate cap: a faster refresh is 429 with
/// `Retry-After`, spends nothing, and the token works once the interval
/// has passed.
#[tokio::test]
async fn a_family_rotates_at_most_once_per_interval_when_capped() {
    let fixture = Fixture::new();
    let tokens = RefreshTokens::builder(Arc::new(MemoryRefreshStore::new()), fixture.issuer.clone(), &[9; 32])
        .revocations(&fixture.revocations)
        .min_rotation_interval(Duration::from_secs(30))
        .clock(Arc::new(fixture.clock.clone()))
        .build()
        .expect("engine");
    let login = tokens.issue("alice", ["notes:read"]).await.expect("issue");
    fixture.clock.advance(Duration::from_secs(31));
    let first = tokens.refresh(&login.refresh_token).await.expect("rotate");
    let endpoint = RefreshEndpoint::new(tokens.clone());
    let body: &'static str = format!("grant_type=refresh_token&refresh_token={}", first.refresh_token).leak();
    let request = Request::post("/oauth")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    let response = endpoint.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(answer["error"], "temporarily_unavailable");
    assert_eq!(answer["error_description"], "refresh too frequent");
    // Not spent, not a replay: it works once the interval has passed.
    fixture.clock.advance(Duration::from_secs(30));
    let (status, answer) = post_form(endpoint, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// A keyring rotation: a family issued under `s1` rotates under
/// `[s2, s1]`, and its successor was made with `s2` alone (an `s1`-only
/// engine calls it unknown, an `s2`-only one rotates it); a family left
/// unused through the overlap is refused once `s1` is gone.
#[tokio::test]
async fn a_secret_rotation_moves_families_that_rotate_and_drops_idle_ones() {
    use portcullis_core::SecretKeyring;
    let fixture = Fixture::new();
    let store = Arc::new(MemoryRefreshStore::new());
    let engine = |secrets: &[[u8; 32]]| {
        RefreshTokens::builder(store.clone(), fixture.issuer.clone(), &[0; 32])
            .secrets(&SecretKeyring::new(secrets).expect("ring"))
            .build()
            .expect("engine")
    };
    let (s1, s2) = ([1u8; 32], [2u8; 32]);
    let (old, overlap, new) = (engine(&[s1]), engine(&[s2, s1]), engine(&[s2]));

    let active = old.issue("alice", ["notes:read"]).await.expect("issue");
    let idle = old.issue("bob", ["notes:read"]).await.expect("issue");

    let moved = overlap
        .refresh(&active.refresh_token)
        .await
        .expect("an s1 token rotates in the overlap");
    let fresh = overlap
        .issue("carol", ["notes:read"])
        .await
        .expect("a new login in the overlap");
    for (what, token) in [
        ("a successor", &moved.refresh_token),
        ("a new family", &fresh.refresh_token),
    ] {
        assert!(
            matches!(
                old.refresh(token).await,
                Err(RefreshError::InvalidGrant("unknown refresh token"))
            ),
            "{what} made in the overlap is not an s1 token"
        );
    }
    new.refresh(&moved.refresh_token)
        .await
        .expect("the moved family rotates under s2 alone");
    new.refresh(&fresh.refresh_token)
        .await
        .expect("the new family rotates under s2 alone");
    assert!(
        matches!(
            new.refresh(&idle.refresh_token).await,
            Err(RefreshError::InvalidGrant("unknown refresh token"))
        ),
        "a family idle through the overlap is refused, with the reason"
    );
}
