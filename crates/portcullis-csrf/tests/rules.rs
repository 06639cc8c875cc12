//! Every CSRF rule and refusal reason, through SessionLayer + CsrfLayer.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE, VARY};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis_core::{Rejection, RejectionKind};
use portcullis_csrf::{CsrfBody, CsrfLayer, CsrfToken};
use portcullis_session::{MemoryStore, Session, SessionLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

const SITE: &str = "http://app.test";

/// SessionLayer → CsrfLayer → a handler that: on `/login` logs in, on
/// `/token` answers a fresh CSRF token, on anything else echoes the body.
fn stack(
    csrf: CsrfLayer,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
    Error = Infallible,
> + Clone {
    let sessions = SessionLayer::new(Arc::new(MemoryStore::new())).insecure_http();
    ServiceBuilder::new()
        .layer(sessions)
        .layer(csrf)
        .service_fn(|request: Request<CsrfBody<Full<Bytes>>>| async move {
            let path = request.uri().path().to_owned();
            let session = request.extensions().get::<Session>().cloned().expect("session");
            let token = request.extensions().get::<CsrfToken>().cloned().expect("token handle");
            let text = match path.as_str() {
                "/login" => {
                    session.login("alice", ["notes:write"]);
                    "logged in".to_owned()
                }
                "/token" => token.value().expect("token"),
                _ => {
                    let body = request.into_body().collect().await.expect("body").to_bytes();
                    format!("handled: {}", String::from_utf8_lossy(&body))
                }
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
        })
}

struct Answer {
    status: StatusCode,
    body: String,
    set_cookie: Option<String>,
    vary: Vec<String>,
    rejection: Option<Rejection>,
}

async fn send<S, ResBody>(app: &S, request: Request<Full<Bytes>>) -> Answer
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>, Error = Infallible> + Clone,
    ResBody: http_body::Body<Data = Bytes>,
    ResBody::Error: std::fmt::Debug,
{
    let response = app.clone().oneshot(request).await.expect("infallible");
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").split(';').next().expect("pair").to_owned());
    let vary = response
        .headers()
        .get_all(VARY)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let status = response.status();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
        vary,
        rejection,
    }
}

fn request(
    method: Method,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("{SITE}{path}"))
        .header("host", "app.test");
    if let Some(cookie) = cookie {
        builder = builder.header(COOKIE, cookie);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::from(body.to_owned()))).expect("request")
}

/// A logged-in session: its cookie and a token for it.
async fn logged_in<S, B>(app: &S) -> (String, String)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let first = send(app, request(Method::GET, "/token", None, &[], "")).await;
    let cookie = first.set_cookie.expect("asking for a token starts a session");
    let login = send(
        app,
        request(
            Method::POST,
            "/login",
            Some(&cookie),
            &[("sec-fetch-site", "same-origin"), ("x-csrf-token", &first.body)],
            "",
        ),
    )
    .await;
    assert_eq!(
        login.status,
        StatusCode::OK,
        "the login form is protected too: {}",
        login.body
    );
    let cookie = login.set_cookie.expect("login rotates the id");
    // A token issued before the login still works after the rotation.
    (cookie, first.body)
}

fn assert_refused(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{reason}: {}", answer.body);
    let rejection = answer.rejection.as_ref().expect("typed rejection");
    assert_eq!(rejection.kind(), RejectionKind::Forbidden);
    assert_eq!(rejection.layer(), "csrf");
    assert_eq!(rejection.reason(), reason);
    assert!(
        answer.body.contains(reason),
        "the problem body names the reason: {}",
        answer.body
    );
    assert!(
        answer.vary.iter().any(|v| v.contains("Origin")),
        "Vary: {:?}",
        answer.vary
    );
}

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

/// Captures the `portcullis::audit` events of the current thread.
mod audit_capture {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    pub(super) type Events = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

    struct Capture(Events);

    struct Fields(BTreeMap<String, String>);

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() == "portcullis::audit" {
                let mut fields = Fields(BTreeMap::new());
                event.record(&mut fields);
                self.0.lock().expect("lock").push(fields.0);
            }
        }
    }

    pub(super) fn install() -> (Events, tracing::subscriber::DefaultGuard) {
        let events = Events::default();
        let subscriber = tracing_subscriber::registry().with(Capture(events.clone()));
        (events, tracing::subscriber::set_default(subscriber))
    }
}

#[tokio::test]
async fn refusals_and_report_only_are_audit_events_with_their_reason() {
    let (events, _guard) = audit_capture::install();
    let find = |outcome: &str, reason: &str| {
        events.lock().expect("lock").iter().any(|e| {
            e.get("layer").map(String::as_str) == Some("csrf")
                && e.get("outcome").map(String::as_str) == Some(outcome)
                && e.get("reason").map(String::as_str) == Some(reason)
        })
    };

    let enforcing = stack(CsrfLayer::new());
    let (cookie, _) = logged_in(&enforcing).await;
    let refused = send(
        &enforcing,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[("sec-fetch-site", "same-origin")],
            "",
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(find("rejected", "missing token"), "{:?}", events.lock().expect("lock"));

    let reporting = stack(CsrfLayer::new().report_only());
    let (cookie, _) = logged_in(&reporting).await;
    let passed = send(
        &reporting,
        request(
            Method::POST,
            "/notes",
            Some(&cookie),
            &[("sec-fetch-site", "cross-site")],
            "",
        ),
    )
    .await;
    assert_eq!(passed.status, StatusCode::OK, "report-only lets it pass");
    assert!(
        find("would_reject", "cross-site request"),
        "{:?}",
        events.lock().expect("lock")
    );
    // No token value ever appears in an audit event.
    for event in events.lock().expect("lock").iter() {
        assert!(
            event.values().all(|value| value.len() < 64),
            "a long value (a token?) was logged: {event:?}"
        );
    }
}
