//! The server's log has colour codes only at a terminal: none when its
//! output goes to a pipe (a log file, journald, `kubectl logs`), none when
//! `NO_COLOR` is set.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};

const ESC: char = '\u{1b}';

/// `panicle serve` on a fresh SQLite file and a free port, not yet spawned.
fn serve_command(dir: &tempfile::TempDir) -> Command {
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_panicle"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env_remove("DATABASE_URL")
        .env("PANICLE_HOME", dir.path())
        .env_remove("NO_COLOR")
        .env("PANICLE_LOG", "info");
    cmd
}

/// Reads `log` up to and including the "panicle serving" line, then kills
/// the server. Ends early (and returns what it read) if the log ends.
fn log_until_serving(mut child: Child, log: impl Read) -> String {
    let mut text = String::new();
    for line in BufReader::new(log).lines() {
        // A pseudo-terminal whose other side closed reads as EIO, not EOF.
        let Ok(line) = line else { break };
        text.push_str(&line);
        text.push('\n');
        if line.contains("panicle serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("panicle serving"), "no log line: {text:?}");
    text
}

/// A pseudo-terminal: (controller side, terminal side).
fn open_pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; `name` is
    // a NUL-terminated buffer ptsname_r fills.
    unsafe {
        let controller = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(controller >= 0, "posix_openpt failed");
        let controller_file = File::from_raw_fd(controller);
        assert_eq!(libc::grantpt(controller), 0, "grantpt failed");
        assert_eq!(libc::unlockpt(controller), 0, "unlockpt failed");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(controller, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r failed"
        );
        let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned();
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap();
        (controller_file, terminal)
    }
}

/// The log as written to a terminal, with `NO_COLOR` set to `no_color`.
fn log_at_terminal(no_color: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (controller, terminal) = open_pty();
    let child = {
        let mut cmd = serve_command(&dir);
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::from(terminal));
        // `cmd` drops here with its copy of the terminal side, so a server
        // that dies ends the read instead of hanging it.
        cmd.spawn().unwrap()
    };
    log_until_serving(child, controller)
}

#[test]
fn the_log_has_no_colour_codes_when_stdout_and_stderr_are_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve_command(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = log_until_serving(child, stderr);
    // The server is dead: its stdout (first-start lines, DSN) reads to the end.
    let mut printed = String::new();
    stdout.read_to_string(&mut printed).unwrap();
    assert!(
        printed.contains("panicle listening on"),
        "stdout: {printed:?}"
    );
    assert!(!log.contains(ESC), "colour codes in a piped log: {log:?}");
    assert!(
        !printed.contains(ESC),
        "colour codes on a piped stdout: {printed:?}"
    );
}

#[test]
fn the_log_is_in_colour_at_a_terminal_unless_no_color_is_set() {
    // At a terminal the log is coloured (so the pipe test above would see
    // colour codes if they leaked); an empty NO_COLOR does not count.
    for no_color in [None, Some("")] {
        let log = log_at_terminal(no_color);
        assert!(
            log.contains("\u{1b}["),
            "NO_COLOR={no_color:?}: no colour at a terminal: {log:?}"
        );
    }
    for no_color in ["1", "true"] {
        let log = log_at_terminal(Some(no_color));
        assert!(
            !log.contains(ESC),
            "NO_COLOR={no_color}: colour codes at a terminal: {log:?}"
        );
    }
}
