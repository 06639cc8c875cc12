//! Starts the example binary on a free port and drives its main flow over
//! HTTP: a build that depends only on the `portcullis` facade works.

use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use portcullis_tests::get;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn the_example_serves_a_protected_route() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_api-jwt"))
        .env("PORTCULLIS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut token, mut addr) = (None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(t) = line.strip_prefix("demo token for alice: ") {
                token = Some(t.to_owned());
            }
            if let Some(a) = line.strip_prefix("listening on http://") {
                addr = Some(a.parse::<std::net::SocketAddr>().expect("address"));
                break;
            }
        }
    })
    .await
    .expect("the example starts within 30 s");
    let (token, addr) = (token.expect("a demo token"), addr.expect("an address"));
    assert!(addr.ip().is_loopback());

    let me = get(addr, "/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["subject"], "alice");
    assert_eq!(get(addr, "/notes", Some(&token)).await.status, StatusCode::OK);

    let anonymous = get(addr, "/me", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");

    let jwks = get(addr, "/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.json()["keys"][0]["crv"], "Ed25519");
    child.kill().await.expect("stop the example");
}
