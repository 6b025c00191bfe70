//! One event the server cannot take never blocks the others, on the CLI's
//! two delivery paths (`panicle spool send`, `panicle run`), on PostgreSQL:
//! a poison event among 20 good ones → 20 stored, 1 in `rejected/` with the
//! server's reason beside it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{PANICLE, Server};
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

fn postgres_server() -> (TestDb, Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let server = Server::start(&db.url);
    (db, server)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// 20 good events and, oldest of all, `poison`, as an SDK leaves them.
fn spool_with_poison(dir: &Path, poison: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    let id = poison["event_id"].as_str().unwrap();
    std::fs::write(
        dir.join(format!("0000000000000000001-{id}.json")),
        serde_json::to_vec(poison).unwrap(),
    )
    .unwrap();
    for i in 0..20 {
        let id = uuid::Uuid::new_v4().to_string();
        // The first carries a NUL: stored, as U+FFFD.
        let nul = if i == 0 { "\u{0}" } else { "" };
        let event = json!({"event_id": id, "timestamp": now_rfc3339(), "message": format!("good event {i}{nul}"), "platform": "rust"});
        std::fs::write(
            dir.join(format!("{:019}-{id}.json", 1000 + i)),
            serde_json::to_vec(&event).unwrap(),
        )
        .unwrap();
    }
}

fn poison() -> Value {
    json!({"event_id": uuid::Uuid::new_v4().to_string(), "timestamp": "9999-99-99", "message": "from a broken SDK"})
}

/// (file name, reason) of each event in `dir/rejected`.
fn rejected(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(dir.join("rejected"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .map(|e| {
                    let reason = std::fs::read_to_string(e.path().with_extension("reason"))
                        .unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), reason)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn left_in_spool(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count()
}

fn stored(server: &Server) -> Vec<String> {
    let (status, list) = server.get("/api/v1/events?limit=100");
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn spool_send_sets_a_poison_event_aside() {
    let (_db, server) = postgres_server();
    let dir = tempfile::tempdir().unwrap();
    let poison = poison();
    spool_with_poison(dir.path(), &poison);
    let out = Command::new(PANICLE)
        .args(["spool", "send", "--dsn", &server.dsn, "--timeout", "30"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sent 20 events, 1 refused"), "{stdout}");
    let messages = stored(&server);
    assert_eq!(messages.len(), 20);
    assert!(
        messages.iter().any(|m| m == "good event 0\u{FFFD}"),
        "{messages:?}"
    );
    assert_eq!(left_in_spool(dir.path()), 0);
    let rejected = rejected(dir.path());
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].0.contains(poison["event_id"].as_str().unwrap()));
    assert!(rejected[0].1.contains("timestamp"), "{rejected:?}");
}

#[test]
fn run_sets_a_poison_event_aside_and_delivers_its_crash() {
    let (_db, server) = postgres_server();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    spool_with_poison(&spool, &poison());
    // The child's own crash carries a NUL: stored, as U+FFFD.
    let out = Command::new(PANICLE)
        .args(["run", "--dsn", &server.dsn, "--service", "svc", "--", "sh", "-c"])
        .arg("printf \"thread 'main' panicked at src/main.rs:2:5:\\nbad\\000byte\\nnote: run with \\`RUST_BACKTRACE=1\\`\\n\" >&2; exit 101")
        .env("PANICLE_SPOOL_DIR", &spool)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = stored(&server);
    assert_eq!(messages.len(), 21, "{messages:?}");
    assert!(
        messages.iter().any(|m| m == "bad\u{FFFD}byte"),
        "{messages:?}"
    );
    assert_eq!(left_in_spool(&spool), 0);
    assert_eq!(rejected(&spool).len(), 1);
}
