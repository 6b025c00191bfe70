//! Ingest under overload (issue 20): many clients post batches of 5.8 KB
//! Rust panic events to a real `panicle serve` as fast as it answers, and
//! an SDK's behaviour on a refusal (wait `Retry-After`, send again). Two
//! servers side by side, the same load: without the in-flight byte bound
//! (`--max-ingest-bytes 0`, the baseline) and with the default. Reports
//! events stored per second, p50/p99 of the answered-202 requests, refusals,
//! the server's peak RSS (`VmHWM`), and that every event answered 202 is
//! counted in its group.
//!
//! `cargo bench -p panicle-cli --bench overload`
//! Env: `OVERLOAD_CLIENTS` (1024), `OVERLOAD_BATCH` (events per request, 50),
//! `OVERLOAD_SECS` (10), `OVERLOAD_DB` (`sqlite`, or a `postgres://` URL of
//! an empty database), `OVERLOAD_BOUND` (the bounded server's
//! `--max-ingest-bytes`, default 16 MiB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

fn peak_rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(label: &str, database_url: &str, max_ingest_bytes: &str) {
    let clients = env("OVERLOAD_CLIENTS", 1024);
    let batch = env("OVERLOAD_BATCH", 50);
    let secs = env("OVERLOAD_SECS", 10);
    let server = common::Server::start_with(
        database_url,
        &[
            ("PANICLE_MAX_INGEST_BYTES", max_ingest_bytes),
            // The load is the point: no rate limit in the way.
            ("PANICLE_RATE_LIMIT", "0"),
            ("PANICLE_MAX_CONNECTIONS", "4096"),
            ("PANICLE_CLUSTER_INTERVAL", "0"),
        ],
    );
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
    let (peak, now) = peak_rss_mb(server.child.id());
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
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        if counted == stored { "" } else { "  MISMATCH" }
    );
    drop(server);
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
    // `OVERLOAD_BOUND`: the second server's bound in bytes (default: the
    // server's default, 16 MiB).
    let bound = std::env::var("OVERLOAD_BOUND").unwrap_or_else(|_| "16777216".into());
    let bounded = format!(
        "in-flight bytes ≤ {} KiB",
        bound.parse::<u64>().unwrap_or(0) / 1024
    );
    for (label, bound) in [
        ("no in-flight bound (baseline)", "0"),
        (bounded.as_str(), bound.as_str()),
    ] {
        let dir = tempfile::tempdir().expect("a data directory");
        let url = if db == "sqlite" {
            format!("sqlite://{}/bench.db", dir.path().display())
        } else {
            db.clone()
        };
        run(label, &url, bound);
    }
}
