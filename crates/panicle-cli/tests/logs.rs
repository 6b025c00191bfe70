//! The server's log has no colour codes when stderr is not a terminal (a
//! log file, journald, `kubectl logs`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_panicle"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env_remove("DATABASE_URL")
        .env("PANICLE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    for l in BufReader::new(stderr).lines() {
        line = l.unwrap();
        if line.contains("panicle serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("panicle serving"), "no log line: {line:?}");
    assert!(
        !line.contains('\u{1b}'),
        "colour codes in a piped log: {line:?}"
    );
}
