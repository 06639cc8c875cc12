//! The reference stack's contract, route by route, over HTTP against the
//! real binary: in memory, on Redis, and two instances sharing one Redis.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    SAME_ORIGIN, csrf_token_of, p256_pem, password_grant, start, start_with_external_issuer, wait_until_healthy,
};
use http::{Method, StatusCode};
use portcullis_tests::client::{Body, Client};
use portcullis_tests::grpc::who_am_i_at;
use portcullis_tests::postgres_server::PostgresServer;
use portcullis_tests::redis_cluster::{RedisCluster, RedisSentinel};
use portcullis_tests::redis_server::RedisServer;
use serde_json::json;

/// Every route of the contract against one running stack (or, with
/// `other`, across two instances sharing one Redis).
async fn contract(addr: SocketAddr, other: SocketAddr) {
    let mut anonymous = Client::default();
    assert_eq!(
        anonymous
            .call(addr, Method::GET, "/healthz", Body::None, &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        anonymous.call(addr, Method::GET, "/me", Body::None, &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let jwks = anonymous
        .call(addr, Method::GET, "/.well-known/jwks.json", Body::None, &[])
        .await;
    assert!(jwks.json()["keys"].as_array().is_some_and(|keys| !keys.is_empty()));

    // Browser: the login page, a form login (303), notes by form, CSRF.
    let mut browser = Client::default();
    let page = browser.call(addr, Method::GET, "/", Body::None, &[]).await;
    assert!(page.body.contains("Sign in"), "{}", page.body);
    let token = csrf_token_of(&page);
    let bad = browser
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Form(&format!("csrf_token={token}&username=alice&password=nope")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "bad credentials");
    let login = browser
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Form(&format!("csrf_token={token}&username=alice&password=alice-password")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let me = browser.call(other, Method::GET, "/me", Body::None, &[]).await;
    let mut me = me.json();
    // The principal: the raw sub, and its issuer (the stack's own).
    let issuer = me["issuer"].take();
    assert!(issuer.as_str().is_some_and(|issuer| !issuer.is_empty()), "{issuer}");
    assert_eq!(
        me,
        json!({"issuer": null, "subject": "alice", "method": "session", "scopes": ["notes:read", "notes:write"]})
    );
    let added = browser
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Form(&format!("csrf_token={token}&text=from+the+form")),
            &[SAME_ORIGIN],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let forged = browser
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Form("text=forged"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("cross-site request"));
    let missing = browser
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Json(json!({"text": "no token"})),
            &[SAME_ORIGIN],
        )
        .await;
    assert!(missing.body.contains("missing token"), "{}", missing.body);
    let home = browser.call(other, Method::GET, "/", Body::None, &[]).await;
    assert!(
        home.body.contains("from the form") && !home.body.contains("forged"),
        "{}",
        home.body
    );

    // JSON login answers the subject and a CSRF token for SPA clients.
    let mut spa = Client::default();
    let login = spa
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "bob", "password": "bob-password"})),
            &[],
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.json()["subject"], "bob");
    let csrf = login.json()["csrf_token"].as_str().expect("csrf token").to_owned();
    let denied = spa
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Json(json!({"text": "x"})),
            &[SAME_ORIGIN, ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "bob lacks notes:write");
    assert!(
        denied
            .headers
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("insufficient_scope"))
    );

    // API client: password grant, bearer calls, refresh rotation, revocation.
    let grant = password_grant(addr, "alice", "alice-password").await;
    assert_eq!(grant.status, StatusCode::OK, "{}", grant.body);
    assert_eq!(grant.json()["token_type"], "Bearer");
    assert_eq!(
        password_grant(addr, "alice", "wrong").await.json()["error"],
        "invalid_grant"
    );
    let access = grant.json()["access_token"].as_str().expect("access").to_owned();
    let refresh = grant.json()["refresh_token"].as_str().expect("refresh").to_owned();
    let mut api = Client {
        bearer: Some(access.clone()),
        ..Client::default()
    };
    let me = api.call(other, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(me.json()["method"], "bearer");
    let note = api
        .call(
            addr,
            Method::POST,
            "/notes",
            Body::Json(json!({"text": "from the api"})),
            &[],
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED, "bearer calls need no CSRF token");
    assert_eq!(note.json()["text"], "from the api");
    let notes = api.call(other, Method::GET, "/notes", Body::None, &[]).await;
    let notes = notes.json();
    let texts: Vec<&str> = notes
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"from the form") && texts.contains(&"from the api"),
        "{texts:?}"
    );

    // gRPC on the same port: WhoAmI with and without a token.
    const WHO_AM_I: &str = "/reference.v1.Identity/WhoAmI";
    let reply = who_am_i_at(other, WHO_AM_I, Some(&access))
        .await
        .expect("authorized call");
    assert_eq!((reply.subject.as_str(), reply.method.as_str()), ("alice", "bearer"));
    assert_eq!(reply.scopes, ["notes:read", "notes:write"]);
    let refused = who_am_i_at(addr, WHO_AM_I, None).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let rotated = Client::default()
        .call(
            other,
            Method::POST,
            "/oauth/token",
            Body::Form(&format!("grant_type=refresh_token&refresh_token={refresh}")),
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let unsupported = Client::default()
        .call(
            addr,
            Method::POST,
            "/oauth/token",
            Body::Form("grant_type=client_credentials"),
            &[],
        )
        .await;
    assert_eq!(unsupported.json()["error"], "unsupported_grant_type");
    let revoke = Client::default()
        .call(
            addr,
            Method::POST,
            "/oauth/revoke",
            Body::Form(&format!("token={access}")),
            &[],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = api.call(other, Method::GET, "/me", Body::None, &[]).await;
        if answer.status == StatusCode::UNAUTHORIZED {
            assert!(answer.body.contains("token revoked"), "{}", answer.body);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the revoked token kept working");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoked = who_am_i_at(other, WHO_AM_I, Some(&access)).await.expect_err("revoked");
    assert_eq!(revoked.code(), tonic::Code::Unauthenticated);
    assert_eq!(revoked.message(), "token revoked");

    // Sessions: list, then log out everywhere (sessions, refresh families,
    // earlier access tokens).
    let mut phone = Client::default();
    phone
        .call(
            other,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "alice", "password": "alice-password"})),
            &[],
        )
        .await;
    let listed = browser.call(addr, Method::GET, "/sessions", Body::None, &[]).await;
    let sessions = listed.json();
    assert!(sessions.as_array().is_some_and(|s| s.len() >= 2), "{sessions}");
    assert!(
        sessions
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["current"] == true))
    );
    let later = password_grant(addr, "alice", "alice-password").await.json()["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let everywhere = Client {
        bearer: Some(rotated.json()["access_token"].as_str().expect("access").to_owned()),
        ..Client::default()
    }
    .call(addr, Method::POST, "/sessions/logout-everywhere", Body::None, &[])
    .await;
    assert_eq!(everywhere.status, StatusCode::OK, "{}", everywhere.body);
    assert!(everywhere.json()["sessions_ended"].as_u64() >= Some(2));
    for client in [&mut browser, &mut phone] {
        assert_eq!(
            client.call(other, Method::GET, "/me", Body::None, &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let mut stale = Client {
        bearer: Some(later),
        ..Client::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stale.call(other, Method::GET, "/me", Body::None, &[]).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an earlier access token survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reused = Client::default()
        .call(
            addr,
            Method::POST,
            "/oauth/token",
            Body::Form(&format!(
                "grant_type=refresh_token&refresh_token={}",
                rotated.json()["refresh_token"].as_str().expect("refresh")
            )),
            &[],
        )
        .await;
    assert_eq!(reused.json()["error"], "invalid_grant", "the family was revoked");

    // Logout ends the session (CSRF-protected).
    let mut again = Client::default();
    let login = again
        .call(
            addr,
            Method::POST,
            "/login",
            Body::Json(json!({"username": "bob", "password": "bob-password"})),
            &[],
        )
        .await;
    let csrf = login.json()["csrf_token"].as_str().expect("csrf").to_owned();
    assert_eq!(
        again
            .call(addr, Method::POST, "/logout", Body::None, &[SAME_ORIGIN])
            .await
            .status,
        StatusCode::FORBIDDEN,
        "logout without the token is refused"
    );
    assert_eq!(
        again
            .call(
                addr,
                Method::POST,
                "/logout",
                Body::None,
                &[SAME_ORIGIN, ("x-csrf-token", &csrf)]
            )
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        again.call(addr, Method::GET, "/me", Body::None, &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_in_memory() {
    let stack = start(&[]).await;
    contract(stack.addr, stack.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_on_redis_across_two_instances() {
    let redis = RedisServer::start();
    contract_across_two_instances("single", ("PORTCULLIS_REDIS_URL", redis.url())).await;
}

/// Two instances on `redis_env` (which names the servers), sharing a
/// signing key and an issuer, through the whole contract.
async fn contract_across_two_instances(tag: &str, redis_env: (&str, String)) {
    contract_across_two_instances_with(tag, &[redis_env]).await;
}

async fn contract_across_two_instances_with(tag: &str, redis_env: &[(&str, String)]) {
    let dir = std::env::temp_dir().join(format!("portcullis-reference-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_path = dir.join("signing.pem");
    std::fs::write(&key_path, p256_pem()).expect("write key");
    let mut env = redis_env.to_vec();
    env.push(("PORTCULLIS_SIGNING_KEY", key_path.display().to_string()));
    env.push(("PORTCULLIS_ISSUER", "https://reference.test".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (one, two) = (start(&env).await, start(&env).await);
    contract(one.addr, two.addr).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_on_a_redis_cluster_across_two_instances() {
    let cluster = RedisCluster::start();
    contract_across_two_instances("cluster", ("PORTCULLIS_REDIS_CLUSTER", cluster.seeds().join(","))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_on_postgres_across_two_instances() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    contract_across_two_instances("postgres", ("PORTCULLIS_DATABASE_URL", server.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_on_sentinel_across_two_instances() {
    let setup = RedisSentinel::start();
    let sentinels = setup.sentinel_urls().join(",");
    contract_across_two_instances_with(
        "sentinel",
        &[
            ("PORTCULLIS_REDIS_SENTINEL", sentinels),
            ("PORTCULLIS_REDIS_SENTINEL_MASTER", RedisSentinel::MASTER.to_owned()),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_issuer_is_trusted_through_its_jwks() {
    let (stack, external, dir) = start_with_external_issuer("external").await;
    wait_until_healthy(stack.addr).await;
    let mut client = Client {
        bearer: Some(external.mint("carol", ["notes:read"]).expect("mint")),
        ..Client::default()
    };
    let me = client.call(stack.addr, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(me.json()["subject"], "carol", "{}", me.body);
    let stranger = portcullis::JwtIssuer::new(
        portcullis::SigningKey::generate_ed25519().expect("key"),
        "https://idp.test",
        "reference-stack",
    );
    let mut forged = Client {
        bearer: Some(stranger.mint("carol", ["notes:read"]).expect("mint")),
        ..Client::default()
    };
    let refused = forged.call(stack.addr, Method::GET, "/me", Body::None, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "a key the JWKS does not hold");
    let _ = std::fs::remove_dir_all(&dir);

    // Keys that cannot be loaded: not ready (503), and never a 401.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let jwks = format!("http://{dead}/jwks");
    let unready = start(&[
        ("PORTCULLIS_EXTERNAL_ISSUER", "https://idp.test"),
        ("PORTCULLIS_EXTERNAL_JWKS", jwks.as_str()),
    ])
    .await;
    let health = Client::default()
        .call(unready.addr, Method::GET, "/healthz", Body::None, &[])
        .await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{}", health.body);
}
