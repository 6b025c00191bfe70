//! sentry-rust with its panic integration reports a panic to Panicle
//! through its unchanged DSN; it groups like the same panic from Panicle's
//! own SDK where the frames agree (see panicle-protocol's fixtures).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{functions, hyphenated, line_of, start};

#[inline(never)]
fn account_of(accounts: &HashMap<&str, u32>, name: &str) -> u32 {
    *accounts.get(name).unwrap() // the raise site: frames[0]
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

/// Runs the SDK on one thread of its own (hub, scope, transaction and the
/// panic all on it); returns the event id and the transaction's trace id.
fn report_panic(dsn: String) -> (String, String) {
    let mut options = sentry::ClientOptions::new();
    options.release = Some("ledger@3.1.0".into());
    options.environment = Some("ci".into());
    options.traces_sampling_strategy = sentry::TracesSamplingStrategy::FixedRate(1.0);
    let guard = sentry::init((dsn, options));
    assert!(guard.is_enabled(), "the DSN was taken");
    sentry::configure_scope(|scope| scope.set_tag("shard", "7"));
    sentry::add_breadcrumb(sentry::Breadcrumb {
        category: Some("ledger".into()),
        message: Some("posting batch 7".into()),
        ..Default::default()
    });
    let transaction =
        sentry::start_transaction(sentry::TransactionContext::new("post batch", "job"));
    sentry::configure_scope(|scope| scope.set_span(Some(transaction.clone().into())));
    let trace_id = transaction.get_trace_context().trace_id.to_string();
    let result = std::panic::catch_unwind(post_batch);
    assert!(result.is_err(), "post_batch panicked");
    let event_id = sentry::last_event_id().expect("the panic was captured");
    transaction.finish();
    assert!(
        guard.flush(Some(Duration::from_secs(10))),
        "the SDK delivered"
    );
    (event_id.simple().to_string(), trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_rust_reports_a_panic() {
    let s = start().await;
    let dsn = s.dsn.clone();
    let (event_id, trace_id) = tokio::task::spawn_blocking(move || report_panic(dsn))
        .await
        .unwrap();
    let got = s.event(&hyphenated(&event_id)).await;

    assert_eq!(got["platform"], "rust");
    assert_eq!(got["kind"], "panic");
    assert_eq!(
        got["message"],
        "called `Option::unwrap()` on a `None` value"
    );
    let names = functions(&got);
    assert_eq!(
        names[..3],
        ["rust::account_of", "rust::post_entry", "rust::post_batch"],
        "innermost first, the raise site at frames[0] (panic machinery cut): {names:?} {}",
        got["event"]["frames"]
    );
    let frames = got["event"]["frames"].as_array().unwrap();
    assert!(
        frames[..3].iter().all(|f| f["in_app"] == true),
        "{frames:?}"
    );
    assert!(
        frames[0]["file"].as_str().unwrap().ends_with("rust.rs"),
        "{}",
        frames[0]
    );
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rust.rs");
    assert_eq!(
        frames[0]["line"],
        line_of(&source, "the raise site: frames[0]")
    );
    // std is never the service's code.
    for f in frames {
        if f["function"].as_str().unwrap_or("").starts_with("std::") {
            assert_eq!(f["in_app"], false, "{f}");
        }
    }
    assert_eq!(got["trace_id"], trace_id, "the transaction's trace");
    assert_eq!(got["release"], "ledger@3.1.0");
    assert_eq!(got["environment"], "ci");
    assert_eq!(got["event"]["tags"]["shard"], "7");
    let crumbs = got["event"]["breadcrumbs"].as_array().unwrap();
    assert!(
        crumbs.iter().any(|b| b["message"] == "posting batch 7"),
        "{crumbs:?}"
    );
}
