//! Starts the example and walks its flows over HTTP as two browsers would.

use http::{Method, StatusCode};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::example::Example;

const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

fn token_in(page: &str) -> String {
    page.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned()
}

async fn sign_in(addr: std::net::SocketAddr, browser: &mut Client, name: &str) {
    let page = browser.call(addr, Method::GET, "/", Body::None, &[]).await;
    let token = token_in(&page.body);
    let login = browser
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Form(&format!("csrf_token={token}&username={name}")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
}

#[tokio::test]
async fn login_post_logout_and_logout_everywhere() {
    let example = Example::start(env!("CARGO_BIN_EXE_web-sessions"), &[]).await;
    let addr = example.addr;
    let (mut laptop, mut phone) = (Client::default(), Client::default());
    sign_in(addr, &mut laptop, "alice").await;
    sign_in(addr, &mut phone, "alice").await;

    let page = laptop.call(addr, Method::GET, "/", Body::None, &[]).await;
    assert!(page.body.contains("Hello, alice"), "{}", page.body);
    let token = token_in(&page.body);
    let posted = laptop
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Form(&format!("csrf_token={token}&note=milk")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER);
    assert!(
        laptop
            .call(addr, Method::GET, "/", Body::None, &[])
            .await
            .body
            .contains("<li>milk</li>")
    );

    // A forged post (no token, another site) is refused.
    let forged = laptop
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Form("note=spam"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("cross-site request"));

    // Log out everywhere from the phone ends the laptop's session too.
    let page = phone.call(addr, Method::GET, "/", Body::None, &[]).await;
    let token = token_in(&page.body);
    let everywhere = phone
        .call(
            addr,
            Method::POST,
            "/logout-everywhere",
            Body::Form(&format!("csrf_token={token}")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(everywhere.status, StatusCode::SEE_OTHER);
    for browser in [&mut laptop, &mut phone] {
        let page = browser.call(addr, Method::GET, "/", Body::None, &[]).await;
        assert!(page.body.contains("Welcome"), "signed out: {}", page.body);
    }

    // Logout ends one session.
    sign_in(addr, &mut laptop, "bob").await;
    let page = laptop.call(addr, Method::GET, "/", Body::None, &[]).await;
    let token = token_in(&page.body);
    let logout = laptop
        .call(
            addr,
            Method::POST,
            "/logout",
            Body::Form(&format!("csrf_token={token}")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert!(
        laptop
            .call(addr, Method::GET, "/", Body::None, &[])
            .await
            .body
            .contains("Welcome")
    );
}
