//! One panic, two SDKs: Panicle's hook and sentry-rust's panic integration
//! both report it (Panicle's hook chains the one sentry installed); the two
//! stored events land in the same group, since their messages and in-app
//! frames agree.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{functions, hyphenated, start};

#[inline(never)]
fn account_of(accounts: &HashMap<&str, u32>, name: &str) -> u32 {
    *accounts.get(name).unwrap()
}

#[inline(never)]
fn post_entry(accounts: &HashMap<&str, u32>) -> u32 {
    std::hint::black_box(account_of(accounts, std::hint::black_box("fees")) + 1)
}

#[inline(never)]
fn post_batch() -> u32 {
    let accounts = HashMap::from([("cash", 1)]);
    std::hint::black_box(post_entry(&accounts) + 1)
}

/// Both SDKs on one plain thread; returns (sentry's id, Panicle's id).
fn report_with_both(dsn: String, spool: std::path::PathBuf) -> (String, String) {
    let sentry_guard = sentry::init((dsn.clone(), sentry::ClientOptions::new()));
    assert!(sentry_guard.is_enabled());
    let _panicle = panicle::init(
        panicle::Options::default()
            .with_dsn(dsn.parse().unwrap())
            .with_spool_dir(spool),
    );
    assert!(std::panic::catch_unwind(post_batch).is_err());
    let sentry_id = sentry::last_event_id().expect("sentry captured the panic");
    let panicle_id = panicle::take_last_event_id().expect("panicle captured the panic");
    assert!(sentry_guard.flush(Some(Duration::from_secs(10))));
    assert!(panicle::flush(Duration::from_secs(10)), "panicle delivered");
    (sentry_id.simple().to_string(), panicle_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_rust_and_panicle_group_a_panic_alike() {
    let s = start().await;
    let spool = tempfile::tempdir().unwrap();
    let (dsn, dir) = (s.dsn.clone(), spool.path().to_path_buf());
    let (sentry_id, panicle_id) = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || report_with_both(dsn, dir))
            .join()
            .unwrap()
    })
    .await
    .unwrap();
    let from_sentry = s.event(&hyphenated(&sentry_id)).await;
    let from_panicle = s.event(&panicle_id).await;
    assert_eq!(from_sentry["event"]["sdk"]["name"], "sentry.rust");
    assert_eq!(from_sentry["message"], from_panicle["message"]);
    assert_eq!(from_sentry["kind"], "panic");
    let in_app = |e: &serde_json::Value| -> Vec<String> {
        let names = functions(e);
        e["event"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .zip(names)
            .filter(|(f, _)| f["in_app"] == true)
            .map(|(_, n)| n)
            .collect()
    };
    assert_eq!(
        from_sentry["group_id"],
        from_panicle["group_id"],
        "one group: sentry in-app {:?}, panicle in-app {:?}",
        in_app(&from_sentry),
        in_app(&from_panicle)
    );
}
