//! @sentry/node (the real SDK, installed from npm by `.ci/run`) reports a
//! TypeError to Panicle through its unchanged DSN.

mod common;

use std::path::PathBuf;

use common::{crate_dir, functions, hyphenated, line_of, run_script, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_node_reports_a_typeerror() {
    let s = start().await;
    let hint = "@sentry/node is installed by .ci/run: (cd crates/panicle-sentry-sdks/node && npm ci); node must be on PATH";
    assert!(
        crate_dir().join("node/node_modules/@sentry/node").is_dir(),
        "{hint}"
    );
    let script = crate_dir().join("node/report_error.js");
    let out = run_script(
        PathBuf::from("node"),
        vec![script.display().to_string(), s.dsn.clone()],
        hint,
    )
    .await;
    let event_id = out["event_id"].as_str().expect("an event id");
    let trace_id = out["trace_id"].as_str().expect("a trace id");
    let got = s.event(&hyphenated(event_id)).await;

    assert_eq!(got["platform"], "node");
    assert_eq!(got["kind"], "exception");
    assert_eq!(
        got["message"],
        "TypeError: Cannot read properties of undefined (reading 'price')"
    );
    let names = functions(&got);
    assert_eq!(
        names[..3],
        ["lineTotal", "cartTotal", "handle"],
        "innermost first, the raise site at frames[0]: {names:?}"
    );
    let frames = got["event"]["frames"].as_array().unwrap();
    assert!(
        frames[..3].iter().all(|f| f["in_app"] == true),
        "{frames:?}"
    );
    assert_eq!(frames[0]["line"], line_of(&script, "the raise site"));
    // Node's own internals are not the service's code.
    for f in frames {
        let file = f["file"].as_str().unwrap_or("");
        if file.starts_with("node:") || file.contains("node_modules") {
            assert_eq!(f["in_app"], false, "{f}");
        }
    }
    assert_eq!(got["trace_id"], trace_id, "the transaction's trace");
    assert_eq!(got["release"], "web@2.0.1");
    assert_eq!(got["environment"], "ci");
    assert_eq!(got["event"]["tags"]["feature"], "checkout");
    let crumbs = got["event"]["breadcrumbs"].as_array().unwrap();
    assert!(
        crumbs.iter().any(|b| b["message"] == "fetching cart 9"),
        "{crumbs:?}"
    );
}
