//! Ingest throughput of Sentry envelopes against the native endpoint on the
//! same event: the node fixture (testdata/sentry/node-typeerror.json) as an
//! envelope to `/api/{project}/envelope/`, and the schema-v1 event it maps
//! to as JSON to `/api/v1/events`. One event per request, identity
//! encoding, `BENCH_CLIENTS` clients at once; the phases alternate for
//! `BENCH_ROUNDS` rounds of `BENCH_SECS` seconds each. Real HTTP on loopback.
//!
//! `cargo bench -p panicle-server --bench sentry_ingest [-- sqlite|postgres]`
//! Env: `BENCH_SECS` (default 5), `BENCH_ROUNDS` (3), `BENCH_CLIENTS` (4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use panicle_protocol::sentry::{Fallback, parse_event};
use panicle_server::{AppState, ServerConfig};
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Native,
    Sentry,
}

/// A request body for a fresh event id: the same event either way.
fn body(endpoint: Endpoint, sentry_event: &Value) -> Vec<u8> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = sentry_event.clone();
    event["event_id"] = json!(id);
    event["timestamp"] = json!(
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let payload = serde_json::to_vec(&event).unwrap();
    match endpoint {
        Endpoint::Sentry => {
            let mut out = serde_json::to_vec(&json!({"event_id": id})).unwrap();
            out.extend(b"\n{\"type\":\"event\"}\n");
            out.extend(payload);
            out.push(b'\n');
            out
        }
        Endpoint::Native => {
            let fallback = Fallback {
                event_id: &id,
                timestamp: "2026-01-01T00:00:00Z",
            };
            serde_json::to_vec(&parse_event(&payload, fallback).unwrap()).unwrap()
        }
    }
}

/// Events per second over `secs` with `clients` posting one event per request.
fn phase(
    endpoint: Endpoint,
    url: &str,
    key: &str,
    sentry_event: &Value,
    clients: u64,
    secs: u64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    std::thread::scope(|scope| {
        for _ in 0..clients {
            let done = done.clone();
            scope.spawn(move || {
                let agent = agent();
                while Instant::now() < deadline {
                    let b = body(endpoint, sentry_event);
                    let req = agent.post(url);
                    let req = match endpoint {
                        Endpoint::Native => req.header("X-Panicle-Key", key),
                        Endpoint::Sentry => req.header(
                            "X-Sentry-Auth",
                            format!("Sentry sentry_key={key}, sentry_version=7"),
                        ),
                    };
                    let mut resp = req.send(&b[..]).unwrap();
                    let status = resp.status().as_u16();
                    if status == 503 {
                        // The database was busy (other work on the machine):
                        // back off as a client would, and do not count it.
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    assert!(
                        status == 200 || status == 202,
                        "{status}: {}",
                        resp.body_mut().read_to_string().unwrap_or_default()
                    );
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let which = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let backends: Vec<Backend> = match which.as_deref() {
        Some("sqlite") => vec![Backend::Sqlite],
        Some("postgres") => vec![Backend::Postgres],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    };
    let (secs, rounds, clients) = (
        env("BENCH_SECS", 5),
        env("BENCH_ROUNDS", 3),
        env("BENCH_CLIENTS", 4),
    );
    let path = format!(
        "{}/../../testdata/sentry/node-typeerror.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let sentry_event: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for backend in backends {
        let (db, base, key, project_id, shutdown) = rt.block_on(async {
            let db = TestDb::new(backend).await;
            let store = db.store().await;
            let project = store.create_project("bench").await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let state = AppState::new(store, ServerConfig::default()).unwrap();
            tokio::spawn(panicle_server::serve(listener, state, async move {
                let _ = rx.await;
            }));
            (
                db,
                format!("http://{addr}"),
                project.ingest_key,
                project.id,
                tx,
            )
        });
        let native_url = format!("{base}/api/v1/events");
        let sentry_url = format!("{base}/api/{project_id}/envelope/");
        // Warm up both paths (connections, prepared statements, caches).
        phase(
            Endpoint::Native,
            &native_url,
            &key,
            &sentry_event,
            clients,
            1,
        );
        phase(
            Endpoint::Sentry,
            &sentry_url,
            &key,
            &sentry_event,
            clients,
            1,
        );
        let (mut native, mut sentry) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            native.push(phase(
                Endpoint::Native,
                &native_url,
                &key,
                &sentry_event,
                clients,
                secs,
            ));
            sentry.push(phase(
                Endpoint::Sentry,
                &sentry_url,
                &key,
                &sentry_event,
                clients,
                secs,
            ));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (n, s) = (mean(&native), mean(&sentry));
        println!(
            "{backend:?}: native {n:.0} events/s {native:.0?}, sentry envelope {s:.0} events/s {sentry:.0?}; native/sentry = {:.2}x ({clients} clients, {rounds}x{secs}s, one event per request)",
            n / s
        );
        let _ = shutdown.send(());
        drop(db);
    }
}
