//! A sustained write load on a SQLite store, with readers that hold read
//! transactions, measuring the write-ahead log's peak size. Shared by the
//! WAL test and the `wal_load` example (the baseline without checkpointing).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use crate::{NewEvent, Store};

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct WalLoad {
    /// The load stops after this long, or once `bytes` are in the database
    /// and its log, whichever comes first (so a slow machine still writes
    /// enough for the log's bound to mean something).
    pub duration: Duration,
    pub bytes: u64,
    /// Tasks inserting batches back to back.
    pub writers: usize,
    pub batch: usize,
    /// Tasks holding a read transaction open for `read_hold` at a time,
    /// staggered so one is nearly always open (what starves SQLite's own
    /// checkpoints).
    pub readers: usize,
    pub read_hold: Duration,
}

/// What the load did.
#[derive(Debug, Clone, Copy)]
pub struct WalLoadReport {
    pub events: u64,
    pub peak_wal_bytes: u64,
    pub final_wal_bytes: u64,
    pub db_bytes: u64,
    pub elapsed: Duration,
    /// Latency of one batch insert, as ingest would see it.
    pub batch_p50: Duration,
    pub batch_p99: Duration,
    pub batch_max: Duration,
}

/// Runs `load` against `store` (SQLite only), sampling the log every 5 ms.
pub async fn run(store: &Store, load: WalLoad) -> WalLoadReport {
    let wal = store.wal_path().expect("the WAL load needs a SQLite store");
    let db: PathBuf = store.wal.as_ref().expect("SQLite").db.clone();
    let project = store
        .create_project(&format!("wal-load-{}", random_hex(4)))
        .await
        .expect("create project");
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..load.writers {
        let (store, stop, events) = (store.clone(), stop.clone(), events.clone());
        writers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<NewEvent> = (0..load.batch).map(|_| event()).collect();
                let started = Instant::now();
                if let Ok(outcome) = store.insert_events(project.id, &batch).await {
                    events.fetch_add(outcome.inserted as u64, Ordering::Relaxed);
                }
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut tasks = Vec::new();
    for i in 0..load.readers {
        let (db, stop) = (db.clone(), stop.clone());
        let offset = load
            .read_hold
            .mul_f64(i as f64 / load.readers.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let Ok(mut conn) = SqliteConnectOptions::new().filename(&db).connect().await else {
                return;
            };
            while !stop.load(Ordering::Relaxed) {
                let _ = hold_read(&mut conn, load.read_hold).await;
            }
            let _ = conn.close().await;
        }));
    }
    while started.elapsed() < load.duration {
        let wal_bytes = size(&wal);
        peak.fetch_max(wal_bytes, Ordering::Relaxed);
        if wal_bytes + size(&db) >= load.bytes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for writer in writers {
        latencies.extend(writer.await.unwrap_or_default());
    }
    for task in tasks {
        let _ = task.await;
    }
    latencies.sort();
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or_default()
    };
    peak.fetch_max(size(&wal), Ordering::Relaxed);
    WalLoadReport {
        events: events.load(Ordering::Relaxed),
        peak_wal_bytes: peak.load(Ordering::Relaxed),
        final_wal_bytes: size(&wal),
        db_bytes: size(&db),
        elapsed: started.elapsed(),
        batch_p50: quantile(0.5),
        batch_p99: quantile(0.99),
        batch_max: latencies.last().copied().unwrap_or_default(),
    }
}

/// One read transaction that keeps its snapshot for `hold`.
async fn hold_read(conn: &mut SqliteConnection, hold: Duration) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let _: (i64,) = sqlx::query_as("SELECT count(*) FROM groups")
        .fetch_one(&mut *tx)
        .await?;
    tokio::time::sleep(hold).await;
    tx.commit().await
}

/// An event of about 6 KB, like a real panic with its frames and payload.
fn event() -> NewEvent {
    let id = random_hex(16);
    let frames: Vec<String> = (0..12).map(|i| format!("shop::orders::step_{i}")).collect();
    NewEvent {
        event_id: id.clone(),
        timestamp_ms: 1_790_000_000_000,
        platform: "rust".into(),
        kind: "panic".into(),
        message: format!("called `Option::unwrap()` on a `None` value ({id})"),
        service: Some("checkout".into()),
        environment: Some("prod".into()),
        release: Some("checkout@1.4.2".into()),
        trace_id: None,
        pod: Some("checkout-7d9f".into()),
        node: Some("node-3".into()),
        route: Some("/orders/{id}".into()),
        depth: frames.len() as i64,
        weight: 1,
        payload: format!("{{\"event_id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(6000)),
        fingerprint: format!("fp-{}", &id[..2]),
        template: "called `Option::unwrap()` on a `None` value".into(),
        culprit: Some("shop::orders::step_0".into()),
        signature: frames,
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
