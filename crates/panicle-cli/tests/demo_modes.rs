//! Every mode of the demo panics, also in a build without overflow checks
//! (what `--release` turns off), and each panic reaches the real server with
//! the message the rule base knows. A release build of the demo is too slow
//! for a test; a dev build with `overflow-checks = false` runs the same code
//! path the release build does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, example};
use panicle_rules::{MatchInput, RuleSet, SuggestionSource};
use serde_json::Value;

/// Mode, the panic message, and the built-in rule that explains it.
const MODES: [(&str, &str, &str); 5] = [
    (
        "unwrap-none",
        "called `Option::unwrap()` on a `None` value",
        "rust.option-unwrap-none",
    ),
    (
        "index",
        "index out of bounds: the len is 3 but the index is 7",
        "rust.index-out-of-bounds",
    ),
    (
        "refcell",
        "RefCell already borrowed",
        "rust.refcell-already-borrowed",
    ),
    (
        "overflow",
        "attempt to add with overflow",
        "rust.arithmetic-overflow",
    ),
    (
        "thread",
        "called `Option::unwrap()` on a `None` value",
        "rust.option-unwrap-none",
    ),
];

/// The demo built with the dev profile but overflow checks off, in a profile
/// of its own so the usual `examples/demo` is left as it is.
fn demo_without_overflow_checks() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "panicle",
            "--example",
            "demo",
            "--profile",
            "demo-no-overflow-checks",
            "--config",
            "profile.demo-no-overflow-checks.inherits=\"dev\"",
            "--config",
            "profile.demo-no-overflow-checks.overflow-checks=false",
            "--message-format",
            "json-render-diagnostics",
        ])
        .output()
        .expect("run cargo build for the demo");
    assert!(
        out.status.success(),
        "building the demo without overflow checks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "demo")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo named no demo executable")
}

/// Runs every mode of a demo (`demo(mode)` is its command line) against a
/// fresh server; checks the process panicked and the server stored the
/// expected message for each.
fn every_mode_panics_and_is_reported(demo: impl Fn(&str) -> Command) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let server = Server::start(&url);
    let rules = RuleSet::builtin().unwrap();
    for (n, (mode, message, rule)) in MODES.iter().enumerate() {
        let spool = tempfile::tempdir().unwrap();
        let out = demo(mode)
            .env("PANICLE_DSN", &server.dsn)
            .env("PANICLE_SPOOL_DIR", spool.path())
            .output()
            .expect("run demo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("panicked at") && stderr.contains(message),
            "mode {mode} did not panic with {message:?}: {stderr}"
        );
        if *mode != "thread" {
            assert_eq!(out.status.code(), Some(101), "{mode}: a panic in main");
        }
        let list = server.wait_for("/api/v1/events", |b| {
            b["items"].as_array().is_some_and(|a| a.len() > n)
        });
        let newest = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["message"] == *message)
            .unwrap_or_else(|| panic!("{mode}: no event with {message:?}: {list}"));
        let id = newest["event_id"].as_str().unwrap();
        let (status, full) = server.get(&format!("/api/v1/events/{id}"));
        assert_eq!(status, 200);
        let frames: Vec<String> = full["event"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["function"].as_str().map(str::to_string))
            .collect();
        let suggestion = rules
            .suggest(&MatchInput {
                platform: Some("rust"),
                message,
                frames: &frames,
            })
            .unwrap_or_else(|| panic!("{mode}: no rule explains {message:?}"));
        assert!(
            matches!(&suggestion.source, SuggestionSource::Rule { id } if id == rule),
            "{mode}: {message:?} is explained by {:?}, not {rule}",
            suggestion.source
        );
    }
}

fn run_example(demo: &Path) -> impl Fn(&str) -> Command {
    move |mode| {
        let mut c = Command::new(demo);
        c.arg(mode);
        c
    }
}

#[test]
fn every_demo_mode_panics_in_a_dev_build() {
    every_mode_panics_and_is_reported(run_example(&example("demo")));
}

#[test]
fn every_demo_mode_panics_without_overflow_checks() {
    every_mode_panics_and_is_reported(run_example(&demo_without_overflow_checks()));
}

/// `panicle demo-panic` has the same modes: the README's way to see an event
/// arrive without a second build.
#[test]
fn every_mode_of_panicle_demo_panic_is_reported() {
    every_mode_panics_and_is_reported(|mode| {
        let mut c = Command::new(common::PANICLE);
        c.args(["demo-panic", mode]);
        c
    });
}

#[test]
fn panicle_demo_panic_without_a_dsn_says_where_to_find_one() {
    let out = Command::new(common::PANICLE)
        .args(["demo-panic", "index"])
        .env_remove("PANICLE_DSN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PANICLE_DSN") && stderr.contains("panicle project list"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn panicle_demo_panic_with_a_bad_dsn_names_it_and_does_not_panic() {
    let out = Command::new(common::PANICLE)
        .args(["demo-panic", "index", "--dsn", "not a dsn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid --dsn / PANICLE_DSN"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
