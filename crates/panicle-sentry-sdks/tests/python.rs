//! sentry-python (the real SDK, installed from PyPI by `.ci/run`) reports a
//! KeyError to Panicle through its unchanged DSN.

mod common;

use common::{crate_dir, functions, hyphenated, line_of, run_script, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_python_reports_a_keyerror() {
    let s = start().await;
    let python = crate_dir().join("python/.venv/bin/python");
    let script = crate_dir().join("python/report_error.py");
    let out = run_script(
        python,
        vec![script.display().to_string(), s.dsn.clone()],
        "sentry-python is installed by .ci/run: python3 -m venv crates/panicle-sentry-sdks/python/.venv && crates/panicle-sentry-sdks/python/.venv/bin/pip install -r crates/panicle-sentry-sdks/python/requirements.txt",
    )
    .await;
    let event_id = out["event_id"].as_str().expect("an event id");
    let trace_id = out["trace_id"].as_str().expect("a trace id");
    let got = s.event(&hyphenated(event_id)).await;

    assert_eq!(got["platform"], "python");
    assert_eq!(got["kind"], "exception");
    assert_eq!(got["message"], "KeyError: 'customer_id'");
    let names = functions(&got);
    assert_eq!(
        names[..3],
        [
            "__main__.customer_of",
            "__main__.load_order",
            "__main__.handle"
        ],
        "innermost first, the raise site at frames[0]: {names:?}"
    );
    let frames = got["event"]["frames"].as_array().unwrap();
    assert!(
        frames[..3].iter().all(|f| f["in_app"] == true),
        "{frames:?}"
    );
    assert!(
        frames[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("report_error.py"),
        "{}",
        frames[0]
    );
    assert_eq!(frames[0]["line"], line_of(&script, "the raise site"));
    assert_eq!(got["trace_id"], trace_id, "the transaction's trace");
    assert_eq!(got["release"], "shop@1.4.2");
    assert_eq!(got["environment"], "ci");
    assert_eq!(got["event"]["tags"]["tenant"], "acme");
    let crumbs = got["event"]["breadcrumbs"].as_array().unwrap();
    assert!(
        crumbs
            .iter()
            .any(|b| b["message"] == "loading order 17" && b["category"] == "checkout"),
        "{crumbs:?}"
    );
    // The transaction arrived too, and was counted, not stored.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"panicle_sentry_items_total{item_type="transaction"}"#),
        "{metrics}"
    );
}
