//! The conformance suite every [`RevocationStore`] runs (feature
//! `conformance`): one public async function per rule, and
//! [`revocation_store_conformance!`](crate::revocation_store_conformance),
//! which expands into one `#[tokio::test]` per rule so that a failure names
//! its rule and hides no other. [`run`] runs them all in turn.
//!
//! Every rule works in its own subject, `jti` and `sid` space (`space`,
//! which the macro sets to the rule's name, salted with the time), so the
//! rules can run at once against one server. Every check also asks
//! [`check_now`](RevocationStore::check_now), where the store offers it,
//! and asserts that the fast path agrees.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{AuthMethod, Identity, Principal};

use crate::denylist::{Revocation, Revoked, Target, millis};
use crate::store::RevocationStore;

const ISSUER: &str = "https://issuer.test";
const OLD: Duration = Duration::from_secs(5);
const TTL: Duration = Duration::from_secs(600);

/// The rule's name salted with the time, so two runs against one server
/// never collide.
fn tag(space: &str) -> String {
    format!("{space}-{}-", millis(SystemTime::now()))
}

/// A bearer identity as `JwtLayer` would build it, issued `issued_ago`.
fn token(tag: &str, subject: &str, jti: &str, sid: Option<&str>, issued_ago: Duration) -> Identity {
    let now = SystemTime::now();
    let claims = match sid {
        Some(sid) => format!(r#"{{"sub":"{tag}{subject}","sid":"{tag}{sid}"}}"#),
        None => format!(r#"{{"sub":"{tag}{subject}"}}"#),
    };
    Identity::builder(
        format!("{tag}{subject}"),
        AuthMethod::bearer(Some(format!("{tag}{jti}").into()), Some(ISSUER.into())),
    )
    .issued_at(now - issued_ago)
    .expires_at(now + TTL)
    .claims_json(claims)
    .build()
}

fn subject(tag: &str, name: &str) -> Principal {
    Principal::new(ISSUER, format!("{tag}{name}"))
}

/// `check`, and `check_now` where the store offers it: both must agree.
async fn check(store: &dyn RevocationStore, identity: &Identity) -> Option<Revoked> {
    let slow = store.check(identity.clone()).await.expect("check");
    if let Some(fast) = store.check_now(identity) {
        assert_eq!(fast.expect("check_now"), slow, "check_now agrees with check");
    }
    slow
}

/// One token is revoked by its `(iss, jti)`, and nothing else with it.
pub async fn token_by_issuer_and_jti(store: Arc<dyn RevocationStore>, space: &str) {
    let tag = tag(space);
    let t1 = token(&tag, "alice", "j1", None, OLD);
    assert_eq!(check(&*store, &t1).await, None, "nothing revoked yet");
    store
        .revoke(Revocation::token(ISSUER, format!("{tag}j1"), SystemTime::now() + TTL))
        .await
        .expect("revoke");
    assert_eq!(check(&*store, &t1).await, Some(Revoked::Token), "a denylisted jti");
    let t2 = token(&tag, "alice", "j2", None, OLD);
    assert_eq!(check(&*store, &t2).await, None, "another jti is untouched");
    let other_issuer = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j1").into()), Some("https://other.test".into())),
    )
    .issued_at(SystemTime::now() - OLD)
    .build();
    assert_eq!(
        check(&*store, &other_issuer).await,
        None,
        "the same jti from another issuer is untouched"
    );
}

/// An entry stops revoking once it expires.
pub async fn expired_entries_are_forgotten(store: Arc<dyn RevocationStore>, space: &str) {
    let tag = tag(space);
    store
        .revoke(Revocation {
            expires_ms: millis(SystemTime::now()) + 300,
            ..Revocation::token(ISSUER, format!("{tag}short"), SystemTime::now())
        })
        .await
        .expect("revoke");
    let short = token(&tag, "carol", "short", None, OLD);
    assert_eq!(check(&*store, &short).await, Some(Revoked::Token), "revoked while live");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(check(&*store, &short).await, None, "an expired entry is forgotten");
}

/// A subject cutoff revokes the tokens issued at or before it (and those
/// without `iat`), not later ones, nor another subject or issuer.
pub async fn subject_cutoff_covers_earlier_tokens_only(store: Arc<dyn RevocationStore>, space: &str) {
    let tag = tag(space);
    let now = SystemTime::now();
    store
        .revoke(Revocation::subject(subject(&tag, "alice"), now, TTL))
        .await
        .expect("cut off");
    let earlier = token(&tag, "alice", "j2", None, OLD);
    assert_eq!(
        check(&*store, &earlier).await,
        Some(Revoked::Subject),
        "issued before the cutoff"
    );
    let later = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j3").into()), Some(ISSUER.into())),
    )
    .issued_at(now + Duration::from_secs(2))
    .build();
    assert_eq!(check(&*store, &later).await, None, "issued after the cutoff");
    let no_iat = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j4").into()), Some(ISSUER.into())),
    )
    .build();
    assert_eq!(
        check(&*store, &no_iat).await,
        Some(Revoked::Subject),
        "a token without iat cannot prove it came after the cutoff"
    );
    let bob = token(&tag, "bob", "j5", None, OLD);
    assert_eq!(check(&*store, &bob).await, None, "another subject is untouched");
    let other_issuers_alice = Identity::builder(
        format!("{tag}alice"),
        AuthMethod::bearer(Some(format!("{tag}j8").into()), Some("https://other.test".into())),
    )
    .issued_at(SystemTime::now() - OLD)
    .build();
    assert_eq!(
        check(&*store, &other_issuers_alice).await,
        None,
        "another issuer's alice is another person: not cut off"
    );
}

/// Revocations merge: an earlier cutoff never weakens a later one.
pub async fn an_earlier_cutoff_never_weakens_a_later_one(store: Arc<dyn RevocationStore>, space: &str) {
    let tag = tag(space);
    let now = SystemTime::now();
    let alice = subject(&tag, "alice");
    store
        .revoke(Revocation::subject(alice.clone(), now, TTL))
        .await
        .expect("cut off");
    store
        .revoke(Revocation::subject(alice, now - Duration::from_secs(3600), TTL))
        .await
        .expect("cut off");
    let earlier = token(&tag, "alice", "j2", None, OLD);
    assert_eq!(
        check(&*store, &earlier).await,
        Some(Revoked::Subject),
        "merges keep the later cutoff"
    );
}

/// A `sid` cutoff revokes that session's tokens only; an unreadable `sid`
/// never escapes it, and a numeric one is matched as its text.
pub async fn session_cutoff_by_sid(store: Arc<dyn RevocationStore>, space: &str) {
    let tag = tag(space);
    let in_family = token(&tag, "dave", "j6", Some("fam"), OLD);
    let other_family = token(&tag, "dave", "j7", Some("other"), OLD);
    store
        .revoke(Revocation::session(format!("{tag}fam"), SystemTime::now(), TTL))
        .await
        .expect("cut off");
    assert_eq!(
        check(&*store, &in_family).await,
        Some(Revoked::Session),
        "its sid was cut off"
    );
    assert_eq!(check(&*store, &other_family).await, None, "another sid is untouched");
    // Stores may refuse an unreadable sid even with no session cutoff in
    // force; here one is.
    let claims_with = |sid: &str, jti: &str| {
        Identity::builder(
            format!("{tag}dave"),
            AuthMethod::bearer(Some(format!("{tag}{jti}").into()), Some(ISSUER.into())),
        )
        .issued_at(SystemTime::now() - OLD)
        .expires_at(SystemTime::now() + TTL)
        .claims_json(format!(r#"{{"sub":"{tag}dave","sid":{sid}}}"#))
        .build()
    };
    for unreadable in [r#"{"id":"fam"}"#, r#"["fam"]"#, "true"] {
        assert_eq!(
            check(&*store, &claims_with(unreadable, "j9")).await,
            Some(Revoked::UnreadableSession),
            "an unreadable sid {unreadable} is refused"
        );
    }
    // A numeric sid cannot carry the tag; the time keeps runs apart.
    let numeric_sid = millis(SystemTime::now());
    store
        .revoke(Revocation::session(numeric_sid.to_string(), SystemTime::now(), TTL))
        .await
        .expect("cut off");
    assert_eq!(
        check(&*store, &claims_with(&numeric_sid.to_string(), "j10")).await,
        Some(Revoked::Session),
        "a numeric sid is matched as its text"
    );
}

/// `entries` lists every unexpired revocation, and no expired one.
pub async fn entries_lists_the_unexpired(store: Arc<dyn RevocationStore>, space: &str) {
    let tag = tag(space);
    let now = SystemTime::now();
    store
        .revoke(Revocation::token(ISSUER, format!("{tag}j1"), now + TTL))
        .await
        .expect("revoke");
    store
        .revoke(Revocation::subject(subject(&tag, "alice"), now, TTL))
        .await
        .expect("cut off");
    store
        .revoke(Revocation::session(format!("{tag}fam"), now, TTL))
        .await
        .expect("cut off");
    store
        .revoke(Revocation {
            expires_ms: millis(now) + 300,
            ..Revocation::token(ISSUER, format!("{tag}short"), now)
        })
        .await
        .expect("revoke");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let entries = store.entries().await.expect("entries");
    for wanted in [
        Target::Token {
            issuer: ISSUER.into(),
            jti: format!("{tag}j1"),
        },
        Target::Subject(subject(&tag, "alice")),
        Target::Session(format!("{tag}fam")),
    ] {
        assert!(entries.iter().any(|e| e.target == wanted), "entries lists {wanted:?}");
    }
    let expired = Target::Token {
        issuer: ISSUER.into(),
        jti: format!("{tag}short"),
    };
    assert!(
        !entries.iter().any(|e| e.target == expired),
        "entries leaves out expired ones"
    );
}

/// Runs every rule in turn against `store` (the macro runs them as
/// separate tests instead).
pub async fn run(store: Arc<dyn RevocationStore>) {
    token_by_issuer_and_jti(store.clone(), "token_by_issuer_and_jti").await;
    expired_entries_are_forgotten(store.clone(), "expired_entries_are_forgotten").await;
    subject_cutoff_covers_earlier_tokens_only(store.clone(), "subject_cutoff_covers_earlier_tokens_only").await;
    an_earlier_cutoff_never_weakens_a_later_one(store.clone(), "an_earlier_cutoff_never_weakens_a_later_one").await;
    session_cutoff_by_sid(store.clone(), "session_cutoff_by_sid").await;
    entries_lists_the_unexpired(store, "entries_lists_the_unexpired").await;
}

/// Expands into one `#[tokio::test]` per rule of the [`RevocationStore`]
/// contract. `$setup` is an `async` expression giving
/// `(Arc<dyn RevocationStore>, keep_alive)`; `keep_alive` (a server
/// handle, say) lives until the rule ends.
///
/// ```
/// mod memory_store {
///     use std::sync::Arc;
///     use portcullis_revocation::{MemoryRevocationStore, RevocationStore};
///
///     portcullis_revocation::revocation_store_conformance!(async {
///         let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocationStore::new());
///         (store, ())
///     });
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! revocation_store_conformance {
    ($setup:expr) => {
        $crate::revocation_store_conformance!(@rules $setup;
            token_by_issuer_and_jti,
            expired_entries_are_forgotten,
            subject_cutoff_covers_earlier_tokens_only,
            an_earlier_cutoff_never_weakens_a_later_one,
            session_cutoff_by_sid,
            entries_lists_the_unexpired
        );
    };
    (@rules $setup:expr; $($rule:ident),+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let (store, _keep_alive) = $setup.await;
                $crate::conformance::$rule(store, stringify!($rule)).await;
            }
        )+
    };
}
