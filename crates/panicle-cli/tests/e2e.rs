//! End to end: the demo service panics, the real `panicle serve` stores the
//! event, the read API returns it. Once on SQLite, once on PostgreSQL.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, example};
use panicle_store::Backend;
use panicle_store::testing::TestDb;

fn run_demo(server: &Server, spool: &Path, mode: &str) -> std::process::Output {
    Command::new(example("demo"))
        .arg(mode)
        .env("PANICLE_DSN", &server.dsn)
        .env("PANICLE_SPOOL_DIR", spool)
        .env("OTEL_SERVICE_NAME", "demo-shop")
        .env_remove("PANICLE_RELEASE")
        .output()
        .expect("run demo")
}

fn demo_panic_lands(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(backend));
    let server = Server::start(&db.url);
    assert!(
        server.dsn.starts_with("http://"),
        "first start prints a DSN"
    );
    // Its own spool: nothing left by another run can arrive here.
    let spool = tempfile::tempdir().unwrap();

    let out = run_demo(&server, spool.path(), "unwrap-none");
    assert_eq!(out.status.code(), Some(101), "a panic in main exits 101");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("panicked at"),
        "the previous hook still prints: {stderr}"
    );

    let list = server.wait_for("/api/v1/events", |b| {
        b["items"].as_array().is_some_and(|a| !a.is_empty())
    });
    let item = &list["items"][0];
    assert_eq!(
        item["message"],
        "called `Option::unwrap()` on a `None` value"
    );
    assert_eq!(item["service"], "demo-shop");
    assert_eq!(item["platform"], "rust");
    let id = item["event_id"].as_str().unwrap();
    let (status, full) = server.get(&format!("/api/v1/events/{id}"));
    assert_eq!(status, 200);
    let event = &full["event"];
    assert_eq!(event["location"]["file"], "crates/panicle/examples/demo.rs");
    assert!(event["location"]["line"].as_u64().unwrap() > 0);
    assert_eq!(event["thread"]["name"], "main");
    assert_eq!(
        event["release"], "panicle@0.1.0",
        "release_name!() of the demo's crate"
    );
    let top = &event["frames"][0];
    assert!(
        top["function"].as_str().unwrap().ends_with("reserve"),
        "frames[0] is the panicking user frame: {top}"
    );
    assert_eq!(top["in_app"], true);
    let file = top["file"].as_str().unwrap();
    assert!(
        file.ends_with("examples/demo.rs") && !file.starts_with('/'),
        "a readable relative path: {file}"
    );

    // A panic on a named spawned thread.
    let out = run_demo(&server, spool.path(), "thread");
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker-1"));
    let list = server.wait_for("/api/v1/events", |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 2)
    });
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let threads: Vec<String> = id
        .iter()
        .map(|i| {
            server.get(&format!("/api/v1/events/{i}")).1["event"]["thread"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(threads.contains(&"worker-1".to_string()), "{threads:?}");

    // The same bug reached through two call paths: two exact groups (merging
    // them is the cluster job's work), each with the panicking frame as culprit.
    let groups = server.wait_for("/api/v1/groups", |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 2)
    });
    for g in groups["items"].as_array().unwrap() {
        assert_eq!(g["count"], 1);
        assert!(g["culprit"].as_str().unwrap().ends_with("reserve"), "{g}");
        assert!(
            g["frames"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| !f.as_str().unwrap().starts_with("__libc")),
            "{g}"
        );
    }
}

#[test]
fn demo_panic_lands_on_sqlite() {
    demo_panic_lands(Backend::Sqlite);
}

#[test]
fn demo_panic_lands_on_postgres() {
    demo_panic_lands(Backend::Postgres);
}

#[test]
fn project_and_token_commands_print_one_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    // Before `serve` made the database, a command refuses and says where it looked.
    let out = Command::new(common::PANICLE)
        .args(["project", "list"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no database at /") && stderr.contains("--database-url"),
        "{stderr}"
    );
    let path = db.url.trim_start_matches("sqlite://");
    assert!(!std::path::Path::new(path).exists(), "nothing created");
    // What `serve` does first: the database with its schema.
    rt.block_on(db.store());
    let run = |args: &[&str]| {
        let out = Command::new(common::PANICLE)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("PANICLE_LISTEN", "127.0.0.1:9999")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&["project", "create", "shop"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 1);
    let dsn: panicle_protocol::Dsn = stdout.trim().parse().expect("a DSN");
    assert_eq!(dsn.host, "127.0.0.1:9999");
    let (code, _, stderr) = run(&["project", "create", "shop"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("already exists"), "{stderr}");
    let (code, stdout, _) = run(&["token", "create"]);
    assert_eq!(code, Some(0));
    assert!(stdout.trim().starts_with("pnk_") && stdout.lines().count() == 1);
    let admin_token = stdout.trim().to_string();
    let (code, stdout, stderr) = run(&["token", "create", "--project", "shop", "--label", "ci"]);
    assert_eq!(code, Some(0), "{stderr}");
    let scoped_token = stdout.trim().to_string();
    assert!(scoped_token.starts_with("pnk_") && stdout.lines().count() == 1);
    assert!(stderr.contains("projects:shop"), "{stderr}");
    let (code, _, stderr) = run(&["token", "create", "--project", "nope"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no project named `nope`"), "{stderr}");
    let (code, _, _) = run(&["token", "create", "--admin", "--project", "shop"]);
    assert_ne!(code, Some(0), "--admin and --project exclude each other");

    // List: id, scope, created, last used, label; never a secret.
    let (code, list, stderr) = run(&["token", "list"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !list.contains(&admin_token) && !list.contains(&scoped_token),
        "{list}"
    );
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{list}");
    let scoped_row = rows.iter().find(|r| r[4] == "ci").expect("the ci token");
    assert_eq!(scoped_row[1], "projects:shop");
    assert_eq!(scoped_row[3], "never");
    assert!(rows.iter().any(|r| r[1] == "admin"));

    // Revoke by id; an unknown id is an error.
    let (code, _, stderr) = run(&["token", "revoke", scoped_row[0]]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = run(&["token", "revoke", scoped_row[0]]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no token with id"), "{stderr}");
    let (_, list, _) = run(&["token", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    let (code, _, stderr) = run(&["serve", "--database-url", "mysql://x"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
}
