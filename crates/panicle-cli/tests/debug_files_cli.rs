//! `panicle debug-files upload|list|remove`, run as the real binary: direct
//! (the database and directory, on SQLite and PostgreSQL) and remote (HTTP
//! to a real `panicle serve`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use panicle_store::Backend;
use panicle_store::testing::TestDb;

/// Runs `panicle ARGS` in `cwd` with only the given environment of ours.
fn cli(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(common::PANICLE);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("PANICLE_URL")
        .env_remove("PANICLE_TOKEN")
        .env_remove("PANICLE_DEBUG_FILES_DIR")
        .env("PANICLE_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Files {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    debug: PathBuf,
    not_elf: PathBuf,
    build_id: String,
}

/// This test binary, its `--only-keep-debug` file and a text file.
fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("app");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let debug = dir.path().join("app.debug");
    let status = Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&exe)
        .arg(&debug)
        .status()
        .expect("binutils (objcopy) are installed");
    assert!(status.success());
    let not_elf = dir.path().join("notes.txt");
    std::fs::write(&not_elf, "not a binary\n").unwrap();
    let build_id = panicle_debuginfo::build_id_of(&exe).unwrap();
    Files {
        _dir: dir,
        exe,
        debug,
        not_elf,
        build_id,
    }
}

fn stored_path(dir: &Path, build_id: &str) -> PathBuf {
    dir.join(&build_id[..2])
        .join(format!("{}.debug", &build_id[2..]))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Direct mode on `db`: upload, dedup, a refused file, list, remove. The
/// directory is the default (`default_dir`) unless given.
fn direct_mode(db: &TestDb, cwd: &Path, default_dir: &Path) {
    let f = files();
    let env = [("DATABASE_URL", db.url.as_str())];
    let (code, stdout, stderr) = cli(
        cwd,
        &env,
        &[
            "debug-files",
            "upload",
            s(&f.exe),
            s(&f.debug),
            s(&f.not_elf),
        ],
    );
    // One file refused: a non-zero exit, the others stored or deduplicated.
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains(&f.build_id)
            && lines[0].contains("executable")
            && lines[0].ends_with(" stored"),
        "{stdout}"
    );
    assert!(
        lines[1].contains(&f.build_id) && lines[1].ends_with("already stored"),
        "{stdout}"
    );
    assert!(
        stderr.contains("notes.txt: error: not an ELF file"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 3 files were not stored"), "{stderr}");
    let path = stored_path(default_dir, &f.build_id);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&f.exe).unwrap()
    );

    let (code, stdout, stderr) = cli(cwd, &env, &["debug-files", "list"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("BUILD ID"), "{stdout}");
    let cols: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(cols[0], f.build_id);
    assert_eq!(cols[1], "executable");
    assert_eq!(cols[3], "yes");
    assert_eq!(cols[6], "app");

    let (code, stdout, stderr) = cli(cwd, &env, &["debug-files", "remove", &f.build_id]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("removed"), "{stdout}");
    assert!(!path.exists());
    let (_, stdout, _) = cli(cwd, &env, &["debug-files", "list"]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (code, _, stderr) = cli(cwd, &env, &["debug-files", "remove", &f.build_id]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no debug file with build-id"), "{stderr}");
}

#[test]
fn direct_mode_on_sqlite_keeps_files_beside_the_database() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    // The database `serve` makes on its first start.
    rt.block_on(db.store());
    let db_file = PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let cwd = tempfile::tempdir().unwrap();
    direct_mode(
        &db,
        cwd.path(),
        &db_file.parent().unwrap().join("debug-files"),
    );
}

#[test]
fn direct_mode_on_postgres_defaults_to_the_working_directory() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    rt.block_on(db.store());
    let cwd = tempfile::tempdir().unwrap();
    direct_mode(&db, cwd.path(), &cwd.path().join("panicle-debug-files"));
}

#[test]
fn direct_mode_never_creates_a_database() {
    let cwd = tempfile::tempdir().unwrap();
    let f = files();
    let url = format!("sqlite://{}", cwd.path().join("none/panicle.db").display());
    let (code, _, stderr) = cli(
        cwd.path(),
        &[("DATABASE_URL", url.as_str())],
        &["debug-files", "upload", s(&f.exe)],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!cwd.path().join("none").exists());
}

#[test]
fn remote_mode_uploads_lists_and_removes_through_the_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let dir = tempfile::tempdir().unwrap();
    let debug_dir = dir.path().join("shared-volume");
    let server = Server::start_with(&db.url, &[("PANICLE_DEBUG_FILES_DIR", s(&debug_dir))]);
    let f = files();
    let cwd = tempfile::tempdir().unwrap();
    let env = [
        ("PANICLE_URL", server.base.as_str()),
        ("PANICLE_TOKEN", server.token.as_str()),
    ];

    // Refused here, not sent: the server never sees a text file.
    let (code, stdout, stderr) = cli(
        cwd.path(),
        &env,
        &[
            "debug-files",
            "upload",
            s(&f.debug),
            s(&f.not_elf),
            s(&f.exe),
        ],
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains(&f.build_id)
            && lines[0].contains(" debug ")
            && lines[0].ends_with(" stored"),
        "{stdout}"
    );
    assert!(lines[1].ends_with("already stored"), "{stdout}");
    assert!(
        stderr.contains("notes.txt: error: not an ELF file"),
        "{stderr}"
    );
    let path = stored_path(&debug_dir, &f.build_id);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&f.debug).unwrap()
    );
    // Nothing in the working directory: remote mode opens no database.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);

    let (code, stdout, stderr) = cli(cwd.path(), &env, &["debug-files", "list"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&f.build_id) && l.contains("\tdebug\t")),
        "{stdout}"
    );

    // A wrong token: the server's reason, before the file is sent.
    let (code, _, stderr) = cli(
        cwd.path(),
        &[("PANICLE_URL", server.base.as_str())],
        &["debug-files", "upload", "--token", "pnk_wrong", s(&f.exe)],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("401 invalid_token"), "{stderr}");

    let (code, stdout, stderr) = cli(cwd.path(), &env, &["debug-files", "remove", &f.build_id]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("removed"), "{stdout}");
    assert!(!path.exists());
    let (code, _, stderr) = cli(cwd.path(), &env, &["debug-files", "remove", &f.build_id]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no debug file with build-id"), "{stderr}");
    let (_, stdout, _) = cli(cwd.path(), &env, &["debug-files", "list"]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    let (code, _, stderr) = cli(cwd.path(), &env, &["debug-files", "remove", "../etc"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a build-id"), "{stderr}");

    // --url without a token says what is missing.
    let (code, _, stderr) = cli(
        cwd.path(),
        &[("PANICLE_URL", server.base.as_str())],
        &["debug-files", "list"],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--url needs --token"), "{stderr}");
}
