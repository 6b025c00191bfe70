//! The longest ingest pause while retention purges 100k old events, on
//! SQLite and PostgreSQL. A client posts one event every 10 ms over real
//! HTTP, first with no purge (baseline), then while the retention job
//! deletes 100,000 events older than the retention; the slowest requests of
//! each phase are printed side by side.
//!
//! `cargo bench -p panicle-server --bench purge_pause [-- sqlite|postgres]`
//! Env: `PURGE_EVENTS` (default 100000), `PURGE_BATCH` (rows per purge
//! transaction, default 500), `PURGE_PAUSE_MS` (between batches, default 20).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use panicle_server::{AppState, RetentionConfig, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, NewEvent};
use serde_json::json;

const DAY: i64 = 86_400_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An old event in one of 200 groups.
fn old_event(i: usize, ts: i64) -> NewEvent {
    let bug = i % 200;
    let frames = vec![format!("shop::m{bug}::handler"), "shop::main".to_string()];
    NewEvent {
        event_id: format!("00000000-0000-4000-8000-{i:012}"),
        timestamp_ms: ts - (i as i64 % 1000) * 1000,
        platform: "rust".into(),
        kind: "panic".into(),
        message: format!("bug {bug}"),
        service: Some("svc".into()),
        environment: Some("prod".into()),
        release: Some("svc@1.0".into()),
        trace_id: None,
        pod: Some(format!("pod-{}", i % 40)),
        node: None,
        route: None,
        depth: 2,
        weight: 1 + (i % 3) as i64,
        payload: format!("{{\"pad\":\"{}\"}}", "x".repeat(400)),
        fingerprint: format!("fp{bug}"),
        template: format!("bug {bug}"),
        culprit: Some(frames[0].clone()),
        signature: frames,
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Posts one event every 10 ms until `stop`; returns each request's latency.
fn ingest_until(url: String, key: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut lat = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = serde_json::to_vec(&json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            "message": format!("live {i}: index out of bounds"),
            "frames": [{"function": "shop::live::handler", "in_app": true}],
        }))
        .unwrap();
        i += 1;
        let t = Instant::now();
        let status = agent
            .post(&url)
            .header("X-Panicle-Key", &key)
            .header("Content-Type", "application/json")
            .send(&body[..])
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        lat.push(t.elapsed());
        assert_eq!(status, 202, "ingest failed during the purge");
        std::thread::sleep(Duration::from_millis(10));
    }
    lat
}

fn summary(lat: &[Duration]) -> String {
    let mut v = lat.to_vec();
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    format!(
        "n={} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        v.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn run(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let total = env("PURGE_EVENTS", 100_000) as usize;
    let config = ServerConfig {
        retention: RetentionConfig {
            days: 90,
            batch: env("PURGE_BATCH", 500),
            pause: Duration::from_millis(env("PURGE_PAUSE_MS", 20)),
        },
        ..ServerConfig::default()
    };
    let (_db, store, project, state, base, shutdown) = rt.block_on(async {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let project = store.create_project("bench").await.unwrap();
        let old = now_ms() - 200 * DAY;
        let load = Instant::now();
        let mut batch = Vec::with_capacity(1000);
        for i in 0..total {
            batch.push(old_event(i, old));
            if batch.len() == 1000 {
                store.insert_events(project.id, &batch).await.unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.insert_events(project.id, &batch).await.unwrap();
        }
        store.analyze().await.unwrap();
        println!(
            "--- {backend:?}: loaded {total} old events in {:.1} s",
            load.elapsed().as_secs_f64()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(store.clone(), config).unwrap();
        tokio::spawn(panicle_server::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        (db, store, project, state, format!("http://{addr}"), tx)
    });
    let url = format!("{base}/api/v1/events");

    // Baseline: the same ingest for 5 s with no purge.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (url, key, stop) = (url.clone(), project.ingest_key.clone(), stop.clone());
        std::thread::spawn(move || ingest_until(url, key, stop))
    };
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let baseline = client.join().unwrap();

    // The purge, with ingest going on.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (url, key, stop) = (url.clone(), project.ingest_key.clone(), stop.clone());
        std::thread::spawn(move || ingest_until(url, key, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let report = rt.block_on(state.retention.run(now_ms())).unwrap();
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let during = client.join().unwrap();
    let bad = rt.block_on(store.count_mismatches(project.id)).unwrap();
    println!(
        "purged {} events ({} groups gone) in {:.1} s ({:.0} events/s), counts consistent: {}",
        report.events,
        report.groups,
        took.as_secs_f64(),
        report.events as f64 / took.as_secs_f64(),
        bad.is_empty()
    );
    println!("ingest without purge: {}", summary(&baseline));
    println!("ingest during purge:  {}", summary(&during));
    drop(shutdown);
    rt.block_on(store.close());
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "sqlite") {
        run(Backend::Sqlite);
    }
    if all || which.iter().any(|w| w == "postgres") {
        run(Backend::Postgres);
    }
}
