//! Audit events of the CSRF layer. In its own test binary: tracing's
//! callsite interest cache is process-wide, and a thread-local capture
//! races with other tests registering the same callsites.

mod common;

use common::{logged_in, request, send, stack};
use http::{Method, StatusCode};
use portcullis_csrf::CsrfLayer;

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
