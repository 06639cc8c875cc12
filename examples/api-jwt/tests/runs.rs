//! Starts the example binary on a free port and drives its main flow over
//! HTTP: a protected route, refresh rotation, and revocation of both an
//! access and a refresh token. A build that depends only on the
//! `portcullis` facade works.

use portcullis_tests::example::Example;
use portcullis_tests::{get, post_form};

#[tokio::test]
async fn the_example_serves_refreshes_and_revokes() {
    let example = Example::start(env!("CARGO_BIN_EXE_api-jwt"), &[]).await;
    let addr = example.addr;
    let access = example.printed("demo token for alice").to_owned();
    let refresh = example.printed("demo refresh token for alice").to_owned();

    let me = get(addr, "/me", Some(&access)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["subject"], "alice");
    assert_eq!(get(addr, "/notes", Some(&access)).await.status, 200);
    let anonymous = get(addr, "/me", None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");
    let jwks = get(addr, "/.well-known/jwks.json", None).await;
    assert_eq!(jwks.json()["keys"][0]["crv"], "Ed25519");

    // Refresh: a new pair; the new access token works.
    let rotated = post_form(
        addr,
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_access = rotated.json()["access_token"].as_str().expect("access").to_owned();
    let new_refresh = rotated.json()["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(get(addr, "/me", Some(&new_access)).await.status, 200);

    // Revoking the first access token: refused from then on, reason named.
    assert_eq!(
        post_form(addr, "/oauth/revoke", &format!("token={access}"))
            .await
            .status,
        200
    );
    let revoked = get(addr, "/me", Some(&access)).await;
    assert_eq!(revoked.status, 401);
    assert!(revoked.header("www-authenticate").contains("token revoked"));

    // Revoking the refresh token ends the family: no more refreshes, and
    // its access tokens are cut off.
    assert_eq!(
        post_form(addr, "/oauth/revoke", &format!("token={new_refresh}"))
            .await
            .status,
        200
    );
    let refused = post_form(
        addr,
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={new_refresh}"),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");
    assert_eq!(get(addr, "/me", Some(&new_access)).await.status, 401);
}
