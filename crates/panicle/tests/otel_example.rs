//! `examples/otel_axum.rs`, run as a user would (`once`: one request to its
//! panicking route) against a real server: the stored event carries the
//! trace and span ids the stdout exporter printed for the request's span,
//! and that span holds the panic as an `exception` event.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// `target/` of this test binary (`target/debug/deps/otel_example-…`).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .ancestors()
        .nth(3)
        .unwrap()
        .join("debug/examples/otel_axum");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "panicle", "--example", "otel_axum"])
            .status()
            .unwrap();
        assert!(status.success(), "building the otel_axum example failed");
    }
    path
}

/// The value after `label` on the line that has it (`TraceId      : 8f98…`).
fn field<'a>(stdout: &'a str, label: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

#[test]
fn the_otel_example_links_the_panic_and_its_span_both_ways() {
    let server = common::TestServer::start();
    let spool = tempfile::tempdir().unwrap();
    let out = Command::new(example())
        .arg("once")
        .env("PANICLE_DSN", &server.dsn)
        .env("PANICLE_SPOOL_DIR", spool.path())
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("500 Internal Server Error"), "{stdout}");
    assert!(stdout.contains("Name      : exception"), "{stdout}");
    let trace_id = field(&stdout, "TraceId").expect("the span was exported");
    let span_id = field(&stdout, "SpanId").expect("the span was exported");

    let events = server.wait_for_events(1);
    let trace = events[0].trace.as_ref().expect("the event carries a trace");
    assert_eq!(trace.trace_id, trace_id);
    assert_eq!(trace.span_id.as_deref(), Some(span_id));
    assert_eq!(
        events[0].frames[0].function.as_deref(),
        Some("otel_axum::orders::reserve")
    );
}
