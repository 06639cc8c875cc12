//! Every CSRF rule and refusal reason, through SessionLayer + CsrfLayer.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{assert_refused, logged_in, request, send, stack};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use portcullis_core::RejectionKind;
use portcullis_csrf::{CsrfBody, CsrfLayer, CsrfToken};
use tower::{Service, ServiceBuilder};

#[tokio::test]
async fn tokens_pass_from_header_and_forms_and_bind_to_their_session() {
    let app = stack(CsrfLayer::new());
    let (cookie, token) = logged_in(&app).await;
    let same_origin = ("sec-fetch-site", "same-origin");

    let ok = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("x-csrf-token", &token)],
            "hi",
        ),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "handled: hi"));
    assert!(ok.vary.iter().any(|v| v == "Origin, Sec-Fetch-Site"), "{:?}", ok.vary);

    // A urlencoded form: the handler gets the body intact.
    let form = format!("note=hello+world&csrf_token={token}");
    let answer = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("content-type", "application/x-www-form-urlencoded")],
            &form,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, format!("handled: {form}"), "the body is passed on intact");

    // A multipart form.
    let multipart = format!(
        "--B0\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--B0\r\n\
         Content-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n--B0--\r\n"
    );
    let answer = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("content-type", "multipart/form-data; boundary=B0")],
            &multipart,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // Every masked token of the session is valid (several tabs).
    let another = send(&app, request(Method::GET, "/token", Some(&cookie), &[], "")).await;
    assert_ne!(another.body, token, "masked afresh");
    assert!(
        another.vary.iter().any(|v| v == "Cookie"),
        "a page with a token varies by cookie"
    );
    let ok = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("x-csrf-token", &another.body)],
            "",
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);

    // Missing, truncated, another session's.
    let missing = send(&app, request(Method::POST, "/notes", Some(&cookie), &[same_origin], "")).await;
    assert_refused(&missing, "missing token");
    let form_without = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("content-type", "application/x-www-form-urlencoded")],
            "note=x",
        ),
    )
    .await;
    assert_refused(&form_without, "missing token");
    let truncated = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("x-csrf-token", &token[..40])],
            "",
        ),
    )
    .await;
    assert_refused(&truncated, "token mismatch");
    let (_, other_token) = logged_in(&app).await;
    let foreign = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[same_origin, ("x-csrf-token", &other_token)],
            "",
        ),
    )
    .await;
    assert_refused(&foreign, "token mismatch");
}

#[tokio::test]
async fn origin_rules_and_their_reasons() {
    let app = stack(
        CsrfLayer::new()
            .insecure_http()
            .trusted_origin("http://*.partner.test")
            .expect("origin"),
    );
    let (cookie, token) = logged_in(&app).await;
    let post = |headers: Vec<(&'static str, String)>| {
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        all.push(("x-csrf-token", token.as_str()));
        request(Method::POST, "/notes", Some(&cookie), &all, "")
    };
    type Case = (Vec<(&'static str, String)>, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            vec![("sec-fetch-site", "cross-site".into())],
            Some("cross-site request"),
        ),
        (vec![("sec-fetch-site", "same-site".into())], Some("cross-site request")),
        (vec![("sec-fetch-site", "none".into())], None),
        (
            vec![
                ("sec-fetch-site", "cross-site".into()),
                ("origin", "http://a.partner.test".into()),
            ],
            None,
        ),
        (vec![("origin", "null".into())], Some("untrusted origin")),
        (vec![("origin", "http://evil.test".into())], Some("untrusted origin")),
        (vec![("origin", "HTTP://APP.TEST/".into())], None),
        (vec![("origin", "http://app.test".into())], None),
        (vec![("referer", "http://app.test/notes?x".into())], None),
        (vec![("referer", "http://evil.test/".into())], Some("untrusted origin")),
        (vec![], None),
    ];
    for (headers, refusal) in cases {
        let described = format!("{headers:?}");
        let answer = send(&app, post(headers)).await;
        match refusal {
            Some(reason) => assert_refused(&answer, reason),
            None => assert_eq!(answer.status, StatusCode::OK, "{described}: {}", answer.body),
        }
    }
    // The origin check comes first: a valid token does not save a cross-site post.
    let answer = send(
        &app,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[("sec-fetch-site", "cross-site"), ("x-csrf-token", &token)],
            "",
        ),
    )
    .await;
    assert_refused(&answer, "cross-site request");
}

#[tokio::test]
async fn exemptions_and_report_only() {
    let app = stack(CsrfLayer::new().insecure_exempt("/hooks/").expect("path"));
    let (cookie, _) = logged_in(&app).await;
    let cross = ("sec-fetch-site", "cross-site");

    // Safe methods, requests without a live session (a bearer API call),
    // and a named exempt route pass.
    for (method, path, cookie) in [
        (Method::GET, "/notes", Some(cookie.as_str())),
        (Method::HEAD, "/notes", Some(cookie.as_str())),
        (Method::POST, "/notes", None),
        (Method::POST, "/notes", Some("session=unknown-id-of-no-live-session")),
        (Method::POST, "/hooks/stripe", Some(cookie.as_str())),
    ] {
        let mut request = request(method.clone(), path, cookie, &[cross], "");
        request
            .headers_mut()
            .insert("authorization", "Bearer t".parse().expect("value"));
        let answer = send(&app, request).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{method} {path} {cookie:?}: {}",
            answer.body
        );
    }

    let reporting = stack(CsrfLayer::new().report_only());
    let (cookie, _) = logged_in(&reporting).await;
    let answer = send(
        &reporting,
        request(Method::POST, "/notes", Some(&cookie), &[cross], "kept"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "handled: kept"),
        "report-only lets it pass"
    );

    assert!(CsrfLayer::new().secret(&[0; 8]).is_err(), "short secret");
    assert!(CsrfLayer::new().trusted_origin("evil.test").is_err(), "not an origin");
    assert!(CsrfLayer::new().insecure_exempt("hooks").is_err(), "not a path");
}

/// Login CSRF: a cross-site form that logs the victim into the attacker's
/// account carries no cookie at all (`SameSite=Lax`), so the origin rules
/// must run without a session too.
#[tokio::test]
async fn the_origin_rules_cover_requests_without_a_session() {
    let app = stack(CsrfLayer::new().insecure_http());
    let form = ("content-type", "application/x-www-form-urlencoded");
    let json = ("content-type", "application/json");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("sec-fetch-site", "cross-site"), form], "cross-site request"),
        (&[("sec-fetch-site", "cross-site"), json], "cross-site request"),
        (&[("sec-fetch-site", "same-site"), form], "cross-site request"),
        (&[("origin", "https://evil.example"), form], "untrusted origin"),
        (&[("origin", "null"), json], "untrusted origin"),
        (&[("referer", "https://evil.example/login"), form], "untrusted origin"),
    ];
    for (headers, reason) in cases {
        let answer = send(
            &app,
            request(Method::POST, "/login", None, headers, "username=mallory&password=x"),
        )
        .await;
        assert_refused(&answer, reason);
        assert!(
            answer.set_cookie.is_none(),
            "{headers:?}: no session for a refused login"
        );
    }
    // Same-origin, user-typed and non-browser (no signal at all) logins pass.
    for headers in [
        &[("sec-fetch-site", "same-origin"), form][..],
        &[("origin", "http://app.test"), form][..],
        &[("referer", "http://app.test/"), form][..],
        &[form][..],
    ] {
        let answer = send(&app, request(Method::POST, "/login", None, headers, "")).await;
        assert_eq!(answer.status, StatusCode::OK, "{headers:?}: {}", answer.body);
        assert!(answer.set_cookie.is_some(), "logged in");
    }
}

#[tokio::test]
async fn a_csrf_layer_with_no_authenticator_before_it_is_a_loud_misconfiguration() {
    let app = ServiceBuilder::new()
        .layer(CsrfLayer::new())
        .service_fn(|_: Request<CsrfBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"reached"))))
        });
    let answer = send(
        &app,
        request(Method::POST, "/notes", None, &[("sec-fetch-site", "same-origin")], ""),
    )
    .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", answer.body);
    let rejection = answer.rejection.expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::Misconfigured);
    assert!(
        rejection.reason().contains("needs an authenticator"),
        "{}",
        rejection.reason()
    );
    assert!(!answer.body.contains("reached"));
    // Safe methods are not state changes: they still pass.
    let get = send(&app, request(Method::GET, "/notes", None, &[], "")).await;
    assert_eq!(get.status, StatusCode::OK);
}

#[tokio::test]
async fn an_exempt_route_ends_on_a_path_segment() {
    let app = stack(CsrfLayer::new().insecure_exempt("/hooks").expect("path"));
    let cross = ("sec-fetch-site", "cross-site");
    let exempt = send(&app, request(Method::POST, "/hooks/stripe", None, &[cross], "")).await;
    assert_eq!(exempt.status, StatusCode::OK, "{}", exempt.body);
    let lookalike = send(&app, request(Method::POST, "/hooksevil", None, &[cross], "")).await;
    assert_refused(&lookalike, "cross-site request");
}

mod cookie_borne_jwt {
    use super::*;
    use portcullis_core::Identity;
    use portcullis_jwt::{JwtIssuer, JwtLayer, SigningKey, Validation};

    const ISSUER: &str = "https://issuer.test";

    /// JwtLayer reading the token from cookie `at` → CsrfLayer → a handler
    /// that answers the caller's subject, or a fresh token on `/token`.
    fn jwt_stack(
        issuer: &JwtIssuer,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
        Error = Infallible,
    > + Clone {
        let jwt = JwtLayer::new(issuer.verifying_key(), Validation::new().issuer(ISSUER).audience("api"))
            .expect("jwt layer")
            .cookie("at")
            .optional();
        ServiceBuilder::new()
            .layer(jwt)
            .layer(CsrfLayer::new().insecure_http())
            .service_fn(|request: Request<CsrfBody<Full<Bytes>>>| async move {
                let text = if request.uri().path() == "/token" {
                    let token = request.extensions().get::<CsrfToken>().cloned().expect("token handle");
                    token.value().expect("token")
                } else {
                    let identity = request.extensions().get::<Identity>().cloned().expect("identity");
                    format!("handled for {}", identity.subject())
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            })
    }

    #[tokio::test]
    async fn a_jwt_from_a_cookie_gets_the_origin_rules_and_a_principal_bound_token() {
        let issuer = JwtIssuer::new(SigningKey::generate_ed25519().expect("key"), ISSUER, "api");
        let app = jwt_stack(&issuer);
        let alice = format!("at={}", issuer.mint("alice", ["notes:write"]).expect("mint"));
        let bob = format!("at={}", issuer.mint("bob", ["notes:write"]).expect("mint"));

        // The defect: a cross-site POST riding the cookie was never checked.
        let cross = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&alice),
                &[("sec-fetch-site", "cross-site")],
                "",
            ),
        )
        .await;
        assert_refused(&cross, "cross-site request");
        let evil = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&alice),
                &[("origin", "https://evil.example")],
                "",
            ),
        )
        .await;
        assert_refused(&evil, "untrusted origin");

        // Same-origin, but no token: refused; the cookie is a credential.
        let same_origin = ("sec-fetch-site", "same-origin");
        let missing = send(&app, request(Method::POST, "/notes", Some(&alice), &[same_origin], "")).await;
        assert_refused(&missing, "missing token");

        let token = send(&app, request(Method::GET, "/token", Some(&alice), &[], ""))
            .await
            .body;
        let ok = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&alice),
                &[same_origin, ("x-csrf-token", &token)],
                "",
            ),
        )
        .await;
        assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "handled for alice"));

        // A later access token of the same principal keeps the token valid…
        let alice_again = format!("at={}", issuer.mint("alice", ["notes:write"]).expect("mint"));
        let refreshed = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&alice_again),
                &[same_origin, ("x-csrf-token", &token)],
                "",
            ),
        )
        .await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
        // …and it is useless to another principal.
        let foreign = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&bob),
                &[same_origin, ("x-csrf-token", &token)],
                "",
            ),
        )
        .await;
        assert_refused(&foreign, "token mismatch");

        // The same token in the Authorization header is exempt: a browser
        // cannot send that header cross-site.
        let bearer = format!("Bearer {}", issuer.mint("alice", ["notes:write"]).expect("mint"));
        let header = send(
            &app,
            request(
                Method::POST,
                "/notes",
                None,
                &[("sec-fetch-site", "cross-site"), ("authorization", &bearer)],
                "",
            ),
        )
        .await;
        assert_eq!(header.status, StatusCode::OK, "{}", header.body);
    }
}

mod pre_session {
    use std::sync::Arc;

    use http::header::SET_COOKIE;
    use http::{Method, StatusCode};
    use portcullis_csrf::CsrfLayer;
    use portcullis_session::MemoryStore;
    use tower::ServiceExt;

    use super::common::{assert_refused, request, send, stack_with};

    fn app(
        store: Arc<MemoryStore>,
    ) -> impl tower::Service<
        http::Request<http_body_util::Full<bytes::Bytes>>,
        Response = http::Response<impl http_body::Body<Data = bytes::Bytes, Error: std::fmt::Debug>>,
        Error = std::convert::Infallible,
    > + Clone {
        stack_with(store, CsrfLayer::new())
    }

    /// Defect: every cookie-less visit that rendered a form stored a
    /// session only to hold a CSRF secret.
    #[tokio::test]
    async fn anonymous_visitors_cost_no_server_state() {
        let store = Arc::new(MemoryStore::new());
        let app = app(store.clone());
        for _ in 0..300 {
            let page = send(&app, request(Method::GET, "/token", None, &[], "")).await;
            assert_eq!(page.status, StatusCode::OK);
        }
        assert_eq!(store.len(), 0, "300 anonymous forms, no stored session");

        let response = app
            .clone()
            .oneshot(request(Method::GET, "/token", None, &[], ""))
            .await
            .expect("infallible");
        let cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        let cookie = &cookies[0];
        assert!(cookie.starts_with("__Host-csrf="), "{cookie}");
        let mut attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
        attributes.sort_unstable();
        assert_eq!(
            attributes,
            ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"],
            "exactly these, no Domain: {cookie}"
        );
    }

    #[tokio::test]
    async fn the_pre_session_token_guards_forms_and_carries_over_at_login() {
        let store = Arc::new(MemoryStore::new());
        let app = app(store.clone());
        let page = send(&app, request(Method::GET, "/token", None, &[], "")).await;
        let cookie = page.set_cookie.expect("pre-session cookie");
        let token = page.body;
        let same_origin = ("sec-fetch-site", "same-origin");

        // With the cookie, a form (the login form) needs its token.
        let missing = send(&app, request(Method::POST, "/login", Some(&cookie), &[same_origin], "")).await;
        assert_refused(&missing, "missing token");
        let other = send(&app, request(Method::GET, "/token", None, &[], "")).await.body;
        let foreign = send(
            &app,
            request(
                Method::POST,
                "/login",
                Some(&cookie),
                &[same_origin, ("x-csrf-token", &other)],
                "",
            ),
        )
        .await;
        assert_refused(&foreign, "token mismatch");
        // A cookie the attacker made up, with a token for it, is still no
        // token of ours: tokens are keyed by the layer's secret.
        let planted = format!("__Host-csrf={}", "A".repeat(43));
        let forged = send(
            &app,
            request(
                Method::POST,
                "/login",
                Some(&planted),
                &[same_origin, ("x-csrf-token", &token)],
                "",
            ),
        )
        .await;
        assert_refused(&forged, "token mismatch");
        let cross = send(
            &app,
            request(
                Method::POST,
                "/login",
                Some(&cookie),
                &[("sec-fetch-site", "cross-site"), ("x-csrf-token", &token)],
                "",
            ),
        )
        .await;
        assert_refused(&cross, "cross-site request");
        assert_eq!(store.len(), 0, "refusals store nothing");

        // The login: a session is stored now, holding the same secret, so
        // the token of the login page keeps working.
        let login = send(
            &app,
            request(
                Method::POST,
                "/login",
                Some(&cookie),
                &[same_origin, ("x-csrf-token", &token)],
                "",
            ),
        )
        .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        let session = login.set_cookie.expect("session cookie");
        assert!(session.starts_with("session="), "{session}");
        assert_eq!(store.len(), 1);
        let both = format!("{session}; {cookie}");
        let after = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&both),
                &[same_origin, ("x-csrf-token", &token)],
                "hi",
            ),
        )
        .await;
        assert_eq!((after.status, after.body.as_str()), (StatusCode::OK, "handled: hi"));
        let without_pre_cookie = send(
            &app,
            request(
                Method::POST,
                "/notes",
                Some(&session),
                &[same_origin, ("x-csrf-token", &token)],
                "hi",
            ),
        )
        .await;
        assert_eq!(
            without_pre_cookie.status,
            StatusCode::OK,
            "the secret lives in the session now"
        );
    }
}

/// A form body over the buffer limit is refused 413 — through the layer's
/// responder like every other refusal, with its reason and `Vary`.
#[tokio::test]
async fn a_form_over_the_buffer_limit_is_413_through_the_responder() {
    use portcullis_core::{DefaultResponder, Rejection, RequestContext, Responder};
    use tower::ServiceExt;

    /// Renders like the default, marking that it ran.
    #[derive(Debug)]
    struct Marked;
    impl Responder for Marked {
        fn respond(&self, rejection: &Rejection, request: &RequestContext<'_>) -> Response<Bytes> {
            let mut response = DefaultResponder.respond(rejection, request);
            response
                .headers_mut()
                .insert("x-rendered-by", http::HeaderValue::from_static("marked"));
            response
        }
    }

    let app = stack(CsrfLayer::new().body_limit(64).responder(Marked));
    let (cookie, token) = logged_in(&app).await;
    let headers = [
        ("sec-fetch-site", "same-origin"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let big = format!("note={}&csrf_token={token}", "x".repeat(200));
    let response = {
        let request = request(Method::POST, "/notes", Some(&cookie), &headers, &big);
        app.clone().oneshot(request).await.expect("infallible")
    };
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["x-rendered-by"],
        "marked",
        "rendered by the layer's responder"
    );
    assert_eq!(response.headers()["vary"], "Origin, Sec-Fetch-Site");
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .cloned()
        .expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::TooLarge);
    assert!(
        rejection.reason().contains("over the CSRF buffer limit"),
        "{}",
        rejection.reason()
    );
    // The same token in the header needs no body read: it passes.
    let header_token = [
        ("sec-fetch-site", "same-origin"),
        ("content-type", "application/x-www-form-urlencoded"),
        (CsrfToken::HEADER, token.as_str()),
    ];
    let answer = send(
        &app,
        request(Method::POST, "/notes", Some(&cookie), &header_token, &big),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.starts_with("handled: note=xxx"), "{}", answer.body);
}

/// A keyring rotation: tokens made under `s1` (a session's and an
/// anonymous visitor's pre-session one) pass under `[s2, s1]`; tokens
/// issued then were made with `s2` alone (an `[s2]` layer takes them, an
/// `[s1]` one refuses them); once `s1` is gone its tokens are refused.
#[tokio::test]
async fn a_secret_rotation_keeps_open_forms_and_issues_under_the_current_secret_only() {
    use portcullis_core::SecretKeyring;
    use portcullis_session::{MemoryStore, SessionLayer};
    let sessions = SessionLayer::new(std::sync::Arc::new(MemoryStore::new())).insecure_http();
    let csrf = |secrets: &[[u8; 32]]| CsrfLayer::new().secrets(&SecretKeyring::new(secrets).expect("ring"));
    let (s1, s2) = ([1u8; 32], [2u8; 32]);
    let old = common::stack_with_sessions(sessions.clone(), csrf(&[s1]));
    let overlap = common::stack_with_sessions(sessions.clone(), csrf(&[s2, s1]));
    let new = common::stack_with_sessions(sessions, csrf(&[s2]));
    let post = common::same_origin_post;

    let (cookie, s1_token) = logged_in(&old).await;
    let visitor = send(&old, request(Method::GET, "/token", None, &[], "")).await;
    let visitor_cookie = visitor.set_cookie.expect("pre-session cookie");
    let s1_visitor_token = visitor.body;

    assert_eq!(
        send(&overlap, post(&cookie, &s1_token)).await.status,
        StatusCode::OK,
        "an s1 session token passes"
    );
    assert_eq!(
        send(&overlap, post(&visitor_cookie, &s1_visitor_token)).await.status,
        StatusCode::OK,
        "an s1 pre-session token passes"
    );
    let s2_token = send(&overlap, request(Method::GET, "/token", Some(&cookie), &[], ""))
        .await
        .body;
    let s2_visitor_token = send(&overlap, request(Method::GET, "/token", Some(&visitor_cookie), &[], ""))
        .await
        .body;

    // What the overlap issued verifies under s2 alone, and not under s1.
    assert_eq!(send(&new, post(&cookie, &s2_token)).await.status, StatusCode::OK);
    assert_eq!(
        send(&new, post(&visitor_cookie, &s2_visitor_token)).await.status,
        StatusCode::OK
    );
    assert_refused(&send(&old, post(&cookie, &s2_token)).await, "token mismatch");
    assert_refused(
        &send(&old, post(&visitor_cookie, &s2_visitor_token)).await,
        "token mismatch",
    );

    // s1 removed: its tokens are refused, with the reason.
    assert_refused(&send(&new, post(&cookie, &s1_token)).await, "token mismatch");
    assert_refused(
        &send(&new, post(&visitor_cookie, &s1_visitor_token)).await,
        "token mismatch",
    );
}

/// The expected token is remembered on the shared session record (the
/// memory store hands every request the same one): a layer with other
/// keys on the same session must never be handed a token the first
/// layer's keys made, in either order, however often each is used.
#[tokio::test]
async fn a_remembered_expected_token_never_crosses_to_a_layer_with_other_keys() {
    use portcullis_session::{MemoryStore, SessionLayer};
    let sessions = SessionLayer::new(std::sync::Arc::new(MemoryStore::new())).insecure_http();
    let first = common::stack_with_sessions(sessions.clone(), CsrfLayer::new().secret(&[1u8; 32]).expect("secret"));
    let second = common::stack_with_sessions(sessions, CsrfLayer::new().secret(&[2u8; 32]).expect("secret"));
    let post = common::same_origin_post;
    let (cookie, first_token) = logged_in(&first).await;
    let second_token = send(&second, request(Method::GET, "/token", Some(&cookie), &[], ""))
        .await
        .body;
    for round in 0..3 {
        let ok = send(&first, post(&cookie, &first_token)).await;
        assert_eq!(ok.status, StatusCode::OK, "round {round}: the first layer's own token");
        assert_refused(&send(&second, post(&cookie, &first_token)).await, "token mismatch");
        let ok = send(&second, post(&cookie, &second_token)).await;
        assert_eq!(ok.status, StatusCode::OK, "round {round}: the second layer's own token");
        assert_refused(&send(&first, post(&cookie, &second_token)).await, "token mismatch");
    }
}
