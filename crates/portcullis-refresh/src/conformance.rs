//! The conformance suite every [`RefreshStore`] runs (feature
//! `conformance`): one public async function per rule, and
//! [`refresh_store_conformance!`](crate::refresh_store_conformance), which
//! expands into one `#[tokio::test]` per rule so that a failure names its
//! rule and hides no other. [`run`] runs them all in turn.
//!
//! Every rule works in its own family and subject space (`space`, which the
//! macro sets to the rule's name, salted with the time), so the rules can
//! run at once against one server.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::epoch_millis as millis;

use crate::store::{Family, RefreshStore, Spend, SpendRules};

const IDLE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(2);

fn rules() -> SpendRules {
    SpendRules::new(GRACE, IDLE)
}

fn now() -> u64 {
    millis(SystemTime::now())
}

/// The rule's name salted with the time, so two runs against one server
/// never collide.
fn tag(space: &str) -> String {
    format!("{space}-{}-", now())
}

/// Family `id` of subject `subject` under `tag`, created now with ten
/// minutes to live; its id starts with the subject's route, as every
/// family id does.
fn family(tag: &str, id: &str, subject: &str) -> Family {
    let now = now();
    let subject = format!("{tag}{subject}");
    Family {
        id: format!("{}{tag}{id}", portcullis_core::Route::of_subject(&subject)),
        subject,
        scopes: vec!["notes:read".into()],
        created_ms: now,
        absolute_deadline_ms: now + 600_000,
    }
}

async fn spend(store: &dyn RefreshStore, family: &Family, number: u64, at_ms: u64, rules: SpendRules) -> Spend {
    store.spend(&family.id, number, at_ms, rules).await.expect("spend")
}

/// `create` stores a family that `family` finds; an unknown id is `None`
/// and spends as `Unknown`.
pub async fn create_and_find(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f1 = family(&tag, "f1", "alice");
    store.create(&f1, IDLE).await.expect("create");
    assert_eq!(
        store.family(&f1.id).await.expect("family"),
        Some(f1.clone()),
        "family finds it"
    );
    let unknown = family(&tag, "none", "alice");
    assert_eq!(
        store.family(&unknown.id).await.expect("family"),
        None,
        "an unknown family"
    );
    assert_eq!(
        spend(&*store, &unknown, 0, now(), rules()).await,
        Spend::Unknown,
        "an unknown family spends as Unknown"
    );
}

/// The live token rotates; a retry within the grace window is a `Retry`;
/// an earlier token is a replay that ends the family, newest token included.
pub async fn rotation_retry_and_replay(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f1 = family(&tag, "f1", "alice");
    store.create(&f1, IDLE).await.expect("create");
    assert_eq!(
        spend(&*store, &f1, 0, now(), rules()).await,
        Spend::Rotated(f1.clone()),
        "token 0 is live"
    );
    assert_eq!(
        spend(&*store, &f1, 0, now(), rules()).await,
        Spend::Retry(f1.clone()),
        "a retry within the grace window"
    );
    assert_eq!(
        store.family(&f1.id).await.expect("family"),
        Some(f1.clone()),
        "family changes nothing"
    );
    assert_eq!(
        spend(&*store, &f1, 0, now(), rules()).await,
        Spend::Retry(f1.clone()),
        "still a retry"
    );
    assert_eq!(
        spend(&*store, &f1, 1, now(), rules()).await,
        Spend::Rotated(f1.clone()),
        "the successor is live"
    );
    // Two behind the live token, whatever the time (the store is told it).
    assert_eq!(
        spend(&*store, &f1, 0, now() + 10_000, rules()).await,
        Spend::Reused(f1.clone()),
        "an earlier token is a replay"
    );
    assert_eq!(
        spend(&*store, &f1, 2, now(), rules()).await,
        Spend::Ended,
        "the family is revoked: the newest token is dead too"
    );
}

/// The token just spent, past the grace window, is a replay; so is a
/// number the store never made live (a rolled-back store, say), never a
/// silent rotation.
pub async fn replays_past_grace_and_unknown_numbers(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f2 = family(&tag, "f2", "bob");
    store.create(&f2, IDLE).await.expect("create");
    assert_eq!(spend(&*store, &f2, 0, now(), rules()).await, Spend::Rotated(f2.clone()));
    assert_eq!(
        spend(&*store, &f2, 0, now() + 3_000, rules()).await,
        Spend::Reused(f2.clone()),
        "the spent token past the grace window"
    );
    let f2b = family(&tag, "f2b", "bob");
    store.create(&f2b, IDLE).await.expect("create");
    assert_eq!(
        spend(&*store, &f2b, 5, now(), rules()).await,
        Spend::Reused(f2b.clone()),
        "a number never made live"
    );
}

/// A family ends when idle past its window or past its absolute deadline.
pub async fn idle_and_absolute_expiry(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f3 = family(&tag, "f3", "carol");
    store.create(&f3, IDLE).await.expect("create");
    assert_eq!(
        spend(&*store, &f3, 0, now() + 61_000, rules()).await,
        Spend::Ended,
        "idled out"
    );
    let mut f4 = family(&tag, "f4", "carol");
    f4.absolute_deadline_ms = now() + 1_000;
    store.create(&f4, IDLE).await.expect("create");
    assert_eq!(
        spend(&*store, &f4, 0, now() + 2_000, rules()).await,
        Spend::Ended,
        "past the absolute deadline"
    );
}

/// A family, and every live family of a subject, can be revoked.
pub async fn revoke_family_and_subject(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f5 = family(&tag, "f5", "dave");
    let f6 = family(&tag, "f6", "dave");
    store.create(&f5, IDLE).await.expect("create");
    store.create(&f6, IDLE).await.expect("create");
    assert_eq!(store.revoke_family(&f5.id).await.expect("revoke"), Some(f5.clone()));
    let unknown = family(&tag, "none", "dave");
    assert_eq!(
        store.revoke_family(&unknown.id).await.expect("revoke"),
        None,
        "unknown family"
    );
    assert_eq!(
        spend(&*store, &f5, 0, now(), rules()).await,
        Spend::Ended,
        "a revoked family"
    );
    let revoked = store.revoke_subject(&f6.subject).await.expect("revoke");
    assert!(
        revoked.contains(&f6.id),
        "the subject's live family is revoked: {revoked:?}"
    );
    assert_eq!(
        spend(&*store, &f6, 0, now(), rules()).await,
        Spend::Ended,
        "a revoked subject"
    );
}

/// With a rate cap, the live token spent too soon after the last rotation
/// is throttled and stays live; an honest retry is not throttled.
pub async fn a_rate_cap_throttles_without_spending(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f8 = family(&tag, "f8", "frank");
    store.create(&f8, IDLE).await.expect("create");
    let capped = rules().min_interval(Duration::from_secs(30));
    let start = now();
    assert_eq!(
        spend(&*store, &f8, 0, start + 31_000, capped).await,
        Spend::Rotated(f8.clone()),
        "30 s after login: allowed"
    );
    assert_eq!(
        spend(&*store, &f8, 1, start + 41_000, capped).await,
        Spend::Throttled,
        "10 s after the last rotation: throttled"
    );
    assert_eq!(
        spend(&*store, &f8, 0, start + 32_000, capped).await,
        Spend::Retry(f8.clone()),
        "an honest retry is not throttled"
    );
    assert_eq!(
        spend(&*store, &f8, 1, start + 62_000, capped).await,
        Spend::Rotated(f8.clone()),
        "the throttled token still works later"
    );
}

/// Concurrent spends of one token: exactly one rotates.
pub async fn concurrent_spends_rotate_once(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f7 = family(&tag, "f7", "erin");
    store.create(&f7, IDLE).await.expect("create");
    let spends = (0..16u8).map(|_| {
        let store = store.clone();
        let id = f7.id.clone();
        let at = now();
        tokio::spawn(async move { store.spend(&id, 0, at, SpendRules::new(Duration::ZERO, IDLE)).await })
    });
    let mut rotated = 0;
    for spend in spends {
        if let Spend::Rotated(_) = spend.await.expect("join").expect("spend") {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent spend rotates");
}

/// Without a grace window, a second use of a spent token is always a
/// reuse — also one stamped a moment before the rotation it raced (its
/// elapsed time counts as zero, never as negative and so "within grace").
pub async fn no_grace_means_no_retry_even_for_a_racing_spend(store: Arc<dyn RefreshStore>, space: &str) {
    let tag = tag(space);
    let f9 = family(&tag, "f9", "grace");
    store.create(&f9, IDLE).await.expect("create");
    let strict = SpendRules::new(Duration::ZERO, IDLE);
    let at = now();
    assert!(matches!(spend(&*store, &f9, 0, at, strict).await, Spend::Rotated(_)));
    assert!(
        matches!(spend(&*store, &f9, 0, at - 5, strict).await, Spend::Reused(_)),
        "a racing spend stamped before the rotation is a reuse without grace"
    );
    assert_eq!(
        spend(&*store, &f9, 1, at, strict).await,
        Spend::Ended,
        "and the reuse revoked the family"
    );
}

/// Runs every rule in turn against `store` (the macro runs them as
/// separate tests instead).
pub async fn run(store: Arc<dyn RefreshStore>) {
    create_and_find(store.clone(), "create_and_find").await;
    rotation_retry_and_replay(store.clone(), "rotation_retry_and_replay").await;
    replays_past_grace_and_unknown_numbers(store.clone(), "replays_past_grace_and_unknown_numbers").await;
    idle_and_absolute_expiry(store.clone(), "idle_and_absolute_expiry").await;
    revoke_family_and_subject(store.clone(), "revoke_family_and_subject").await;
    a_rate_cap_throttles_without_spending(store.clone(), "a_rate_cap_throttles_without_spending").await;
    no_grace_means_no_retry_even_for_a_racing_spend(store.clone(), "no_grace_means_no_retry").await;
    concurrent_spends_rotate_once(store, "concurrent_spends_rotate_once").await;
}

/// Expands into one `#[tokio::test]` per rule of the [`RefreshStore`]
/// contract. `$setup` is an `async` expression giving
/// `(Arc<dyn RefreshStore>, keep_alive)`; `keep_alive` (a server handle,
/// say) lives until the rule ends.
///
/// ```
/// mod memory_store {
///     use std::sync::Arc;
///     use portcullis_refresh::{MemoryRefreshStore, RefreshStore};
///
///     portcullis_refresh::refresh_store_conformance!(async {
///         let store: Arc<dyn RefreshStore> = Arc::new(MemoryRefreshStore::new());
///         (store, ())
///     });
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! refresh_store_conformance {
    ($setup:expr) => {
        $crate::refresh_store_conformance!(@rules $setup;
            create_and_find,
            rotation_retry_and_replay,
            replays_past_grace_and_unknown_numbers,
            idle_and_absolute_expiry,
            revoke_family_and_subject,
            a_rate_cap_throttles_without_spending,
            no_grace_means_no_retry_even_for_a_racing_spend,
            concurrent_spends_rotate_once
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
