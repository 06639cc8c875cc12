//! Each validation rule of ID tokens and logout tokens, on hand-built
//! tokens signed by a real key: every refusal is asserted with its reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::SystemClock;
use portcullis_jwt::{JwtVerifier, KeySet, SigningKey, Validation, sign_compact};
use portcullis_oidc::{
    BACKCHANNEL_LOGOUT_EVENT, IdTokenError, IdTokenExpectations, LogoutTokenError, LogoutTokenExpectations,
    validate_id_token, validate_logout_token,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://provider.test";
const CLIENT: &str = "stack";
const NONCE: &str = "n-0S6_WzA2Mj";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

struct Provider {
    key: SigningKey,
    keys: KeySet,
    verifier: JwtVerifier,
}

fn provider() -> Provider {
    let key = SigningKey::generate_p256().expect("key").with_kid("k1");
    let verifier = JwtVerifier::with_options(
        KeySet::new([key.verifying_key()]),
        Validation::new().issuer(ISSUER).audience(CLIENT),
        Arc::new(SystemClock),
        None,
    )
    .expect("verifier");
    Provider {
        keys: KeySet::new([key.verifying_key()]),
        key,
        verifier,
    }
}

impl Provider {
    fn sign(&self, header: Value, claims: Value) -> String {
        sign_compact(&self.key, &header, &claims).expect("sign")
    }

    fn id_token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = json!({
            "iss": ISSUER, "aud": CLIENT, "sub": "alice", "sid": "provider-session-1",
            "iat": now(), "exp": now() + 300, "nonce": NONCE,
        });
        edit(&mut claims);
        self.sign(json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}), claims)
    }

    fn logout_token(&self, header: Value, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = json!({
            "iss": ISSUER, "aud": CLIENT, "sub": "alice", "sid": "provider-session-1",
            "iat": now(), "exp": now() + 120, "jti": "jti-1",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        edit(&mut claims);
        self.sign(header, claims)
    }
}

fn expect(access_token: Option<&str>) -> IdTokenExpectations<'_> {
    IdTokenExpectations {
        client_id: CLIENT,
        nonce: Some(NONCE),
        refresh: false,
        access_token,
        max_age: Duration::from_secs(600),
        now: SystemTime::now(),
    }
}

fn logout_expect() -> LogoutTokenExpectations<'static> {
    LogoutTokenExpectations {
        issuer: ISSUER,
        client_id: CLIENT,
        now: SystemTime::now(),
        leeway: Duration::from_secs(30),
    }
}

fn id_reason(provider: &Provider, token: &str, expectations: &IdTokenExpectations<'_>) -> &'static str {
    validate_id_token(&provider.verifier, token, expectations)
        .expect_err("refused")
        .reason()
}

#[test]
fn a_good_id_token_is_accepted_with_its_subject_and_provider_session() {
    let provider = provider();
    let claims = validate_id_token(&provider.verifier, &provider.id_token(|_| {}), &expect(None)).expect("accepted");
    assert_eq!((claims.issuer.as_str(), claims.subject.as_str()), (ISSUER, "alice"));
    assert_eq!(claims.session_id.as_deref(), Some("provider-session-1"));
}

#[test]
fn each_id_token_rule_refuses_with_its_reason() {
    let provider = provider();
    let stranger = SigningKey::generate_p256().expect("key").with_kid("k1");
    let forged = sign_compact(
        &stranger,
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": ISSUER, "aud": CLIENT, "sub": "alice", "iat": now(), "exp": now() + 300, "nonce": NONCE}),
    )
    .expect("sign");
    let cases: Vec<(&str, String, &str)> = vec![
        ("signed by another key", forged, "id token signature"),
        (
            "another issuer",
            provider.id_token(|c| c["iss"] = "https://provider.test/".into()),
            "id token issuer",
        ),
        (
            "for another client",
            provider.id_token(|c| c["aud"] = "other-client".into()),
            "id token audience",
        ),
        (
            "expired",
            provider.id_token(|c| c["exp"] = (now() - 3600).into()),
            "id token expired",
        ),
        (
            "no nonce",
            provider.id_token(|c| drop(c.as_object_mut().map(|o| o.remove("nonce")))),
            "id token nonce",
        ),
        (
            "a wrong nonce",
            provider.id_token(|c| c["nonce"] = "another-login".into()),
            "id token nonce",
        ),
        (
            "no sub",
            provider.id_token(|c| drop(c.as_object_mut().map(|o| o.remove("sub")))),
            "id token subject",
        ),
        (
            "an empty sub",
            provider.id_token(|c| c["sub"] = "".into()),
            "id token subject",
        ),
        (
            "no iat",
            provider.id_token(|c| drop(c.as_object_mut().map(|o| o.remove("iat")))),
            "id token issued at",
        ),
        (
            "an old iat",
            provider.id_token(|c| c["iat"] = (now() - 3600).into()),
            "id token issued at",
        ),
        (
            "several audiences, no azp",
            provider.id_token(|c| c["aud"] = json!([CLIENT, "other-client"])),
            "id token authorized party",
        ),
        (
            "azp of another client",
            provider.id_token(|c| c["azp"] = "other-client".into()),
            "id token authorized party",
        ),
    ];
    for (case, token, reason) in cases {
        assert_eq!(id_reason(&provider, &token, &expect(None)), reason, "{case}");
    }
    // Several audiences with azp = this client is fine.
    let shared = provider.id_token(|c| {
        c["aud"] = json!([CLIENT, "other-client"]);
        c["azp"] = CLIENT.into();
    });
    assert!(validate_id_token(&provider.verifier, &shared, &expect(None)).is_ok());
}

#[test]
fn at_hash_is_checked_when_present_and_a_refresh_may_omit_the_nonce() {
    let provider = provider();
    // at_hash of "access-token-1" under ES256 (SHA-256, left half).
    let hash = {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"access-token-1");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
    };
    let token = provider.id_token(|c| c["at_hash"] = hash.clone().into());
    assert!(validate_id_token(&provider.verifier, &token, &expect(Some("access-token-1"))).is_ok());
    assert_eq!(
        id_reason(&provider, &token, &expect(Some("another-access-token"))),
        "id token at_hash"
    );
    // On refresh the provider may send no nonce; a nonce it does send must
    // still be the login's.
    let refreshed = provider.id_token(|c| drop(c.as_object_mut().map(|o| o.remove("nonce"))));
    let on_refresh = IdTokenExpectations {
        refresh: true,
        ..expect(None)
    };
    assert!(validate_id_token(&provider.verifier, &refreshed, &on_refresh).is_ok());
    assert!(
        validate_id_token(&provider.verifier, &provider.id_token(|_| {}), &on_refresh).is_ok(),
        "a refresh may repeat the login's nonce"
    );
    assert_eq!(
        id_reason(
            &provider,
            &provider.id_token(|c| c["nonce"] = "another".into()),
            &on_refresh
        ),
        "id token nonce",
        "a nonce a refresh sends must be the login's"
    );
    let login_without_nonce = IdTokenExpectations {
        nonce: None,
        ..on_refresh
    };
    assert!(matches!(
        validate_id_token(&provider.verifier, &provider.id_token(|_| {}), &login_without_nonce),
        Err(IdTokenError::Nonce)
    ));
    assert_eq!(
        id_reason(&provider, &refreshed, &expect(None)),
        "id token nonce",
        "outside a refresh the nonce is required"
    );
}

#[test]
fn a_good_logout_token_names_the_provider_session_and_subject() {
    let provider = provider();
    let token = provider.logout_token(json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"}), |_| {});
    let logout = validate_logout_token(&provider.keys, &token, &logout_expect()).expect("accepted");
    assert_eq!(logout.session_id.as_deref(), Some("provider-session-1"));
    assert_eq!(logout.subject.as_deref(), Some("alice"));
    assert_eq!(logout.token_id, "jti-1");
    // sid alone, or sub alone, is enough.
    for drop_claim in ["sub", "sid"] {
        let token = provider.logout_token(json!({"alg": "ES256", "kid": "k1"}), |c| {
            c.as_object_mut().map(|o| o.remove(drop_claim));
        });
        assert!(
            validate_logout_token(&provider.keys, &token, &logout_expect()).is_ok(),
            "without {drop_claim}"
        );
    }
}

#[test]
fn each_logout_token_rule_refuses_with_its_reason() {
    let provider = provider();
    let header = || json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"});
    let stranger = SigningKey::generate_p256().expect("key").with_kid("k9");
    let unknown_key = sign_compact(
        &stranger,
        &header(),
        &json!({"iss": ISSUER, "aud": CLIENT, "sub": "alice", "iat": now(), "exp": now() + 60, "jti": "j",
                "events": { BACKCHANNEL_LOGOUT_EVENT: {} }}),
    )
    .expect("sign");
    let remove = |name: &'static str| move |c: &mut Value| drop(c.as_object_mut().map(|o| o.remove(name)));
    let cases: Vec<(&str, String, LogoutTokenError)> = vec![
        (
            "signed by an unknown key",
            unknown_key,
            LogoutTokenError::Jwt(portcullis_jwt::JwtError::InvalidSignature),
        ),
        (
            "from another issuer",
            provider.logout_token(header(), |c| c["iss"] = "https://other.test".into()),
            LogoutTokenError::Jwt(portcullis_jwt::JwtError::IssuerMismatch),
        ),
        (
            "expired",
            provider.logout_token(header(), |c| c["exp"] = (now() - 600).into()),
            LogoutTokenError::Jwt(portcullis_jwt::JwtError::Expired),
        ),
        (
            "with a nonce",
            provider.logout_token(header(), |c| c["nonce"] = "n".into()),
            LogoutTokenError::Nonce,
        ),
        (
            "without events",
            provider.logout_token(header(), remove("events")),
            LogoutTokenError::Events,
        ),
        (
            "with another event",
            provider.logout_token(header(), |c| c["events"] = json!({"http://example.test/other": {}})),
            LogoutTokenError::Events,
        ),
        (
            "with the event as a string",
            provider.logout_token(header(), |c| c["events"] = json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })),
            LogoutTokenError::Events,
        ),
        (
            "with neither sid nor sub",
            provider.logout_token(header(), |c| {
                c.as_object_mut().map(|o| {
                    o.remove("sid");
                    o.remove("sub")
                });
            }),
            LogoutTokenError::NoTarget,
        ),
        (
            "without jti",
            provider.logout_token(header(), remove("jti")),
            LogoutTokenError::Identity,
        ),
        (
            "without iat",
            provider.logout_token(header(), remove("iat")),
            LogoutTokenError::Identity,
        ),
        (
            "typed as an access token",
            provider.logout_token(json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}), |_| {}),
            LogoutTokenError::Type,
        ),
    ];
    for (case, token, expected) in cases {
        let refused = validate_logout_token(&provider.keys, &token, &logout_expect()).expect_err(case);
        assert_eq!(refused, expected, "{case}");
        assert!(!refused.reason().is_empty());
    }
    let other_audience = provider.logout_token(header(), |c| c["aud"] = "other-client".into());
    assert_eq!(
        validate_logout_token(&provider.keys, &other_audience, &logout_expect()).map_err(|e| e.reason()),
        Err("logout token audience")
    );
}
