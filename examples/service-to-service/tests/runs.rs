//! Starts A, then B trusting A's JWKS; A calls B with a token it minted.

use portcullis_tests::example::Example;
use portcullis_tests::get;

#[tokio::test]
async fn b_accepts_what_a_signs_and_nothing_else() {
    let a = Example::start(env!("CARGO_BIN_EXE_service-a"), &[]).await;
    let issuer = a.printed("issuer").to_owned();
    let b = Example::start(
        env!("CARGO_BIN_EXE_service-b"),
        &[("PORTCULLIS_TRUSTED_ISSUER", issuer.as_str())],
    )
    .await;

    let answer = get(a.addr, &format!("/call?peer=http://{}", b.addr), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "work done for service-a");

    let anonymous = get(b.addr, "/work", None).await;
    assert_eq!(anonymous.status, 401);
    let stranger = portcullis::JwtIssuer::new(
        portcullis::SigningKey::generate_p256().expect("key"),
        issuer.as_str(),
        "service-b",
    );
    let forged = get(
        b.addr,
        "/work",
        Some(&stranger.mint("service-a", ["work:do"]).expect("mint")),
    )
    .await;
    assert_eq!(forged.status, 401, "a key A never published");
    assert!(forged.header("www-authenticate").contains("unknown key id"));
}
