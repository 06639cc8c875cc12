//! Starts the gRPC server and calls it with a real tonic client: without a
//! token, with a good one, with a revoked one; then runs the client binary.

use grpc_example::who_am_i;
use portcullis_tests::example::Example;

#[tokio::test]
async fn the_server_answers_by_token_and_the_client_shows_it() {
    let server = Example::start(env!("CARGO_BIN_EXE_grpc-server"), &[]).await;
    let endpoint = format!("http://{}", server.addr);
    let token = server.printed("demo token for alice");
    let revoked = server.printed("revoked token");

    let reply = who_am_i(&endpoint, Some(token)).await.expect("authorized");
    assert_eq!((reply.subject.as_str(), reply.method.as_str()), ("alice", "bearer"));
    let missing = who_am_i(&endpoint, None).await.expect_err("no token");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    assert_eq!(missing.message(), "bearer token required");
    let refused = who_am_i(&endpoint, Some(revoked)).await.expect_err("revoked");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), "token revoked");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_grpc-client"))
        .args([endpoint.as_str(), token])
        .output()
        .await
        .expect("run the client");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("without a token: Unauthenticated: bearer token required"),
        "{printed}"
    );
    assert!(
        printed.contains("with the token: alice (bearer; identity:read)"),
        "{printed}"
    );
}
