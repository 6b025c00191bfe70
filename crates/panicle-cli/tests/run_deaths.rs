//! `panicle run` and deaths without a panic: a Rust program (no SDK) that
//! overflows its stack, fails an allocation, is killed by SIGSEGV and by
//! SIGKILL. Each becomes one event of its own kind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{PANICLE, Server};
use panicle_store::Backend;
use panicle_store::testing::TestDb;

/// The program, built once for the whole test binary.
fn deaths() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, bin) = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("deaths");
        let src = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/programs/deaths.rs"
        ));
        let built = Command::new("rustc")
            .args(["-g", "--edition", "2021", "-o"])
            .arg(&bin)
            .arg(src)
            .output()
            .expect("rustc");
        assert!(
            built.status.success(),
            "rustc: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        (dir, bin)
    });
    bin
}

/// Runs `deaths MODE` under `panicle run`; the one stored event and the wrapper's exit code.
fn run(mode: &str) -> (serde_json::Value, Option<i32>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let server = Server::start(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(PANICLE)
        .args(["run", "--dsn", &server.dsn, "--service", "worker", "--"])
        .arg(deaths())
        .arg(mode)
        .env("PANICLE_SPOOL_DIR", dir.path().join("spool"))
        .output()
        .unwrap();
    let list = server.wait_for("/api/v1/events", |b| {
        b["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "{mode}: {items:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = items[0]["event_id"].as_str().unwrap();
    (
        server.get(&format!("/api/v1/events/{id}")).1["event"].clone(),
        out.status.code(),
    )
}

#[test]
fn a_stack_overflow_is_a_fatal_death() {
    let (event, code) = run("stack-overflow");
    assert_eq!(event["platform"], "rust");
    assert_eq!(event["kind"], "fatal");
    assert_eq!(
        event["message"], "thread 'main' has overflowed its stack",
        "{event}"
    );
    assert_eq!(event["tags"]["death"], "stack_overflow");
    // SIGABRT: the shell convention, 128 + 6.
    assert_eq!(code, Some(134));
}

#[test]
fn a_failed_allocation_is_a_fatal_death() {
    let (event, _) = run("alloc-fail");
    assert_eq!(event["kind"], "fatal");
    assert_eq!(
        event["message"],
        format!("memory allocation of {} bytes failed", 1u64 << 46)
    );
    assert_eq!(event["tags"]["death"], "allocation_failure");
}

#[test]
fn a_segfault_is_a_signal_event_with_the_stderr_tail() {
    let (event, code) = run("segv");
    assert_eq!(event["kind"], "signal");
    assert_eq!(event["tags"]["process.signal_name"], "SIGSEGV");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("killed by SIGSEGV"),
        "{event}"
    );
    assert_eq!(event["stderr_tail"][0], "worker started", "{event}");
    assert_eq!(code, Some(128 + 11));
}

#[test]
fn a_sigkill_is_a_signal_event_that_names_the_oom_killer() {
    let (event, code) = run("kill");
    assert_eq!(event["kind"], "signal");
    assert_eq!(event["tags"]["process.signal_name"], "SIGKILL");
    let message = event["message"].as_str().unwrap();
    // raise(SIGKILL) is not an OOM kill: the counter, when readable, did
    // not move, and the message says it is only the usual cause.
    assert!(message.contains("out-of-memory killer"), "{message}");
    if !event["oom"].is_null() {
        assert_eq!(event["oom"]["confirmed"], false, "{event}");
    }
    assert_eq!(code, Some(128 + 9));
}
