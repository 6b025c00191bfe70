//! `panicle project update` sets a project's limits; the real `panicle serve`
//! enforces them (429 + Retry-After) next to the server-wide defaults.

mod common;

use std::process::Command;

use common::Server;
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

fn cli(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
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
}

/// Posts `n` events; (status, Retry-After, body).
fn post(base: &str, key: &str, n: usize) -> (u16, Option<String>, Value) {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "event_id": uuid(),
                "timestamp": "2026-12-02T10:00:00Z",
                "message": format!("boom {i}"),
            })
        })
        .collect();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut resp = agent
        .post(&format!("{base}/api/v1/events"))
        .header("X-Panicle-Key", key)
        .send_json(&events)
        .unwrap();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.body_mut().read_json().unwrap_or(Value::Null);
    (resp.status().as_u16(), retry_after, body)
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn project_update_sets_limits_that_serve_enforces() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    // The database `serve` makes on its first start.
    rt.block_on(db.store());
    let (code, stdout, _) = cli(&db, &["project", "create", "shop"]);
    assert_eq!(code, Some(0));
    let dsn: panicle_protocol::Dsn = stdout.trim().parse().unwrap();
    let (code, stdout, stderr) = cli(&db, &["project", "create", "other"]);
    assert_eq!(code, Some(0), "{stderr}");
    let other: panicle_protocol::Dsn = stdout.trim().parse().unwrap();

    let (code, stdout, stderr) = cli(
        &db,
        &[
            "project",
            "update",
            "shop",
            "--rate",
            "1",
            "--burst",
            "3",
            "--daily-quota",
            "none",
            "--retention-days",
            "30",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "shop: rate 1 burst 3 daily-quota none monthly-quota default retention-days 30"
    );
    let (code, stdout, _) = cli(
        &db,
        &["project", "update", "shop", "--retention-days", "default"],
    );
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("rate 1 burst 3") && stdout.contains("retention-days default"),
        "{stdout}"
    );
    let (code, _, stderr) = cli(&db, &["project", "update", "shop", "--rate", "fast"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not a number"), "{stderr}");
    let (code, _, stderr) = cli(&db, &["project", "update", "nope", "--rate", "5"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no project named `nope`"), "{stderr}");

    // The server's defaults: 100 events a day for projects that set none.
    let server = Server::start_with(&db.url, &[("PANICLE_DAILY_QUOTA", "100")]);
    let (status, _, body) = post(&server.base, &dsn.key, 3);
    assert_eq!(status, 202, "{body}");
    let (status, retry_after, body) = post(&server.base, &dsn.key, 1);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(retry_after.as_deref(), Some("1"));

    // `other` has the server's daily quota of 100: 101 do not fit.
    let (status, retry_after, body) = post(&server.base, &other.key, 101);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{body}"
    );
    assert!(retry_after.is_some());
    let (status, _, body) = post(&server.base, &other.key, 100);
    assert_eq!(status, 202, "{body}");
}
