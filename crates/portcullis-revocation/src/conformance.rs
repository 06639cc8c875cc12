//! Conformance suites for [`RevocationStore`] and [`RefreshStore`]
//! implementations: run them from your store's tests. Each panics with a
//! message naming the broken rule.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{AuthMethod, Identity, Principal};

use crate::denylist::{Revocation, Revoked, millis};
use crate::refresh::{Family, RefreshStore, Spend, SpendRules};
use crate::store::RevocationStore;

/// A bearer identity as `JwtLayer` would build it; `tag` makes names
/// unique per run so two runs against one server never collide.
fn token(tag: &str, subject: &str, jti: &str, sid: Option<&str>, issued_ago: Duration) -> Identity {
    let now = SystemTime::now();
    let claims = match sid {
        Some(sid) => format!(r#"{{"sub":"{tag}{subject}","sid":"{tag}{sid}"}}"#),
        None => format!(r#"{{"sub":"{tag}{subject}"}}"#),
    };
    Identity::builder(
        format!("{tag}{subject}"),
        AuthMethod::bearer(Some(format!("{tag}{jti}").into()), Some("https://issuer.test".into())),
    )
    .issued_at(now - issued_ago)
    .expires_at(now + Duration::from_secs(600))
    .claims_json(claims)
    .build()
}

fn run_tag() -> String {
    format!("{}-", millis(SystemTime::now()))
}

/// Checks the [`RevocationStore`] contract against `store`.
pub async fn run_revocation_store(store: Arc<dyn RevocationStore>) {
    let tag = run_tag();
    let old = Duration::from_secs(5);
    let t1 = token(&tag, "alice", "j1", None, old);
    assert_eq!(
        store.check(t1.clone()).await.expect("check"),
        None,
        "nothing revoked yet"
    );

    // One token, by (iss, jti).
    store
        .revoke(Revocation::token(
            "https://issuer.test",
            format!("{tag}j1"),
            SystemTime::now() + Duration::from_secs(600),
        ))
        .await
        .expect("revoke");
    assert_eq!(
        store.check(t1.clone()).await.expect("check"),
        Some(Revoked::Token),
        "a denylisted jti"
    );
    let t2 = token(&tag, "alice", "j2", None, old);
    assert_eq!(
        store.check(t2.clone()).await.expect("check"),
        None,
        "another jti is untouched"
    );
    let other_issuer = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j1").into()), Some("https://other.test".into())),
    )
    .issued_at(SystemTime::now() - old)
    .build();
    assert_eq!(
        store.check(other_issuer).await.expect("check"),
        None,
        "the same jti from another issuer is untouched"
    );

    // An expired entry no longer revokes.
    store
        .revoke(Revocation {
            expires_ms: millis(SystemTime::now()) + 300,
            ..Revocation::token("https://issuer.test", format!("{tag}short"), SystemTime::now())
        })
        .await
        .expect("revoke");
    let short = token(&tag, "carol", "short", None, old);
    assert_eq!(store.check(short.clone()).await.expect("check"), Some(Revoked::Token));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.check(short).await.expect("check"),
        None,
        "an expired entry is forgotten"
    );

    // A subject cutoff: tokens issued at or before it, not after.
    let now = SystemTime::now();
    store
        .revoke(Revocation::subject(
            Principal::new("https://issuer.test", format!("{tag}alice")),
            now,
            Duration::from_secs(600),
        ))
        .await
        .expect("cut off");
    assert_eq!(
        store.check(t2.clone()).await.expect("check"),
        Some(Revoked::Subject),
        "issued before the cutoff"
    );
    let later = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j3").into()), Some("https://issuer.test".into())),
    )
    .issued_at(now + Duration::from_secs(2))
    .build();
    assert_eq!(
        store.check(later).await.expect("check"),
        None,
        "issued after the cutoff"
    );
    let no_iat = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j4").into()), Some("https://issuer.test".into())),
    )
    .build();
    assert_eq!(
        store.check(no_iat).await.expect("check"),
        Some(Revoked::Subject),
        "a token without iat cannot prove it came after the cutoff"
    );
    let bob = token(&tag, "bob", "j5", None, old);
    assert_eq!(
        store.check(bob).await.expect("check"),
        None,
        "another subject is untouched"
    );
    let other_issuers_alice = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j8").into()), Some("https://other.test".into())),
    )
    .issued_at(SystemTime::now() - old)
    .build();
    assert_eq!(
        store.check(other_issuers_alice).await.expect("check"),
        None,
        "another issuer's alice is another person: not cut off"
    );

    // An earlier cutoff never weakens a later one.
    store
        .revoke(Revocation::subject(
            Principal::new("https://issuer.test", format!("{tag}alice")),
            now - Duration::from_secs(3600),
            Duration::from_secs(600),
        ))
        .await
        .expect("cut off");
    assert_eq!(
        store.check(t2).await.expect("check"),
        Some(Revoked::Subject),
        "merges keep the later cutoff"
    );

    // A session (sid) cutoff.
    let in_family = token(&tag, "dave", "j6", Some("fam"), old);
    let other_family = token(&tag, "dave", "j7", Some("other"), old);
    store
        .revoke(Revocation::session(
            format!("{tag}fam"),
            SystemTime::now(),
            Duration::from_secs(600),
        ))
        .await
        .expect("cut off");
    assert_eq!(
        store.check(in_family).await.expect("check"),
        Some(Revoked::Session),
        "its sid was cut off"
    );
    assert_eq!(
        store.check(other_family).await.expect("check"),
        None,
        "another sid is untouched"
    );
    // A sid that cannot be read never escapes the session cutoffs (stores
    // may refuse it even with none in force); a numeric one reads as text.
    let claims_with = |sid: &str, jti: &str| {
        Identity::builder(
            format!("{tag}dave"),
            AuthMethod::bearer(Some(format!("{tag}{jti}").into()), Some("https://issuer.test".into())),
        )
        .issued_at(SystemTime::now() - old)
        .expires_at(SystemTime::now() + Duration::from_secs(600))
        .claims_json(format!(r#"{{"sub":"{tag}dave","sid":{sid}}}"#))
        .build()
    };
    for unreadable in [r#"{"id":"fam"}"#, r#"["fam"]"#, "true"] {
        assert_eq!(
            store.check(claims_with(unreadable, "j9")).await.expect("check"),
            Some(Revoked::UnreadableSession),
            "an unreadable sid {unreadable} is refused"
        );
    }
    let numeric_sid = millis(SystemTime::now());
    store
        .revoke(Revocation::session(
            numeric_sid.to_string(),
            SystemTime::now(),
            Duration::from_secs(600),
        ))
        .await
        .expect("cut off");
    assert_eq!(
        store
            .check(claims_with(&numeric_sid.to_string(), "j10"))
            .await
            .expect("check"),
        Some(Revoked::Session),
        "a numeric sid is matched as its text"
    );

    // Every unexpired entry is listed.
    let entries = store.entries().await.expect("entries");
    for wanted in [
        crate::Target::Token {
            issuer: "https://issuer.test".into(),
            jti: format!("{tag}j1"),
        },
        crate::Target::Subject(Principal::new("https://issuer.test", format!("{tag}alice"))),
        crate::Target::Session(format!("{tag}fam")),
    ] {
        assert!(entries.iter().any(|e| e.target == wanted), "entries lists {wanted:?}");
    }
    assert!(
        !entries.iter().any(|e| e.target
            == crate::Target::Token {
                issuer: "https://issuer.test".into(),
                jti: format!("{tag}short")
            }),
        "entries leaves out expired ones"
    );
}

fn family(tag: &str, id: &str, subject: &str) -> Family {
    let now = millis(SystemTime::now());
    Family {
        id: format!("{tag}{id}"),
        subject: format!("{tag}{subject}"),
        scopes: vec!["notes:read".into()],
        created_ms: now,
        absolute_deadline_ms: now + 600_000,
    }
}

/// Checks the [`RefreshStore`] contract against `store`.
pub async fn run_refresh_store(store: Arc<dyn RefreshStore>) {
    let tag = run_tag();
    let idle = Duration::from_secs(60);
    let grace = Duration::from_secs(2);
    let rules = SpendRules::new(grace, idle);
    let now = || millis(SystemTime::now());
    let f1 = family(&tag, "f1", "alice");
    store.create(&f1, idle).await.expect("create");
    assert_eq!(
        store.family(&f1.id).await.expect("family"),
        Some(f1.clone()),
        "family finds it"
    );
    assert_eq!(store.family(&format!("{tag}none")).await.expect("family"), None);

    assert_eq!(
        store
            .spend(&format!("{tag}none"), 0, now(), rules)
            .await
            .expect("spend"),
        Spend::Unknown,
        "an unknown family"
    );
    assert_eq!(
        store.spend(&f1.id, 0, now(), rules).await.expect("spend"),
        Spend::Rotated(f1.clone()),
        "token 0 is live"
    );
    assert_eq!(
        store.spend(&f1.id, 0, now(), rules).await.expect("spend"),
        Spend::Retry(f1.clone()),
        "a retry within the grace window"
    );
    assert_eq!(
        store.family(&f1.id).await.expect("family"),
        Some(f1.clone()),
        "family changes nothing"
    );
    assert_eq!(
        store.spend(&f1.id, 0, now(), rules).await.expect("spend"),
        Spend::Retry(f1.clone()),
        "still a retry"
    );
    assert_eq!(
        store.spend(&f1.id, 1, now(), rules).await.expect("spend"),
        Spend::Rotated(f1.clone()),
        "the successor is live"
    );
    // Replay of 0 past the grace window (the store is told the time): two
    // behind the live token, whatever the time.
    let later = now() + 10_000;
    assert_eq!(
        store.spend(&f1.id, 0, later, rules).await.expect("spend"),
        Spend::Reused(f1.clone()),
        "an earlier token is a replay"
    );
    assert_eq!(
        store.spend(&f1.id, 2, now(), rules).await.expect("spend"),
        Spend::Ended,
        "the family is revoked: the newest token is dead too"
    );

    // The token just spent, past the grace window: a replay.
    let f2 = family(&tag, "f2", "bob");
    store.create(&f2, idle).await.expect("create");
    assert_eq!(
        store.spend(&f2.id, 0, now(), rules).await.expect("spend"),
        Spend::Rotated(f2.clone())
    );
    assert_eq!(
        store.spend(&f2.id, 0, now() + 3_000, rules).await.expect("spend"),
        Spend::Reused(f2.clone())
    );
    // A number the store never made live (a rolled-back store, say): a
    // replay too, never a silent rotation.
    let f2b = family(&tag, "f2b", "bob");
    store.create(&f2b, idle).await.expect("create");
    assert_eq!(
        store.spend(&f2b.id, 5, now(), rules).await.expect("spend"),
        Spend::Reused(f2b.clone())
    );

    // Idle expiry, absolute expiry.
    let f3 = family(&tag, "f3", "carol");
    store.create(&f3, idle).await.expect("create");
    assert_eq!(
        store.spend(&f3.id, 0, now() + 61_000, rules).await.expect("spend"),
        Spend::Ended,
        "idled out"
    );
    let mut f4 = family(&tag, "f4", "carol");
    f4.absolute_deadline_ms = now() + 1_000;
    store.create(&f4, idle).await.expect("create");
    assert_eq!(
        store.spend(&f4.id, 0, now() + 2_000, rules).await.expect("spend"),
        Spend::Ended,
        "past the absolute deadline"
    );

    // Revoke a family, and a subject's.
    let f5 = family(&tag, "f5", "dave");
    let f6 = family(&tag, "f6", "dave");
    store.create(&f5, idle).await.expect("create");
    store.create(&f6, idle).await.expect("create");
    assert_eq!(store.revoke_family(&f5.id).await.expect("revoke"), Some(f5.clone()));
    assert_eq!(
        store.revoke_family(&format!("{tag}none")).await.expect("revoke"),
        None,
        "unknown family"
    );
    assert_eq!(store.spend(&f5.id, 0, now(), rules).await.expect("spend"), Spend::Ended);
    let mut revoked = store.revoke_subject(&format!("{tag}dave")).await.expect("revoke");
    revoked.sort();
    assert!(
        revoked.contains(&f6.id),
        "the subject's live family is revoked: {revoked:?}"
    );
    assert_eq!(store.spend(&f6.id, 0, now(), rules).await.expect("spend"), Spend::Ended);

    // A rate cap: the live token, too soon after the last rotation, is
    // throttled and stays live.
    let f8 = family(&tag, "f8", "frank");
    store.create(&f8, idle).await.expect("create");
    let capped = rules.min_interval(Duration::from_secs(30));
    let start = now();
    assert_eq!(
        store.spend(&f8.id, 0, start + 31_000, capped).await.expect("spend"),
        Spend::Rotated(f8.clone()),
        "30 s after login: allowed"
    );
    assert_eq!(
        store.spend(&f8.id, 1, start + 41_000, capped).await.expect("spend"),
        Spend::Throttled,
        "10 s after the last rotation: throttled"
    );
    assert_eq!(
        store.spend(&f8.id, 0, start + 32_000, capped).await.expect("spend"),
        Spend::Retry(f8.clone()),
        "an honest retry is not throttled"
    );
    assert_eq!(
        store.spend(&f8.id, 1, start + 62_000, capped).await.expect("spend"),
        Spend::Rotated(f8.clone()),
        "the throttled token still works later"
    );

    // Concurrent spends of one token: exactly one rotation.
    let f7 = family(&tag, "f7", "erin");
    store.create(&f7, idle).await.expect("create");
    let spends = (0..16u8).map(|_| {
        let store = store.clone();
        let id = f7.id.clone();
        let at = now();
        tokio::spawn(async move { store.spend(&id, 0, at, SpendRules::new(Duration::ZERO, idle)).await })
    });
    let mut rotated = 0;
    for spend in spends {
        if let Spend::Rotated(_) = spend.await.expect("join").expect("spend") {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent spend rotates");
}
