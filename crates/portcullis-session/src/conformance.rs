//! The one conformance suite every [`SessionStore`] runs (feature
//! `conformance`): one public async function per rule, and
//! [`session_store_conformance!`](crate::session_store_conformance), which
//! expands into one `#[tokio::test]` per rule so that a failure names its
//! rule and hides no other. [`run`] runs them all in turn.
//!
//! Every rule works in its own key and subject space (`space`, which the
//! macro sets to the rule's name), so the rules can run at once against
//! one server.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{Principal, Route};

use crate::store::{Changes, SessionRecord, Touch, millis};
use crate::{SessionKey, SessionStore};

/// Key `n` of the space `space`: differs from run to run and from space
/// to space, so rules and runs against one server never collide. It is
/// routed to the space's alice, as the layer routes a logged-in session
/// ([`SessionKey::route`]); [`owned`] routes it to someone else.
fn key(space: &str, n: u8) -> SessionKey {
    let mut bytes = [0u8; 32];
    bytes[0] = n;
    bytes[31] = n.wrapping_mul(31);
    let salt = millis(SystemTime::now()).to_le_bytes();
    bytes[1..9].copy_from_slice(&salt);
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in space.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    bytes[9..17].copy_from_slice(&hash.to_le_bytes());
    SessionKey::from_bytes(bytes).with_route(Route::of(&person(space, "alice")))
}

/// `key` routed to `owner`, for a session of someone other than alice.
fn owned(key: SessionKey, owner: &Principal) -> SessionKey {
    key.with_route(Route::of(owner))
}

/// A principal of the space `space`.
fn person(space: &str, name: &str) -> Principal {
    Principal::new("https://app.test", format!("{space}-{name}"))
}

fn record(principal: Option<&Principal>) -> SessionRecord {
    let mut record = SessionRecord::new(SystemTime::now(), Duration::from_secs(600), Duration::from_secs(3600));
    record.principal = principal.cloned();
    record.scopes = vec!["notes:read".into()];
    record.user_agent = Some("conformance".into());
    record.data.insert("greeting".into(), "\"hello\"".into());
    record
}

fn set(pairs: &[(&str, &str)]) -> Changes {
    let mut changes = Changes::default();
    for (k, v) in pairs {
        changes.set.insert((*k).to_owned(), (*v).to_owned());
    }
    changes
}

const TTL: Duration = Duration::from_secs(600);

/// The `*_now` fast paths, where a store offers them, agree with their
/// async twins: the same record for `load`, the same answer for `update`
/// (checked on a copy of the changes applied through both, so both must
/// report the same outcome and leave the same record).
async fn fast_paths_agree(store: &Arc<dyn SessionStore>, key: &SessionKey, what: &str) {
    let slow = store.load(key).await.expect("load");
    if let Some(fast) = store.load_now(key) {
        assert_eq!(fast.expect("load_now"), slow, "load_now agrees with load: {what}");
    }
    let probe = set(&[("_conformance_probe", "1")]);
    if let Some(fast) = store.update_now(key, &probe) {
        let fast = fast.expect("update_now");
        let slow = store.update(key, &probe).await.expect("update");
        assert_eq!(fast, slow, "update_now agrees with update: {what}");
        assert_eq!(
            fast,
            store.load(key).await.expect("load").is_some(),
            "update_now reports liveness: {what}"
        );
        let mut cleanup = Changes::default();
        cleanup.removed.push("_conformance_probe".into());
        store.update(key, &cleanup).await.expect("update");
    }
}

/// Runs every rule against `store`, one after the other; panics on the
/// first violation, naming it. `space` keeps runs against a shared server
/// apart. Prefer [`session_store_conformance!`](crate::session_store_conformance),
/// which runs each rule as its own test.
pub async fn run(store: Arc<dyn SessionStore>, space: &str) {
    round_trip(store.clone(), &format!("{space}-round_trip")).await;
    concurrent_updates_keep_every_key(store.clone(), &format!("{space}-concurrent")).await;
    removal_and_touch(store.clone(), &format!("{space}-removal")).await;
    index_by_issuer_and_subject(store.clone(), &format!("{space}-index")).await;
    logout_is_final(store.clone(), &format!("{space}-logout")).await;
    rotation_without_grace(store.clone(), &format!("{space}-rotation")).await;
    rotation_with_grace(store.clone(), &format!("{space}-grace")).await;
    rotation_after_delete_writes_nothing(store.clone(), &format!("{space}-rotation-after-delete")).await;
    rotation_through_an_alias_keeps_one_session(store.clone(), &format!("{space}-alias")).await;
    store_ttl(store.clone(), &format!("{space}-ttl")).await;
    rekey_moves_the_record_whole(store.clone(), &format!("{space}-rekey")).await;
    rekey_with_grace_leaves_an_alias(store.clone(), &format!("{space}-rekey-grace")).await;
    rekey_under_concurrency_loses_no_update(store.clone(), &format!("{space}-rekey-race")).await;
    provider_logout_ends_only_its_sessions(store.clone(), &format!("{space}-provider")).await;
    log_out_everywhere(store, &format!("{space}-everywhere")).await;
}

/// A created record loads back whole; an unknown key loads nothing; the
/// fast paths agree.
pub async fn round_trip(store: Arc<dyn SessionStore>, space: &str) {
    let alice = person(space, "alice");
    let k1 = key(space, 1);
    let r1 = record(Some(&alice));
    store.create(&k1, &r1, TTL).await.expect("create");
    assert_eq!(
        store.load(&k1).await.expect("load"),
        Some(Arc::new(r1.clone())),
        "a created record loads back whole"
    );
    assert_eq!(
        store.load(&key(space, 99)).await.expect("load"),
        None,
        "an unknown key loads nothing"
    );
    fast_paths_agree(&store, &k1, "a live record").await;
    fast_paths_agree(&store, &key(space, 99), "an unknown key").await;
    store.delete(&k1).await.expect("delete");
}

/// Per-key updates: concurrent writers of different keys all keep theirs,
/// and untouched keys stay.
pub async fn concurrent_updates_keep_every_key(store: Arc<dyn SessionStore>, space: &str) {
    let k1 = live_session(&store, space, 1).await;
    let writes = (0..50).map(|i| {
        let store = store.clone();
        async move {
            let changes = set(&[(&format!("k{i}"), &i.to_string())]);
            store.update(&k1, &changes).await.expect("update")
        }
    });
    let results = futures_join_all(writes).await;
    assert!(results.iter().all(|ok| *ok), "every update found the session");
    let loaded = store.load(&k1).await.expect("load").expect("present");
    for i in 0..50 {
        assert_eq!(
            loaded.data.get(&format!("k{i}")),
            Some(&i.to_string()),
            "concurrent write k{i} was lost"
        );
    }
    assert_eq!(
        loaded.data.get("greeting").map(String::as_str),
        Some("\"hello\""),
        "untouched keys stay"
    );
    store.delete(&k1).await.expect("delete");
}

/// A removed key is gone; a touch moves the idle deadline.
pub async fn removal_and_touch(store: Arc<dyn SessionStore>, space: &str) {
    let k1 = live_session(&store, space, 1).await;
    let mut changes = Changes::default();
    changes.removed.push("greeting".into());
    let now = millis(SystemTime::now());
    changes.touch = Some(Touch {
        idle_deadline_ms: now + 900_000,
        last_seen_ms: now,
        ttl: Duration::from_secs(900),
    });
    assert!(store.update(&k1, &changes).await.expect("update"));
    let loaded = store.load(&k1).await.expect("load").expect("present");
    assert!(!loaded.data.contains_key("greeting"), "removed key is gone");
    assert_eq!(loaded.idle_deadline_ms, now + 900_000, "touch moved the idle deadline");
    assert_eq!(loaded.last_seen_ms, now);
    store.delete(&k1).await.expect("delete");
}

/// Key `n` of `space`, holding a fresh record of the space's alice.
async fn live_session(store: &Arc<dyn SessionStore>, space: &str, n: u8) -> SessionKey {
    let key = key(space, n);
    store
        .create(&key, &record(Some(&person(space, "alice"))), TTL)
        .await
        .expect("create");
    key
}

fn listed(sessions: Vec<(SessionKey, SessionRecord)>) -> Vec<SessionKey> {
    let mut keys: Vec<SessionKey> = sessions.into_iter().map(|(k, _)| k).collect();
    keys.sort();
    keys
}

/// The subject index lists a principal's sessions, by (issuer, subject):
/// the same `sub` at another issuer is another person.
pub async fn index_by_issuer_and_subject(store: Arc<dyn SessionStore>, space: &str) {
    let (alice, bob) = (person(space, "alice"), person(space, "bob"));
    let other_alice = Principal::new("https://idp.test", alice.subject());
    let (k1, k2) = (key(space, 1), key(space, 2));
    let (k3, k8) = (owned(key(space, 3), &bob), owned(key(space, 8), &other_alice));
    store.create(&k1, &record(Some(&alice)), TTL).await.expect("create");
    store.create(&k2, &record(Some(&alice)), TTL).await.expect("create");
    store.create(&k3, &record(Some(&bob)), TTL).await.expect("create");
    let mut expected = vec![k1, k2];
    expected.sort();
    assert_eq!(
        listed(store.sessions_of(&alice).await.expect("list")),
        expected,
        "both of alice's sessions are indexed"
    );
    store
        .create(&k8, &record(Some(&other_alice)), TTL)
        .await
        .expect("create");
    assert_eq!(
        listed(store.sessions_of(&other_alice).await.expect("list")),
        vec![k8],
        "the index is by (issuer, subject), not by subject"
    );
    assert_eq!(
        store.load(&k8).await.expect("load").and_then(|r| r.principal.clone()),
        Some(other_alice.clone()),
        "the principal round-trips"
    );
    for principal in [&alice, &bob, &other_alice] {
        store.delete_all_of(principal).await.expect("delete all");
    }
}

/// A logout is final: an update after delete reports the session gone and
/// writes nothing, and the delete leaves the index.
pub async fn logout_is_final(store: Arc<dyn SessionStore>, space: &str) {
    let alice = person(space, "alice");
    let (k1, k2) = (key(space, 1), key(space, 2));
    store.create(&k1, &record(Some(&alice)), TTL).await.expect("create");
    store.create(&k2, &record(Some(&alice)), TTL).await.expect("create");
    store.delete(&k2).await.expect("delete");
    assert_eq!(store.load(&k2).await.expect("load"), None, "deleted");
    assert!(
        !store.update(&k2, &set(&[("late", "1")])).await.expect("update"),
        "update of a deleted session reports it gone"
    );
    assert_eq!(
        store.load(&k2).await.expect("load"),
        None,
        "a late write does not bring the session back"
    );
    fast_paths_agree(&store, &k2, "a deleted record").await;
    assert_eq!(
        store.sessions_of(&alice).await.expect("list").len(),
        1,
        "delete leaves the index"
    );
    store.delete_all_of(&alice).await.expect("delete all");
}

/// Rotation without grace: the old key is dead at once, and the index
/// follows the rotation.
pub async fn rotation_without_grace(store: Arc<dyn SessionStore>, space: &str) {
    let alice = person(space, "alice");
    let (k1, k4) = (key(space, 1), key(space, 4));
    store.create(&k1, &record(Some(&alice)), TTL).await.expect("create");
    let rotated = record(Some(&alice));
    store.rotate(&k1, &k4, &rotated, TTL, None).await.expect("rotate");
    assert_eq!(store.load(&k1).await.expect("load"), None, "no grace: old key gone");
    assert_eq!(store.load(&k4).await.expect("load"), Some(Arc::new(rotated.clone())));
    assert_eq!(
        listed(store.sessions_of(&alice).await.expect("list")),
        vec![k4],
        "the index follows the rotation"
    );
    store.delete_all_of(&alice).await.expect("delete all");
}

/// Rotation with grace: the old key resolves to the new record, writes
/// through it land on the new record, and the alias expires.
pub async fn rotation_with_grace(store: Arc<dyn SessionStore>, space: &str) {
    let alice = person(space, "alice");
    let (k4, k5) = (key(space, 4), key(space, 5));
    let rotated = record(Some(&alice));
    store.create(&k4, &rotated, TTL).await.expect("create");
    store
        .rotate(&k4, &k5, &rotated, TTL, Some(Duration::from_millis(1500)))
        .await
        .expect("rotate");
    assert_eq!(
        store.load(&k4).await.expect("load"),
        Some(Arc::new(rotated.clone())),
        "grace: old key resolves"
    );
    fast_paths_agree(&store, &k4, "a grace alias").await;
    assert!(store.update(&k4, &set(&[("in_flight", "true")])).await.expect("update"));
    let new = store.load(&k5).await.expect("load").expect("present");
    assert_eq!(
        new.data.get("in_flight").map(String::as_str),
        Some("true"),
        "in-flight write reached the new record"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(store.load(&k4).await.expect("load"), None, "the grace alias expires");
    fast_paths_agree(&store, &k4, "an expired alias").await;
    assert!(
        store.load(&k5).await.expect("load").is_some(),
        "the new record outlives the alias"
    );
    store.delete_all_of(&alice).await.expect("delete all");
}

/// Rotation is final too: after a delete, or of an unknown key, it writes
/// nothing.
pub async fn rotation_after_delete_writes_nothing(store: Arc<dyn SessionStore>, space: &str) {
    let bob = person(space, "bob");
    let (k10, k11) = (owned(key(space, 10), &bob), owned(key(space, 11), &bob));
    store.create(&k10, &record(Some(&bob)), TTL).await.expect("create");
    store.delete(&k10).await.expect("delete");
    assert!(
        !store
            .rotate(&k10, &k11, &record(Some(&bob)), TTL, None)
            .await
            .expect("rotate"),
        "rotate of a deleted session reports it gone"
    );
    assert_eq!(
        store.load(&k11).await.expect("load"),
        None,
        "a rotation in flight does not bring a deleted session back"
    );
    assert!(
        !store
            .rotate(&key(space, 98), &k11, &record(Some(&bob)), TTL, None)
            .await
            .expect("rotate"),
        "rotate of an unknown key writes nothing"
    );
    assert_eq!(store.load(&k11).await.expect("load"), None);
}

/// Rotating through a grace alias moves the record it points to: one live
/// session, never two; a logout wins over every alias.
pub async fn rotation_through_an_alias_keeps_one_session(store: Arc<dyn SessionStore>, space: &str) {
    let carol = person(space, "carol");
    let (k12, k13, k14) = (
        owned(key(space, 12), &carol),
        owned(key(space, 13), &carol),
        owned(key(space, 14), &carol),
    );
    store.create(&k12, &record(Some(&carol)), TTL).await.expect("create");
    let grace = Some(Duration::from_secs(30));
    assert!(
        store
            .rotate(&k12, &k13, &record(Some(&carol)), TTL, grace)
            .await
            .expect("rotate")
    );
    let mut via_alias = record(Some(&carol));
    via_alias.data.insert("via".into(), "\"alias\"".into());
    assert!(
        store.rotate(&k12, &k14, &via_alias, TTL, grace).await.expect("rotate"),
        "a rotation through a live alias succeeds"
    );
    assert_eq!(
        listed(store.sessions_of(&carol).await.expect("list")),
        vec![k14],
        "one live session, not a fork"
    );
    for (old, what) in [(&k12, "the alias"), (&k13, "the record it pointed to")] {
        assert_eq!(
            store
                .load(old)
                .await
                .expect("load")
                .and_then(|r| r.data.get("via").cloned()),
            Some("\"alias\"".to_owned()),
            "{what} now resolves to the new record"
        );
    }
    assert_eq!(store.delete_all_of(&carol).await.expect("delete all"), 1);
    assert_eq!(
        store.load(&k12).await.expect("load"),
        None,
        "a logout wins over every alias"
    );
    assert_eq!(store.load(&k13).await.expect("load"), None);
}

/// A record does not outlive the store TTL it was written with.
pub async fn store_ttl(store: Arc<dyn SessionStore>, space: &str) {
    let k6 = key(space, 6);
    store
        .create(&k6, &record(None), Duration::from_millis(300))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.load(&k6).await.expect("load"),
        None,
        "a record does not outlive its ttl"
    );
}

/// Log out everywhere ends every session of a principal and no one
/// else's — not another issuer's user with the same `sub`.
pub async fn log_out_everywhere(store: Arc<dyn SessionStore>, space: &str) {
    let (alice, bob) = (person(space, "alice"), person(space, "bob"));
    let other_alice = Principal::new("https://idp.test", alice.subject());
    let (k1, k2) = (key(space, 1), key(space, 2));
    let (k3, k8) = (owned(key(space, 3), &bob), owned(key(space, 8), &other_alice));
    store.create(&k1, &record(Some(&alice)), TTL).await.expect("create");
    store.create(&k2, &record(Some(&alice)), TTL).await.expect("create");
    store.create(&k3, &record(Some(&bob)), TTL).await.expect("create");
    store
        .create(&k8, &record(Some(&other_alice)), TTL)
        .await
        .expect("create");
    assert_eq!(store.delete_all_of(&alice).await.expect("delete all"), 2);
    assert!(
        store.sessions_of(&alice).await.expect("list").is_empty(),
        "no session of alice left"
    );
    assert_eq!(store.load(&k1).await.expect("load"), None);
    assert!(store.load(&k3).await.expect("load").is_some(), "bob is untouched");
    assert!(
        store.load(&k8).await.expect("load").is_some(),
        "another issuer's alice is untouched by alice's log out everywhere"
    );
    assert_eq!(store.delete_all_of(&bob).await.expect("delete all"), 1);
    assert_eq!(store.delete_all_of(&other_alice).await.expect("delete all"), 1);
}

/// One `#[tokio::test]` per rule of the [`SessionStore`] conformance
/// suite, so a failure names its rule and hides no other. Call it once in
/// a test file, with an async block that gives a fresh store (and anything
/// that must live as long as the test, such as a server process):
///
/// ```
/// portcullis_session::session_store_conformance!(async {
///     let store: std::sync::Arc<dyn portcullis_session::SessionStore> =
///         std::sync::Arc::new(portcullis_session::MemoryStore::new());
///     (store, ())
/// });
/// # fn main() {}
/// ```
///
/// (In a test file it expands into the tests; the memory store's own tests
/// call it exactly so.)
#[macro_export]
macro_rules! session_store_conformance {
    ($setup:expr) => {
        $crate::session_store_conformance!(@rules $setup;
            round_trip,
            concurrent_updates_keep_every_key,
            removal_and_touch,
            index_by_issuer_and_subject,
            logout_is_final,
            rotation_without_grace,
            rotation_with_grace,
            rotation_after_delete_writes_nothing,
            rotation_through_an_alias_keeps_one_session,
            store_ttl,
            rekey_moves_the_record_whole,
            rekey_with_grace_leaves_an_alias,
            rekey_under_concurrency_loses_no_update,
            provider_logout_ends_only_its_sessions,
            log_out_everywhere
        );
    };
    (@rules $setup:expr; $($rule:ident),+) => {
        $(
            #[::tokio::test]
            async fn $rule() {
                let (store, _keep_alive) = $setup.await;
                $crate::conformance::$rule(store, stringify!($rule)).await;
            }
        )+
    };
}

/// A re-key moves the record as the store holds it (writes made after
/// the caller's read included) with its index entry; it happens once; it
/// never revives an ended session or overwrites another.
pub async fn rekey_moves_the_record_whole(store: Arc<dyn SessionStore>, space: &str) {
    let alice = person(space, "alice");
    let (old, new) = (live_session(&store, space, 1).await, key(space, 2));
    assert!(store.update(&old, &set(&[("cart", "[1]")])).await.expect("update"));
    assert!(
        store.rekey(&old, &new, None).await.expect("rekey"),
        "a live session moves"
    );
    let moved = store
        .load(&new)
        .await
        .expect("load")
        .expect("the record is under the new key");
    assert_eq!(
        moved.data.get("cart").map(String::as_str),
        Some("[1]"),
        "a write made before the move moved with it"
    );
    assert_eq!(moved.principal.as_ref(), Some(&alice));
    assert_eq!(
        store.load(&old).await.expect("load"),
        None,
        "without grace the old key is gone"
    );
    assert_eq!(
        listed(store.sessions_of(&alice).await.expect("sessions_of")),
        vec![new],
        "the index follows the move"
    );
    assert!(
        !store.rekey(&old, &new, None).await.expect("rekey"),
        "a second move finds nothing"
    );
    assert!(
        store.update(&new, &set(&[("after", "1")])).await.expect("update"),
        "the moved session takes writes"
    );

    // Never onto a taken key: both sessions stay as they were.
    let (third, fourth) = (
        live_session(&store, space, 3).await,
        live_session(&store, space, 4).await,
    );
    assert!(
        !store.rekey(&third, &fourth, None).await.expect("rekey"),
        "the new key is taken"
    );
    assert!(store.load(&third).await.expect("load").is_some());
    assert!(store.load(&fourth).await.expect("load").is_some());

    // Never an ended session.
    store.delete(&new).await.expect("delete");
    assert!(
        !store.rekey(&new, &key(space, 5), None).await.expect("rekey"),
        "a logout is final"
    );
    assert_eq!(store.load(&key(space, 5)).await.expect("load"), None, "nothing written");
    assert!(
        !store.rekey(&key(space, 6), &key(space, 7), None).await.expect("rekey"),
        "an unknown key"
    );
    store.delete(&third).await.expect("delete");
    store.delete(&fourth).await.expect("delete");
}

/// With grace, the old key resolves to the moved record for a while (a
/// request in flight under it), is no re-key source itself, and ends with
/// the session.
pub async fn rekey_with_grace_leaves_an_alias(store: Arc<dyn SessionStore>, space: &str) {
    let (old, new) = (live_session(&store, space, 1).await, key(space, 2));
    assert!(
        store
            .rekey(&old, &new, Some(Duration::from_secs(30)))
            .await
            .expect("rekey")
    );
    assert_eq!(
        store.load(&old).await.expect("load"),
        store.load(&new).await.expect("load"),
        "the old key resolves to the moved record during the grace"
    );
    assert!(store.load(&new).await.expect("load").is_some());
    assert!(
        !store.rekey(&old, &key(space, 3), None).await.expect("rekey"),
        "an alias is not moved"
    );
    store.delete(&new).await.expect("delete");
    assert_eq!(
        store.load(&old).await.expect("load"),
        None,
        "the alias ends with the session"
    );
}

/// Requests racing to re-key one session, as the layer runs them (look
/// under the current key, else under the old one and move it, else look
/// again): exactly one moves it, every request finds it, and every
/// request's write is kept.
pub async fn rekey_under_concurrency_loses_no_update(store: Arc<dyn SessionStore>, space: &str) {
    let (old, new) = (live_session(&store, space, 1).await, key(space, 2));
    let requests = (0..24).map(|i| {
        let store = store.clone();
        async move {
            let mut moved = false;
            let at = if store.load(&new).await.expect("load").is_some() {
                new
            } else if store.load(&old).await.expect("load").is_some() {
                moved = store
                    .rekey(&old, &new, Some(Duration::from_secs(5)))
                    .await
                    .expect("rekey");
                new
            } else {
                new
            };
            let wrote = store
                .update(&at, &set(&[(&format!("request-{i}"), "1")]))
                .await
                .expect("update");
            (moved, wrote)
        }
    });
    let outcomes = futures_join_all(requests).await;
    assert_eq!(
        outcomes.iter().filter(|(moved, _)| *moved).count(),
        1,
        "exactly one request moved the session"
    );
    assert!(
        outcomes.iter().all(|(_, wrote)| *wrote),
        "every request found the session"
    );
    let record = store.load(&new).await.expect("load").expect("live");
    for i in 0..24 {
        assert!(
            record.data.contains_key(&format!("request-{i}")),
            "request {i}'s write was kept"
        );
    }
    store.delete(&new).await.expect("delete");
}

/// Polls futures concurrently (no dependency on `futures`).
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A provider's logout of one of its sessions ([`SessionStore::delete_provider_session`])
/// ends the sessions that provider session started — under whatever key a
/// rotation or a re-key moved them to, their grace aliases included — and
/// only those: the principal's session of another provider session, a
/// session of the same `sid` at another issuer, and another user's stay.
pub async fn provider_logout_ends_only_its_sessions(store: Arc<dyn SessionStore>, space: &str) {
    let (alice, bob) = (person(space, "alice"), person(space, "bob"));
    let other_alice = Principal::new("https://idp.test", alice.subject());
    let (s1, s2) = (format!("{space}-s1"), format!("{space}-s2"));
    let with_session = |principal: &Principal, session: &str| {
        let mut record = record(Some(principal));
        record.provider_session = Some(session.to_owned());
        record
    };
    let (k1, k2, k3, k4, k5) = (
        key(space, 1),
        key(space, 2),
        key(space, 3),
        key(space, 4),
        key(space, 5),
    );
    let (k6, k8) = (owned(key(space, 6), &bob), owned(key(space, 8), &other_alice));
    store
        .create(&k1, &with_session(&alice, &s1), TTL)
        .await
        .expect("create");
    store
        .create(&k2, &with_session(&alice, &s1), TTL)
        .await
        .expect("create");
    store
        .create(&k3, &with_session(&alice, &s2), TTL)
        .await
        .expect("create");
    store.create(&k6, &with_session(&bob, &s2), TTL).await.expect("create");
    store
        .create(&k8, &with_session(&other_alice, &s1), TTL)
        .await
        .expect("create");
    assert_eq!(
        store
            .load(&k3)
            .await
            .expect("load")
            .and_then(|r| r.provider_session.clone()),
        Some(s2.clone()),
        "the provider session round-trips"
    );
    let rotated = with_session(&alice, &s1);
    assert!(
        store
            .rotate(&k2, &k4, &rotated, TTL, Some(Duration::from_secs(60)))
            .await
            .expect("rotate"),
        "rotated"
    );
    assert!(
        store
            .rekey(&k1, &k5, Some(Duration::from_secs(60)))
            .await
            .expect("rekey"),
        "re-keyed"
    );

    let ended = store
        .delete_provider_session(alice.issuer(), &s1)
        .await
        .expect("delete");
    assert_eq!(
        ended, 2,
        "both sessions of the provider session end, wherever they moved"
    );
    for (what, gone) in [
        ("rotated", &k4),
        ("its alias", &k2),
        ("re-keyed", &k5),
        ("its old key", &k1),
    ] {
        assert_eq!(store.load(gone).await.expect("load"), None, "{what}: ended");
    }
    assert_eq!(
        listed(store.sessions_of(&alice).await.expect("list")),
        vec![k3],
        "alice's session of another provider session stays, and is the only one listed"
    );
    assert!(store.load(&k6).await.expect("load").is_some(), "bob's session stays");
    assert!(
        store.load(&k8).await.expect("load").is_some(),
        "the same sid at another issuer is another session"
    );
    assert_eq!(
        store
            .delete_provider_session(alice.issuer(), &s1)
            .await
            .expect("delete"),
        0,
        "a second logout finds nothing"
    );
    assert_eq!(
        store
            .delete_provider_session(alice.issuer(), &format!("{space}-unknown"))
            .await
            .expect("delete"),
        0,
        "an unknown provider session ends nothing"
    );
    assert_eq!(
        store.delete_provider_session(bob.issuer(), &s2).await.expect("delete"),
        2,
        "a provider session is matched by (issuer, sid) alone: every session naming it ends"
    );
    for principal in [&alice, &bob, &other_alice] {
        store.delete_all_of(principal).await.expect("delete all");
    }
}
