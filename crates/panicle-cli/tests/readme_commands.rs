//! Runs the shell commands of README.md as a new user would, against the
//! built binary, in a temporary HOME and directories, and checks what they
//! print. The commands are read from the README's ```sh blocks (not copied
//! here), so a changed command is a changed test; a ```text block after
//! one says what its last command prints (each line's start, up to its
//! first `:` or tab, must begin a line of the output); the Configuration
//! section's ```toml example must be a config file the binary takes.
//!
//! `cargo run --release -p panicle-cli -- ARGS` is run as `panicle ARGS`
//! (the binary this test was built with; PATH finds it, as after
//! `cargo install`). Servers listen on a free port
//! (`PANICLE_LISTEN=127.0.0.1:0`); `127.0.0.1:8471` and the
//! `http://<key>@…/1` placeholder in later commands become the running
//! server's address and the first start's DSN. `serve` runs in one
//! directory, every other command in another: the README says they work
//! from any directory.
//!
//! Skipped, each for a reason:
//! - `cargo install …`: a release build of the whole binary (minutes); the
//!   binary under test is the same crate, and `dockerfile.rs` checks the
//!   install path.
//! - `cargo test …`: this is that command.
//! - `PANICLE_DSN=… cargo run` (SDK quickstart): builds the reader's own
//!   crate, which does not exist here; `e2e.rs` runs the SDK's demo example.
//!
//! Commands quoted inline in prose are not run: `docker compose up --build`
//! needs a Docker engine (`dockerfile.rs` checks the Dockerfile instead), the
//! SDK demo example and `curl` lines need a build of the example (`e2e.rs`
//! runs it against a server). A new command in a ```sh block that this test
//! does not know fails it, so each is run or skipped here on purpose.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A fenced block of the README: its language, the heading it is under,
/// and its text.
struct Block {
    lang: String,
    section: String,
    text: String,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut open: Option<Block> = None;
    for line in readme.lines() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => {
                    open = Some(Block {
                        lang: fence.trim().to_string(),
                        section: section.clone(),
                        text: String::new(),
                    })
                }
            }
            continue;
        }
        match &mut open {
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None if line.starts_with('#') => {
                section = line.trim_start_matches('#').trim().to_string()
            }
            None => {}
        }
    }
    out
}

/// The commands of a shell block: continuation lines joined, comments and
/// blank lines dropped.
fn commands(sh: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sh.lines() {
        let line = line.split(" #").next().unwrap_or("").trim_end();
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let command = current.trim().to_string();
                if !command.is_empty() {
                    out.push(command);
                }
                current.clear();
            }
        }
    }
    out
}

/// Why a README command is not run, or None to run it.
fn skipped(command: &str) -> Option<&'static str> {
    if command.starts_with("cargo install ") {
        Some("a release build of the binary under test")
    } else if command.starts_with("cargo test") {
        Some("the test suite itself")
    } else if command.starts_with("PANICLE_DSN=") && command.ends_with(" cargo run") {
        Some("builds the reader's own crate")
    } else {
        None
    }
}

/// A `panicle serve` running in the background, killed on drop.
struct Server {
    child: Child,
    lines: Receiver<String>,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Reads its output up to a line starting with `until`.
    fn read_until(&mut self, until: &str, read: &mut Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(until);
                    read.push(line);
                    if done {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("serve printed no {until:?} line within 120 s: {read:#?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("serve stopped before {until:?}: {read:#?}")
                }
            }
        }
    }

    /// SIGTERM, as Ctrl-C would: the server shuts down cleanly.
    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// The reader's machine: a HOME, a clone where `serve` runs, and another
/// directory for the other commands.
struct Reader {
    _root: tempfile::TempDir,
    home: PathBuf,
    clone: PathBuf,
    elsewhere: PathBuf,
    path: String,
    server: Option<Server>,
    /// The first start's DSN and API token.
    dsn: Option<String>,
    token: Option<String>,
    /// What the last command printed, for a ```text block.
    last_output: Vec<String>,
    ran: Vec<String>,
}

impl Reader {
    fn new() -> Reader {
        let root = tempfile::tempdir().unwrap();
        let (home, clone, elsewhere) = (
            root.path().join("home"),
            root.path().join("clone"),
            root.path().join("elsewhere"),
        );
        for d in [&home, &clone, &elsewhere] {
            std::fs::create_dir(d).unwrap();
        }
        let bin = Path::new(common::PANICLE).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        Reader {
            _root: root,
            home,
            clone,
            elsewhere,
            path,
            server: None,
            dsn: None,
            token: None,
            last_output: Vec::new(),
            ran: Vec::new(),
        }
    }

    fn shell(&self, command: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            .env("PANICLE_LOG", "warn");
        cmd
    }

    /// The command as this machine runs it: the binary by name, the real
    /// address and DSN in place of the README's.
    fn localize(&self, command: &str) -> String {
        let mut command = command.replace("cargo run --release -p panicle-cli --", "panicle");
        if let Some(dsn) = &self.dsn {
            // The first start's DSN, at the address of the server running now.
            let dsn = match (dsn.parse::<panicle_protocol::Dsn>(), &self.server) {
                (Ok(parsed), Some(server)) => dsn.replace(&parsed.host, &server.addr),
                _ => dsn.clone(),
            };
            let words: Vec<String> = command
                .split(' ')
                .map(|w| match w.split_once("http://<key>@") {
                    Some((before, _)) => format!("{before}{dsn}"),
                    None => w.to_string(),
                })
                .collect();
            command = words.join(" ");
        }
        if let Some(server) = &self.server {
            command = command.replace("127.0.0.1:8471", &server.addr);
            command = command.replace(
                "https://panicle.example",
                &format!("http://{}", server.addr),
            );
        }
        if let Some(token) = &self.token {
            command = command.replace("$PANICLE_TOKEN", token);
        }
        command
    }

    fn run(&mut self, readme_command: &str) {
        if let Some(why) = skipped(readme_command) {
            eprintln!("skipped `{readme_command}`: {why}");
            return;
        }
        let command = self.localize(readme_command);
        let words: Vec<&str> = command.split_whitespace().collect();
        if matches!(words.first(), Some(&"objcopy" | &"strip")) {
            return self.binutils(&command);
        }
        let panicle_at = words.iter().position(|w| *w == "panicle");
        let sub: Vec<&str> = panicle_at
            .map(|i| words[i + 1..].to_vec())
            .unwrap_or_default();
        match sub.as_slice() {
            ["serve", rest @ ..] => self.serve(&command, rest),
            ["project", "create", name, ..] => {
                let out = self.output(&command);
                let dsn: panicle_protocol::Dsn = out
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("`{command}` printed no DSN ({e}): {out}"));
                assert_eq!(out.lines().count(), 1, "{out}");
                assert_eq!(dsn.host, "127.0.0.1:8471", "the README's default address");
                self.ran.push(format!("project {name}"));
            }
            ["project", "list", ..] => {
                let out = self.output(&command);
                for name in self.ran.iter().filter_map(|r| r.strip_prefix("project ")) {
                    assert!(
                        out.lines().any(|l| l.split('\t').nth(1) == Some(name)),
                        "`{command}` does not list `{name}`: {out}"
                    );
                }
            }
            ["token", "create", ..] => {
                let out = self.output(&command);
                assert!(
                    out.starts_with("pnk_") && out.lines().count() == 1,
                    "`{command}`: {out}"
                );
            }
            ["config", ..] => {
                let out = self.output(&command);
                let file = self.home.join(".config/panicle/config.toml");
                assert!(
                    out.starts_with(&format!("config file: {} (read", file.display())),
                    "{out}"
                );
                let db = self.clone.join("panicle-data/panicle.db");
                let row = format!(
                    "database_url\tsqlite://{}\tfile {}",
                    db.display(),
                    file.display()
                );
                assert!(out.lines().any(|l| l == row), "no {row:?} in {out}");
            }
            ["run", ..] => self.wrap(&command),
            ["demo-panic", "unwrap-none"] => self.demo_panic(&command),
            ["debug-files", "upload", file] => {
                let out = self.output(&command);
                assert!(
                    out.starts_with(&format!("{file}: ")) && out.trim_end().ends_with("stored"),
                    "`{command}`: {out}"
                );
            }
            _ => panic!(
                "README command `{readme_command}` is neither run nor skipped by this test: \
                 teach it what the command prints, or why it cannot run here"
            ),
        }
    }

    /// Runs a short command in the other directory; returns its stdout.
    fn output(&mut self, command: &str) -> String {
        let out = self.shell(command, &self.elsewhere).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "`{command}` failed: {stderr}");
        assert!(
            !self.elsewhere.join("panicle-data").exists(),
            "`{command}` made a database where it ran"
        );
        self.last_output = stdout.lines().map(str::to_string).collect();
        stdout
    }

    fn serve(&mut self, command: &str, args: &[&str]) {
        // One server at a time, as a reader would stop the first.
        if let Some(old) = self.server.take() {
            old.stop();
        }
        let mut child = self
            .shell(&format!("exec {command}"), &self.clone)
            .env("PANICLE_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines: rx,
            addr: String::new(),
        };
        let mut read = Vec::new();
        server.read_until("panicle listening on ", &mut read);
        let base = read
            .last()
            .and_then(|l| l.strip_prefix("panicle listening on "))
            .unwrap()
            .to_string();
        server.addr = base.trim_start_matches("http://").to_string();
        let first_start = self.dsn.is_none();
        let field = |name: &str| {
            read.iter()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if first_start {
            let dsn = field("DSN:").unwrap_or_else(|| panic!("no DSN on first start: {read:#?}"));
            let parsed: panicle_protocol::Dsn = dsn.parse().unwrap();
            assert_eq!(parsed.host, server.addr);
            let token = field("API token:").unwrap();
            assert!(token.starts_with("pnk_"), "{token}");
            assert_eq!(field("Dashboard:"), Some(format!("{base}/")));
            // The database in the clone, its absolute URL in the config file.
            let db = self.clone.join("panicle-data/panicle.db");
            assert!(db.is_file(), "no {}", db.display());
            let config = self.home.join(".config/panicle/config.toml");
            let text = std::fs::read_to_string(&config).unwrap_or_default();
            assert!(
                text.contains(&format!("database_url = \"sqlite://{}\"", db.display())),
                "{}: {text}",
                config.display()
            );
            self.dsn = Some(dsn);
            self.token = Some(token);
            self.ran.push("project default".into());
        } else {
            assert_eq!(field("DSN:"), None, "a second start printed a DSN");
        }
        if args.contains(&"--demo-data") {
            server.read_until("Demo dashboard:", &mut read);
            self.ran.push("project demo".into());
        }
        self.last_output = read;
        self.server = Some(server);
    }

    /// `objcopy` / `strip` of the README's CI recipe, run on a copy of the
    /// `panicle` binary standing in for the reader's `target/release/app`.
    fn binutils(&mut self, command: &str) {
        let app = self.elsewhere.join("target/release/app");
        if !app.exists() {
            std::fs::create_dir_all(app.parent().unwrap()).unwrap();
            std::fs::copy(common::PANICLE, &app).unwrap();
        }
        let out = self.shell(command, &self.elsewhere).output().unwrap();
        assert!(
            out.status.success(),
            "`{command}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `panicle run -- PROGRAM …`: the program is a stand-in that panics as
    /// a Rust service does; its crash must reach the running server.
    fn wrap(&mut self, command: &str) {
        let program = command
            .split(" -- ")
            .nth(1)
            .and_then(|p| p.split_whitespace().next())
            .expect("panicle run -- PROGRAM");
        let path = self.elsewhere.join(program);
        std::fs::write(
            &path,
            "#!/bin/sh\n\
             echo starting\n\
             echo \"thread 'main' panicked at src/main.rs:42:18:\" >&2\n\
             echo 'called `Option::unwrap()` on a `None` value' >&2\n\
             echo 'note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace' >&2\n\
             exit 101\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let out = self
            .shell(command, &self.elsewhere)
            .env("PANICLE_SPOOL_DIR", self.home.join("spool"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(101),
            "`{command}` keeps the program's exit code: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "starting\n");
        let service = Path::new(program).file_name().unwrap().to_str().unwrap();
        self.wait_for_unwrap_none_event(command, service);
        self.last_output = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
    }

    /// `panicle demo-panic unwrap-none`: the binary panics with the SDK's
    /// hook, and the event reaches the running server.
    fn demo_panic(&mut self, command: &str) {
        let out = self
            .shell(command, &self.elsewhere)
            .env("PANICLE_SPOOL_DIR", self.home.join("spool"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(101), "`{command}`: {stderr}");
        assert!(stderr.contains("panicked at"), "`{command}`: {stderr}");
        assert!(
            !self.elsewhere.join("panicle-data").exists(),
            "`{command}` made a database where it ran"
        );
        self.wait_for_unwrap_none_event(command, "demo");
        self.last_output = stderr.lines().map(str::to_string).collect();
    }

    /// Waits until the `default` project holds an `Option::unwrap()` panic
    /// of `service`.
    fn wait_for_unwrap_none_event(&self, command: &str, service: &str) {
        let server = self.server.as_ref().expect("a server runs");
        let token = self.token.clone().unwrap();
        let url = format!("http://{}/api/v1/events?project=1", server.addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body: Value = ureq::get(&url)
                .header("Authorization", format!("Bearer {token}"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json().ok())
                .unwrap_or(Value::Null);
            let items = body["items"].as_array().cloned().unwrap_or_default();
            if items.iter().any(|e| {
                e["service"] == service
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Option::unwrap()"))
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the panic of `{command}` never reached the server: {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A ```text block: each of its lines' start begins a line of what the
    /// last command printed.
    fn expect_text(&self, text: &str, command: &str) {
        for line in text.lines() {
            let end = line.find([':', '\t']);
            let Some(end) = end else { continue };
            let prefix = &line[..end + usize::from(line[end..].starts_with(':'))];
            assert!(
                self.last_output.iter().any(|l| l.starts_with(prefix)),
                "README shows `{line}` after `{command}`, but it printed:\n{}",
                self.last_output.join("\n")
            );
        }
    }
}

#[test]
fn readme_commands_run_and_print_what_it_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut reader = Reader::new();
    let mut last_command: Option<(String, String)> = None;
    let mut count = 0;
    for block in blocks(&readme) {
        match block.lang.as_str() {
            "sh" => {
                for command in commands(&block.text) {
                    reader.run(&command);
                    count += 1;
                    last_command = Some((block.section.clone(), command));
                }
            }
            "text" => {
                if let Some((section, command)) = &last_command
                    && *section == block.section
                    && skipped(command).is_none()
                {
                    reader.expect_text(&block.text, command);
                }
            }
            "toml" if block.section == "Configuration" => {
                let file = reader.home.join("example.toml");
                std::fs::write(&file, &block.text).unwrap();
                let out = reader
                    .shell(
                        &format!("panicle config --config {}", file.display()),
                        &reader.elsewhere,
                    )
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "the README's example config is refused: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let from_file = format!("\tfile {}", file.display());
                let keys = block.text.lines().filter(|l| l.contains(" = ")).count();
                assert_eq!(
                    stdout.lines().filter(|l| l.ends_with(&from_file)).count(),
                    keys,
                    "{stdout}"
                );
            }
            _ => {}
        }
    }
    assert!(
        reader.ran.iter().any(|r| r == "project demo"),
        "the README no longer starts the demo"
    );
    assert!(
        count >= 8,
        "only {count} commands in the README's sh blocks"
    );
    if let Some(server) = reader.server.take() {
        server.stop();
    }
}

#[test]
fn commands_are_read_as_a_shell_reads_them() {
    assert_eq!(
        commands("# a comment\npanicle a   # what it does\n\npanicle b \\\n  --c d\n"),
        ["panicle a", "panicle b   --c d"]
    );
    let b = blocks("# T\n## Two\n```sh\nx\n```\n```text\ny\n```\n");
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].lang.as_str(), b[0].section.as_str()), ("sh", "Two"));
    assert_eq!(b[1].text, "y\n");
}
