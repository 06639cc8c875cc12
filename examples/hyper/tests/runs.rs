//! Starts the example and calls it over HTTP with and without a token.

use portcullis_tests::example::Example;
use portcullis_tests::get;

#[tokio::test]
async fn a_bare_hyper_service_behind_jwt_layer() {
    let example = Example::start(env!("CARGO_BIN_EXE_hyper-example"), &[]).await;
    let token = example.printed("demo token for alice");
    let hello = get(example.addr, "/", Some(token)).await;
    assert_eq!(hello.status, 200);
    assert_eq!(hello.body, "hello, alice\n");
    let anonymous = get(example.addr, "/", None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");
    let forged = get(example.addr, "/", Some("e30.e30.e30")).await;
    assert_eq!(forged.status, 401);
    assert!(forged.header("www-authenticate").contains("invalid_token"));
}
