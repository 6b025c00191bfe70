//! Runs the real `panicle` binary and example programs as child processes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PANICLE: &str = env!("CARGO_BIN_EXE_panicle");

/// A `panicle serve` child, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub dsn: String,
    pub token: String,
    /// PANICLE_HOME of the child: `serve` records its database in the
    /// config file there, never in the home of whoever runs the tests.
    pub home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `panicle serve` on a free port over `database_url`; reads the
    /// first-start lines (DSN, token) it prints.
    pub fn start(database_url: &str) -> Server {
        Self::start_with(database_url, &[])
    }

    pub fn start_with(database_url: &str, extra: &[(&str, &str)]) -> Server {
        Self::start_until(database_url, &[], extra, "panicle listening on ").0
    }

    /// Starts `panicle serve` with extra arguments and reads its output up
    /// to the line starting with `until` (after the address line); returns
    /// the lines read.
    pub fn start_until(
        database_url: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        until: &str,
    ) -> (Server, Vec<String>) {
        let home = tempfile::tempdir().expect("a PANICLE_HOME");
        let mut cmd = Command::new(PANICLE);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .args(args)
        .env_remove("DATABASE_URL")
        .env("PANICLE_HOME", home.path())
        .env("PANICLE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn panicle serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut dsn, mut token, mut base) = (String::new(), String::new(), String::new());
        let mut read = Vec::new();
        let mut reached = false;
        for line in lines.by_ref() {
            let line = line.expect("read serve output");
            read.push(line.clone());
            if let Some(v) = line.trim().strip_prefix("DSN:") {
                dsn = v.trim().to_string();
            } else if let Some(v) = line.trim().strip_prefix("API token:") {
                token = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("panicle listening on ") {
                base = v.trim().to_string();
            }
            if !base.is_empty() && line.starts_with(until) {
                reached = true;
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        // Built first: a failed check below still kills the child.
        let server = Server {
            child,
            base,
            dsn,
            token,
            home,
        };
        assert!(!server.base.is_empty(), "serve did not report its address");
        assert!(
            reached,
            "serve stopped before printing {until:?}: {read:#?}"
        );
        (server, read)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut resp = agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .expect("GET");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str) -> (u16, Value) {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut resp = agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send(&b""[..])
            .expect("POST");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Polls `path` until `ready` holds on the JSON body, up to 20 s.
    pub fn wait_for(&self, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(path);
            if status == 200 && ready(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Path of an example binary of the `panicle` crate, built if missing.
pub fn example(name: &str) -> PathBuf {
    let bin_dir = PathBuf::from(PANICLE)
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = bin_dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "panicle", "--example", name])
            .status()
            .expect("run cargo build for the example");
        assert!(status.success(), "building example {name} failed");
    }
    path
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// An epoch-millisecond time as the events' RFC 3339 `timestamp`.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .expect("a time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}
