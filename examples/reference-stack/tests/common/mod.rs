//! What the reference stack's suites share: starting the binary, the
//! password grant, and reading a page's CSRF token.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use http::Method;
use portcullis_tests::Answer;
use portcullis_tests::client::{Body, Client};
use portcullis_tests::example::Example;

/// A request header saying it came from the stack's own pages.
pub const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

/// Starts the binary over plain HTTP with `env`.
pub async fn start(env: &[(&str, &str)]) -> Example {
    let mut all = vec![("PORTCULLIS_INSECURE_HTTP", "1")];
    all.extend_from_slice(env);
    Example::start(env!("CARGO_BIN_EXE_reference-stack"), &all).await
}

/// `grant_type=password` for `user`.
pub async fn password_grant(addr: SocketAddr, user: &str, password: &str) -> Answer {
    let form = format!("grant_type=password&username={user}&password={password}");
    Client::default()
        .call(addr, Method::POST, "/oauth/token", Body::Form(&form), &[])
        .await
}

/// The CSRF token in a page's form.
pub fn csrf_token_of(page: &Answer) -> String {
    page.body
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a CSRF token in the form: {}", page.body))
        .to_owned()
}
