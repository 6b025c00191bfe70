//! `panicle run` end to end: a Go program dies of concurrent map writes, a
//! Rust program without the SDK panics; the server stores both crashes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{PANICLE, Server};
use panicle_store::Backend;
use panicle_store::testing::TestDb;

fn programs() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs"))
}

fn server() -> (TestDb, Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let server = Server::start(&db.url);
    (db, server)
}

fn only_event(server: &Server) -> serde_json::Value {
    let list = server.wait_for("/api/v1/events", |b| {
        b["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let id = items[0]["event_id"].as_str().unwrap();
    server.get(&format!("/api/v1/events/{id}")).1
}

#[test]
fn go_concurrent_map_writes_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("inventory");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(programs().join("concurrent_map.go"))
        .env("GOCACHE", dir.path().join("gocache"))
        .env("GO111MODULE", "off")
        .output()
        .expect("the Go toolchain (apt-get install golang-go) is needed by this test");
    assert!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let (_db, server) = server();
    let out = Command::new(PANICLE)
        .args(["run", "--dsn", &server.dsn, "--service", "inventory", "--"])
        .arg(&bin)
        .env("PANICLE_SPOOL_DIR", dir.path().join("spool"))
        .env("POD_NAME", "inventory-5c7d")
        .env("NODE_NAME", "node-7")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "Go exits 2 on a fatal error");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("inventory service starting"),
        "stdout passes through: {stdout}"
    );
    assert!(
        stderr.contains("fatal error: concurrent map writes"),
        "stderr passes through: {stderr}"
    );
    assert!(stderr.contains("listening on :8080"));

    let full = only_event(&server);
    let event = &full["event"];
    assert_eq!(event["platform"], "go");
    assert_eq!(event["kind"], "fatal");
    assert_eq!(event["message"], "concurrent map writes");
    let functions: Vec<&str> = event["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert!(
        functions.iter().any(|f| f.starts_with("main.reserve")),
        "{functions:?}"
    );
    let top_app = event["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["in_app"] == true)
        .unwrap();
    assert_eq!(
        top_app["function"]
            .as_str()
            .map(|f| f.starts_with("main.reserve")),
        Some(true),
        "{top_app}"
    );
    assert_eq!(event["resource"]["service.name"], "inventory");
    assert_eq!(event["resource"]["k8s.pod.name"], "inventory-5c7d");
    assert_eq!(event["resource"]["k8s.node.name"], "node-7");
    assert_eq!(event["tags"]["process.exit_code"], "2");
    assert!(
        event["tags"]["process.command"]
            .as_str()
            .unwrap()
            .ends_with("inventory")
    );
}

#[test]
fn rust_binary_without_sdk_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("billing");
    let built = Command::new("rustc")
        .args(["-g", "--edition", "2021", "-o"])
        .arg(&bin)
        .arg(programs().join("no_sdk.rs"))
        .output()
        .expect("rustc");
    assert!(
        built.status.success(),
        "rustc: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let (_db, server) = server();
    let out = Command::new(PANICLE)
        .args(["run", "--dsn", &server.dsn, "--"])
        .arg(&bin)
        .env("RUST_BACKTRACE", "1")
        .env("PANICLE_SPOOL_DIR", dir.path().join("spool"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(left.is_empty(), "an acknowledged event leaves the spool");
    assert!(String::from_utf8_lossy(&out.stdout).contains("billing starting"));

    let full = only_event(&server);
    let event = &full["event"];
    assert_eq!(event["platform"], "rust");
    assert_eq!(event["kind"], "panic");
    assert_eq!(
        event["message"],
        "called `Option::unwrap()` on a `None` value"
    );
    assert_eq!(event["resource"]["service.name"], "billing");
    // The panic ended the process: its event says how it ended, though the
    // block was complete (note line) before the exit.
    assert_eq!(event["tags"]["process.exit_code"], "101", "{event}");
    assert!(
        event["location"]["file"]
            .as_str()
            .unwrap()
            .ends_with("no_sdk.rs")
    );
    let top_app = event["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["in_app"] == true)
        .unwrap();
    assert!(
        top_app["function"].as_str().unwrap().contains("lookup"),
        "{top_app}"
    );
}

#[test]
fn crash_with_server_down_stays_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Nothing listens on port 9 of loopback: delivery fails, the event stays.
    let out = Command::new(PANICLE)
        .args(["run", "--dsn", "http://k@127.0.0.1:9/1", "--service", "svc", "--", "sh", "-c"])
        .arg("echo 'panic: boom' >&2; echo >&2; echo 'goroutine 1 [running]:' >&2; echo 'main.main()' >&2; printf '\\t/app/main.go:5 +0x1d\\n' >&2; exit 2")
        .env("PANICLE_SPOOL_DIR", &spool)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let files: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files[0].path()).unwrap()).unwrap();
    assert_eq!(event["message"], "boom");
    assert_eq!(event["platform"], "go");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not delivered yet"));
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let status = |args: &[&str]| {
        Command::new(PANICLE)
            .arg("run")
            .arg("--")
            .args(args)
            .env_remove("PANICLE_DSN")
            .output()
            .unwrap()
    };
    assert_eq!(status(&["sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(
        status(&["sh", "-c", "kill -TERM $$"]).status.code(),
        Some(128 + 15)
    );
    let out = status(&["sh", "-c", "cat"]);
    assert_eq!(out.status.code(), Some(0));
    let missing = status(&["/nonexistent/program"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot start"));
}

#[test]
fn sigterm_is_forwarded_to_the_child() {
    let child = Command::new(PANICLE)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; while :; do sleep 0.05; done",
        ])
        .env_remove("PANICLE_DSN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    nix_kill(child.id(), 15);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert!(String::from_utf8_lossy(&out.stdout).contains("got-term"));
}

fn nix_kill(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// True once `pid` has ended: gone from /proc, or a zombie waiting for
/// whichever process adopted it to reap it.
fn has_ended(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the parenthesized command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('Z' | 'X'))
}

#[test]
fn the_child_dies_when_the_wrapper_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let mut wrapper = Command::new(PANICLE)
        .args(["run", "--", "sh", "-c"])
        .arg(format!(
            "echo $$ > '{}'; exec sleep 300",
            pid_file.display()
        ))
        .env_remove("PANICLE_DSN")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let child_pid = loop {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<u32>() {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!has_ended(child_pid));
    // SIGKILL: the wrapper cannot forward it; the kernel must end the child.
    wrapper.kill().unwrap();
    wrapper.wait().unwrap();
    // Generous: the kernel sends the signal as the wrapper exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !has_ended(child_pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "child {child_pid} outlived the killed wrapper"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn stderr_passes_through_unbuffered() {
    use std::io::Read;
    // Half a line, then silence: it must show before any line end or exit.
    let mut wrapper = Command::new(PANICLE)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "printf 'half a line' >&2; exec sleep 300",
        ])
        .env_remove("PANICLE_DSN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = wrapper.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.ends_with(b"half a line") {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let seen = rx.recv_timeout(std::time::Duration::from_secs(20));
    wrapper.kill().unwrap();
    wrapper.wait().unwrap();
    assert_eq!(seen.ok().as_deref(), Some(&b"half a line"[..]));
}

#[test]
fn a_crash_is_delivered_while_the_child_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, server) = server();
    // A thread's panic does not end a process: the event must not wait for
    // the exit (the note line ends the block).
    let mut wrapper = Command::new(PANICLE)
        .args(["run", "--dsn", &server.dsn, "--service", "daemon", "--", "sh", "-c"])
        .arg(
            "printf \"thread 'worker' panicked at src/worker.rs:3:5:\\nboom in a thread\\n\
             note: run with \\`RUST_BACKTRACE=1\\` environment variable to display a backtrace\\n\" >&2; \
             exec sleep 300",
        )
        .env("PANICLE_SPOOL_DIR", dir.path().join("spool"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let full = only_event(&server);
    let running = wrapper.try_wait().unwrap().is_none();
    wrapper.kill().unwrap();
    wrapper.wait().unwrap();
    assert!(running, "delivered before the child ended");
    assert_eq!(full["event"]["message"], "boom in a thread");
    assert_eq!(full["event"]["resource"]["service.name"], "daemon");
}
