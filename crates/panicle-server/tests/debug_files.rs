//! Debug-file uploads over real HTTP on loopback, on SQLite and PostgreSQL:
//! a real ELF (this test binary) and its `--only-keep-debug` file are
//! stored under their build-id, deduplicated, listed and removed; bad
//! uploads are refused with their code and leave nothing behind (no file,
//! no temporary file, no row); the size limit is applied before the body
//! is read; a slow upload is not cut by the request timeouts, a stalled
//! one is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Store, TokenScope};
use serde_json::Value;

struct Running {
    addr: SocketAddr,
    base: String,
    store: Store,
    admin: String,
    /// A token of one project: may upload and list, not remove.
    project_token: String,
    dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn debug_dir(&self) -> PathBuf {
        self.dir.path().join("debug-files")
    }
}

async fn start(db: &TestDb, config: ServerConfig) -> Running {
    let store = db.store().await;
    let project = store.create_project("shop").await.unwrap();
    let admin = store.create_token("admin").await.unwrap();
    let scoped = store
        .create_token_with_scope("shop only", &TokenScope::Projects([project.id].into()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        debug_files_dir: dir.path().join("debug-files"),
        ..config
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone(), config).unwrap();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        base: format!("http://{addr}"),
        store,
        admin,
        project_token: scoped.token,
        dir,
        _shutdown: tx,
    }
}

/// The files every test uploads, made once: this binary and what binutils
/// make of it.
struct Fixtures {
    exe: PathBuf,
    /// `objcopy --only-keep-debug`: DWARF, no code.
    debug: PathBuf,
    /// `strip --strip-debug`: symbols, no DWARF.
    symbols_only: PathBuf,
    /// `objcopy --remove-section .note.gnu.build-id`.
    no_build_id: PathBuf,
    /// `strip --strip-all`.
    stripped: PathBuf,
    /// The first half of the binary.
    truncated: PathBuf,
    not_elf: PathBuf,
    build_id: String,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let exe = dir.join("app");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        let run = |args: &[&str]| {
            let status = Command::new(args[0])
                .args(&args[1..])
                .status()
                .expect("binutils (objcopy, strip) are installed");
            assert!(status.success(), "{args:?}");
        };
        let path = |name: &str| dir.join(name);
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let (debug, symbols_only, no_build_id, stripped, truncated, not_elf) = (
            path("app.debug"),
            path("app-symbols"),
            path("app-no-id"),
            path("app-stripped"),
            path("app-truncated"),
            path("notes.txt"),
        );
        run(&["objcopy", "--only-keep-debug", &s(&exe), &s(&debug)]);
        run(&["strip", "--strip-debug", "-o", &s(&symbols_only), &s(&exe)]);
        run(&[
            "objcopy",
            "--remove-section",
            ".note.gnu.build-id",
            &s(&exe),
            &s(&no_build_id),
        ]);
        run(&["strip", "--strip-all", "-o", &s(&stripped), &s(&exe)]);
        let whole = std::fs::read(&exe).unwrap();
        std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
        std::fs::write(&not_elf, b"#!/bin/sh\necho not a binary\n").unwrap();
        let build_id =
            panicle_debuginfo::build_id_of(&exe).expect("the test binary has a build-id");
        Fixtures {
            exe,
            debug,
            symbols_only,
            no_build_id,
            stripped,
            truncated,
            not_elf,
            build_id,
        }
    })
}

/// Awaits every future at once (each runs its blocking request on its own
/// thread).
async fn futures_join_all<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

/// Uploads the file at `path`; (status, body).
fn upload(
    s: &Running,
    path: &Path,
    token: &str,
) -> impl std::future::Future<Output = (u16, Value)> + Send + 'static {
    let url = format!("{}/api/v1/debug-files", s.base);
    let token = token.to_string();
    let path = path.to_path_buf();
    let blocking = tokio::task::spawn_blocking(move || {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let file = std::fs::File::open(&path).unwrap();
        let mut resp = agent()
            .post(&url)
            .query("name", &name)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/octet-stream")
            // A refusal (401, 413) comes before the body is sent.
            .header("Expect", "100-continue")
            .send(&file)
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    });
    async move { blocking.await.unwrap() }
}

async fn call(method: &'static str, url: String, token: &str) -> (u16, Value) {
    let token = token.to_string();
    tokio::task::spawn_blocking(move || {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let mut resp = agent().run(req).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

async fn list(s: &Running) -> Vec<Value> {
    let (status, body) = call("GET", format!("{}/api/v1/debug-files", s.base), &s.admin).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Every file under `dir`, recursively (directories themselves do not count).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn stored_path(s: &Running, build_id: &str) -> PathBuf {
    s.debug_dir()
        .join(&build_id[..2])
        .join(format!("{}.debug", &build_id[2..]))
}

/// Nothing of a refused upload stays: no file, no temporary file, no row.
async fn assert_nothing_stored(s: &Running) {
    assert_eq!(files_under(&s.debug_dir()), Vec::<PathBuf>::new());
    assert_eq!(list(s).await, Vec::<Value>::new());
}

/// Sends raw bytes on one connection and reads the answer (until the
/// server closes, or the head and a JSON body have come).
fn raw_exchange(addr: SocketAddr, parts: &[(&[u8], Duration)]) -> (u16, Value, Duration) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    for (bytes, pause) in parts {
        // The server may have answered and closed already: that is the point.
        if stream.write_all(bytes).is_err() {
            break;
        }
        std::thread::sleep(*pause);
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some((_, body)) = text.split_once("\r\n\r\n")
                    && serde_json::from_str::<Value>(body.trim()).is_ok()
                {
                    break;
                }
            }
            Err(e) => panic!(
                "no answer: {e} (got {:?})",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
        .unwrap_or(Value::Null);
    (status, body, elapsed)
}

fn upload_head(addr: SocketAddr, token: &str, length: &str) -> String {
    format!(
        "POST /api/v1/debug-files?name=app HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n{length}\r\n"
    )
}

panicle_store::backend_tests! {
    async fn an_executable_and_its_debug_file_are_stored_once_listed_and_removed(db: &TestDb) {
        let f = fixtures();
        let s = start(db, ServerConfig::default()).await;

        // No token: nothing is read.
        let (status, body) = upload(&s, &f.exe, "").await;
        assert_eq!(status, 401, "{body}");

        // The executable, by a project's token.
        let (status, body) = upload(&s, &f.exe, &s.project_token).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "stored");
        assert_eq!(body["build_id"], f.build_id.as_str());
        assert_eq!(body["name"], "app");
        assert_eq!(body["kind"], "executable");
        assert_eq!(body["has_dwarf"], true);
        assert_eq!(body["has_symbols"], true);
        let size = std::fs::metadata(&f.exe).unwrap().len();
        assert_eq!(body["size_bytes"], size);
        assert_eq!(body["arch"], std::env::consts::ARCH);
        // At exactly the path the symbolicator reads, byte for byte.
        let path = stored_path(&s, &f.build_id);
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&f.exe).unwrap());
        assert_eq!(files_under(&s.debug_dir()), vec![path.clone()]);

        // Again, and its --only-keep-debug file (same build-id, DWARF too):
        // already stored, the first one kept.
        let (status, again) = upload(&s, &f.exe, &s.admin).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["status"], "exists");
        let (status, debug) = upload(&s, &f.debug, &s.admin).await;
        assert_eq!(status, 200, "{debug}");
        assert_eq!(debug["status"], "exists");
        assert_eq!(debug["kind"], "executable");
        assert_eq!(debug["uploaded_at"], body["uploaded_at"]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        assert_eq!(files_under(&s.debug_dir()), vec![path.clone()]);

        let items = list(&s).await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["build_id"], f.build_id.as_str());
        assert_eq!(items[0]["kind"], "executable");
        // A project's token lists too.
        let (status, _) = call("GET", format!("{}/api/v1/debug-files", s.base), &s.project_token).await;
        assert_eq!(status, 200);

        // Removal is for admins; then file and row are gone.
        let url = format!("{}/api/v1/debug-files/{}", s.base, f.build_id);
        let (status, body) = call("DELETE", url.clone(), &s.project_token).await;
        assert_eq!(status, 403, "{body}");
        assert!(path.is_file());
        let (status, body) = call("DELETE", url.clone(), &s.admin).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["deleted"], true);
        assert!(!path.exists());
        assert_nothing_stored(&s).await;
        let files = panicle_store::DebugFiles::new(s.store.clone(), s.debug_dir());
        assert_eq!(files.get(&f.build_id).await.unwrap(), None);
        let (status, body) = call("DELETE", url, &s.admin).await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = call("DELETE", format!("{}/api/v1/debug-files/..%2Fetc", s.base), &s.admin).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");

        // The debug file alone is stored as `debug`.
        let (status, body) = upload(&s, &f.debug, &s.admin).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["kind"], "debug");
        assert_eq!(body["has_dwarf"], true);
        assert_eq!(body["build_id"], f.build_id.as_str());
        assert_eq!(std::fs::read(stored_path(&s, &f.build_id)).unwrap(), std::fs::read(&f.debug).unwrap());
    }

    async fn dwarf_replaces_a_file_with_symbols_only_and_not_the_reverse(db: &TestDb) {
        let f = fixtures();
        let s = start(db, ServerConfig::default()).await;
        let (status, body) = upload(&s, &f.symbols_only, &s.admin).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "stored");
        assert_eq!(body["has_dwarf"], false);
        assert_eq!(body["has_symbols"], true);

        let (status, body) = upload(&s, &f.debug, &s.admin).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "replaced");
        assert_eq!(body["kind"], "debug");
        assert_eq!(body["has_dwarf"], true);
        let path = stored_path(&s, &f.build_id);
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&f.debug).unwrap());

        // Less debug info does not replace more.
        let (status, body) = upload(&s, &f.symbols_only, &s.admin).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "exists");
        assert_eq!(body["has_dwarf"], true);
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&f.debug).unwrap());
        let items = list(&s).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["kind"], "debug");
        assert_eq!(files_under(&s.debug_dir()), vec![path.clone()]);

        // A row whose file went missing takes the next upload, whatever it holds.
        std::fs::remove_file(&path).unwrap();
        let (status, body) = upload(&s, &f.symbols_only, &s.admin).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["has_dwarf"], false);
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&f.symbols_only).unwrap());
        assert_eq!(list(&s).await[0]["has_dwarf"], false);
    }

    async fn concurrent_uploads_of_one_build_id_agree_on_the_file_with_dwarf(db: &TestDb) {
        let f = fixtures();
        let s = start(db, ServerConfig::default()).await;
        let mut uploads = Vec::new();
        for i in 0..6 {
            let file = if i % 2 == 0 { &f.symbols_only } else { &f.debug };
            uploads.push(upload(&s, file, &s.admin));
        }
        let answers = futures_join_all(uploads).await;
        for (status, body) in &answers {
            assert!(*status == 201 || *status == 200, "{body}");
        }
        let stored = answers.iter().filter(|(_, b)| b["status"] == "stored").count();
        assert_eq!(stored, 1, "{answers:?}");
        // Whatever the order, the DWARF file is the one kept, row and file alike.
        let items = list(&s).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["has_dwarf"], true, "{items:?}");
        assert_eq!(items[0]["kind"], "debug");
        let path = stored_path(&s, &f.build_id);
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&f.debug).unwrap());
        assert_eq!(files_under(&s.debug_dir()), vec![path]);
    }

    async fn bad_uploads_are_refused_with_their_code_and_leave_nothing(db: &TestDb) {
        let f = fixtures();
        let s = start(db, ServerConfig::default()).await;
        for (file, code) in [
            (&f.not_elf, "not_elf"),
            (&f.no_build_id, "no_build_id"),
            (&f.stripped, "no_debug_info"),
        ] {
            let (status, body) = upload(&s, file, &s.admin).await;
            assert_eq!(status, 422, "{}: {body}", file.display());
            assert_eq!(body["error"]["code"], code, "{}: {body}", file.display());
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
            assert_nothing_stored(&s).await;
        }
        // Cut in half. The section headers sit at the end of an ELF, so
        // `panicle_debuginfo::inspect_path` cannot parse the half and names
        // it `not_elf`; `truncated` is what it answers when the headers are
        // there but a debug section lies past the end.
        let (status, body) = upload(&s, &f.truncated, &s.admin).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]["code"] == "truncated" || body["error"]["code"] == "not_elf",
            "{body}"
        );
        assert_nothing_stored(&s).await;
        // An empty body.
        let empty = s.dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let (status, body) = upload(&s, &empty, &s.admin).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "not_elf");
        assert_nothing_stored(&s).await;
    }

    async fn a_declared_2_gib_upload_is_refused_before_its_body_is_read(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let head = upload_head(s.addr, &s.admin, "Content-Length: 2147483648\r\n");
        let addr = s.addr;
        // The head and a few bytes of the 2 GiB; the answer comes without the rest.
        let (status, body, elapsed) = tokio::task::spawn_blocking(move || {
            raw_exchange(addr, &[(head.as_bytes(), Duration::ZERO), (b"\x7fELF\x02\x01\x01", Duration::ZERO)])
        })
        .await
        .unwrap();
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"]["code"], "too_large");
        assert!(body["error"]["message"].as_str().unwrap().contains("1073741824"), "{body}");
        assert!(elapsed < Duration::from_secs(5), "answered after {elapsed:?}");
        assert_nothing_stored(&s).await;
        // The ingest limit (1 MiB) does not apply here: see the first test's
        // upload of a binary many times that size.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_the_limit_is_cut_and_refused() {
    let db = TestDb::new(panicle_store::Backend::Sqlite).await;
    let config = ServerConfig {
        max_debug_file_bytes: 64 * 1024,
        ..ServerConfig::default()
    };
    let s = start(&db, config).await;
    // Chunked: no length to judge by; the bytes themselves go over.
    let head = upload_head(s.addr, &s.admin, "Transfer-Encoding: chunked\r\n");
    let chunk = vec![b'x'; 16 * 1024];
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    let addr = s.addr;
    let (status, body, _) = tokio::task::spawn_blocking(move || {
        let mut parts: Vec<(&[u8], Duration)> = vec![(head.as_bytes(), Duration::ZERO)];
        for _ in 0..5 {
            parts.push((&framed, Duration::from_millis(20)));
        }
        raw_exchange(addr, &parts)
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    assert_nothing_stored(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlasts_the_request_timeouts_and_a_stalled_one_is_cut() {
    let db = TestDb::new(panicle_store::Backend::Sqlite).await;
    let f = fixtures();
    let config = ServerConfig {
        body_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let s = start(&db, config).await;
    let exe = std::fs::read(&f.exe).unwrap();
    let head = upload_head(
        s.addr,
        &s.admin,
        &format!("Content-Length: {}\r\n", exe.len()),
    );
    let addr = s.addr;
    // Twelve pieces 300 ms apart: 3.6 s in all, past both the body (1 s)
    // and the request (2 s) timeouts, never silent for 1 s.
    let (status, body, elapsed) = tokio::task::spawn_blocking(move || {
        let piece = exe.len().div_ceil(12);
        let mut parts: Vec<(&[u8], Duration)> = vec![(head.as_bytes(), Duration::ZERO)];
        for chunk in exe.chunks(piece) {
            parts.push((chunk, Duration::from_millis(300)));
        }
        raw_exchange(addr, &parts)
    })
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(elapsed > Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(body["build_id"], f.build_id.as_str());

    // A body that stops for longer than the body timeout: 408, nothing kept.
    let url = format!("{}/api/v1/debug-files/{}", s.base, f.build_id);
    assert_eq!(call("DELETE", url, &s.admin).await.0, 200);
    let head = upload_head(s.addr, &s.admin, "Content-Length: 1000000\r\n");
    let (status, body, _) = tokio::task::spawn_blocking(move || {
        raw_exchange(
            addr,
            &[
                (head.as_bytes(), Duration::ZERO),
                (&[0u8; 1000], Duration::ZERO),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_body_timeout");
    assert_nothing_stored(&s).await;

    // A client that goes away mid-body: its temporary file goes too.
    let head = upload_head(s.addr, &s.admin, "Content-Length: 1000000\r\n");
    {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&[0u8; 50_000]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !files_under(&s.debug_dir()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            files_under(&s.debug_dir())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_nothing_stored(&s).await;
}
