//! The parts of the shop tests: a real Panicle server in-process (SQLite, its
//! read API over HTTP with an admin token), shop processes ("pods") started,
//! stopped with SIGINT (so they flush) and killed on drop, and the shop built
//! as an app outside this workspace with panicle as a path dependency.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use panicle_server::{AppState, ServerConfig};
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::Value;

/// One HTTP exchange's outcome: status and body text.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// `GET url` with optional headers; panics naming the URL when the
/// exchange itself fails (connection refused, timeout).
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = agent().get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut resp = req
        .call()
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    Answer {
        status: resp.status().as_u16(),
        text: resp.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// A Panicle server on 127.0.0.1:0 over a SQLite database of its own, on a
/// runtime of its own so the test thread can make blocking calls.
pub struct PanicleServer {
    pub base: String,
    pub dsn: String,
    admin: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _db: TestDb,
    runtime: tokio::runtime::Runtime,
}

impl PanicleServer {
    pub fn start() -> PanicleServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let (db, project, admin, addr, shutdown) = runtime.block_on(async {
            let db = TestDb::new(Backend::Sqlite).await;
            let store = db.store().await;
            let project = store.create_project("shop").await.expect("project");
            let admin = store.create_token("shop tests").await.expect("token");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr: SocketAddr = listener.local_addr().expect("local addr");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let state = AppState::new(store, ServerConfig::default()).expect("app state");
            tokio::spawn(panicle_server::serve(listener, state, async move {
                let _ = rx.await;
            }));
            (db, project, admin, addr, tx)
        });
        PanicleServer {
            base: format!("http://{addr}"),
            dsn: format!("http://{}@{}/{}", project.ingest_key, addr, project.id),
            admin,
            _shutdown: shutdown,
            _db: db,
            runtime,
        }
    }

    /// `GET` on the read API as the admin.
    pub fn get(&self, path: &str) -> Answer {
        let auth = format!("Bearer {}", self.admin);
        http_get(
            &format!("{}{path}", self.base),
            &[("Authorization", auth.as_str())],
        )
    }

    /// `GET` that must answer 200 with JSON.
    pub fn get_ok(&self, path: &str) -> Value {
        let answer = self.get(path);
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.text);
        answer.json()
    }

    /// Runs the clustering job now, as an admin would.
    pub fn recompute_clusters(&self) -> Value {
        let url = format!("{}/api/v1/clusters/recompute", self.base);
        let mut resp = agent()
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.admin))
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(resp.status().as_u16(), 200, "recompute: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Every stored event's summary (`GET /api/v1/events`), all pages.
    pub fn event_summaries(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/events?limit=500&cursor={c}"),
                None => "/api/v1/events?limit=500".to_string(),
            };
            let page = self.get_ok(&path);
            out.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return out,
            }
        }
    }

    /// Waits (bounded) until the stored events stand for at least `panics`
    /// panics (a storm aggregate stands for its `count`); returns their
    /// summaries whatever the count reached.
    pub fn wait_for_panics(&self, panics: i64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.event_summaries();
            let stored: i64 = events
                .iter()
                .map(|e| e["count"].as_i64().unwrap_or(1))
                .sum();
            if stored >= panics || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /api/v1/events/{id}`.
    pub fn event(&self, id: &str) -> Answer {
        self.get(&format!("/api/v1/events/{id}"))
    }

    /// Detail of every cluster after a clustering run.
    pub fn clusters(&self) -> Vec<Value> {
        self.recompute_clusters();
        let list = self.get_ok("/api/v1/clusters?limit=100");
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let id = c["id"].as_str().expect("cluster id");
                self.get_ok(&format!("/api/v1/clusters/{id}"))
            })
            .collect()
    }
}

/// A running shop process: its address, its directory (spool, stderr);
/// killed on drop if still running.
pub struct Pod {
    pub name: String,
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Pod {
    /// Starts `bin` as pod `name` of `release`, sending to `dsn`, and waits
    /// (bounded) for its `listening on http://…` line.
    pub fn start(bin: &Path, dsn: &str, name: &str, release: &str) -> Pod {
        let dir = tempfile::tempdir().expect("pod dir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
        let mut child = Command::new(bin)
            .env("PANICLE_DSN", dsn)
            .env("POD_NAME", name)
            .env("PANICLE_RELEASE", release)
            .env("SHOP_LISTEN", "127.0.0.1:0")
            .env("PANICLE_SPOOL_DIR", dir.path().join("spool"))
            .env_remove("PANICLE_ENVIRONMENT")
            .env_remove("PANICLE_IN_APP_INCLUDE")
            .env_remove("PANICLE_IN_APP_EXCLUDE")
            .env_remove("PANICLE_SERVICE_VERSION")
            .env_remove("OTEL_SERVICE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the address, then drains stdout so the pod never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut pod = Pod {
            name: name.to_string(),
            addr: String::new(),
            child,
            dir,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => pod.addr = addr,
            Err(_) => panic!(
                "pod {name} ({}) printed no `listening on` line within 60 s; stderr:\n{}",
                bin.display(),
                pod.stderr()
            ),
        }
        pod
    }

    /// `GET path` on this pod with `x-request-id: request_id`.
    pub fn get(&self, path: &str, request_id: &str) -> Answer {
        http_get(
            &format!("http://{}{path}", self.addr),
            &[("x-request-id", request_id)],
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGINT: graceful shutdown, then the panicle guard's drop flushes.
    /// Waits (bounded) for the process to exit cleanly.
    pub fn stop(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the PID of a child this Pod started and has
        // not reaped yet, so the PID cannot belong to another process.
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0, "SIGINT to pod {}", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "pod {} exited with {status}; stderr:\n{}",
                        self.name,
                        self.stderr()
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => panic!(
                    "pod {} still runs 30 s after SIGINT; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
                Err(e) => panic!("waiting for pod {}: {e}", self.name),
            }
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The shop built as a member of this workspace (debug profile).
pub fn workspace_shop() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shop"))
}

/// The repository's root (examples/shop/../..).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The target directory this test binary was built into
/// (`<target>/debug/deps/shop-…` → `<target>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no target dir above {}", exe.display()))
}

/// Writes `contents` unless the file already holds them, so a rebuild
/// sees unchanged sources unchanged (and a concurrent build reads whole files).
fn write_if_changed(path: &Path, contents: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return;
    }
    // Per process: two test runs may refresh the same copy at once.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
    {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            write_if_changed(&dest, &bytes);
        }
    }
}

/// The shop's manifest as an app of its own: panicle by absolute path, no
/// dev-dependencies (they are this workspace's test tools), a workspace of
/// its own, and the hard case for symbolization: release, frames inlined,
/// line tables only.
fn standalone_manifest(original: &str, panicle: &Path) -> String {
    const RELATIVE: &str = "path = \"../../crates/panicle\"";
    assert!(
        original.contains(RELATIVE),
        "examples/shop/Cargo.toml no longer names panicle by `{RELATIVE}`"
    );
    assert!(
        !original.contains("[workspace]") && !original.contains("[profile"),
        "examples/shop/Cargo.toml has a [workspace] or [profile] table the standalone copy would duplicate"
    );
    let absolute = format!("path = {:?}", panicle.display().to_string());
    let mut out = String::new();
    let mut in_dev_dependencies = false;
    for line in original.replace(RELATIVE, &absolute).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_dev_dependencies = trimmed == "[dev-dependencies]";
        }
        if !in_dev_dependencies {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n[workspace]\n\n[profile.release]\ndebug = \"line-tables-only\"\n");
    out
}

/// Builds the shop as an app outside this workspace (`cargo build
/// --release` in `<target>/shop-standalone/app`, its own target dir so it
/// never waits on this build's lock) and returns its binary. The directory
/// persists, so later runs only rebuild what changed.
pub fn standalone_shop() -> PathBuf {
    let root = repo_root();
    let base = target_dir().join("shop-standalone");
    let app = base.join("app");
    let target = base.join("target");
    std::fs::create_dir_all(&app).unwrap_or_else(|e| panic!("mkdir {}: {e}", app.display()));
    let shop = root.join("examples/shop");
    let manifest = std::fs::read_to_string(shop.join("Cargo.toml")).expect("shop manifest");
    write_if_changed(
        &app.join("Cargo.toml"),
        standalone_manifest(&manifest, &root.join("crates/panicle")).as_bytes(),
    );
    copy_tree(&shop.join("src"), &app.join("src"));
    let lock = std::fs::read(root.join("Cargo.lock")).expect("Cargo.lock");
    write_if_changed(&app.join("Cargo.lock"), &lock);

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let log_path = base.join("build.log");
    let log = std::fs::File::create(&log_path).expect("build log");
    let started = Instant::now();
    let mut build = Command::new(&cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(app.join("Cargo.toml"))
        .current_dir(&app)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
    let limit = Duration::from_secs(45 * 60);
    let status = loop {
        match build.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(200)),
            Ok(None) => {
                let _ = build.kill();
                let _ = build.wait();
                panic!(
                    "the standalone shop build took over {limit:?}; killed. Log: {}",
                    log_path.display()
                );
            }
            Err(e) => panic!("waiting for the standalone build: {e}"),
        }
    };
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "the standalone shop build ({} in {}) failed with {status}:\n{}",
        "cargo build --release",
        app.display(),
        tail(&log_text, 60)
    );
    eprintln!(
        "standalone shop (release, line-tables-only, panicle as a path dependency): built in {:.1} s in {}",
        started.elapsed().as_secs_f64(),
        target.display()
    );
    let bin = target.join("release").join("shop");
    assert!(
        bin.is_file(),
        "no binary at {} after the build",
        bin.display()
    );
    bin
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
