//! A real Panicle server on loopback (SQLite) for Sentry SDKs to report to,
//! and reads of what it stored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use panicle_server::{AppState, ServerConfig};
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::Value;

pub struct Running {
    pub base: String,
    /// The project's DSN, Sentry's shape: `http://<key>@host:port/<id>`.
    pub dsn: String,
    token: String,
    _db: TestDb,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub async fn start() -> Running {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let project = store.create_project("shop").await.unwrap();
    let token = store.create_token("test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store, ServerConfig::default()).unwrap();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        dsn: format!("http://{}@{addr}/{}", project.ingest_key, project.id),
        token,
        _db: db,
        _shutdown: tx,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

impl Running {
    /// The stored event (read API view, with the schema-v1 event in `event`).
    pub async fn event(&self, id: &str) -> Value {
        let url = format!("{}/api/v1/events/{id}", self.base);
        let token = self.token.clone();
        tokio::task::spawn_blocking(move || {
            let mut resp = agent()
                .get(&url)
                .header("Authorization", format!("Bearer {token}"))
                .call()
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            assert_eq!(status, 200, "event {url}: {body}");
            body
        })
        .await
        .unwrap()
    }

    #[allow(dead_code)] // not every SDK's test reads it
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        tokio::task::spawn_blocking(move || {
            agent()
                .get(&url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

/// This crate's directory: the SDK scripts live beside the tests.
#[allow(dead_code)] // not every SDK's test runs a script
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs an SDK script and returns the JSON line it printed last. Fails
/// with what to install when the program is missing: `.ci/run` installs
/// the SDKs, so a missing one is a broken setup, never a skip.
#[allow(dead_code)]
pub async fn run_script(program: PathBuf, args: Vec<String>, install_hint: &'static str) -> Value {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&program)
            .args(&args)
            .current_dir(crate_dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}. {install_hint}", program.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {stderr}\n{stdout}\n{install_hint}",
            program.display(),
            out.status
        );
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "{} printed no JSON line: {stdout}\n{stderr}",
                    program.display()
                )
            });
        serde_json::from_str(line).unwrap()
    })
    .await
    .unwrap()
}

/// The `function` of each stored frame, innermost first.
pub fn functions(event: &Value) -> Vec<String> {
    event["event"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The Sentry event id as the read API stores it (hyphenated).
pub fn hyphenated(id: &str) -> String {
    let id = id.replace('-', "");
    assert_eq!(id.len(), 32, "an event id: {id}");
    format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    )
}

/// The 1-based line of `path` that holds `marker` (the raise site).
#[allow(dead_code)] // not every SDK's test reads a script
pub fn line_of(path: &std::path::Path, marker: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("no `{marker}` in {}", path.display()))
}
