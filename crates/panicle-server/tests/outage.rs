//! A PostgreSQL outage: ingest and `/readyz` fail fast (503 + Retry-After
//! within the pool's 2 s, the probe within 1 s) and the server recovers by
//! itself when the database is back. The database is a cluster of this
//! test's own (initdb in a temp dir, its own port), never the shared one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use panicle_server::{AppState, ServerConfig};
use serde_json::{Value, json};

/// A PostgreSQL cluster in a temp dir, stopped on drop.
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries under /usr/lib/postgresql (Debian's postgresql package)",
        )
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OwnPostgres {
    fn init() -> OwnPostgres {
        let bin = pg_bin_dir();
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster dir to postgres");
        }
        let out = pg_command(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = OwnPostgres {
            bin,
            dir,
            port: free_port(),
        };
        pg.start();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `signal` to the whole cluster: the postmaster and its children
    /// (each backend runs in a session of its own, so no process group
    /// holds them all).
    /// Signals the postmaster and its children. Twice, 200 ms apart: a
    /// backend the postmaster forked for a connection while the first scan
    /// ran is not in it (one such backend served a whole "hung" insert).
    fn signal_all(&self, signal: &str) {
        self.signal_once(signal);
        std::thread::sleep(Duration::from_millis(200));
        self.signal_once(signal);
    }

    fn signal_once(&self, signal: &str) {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let Ok(text) = std::fs::read_to_string(pid_file) else {
            return;
        };
        let Some(postmaster) = text.lines().next().map(|p| p.trim().to_string()) else {
            return;
        };
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …: comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let _ = Command::new("kill").arg(signal).args(&pids).status();
    }

    fn stop(&self) {
        self.signal_all("-CONT");
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

/// (status, Retry-After, body) of a blocking request, off the runtime.
async fn send(
    method: &'static str,
    url: String,
    key: Option<String>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    tokio::task::spawn_blocking(move || {
        let resp = match (method, body) {
            ("POST", Some(b)) => {
                let mut req = agent().post(&url);
                if let Some(k) = key {
                    req = req.header("X-Panicle-Key", k);
                }
                req.send_json(b)
            }
            _ => agent().get(&url).call(),
        };
        let mut resp = resp.unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            resp.status().as_u16(),
            retry,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    })
    .await
    .unwrap()
}

fn event(message: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "message": message,
        "platform": "rust",
    })
}

/// Ingest and `/readyz` answer 503 quickly. The bounds are the issue's
/// contract (503 within ~2 s, the probe within 1 s), with slack for a loaded
/// 2-core machine.
async fn fails_fast(base: &str, key: &Option<String>, how: &str) {
    let t = Instant::now();
    let (status, retry, body) = send(
        "POST",
        format!("{base}/api/v1/events"),
        key.clone(),
        Some(event(how)),
    )
    .await;
    let ingest_took = t.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert!(retry.is_some(), "503 carries Retry-After");
    assert!(
        ingest_took < Duration::from_secs(5),
        "database {how}: ingest answered in {ingest_took:?}"
    );
    let t = Instant::now();
    let (status, _, _) = send("GET", format!("{base}/readyz"), None, None).await;
    let ready_took = t.elapsed();
    assert_eq!(status, 503);
    assert!(
        ready_took < Duration::from_secs(3),
        "database {how}: /readyz answered in {ready_took:?}"
    );
    eprintln!("database {how}: ingest 503 in {ingest_took:?}, /readyz 503 in {ready_took:?}");
}

/// `/readyz` turns 200 by itself once the database is back.
async fn recovers(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = send("GET", format!("{base}/readyz"), None, None).await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not recover after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_fast_and_the_server_recovers() {
    let pg = OwnPostgres::init();
    let store = panicle_store::Store::connect(&pg.url()).await.unwrap();
    let project = store.create_project("shop").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = AppState::new(store.clone(), ServerConfig::default()).unwrap();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    let ingest = format!("{base}/api/v1/events");
    let key = Some(project.ingest_key.clone());

    let (status, _, body) = send("POST", ingest.clone(), key.clone(), Some(event("before"))).await;
    assert_eq!(status, 202, "{body}");

    pg.stop();
    fails_fast(&base, &key, "down").await;
    // The process itself stays up.
    let (status, _, _) = send("GET", format!("{base}/healthz"), None, None).await;
    assert_eq!(status, 200);
    pg.start();
    recovers(&base).await;
    let (status, _, body) = send("POST", ingest.clone(), key.clone(), Some(event("after"))).await;
    assert_eq!(status, 202, "{body}");

    // A hung database (every process stopped, connections open): the same.
    pg.signal_all("-STOP");
    fails_fast(&base, &key, "hung").await;
    pg.signal_all("-CONT");
    recovers(&base).await;
    let page = store
        .list_events(&panicle_store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages: Vec<String> = page.items.into_iter().map(|e| e.message).collect();
    messages.sort();
    assert_eq!(messages, ["after", "before"]);
}
