//! Ingest under load (issue 20): many clients post batches of 5.8 KB Rust
//! panic events to a real `panicle serve` as fast as it answers, with an
//! SDK's behaviour on a refusal (wait `Retry-After`, send again). Two
//! servers side by side, the same load, one setting apart (`OVERLOAD_COMPARE`):
//! - `bound` (default): without the in-flight byte bound
//!   (`--max-ingest-bytes 0`, the baseline) and with `OVERLOAD_BOUND`.
//! - `commit`: one transaction per request (`--ingest-writers 0`, the
//!   baseline) and group commit (`OVERLOAD_WRITERS` writers, default the
//!   server's, `OVERLOAD_WINDOW_MS` window, default 0); on PostgreSQL also
//!   the same rows stored by plain multi-row `INSERT`s, one transaction per
//!   batch from as many connections as clients (at most 16), as the floor
//!   of what any ingest path costs.
//!
//! Reports events stored per second, p50/p99 of the answered-202 requests,
//! refusals, the server's peak RSS (`VmHWM`), and that every event answered
//! 202 is counted in its group.
//!
//! `cargo bench -p panicle-cli --bench overload`
//! Env: `OVERLOAD_CLIENTS` (1024), `OVERLOAD_BATCH` (events per request, 50),
//! `OVERLOAD_SECS` (10), `OVERLOAD_DB` (`sqlite` or `postgres`: a fresh
//! database per run on `PANICLE_TEST_POSTGRES_URL`'s server, default
//! 127.0.0.1:5432), `OVERLOAD_BOUND` (16 MiB), `OVERLOAD_COMPARE`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use panicle_store::Backend;
use panicle_store::testing::TestDb;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One event of about 5.8 KB: a Rust panic 24 frames deep, one of 100 fingerprints.
fn event(id: &str, fingerprint: u64) -> String {
    let frames: Vec<String> = (0..24)
        .map(|d| {
            format!(
                r#"{{"function":"shop::orders::service::handler_{fingerprint}::level_{d}::{{{{async fn}}}}","file":"src/orders/service/handler_{fingerprint}.rs","line":{},"in_app":{},"package":"shop","instruction_addr":"0x55d0c3a1b2c4","module_offset":"0x1b2c4"}}"#,
                100 + d,
                d < 12
            )
        })
        .collect();
    format!(
        r#"{{"event_id":"{id}","timestamp":"{ts}","message":"called `Option::unwrap()` on a `None` value in handler {fingerprint}: order 1234567 of customer 7654321 was not found in the reservation table","platform":"rust","kind":"panic","frames":[{frames}],"resource":{{"service.name":"shop","k8s.pod.name":"shop-7d9f8b6c5-x2x4z","k8s.node.name":"node-3"}},"release":"shop@1.4.2","trace":{{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}},"request":{{"method":"GET","route":"/orders/{{id}}","request_id":"req-{id}"}}}}"#,
        ts = "2026-12-03T08:00:00Z",
        frames = frames.join(",")
    )
}

struct Outcome {
    stored: u64,
    accepted_requests: u64,
    refused: u64,
    latencies_ms: Vec<f64>,
}

fn client(
    base: &str,
    key: &str,
    batch: u64,
    seed: u64,
    stop: &AtomicBool,
    ids: &AtomicU64,
) -> Outcome {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    );
    let mut out = Outcome {
        stored: 0,
        accepted_requests: 0,
        refused: 0,
        latencies_ms: Vec::new(),
    };
    let url = format!("{base}/api/v1/events");
    while !stop.load(Ordering::Relaxed) {
        let events: Vec<String> = (0..batch)
            .map(|i| {
                let n = ids.fetch_add(1, Ordering::Relaxed);
                let id = format!("00000000-0000-4000-8000-{n:012x}");
                event(&id, (seed + i) % 100)
            })
            .collect();
        let body = format!("[{}]", events.join(","));
        let started = Instant::now();
        let Ok(mut answer) = agent
            .post(&url)
            .header("X-Panicle-Key", key)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
        else {
            out.refused += 1;
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let took = started.elapsed();
        let status = answer.status().as_u16();
        if status == 202 {
            let v: serde_json::Value = answer.body_mut().read_json().unwrap_or_default();
            out.stored += v["stored"].as_u64().unwrap_or(0);
            out.accepted_requests += 1;
            out.latencies_ms.push(took.as_secs_f64() * 1e3);
        } else {
            // As an SDK does: the events stay in its spool until Retry-After.
            out.refused += 1;
            let wait = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            std::thread::sleep(Duration::from_secs(wait));
        }
    }
    out
}

fn run(label: &str, database_url: &str, settings: &[(&str, &str)]) {
    let clients = env("OVERLOAD_CLIENTS", 1024);
    let batch = env("OVERLOAD_BATCH", 50);
    let secs = env("OVERLOAD_SECS", 10);
    let mut vars = vec![
        // The load is the point: no rate limit in the way.
        ("PANICLE_RATE_LIMIT", "0"),
        ("PANICLE_MAX_CONNECTIONS", "4096"),
        ("PANICLE_CLUSTER_INTERVAL", "0"),
    ];
    vars.extend_from_slice(settings);
    let server = common::Server::start_with(database_url, &vars);
    let key = server
        .dsn
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap_or_default()
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let (stop, ids, base, key) = (&stop, &ids, &server.base, &key);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || client(base, key, batch, c * 7, stop, ids))
                    .expect("a client thread")
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("client"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (peak, now) = support::rss_mb(server.child.id());
    let stored: u64 = outcomes.iter().map(|o| o.stored).sum();
    let requests: u64 = outcomes.iter().map(|o| o.accepted_requests).sum();
    let refused: u64 = outcomes.iter().map(|o| o.refused).sum();
    let mut lat: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.latencies_ms.clone())
        .collect();
    lat.sort_by(f64::total_cmp);
    // Every event answered 202 is in a group's count.
    let (_, groups) = server.get("/api/v1/groups?limit=500");
    let counted: u64 = groups["items"]
        .as_array()
        .map(|g| g.iter().filter_map(|g| g["count"].as_u64()).sum())
        .unwrap_or(0);
    println!(
        "{label:<34} {:>7.0} stored/s  202 p50 {:>7.0} ms  p99 {:>7.0} ms  {requests:>5} × 202  {refused:>6} refused  peak RSS {peak:>6.0} MB (now {now:.0})  stored {stored}, counted {counted}{}",
        stored as f64 / elapsed,
        support::percentile(&lat, 0.5),
        support::percentile(&lat, 0.99),
        if counted == stored { "" } else { "  MISMATCH" }
    );
    drop(server);
}

/// A fresh database for one run: a file in `dir`, or a new PostgreSQL
/// database (dropped with the returned guard).
fn fresh_database(
    db: &str,
    dir: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> (String, Option<TestDb>) {
    if db == "sqlite" {
        (format!("sqlite://{}/bench.db", dir.display()), None)
    } else {
        let test_db = rt.block_on(TestDb::new(Backend::Postgres));
        (test_db.url.clone(), Some(test_db))
    }
}

/// The floor: the same rows by plain multi-row `INSERT`s (one statement and
/// one transaction per batch) from up to 16 connections for `OVERLOAD_SECS`.
fn raw_inserts(rt: &tokio::runtime::Runtime) {
    let clients = env("OVERLOAD_CLIENTS", 1024).clamp(1, 16);
    let batch = env("OVERLOAD_BATCH", 50).max(1);
    let secs = env("OVERLOAD_SECS", 10);
    let test_db = rt.block_on(TestDb::new(Backend::Postgres));
    let stored = rt.block_on(async {
        // The schema, by the store's migrations; then a pool of our own.
        let _store = test_db.store().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(clients as u32)
            .connect(&test_db.url)
            .await
            .expect("connect for raw inserts");
        sqlx::query("INSERT INTO projects (id, name, ingest_key, created_at) VALUES (1, 'raw', 'raw', 0)")
            .execute(&pool)
            .await
            .expect("a project row");
        let ids = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (pool, ids, stop) = (pool.clone(), ids.clone(), stop.clone());
            tasks.spawn(async move {
                let mut stored = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rows: Vec<(String, String)> = (0..batch)
                        .map(|i| {
                            let n = ids.fetch_add(1, Ordering::Relaxed);
                            let id = format!("00000000-0000-4000-8000-{n:012x}");
                            let payload = event(&id, (c * 7 + i) % 100);
                            (id, payload)
                        })
                        .collect();
                    let marks: Vec<String> = (0..rows.len())
                        .map(|i| {
                            let b = i * 4;
                            format!(
                                "(1, ${}, ${}, ${}, 0, 'rust', 'panic', 'called `Option::unwrap()` on a `None` value', \
                                 'shop', NULL, 'shop@1.4.2', '4bf92f3577b34da6a3ce929d0e0e4736', \
                                 'shop-7d9f8b6c5-x2x4z', 'node-3', '/orders/{{id}}', 24, ${}, 1)",
                                b + 1,
                                b + 2,
                                b + 3,
                                b + 4
                            )
                        })
                        .collect();
                    let sql = format!(
                        "INSERT INTO events (project_id, event_id, group_id, ts, received_at, platform, kind, \
                         message, service, environment, release, trace_id, pod, node, route, depth, payload, weight) \
                         VALUES {} ON CONFLICT (project_id, event_id) DO NOTHING",
                        marks.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (id, payload) in &rows {
                        let group = format!("g{}", &id[id.len() - 2..]);
                        q = q.bind(id.clone()).bind(group).bind(1_764_748_800_000i64).bind(payload.clone());
                    }
                    if let Ok(done) = q.execute(&pool).await {
                        stored += done.rows_affected();
                    }
                }
                stored
            });
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut stored = 0;
        while let Some(n) = tasks.join_next().await {
            stored += n.unwrap_or(0);
        }
        stored
    });
    println!(
        "{:<34} {:>7.0} stored/s  ({clients} connections, {batch} rows per INSERT)",
        "raw multi-row INSERT (floor)",
        stored as f64 / secs as f64
    );
}

fn main() {
    // `cargo test --benches` runs this binary in test mode: nothing to do then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let db = std::env::var("OVERLOAD_DB").unwrap_or_else(|_| "sqlite".into());
    println!(
        "{} clients × {} events per request, {} s each, {db}",
        env("OVERLOAD_CLIENTS", 1024),
        env("OVERLOAD_BATCH", 50),
        env("OVERLOAD_SECS", 10)
    );
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let compare = std::env::var("OVERLOAD_COMPARE").unwrap_or_else(|_| "bound".into());
    let runs: Vec<(String, Vec<(&str, String)>)> = if compare == "commit" {
        let writers = std::env::var("OVERLOAD_WRITERS").unwrap_or_else(|_| {
            panicle_server::commit::GroupCommit::default()
                .writers
                .to_string()
        });
        let window = std::env::var("OVERLOAD_WINDOW_MS").unwrap_or_else(|_| "0".into());
        vec![
            (
                "a transaction per request (baseline)".into(),
                vec![("PANICLE_INGEST_WRITERS", "0".to_string())],
            ),
            (
                format!("group commit, {writers} writers, {window} ms"),
                vec![
                    ("PANICLE_INGEST_WRITERS", writers),
                    ("PANICLE_COMMIT_WINDOW_MS", window),
                ],
            ),
        ]
    } else {
        // The second server's in-flight byte bound (default: the server's, 16 MiB).
        let bound = std::env::var("OVERLOAD_BOUND").unwrap_or_else(|_| "16777216".into());
        vec![
            (
                "no in-flight bound (baseline)".into(),
                vec![("PANICLE_MAX_INGEST_BYTES", "0".to_string())],
            ),
            (
                format!(
                    "in-flight bytes ≤ {} KiB",
                    bound.parse::<u64>().unwrap_or(0) / 1024
                ),
                vec![("PANICLE_MAX_INGEST_BYTES", bound)],
            ),
        ]
    };
    for (label, settings) in &runs {
        let dir = tempfile::tempdir().expect("a data directory");
        let (url, _db) = fresh_database(&db, dir.path(), &rt);
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(label, &url, &settings);
    }
    if compare == "commit" && db != "sqlite" {
        raw_inserts(&rt);
    }
}
