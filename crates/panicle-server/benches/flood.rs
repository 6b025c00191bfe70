//! One noisy project floods ingest while a quiet one sends a steady trickle:
//! the quiet project's ingest latency (p50/p99) (a) alone, (b) under the flood
//! with no limits, (c) under the flood with the noisy project rate-limited.
//! Real HTTP on loopback, SQLite and PostgreSQL.
//!
//! `cargo bench -p panicle-server --bench flood [-- sqlite|postgres]`
//! Env: `FLOOD_SECS` (per phase and round, default 5), `FLOOD_ROUNDS` (3), `FLOOD_CLIENTS` (noisy
//! clients, default 8), `FLOOD_BATCH` (events per noisy request, 100),
//! `FLOOD_RATE` / `FLOOD_BURST` (noisy project's limit in (c), 500 / 1000),
//! `FLOOD_QUIET_MS` (the quiet project's interval, 20), `FLOOD_HONOUR` (1: noisy clients sleep Retry-After; default 0, an attacker
//! that ignores it and retries at once), `FLOOD_CHECKPOINT` (SQLite: 1, the default, runs the WAL
//! checkpointer `panicle serve` runs; 0 leaves the log to SQLite alone, the baseline). Each phase
//! reports the peak size of the SQLite write-ahead log, sampled every 50 ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, LimitsUpdate, Store};
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PLACEHOLDER_ID: &str = "00000000-0000-4000-8000-000000000000";

fn event(message: &str) -> serde_json::Value {
    json!({
        "event_id": if message.starts_with("noisy") { PLACEHOLDER_ID.to_string() } else { uuid::Uuid::new_v4().to_string() },
        "timestamp": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "message": message,
        "platform": "rust",
        "frames": [{"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "in_app": true},
                   {"function": "shop::main", "file": "src/main.rs", "line": 7, "in_app": true}],
        "resource": {"service.name": "checkout", "k8s.pod.name": "checkout-1"},
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

struct Server {
    base: String,
    store: Store,
    _checkpointer: Option<panicle_store::WalCheckpointer>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn start(rt: &tokio::runtime::Runtime, store: &Store) -> Server {
    rt.block_on(async {
        let checkpointer = (env("FLOOD_CHECKPOINT", 1) == 1)
            .then(|| store.spawn_wal_checkpointer(panicle_store::WalPolicy::default()))
            .flatten();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(store.clone(), ServerConfig::default()).unwrap();
        tokio::spawn(panicle_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Server {
            base: format!("http://{addr}"),
            store: store.clone(),
            _checkpointer: checkpointer,
            _shutdown: tx,
        }
    })
}

#[derive(Default)]
struct FloodCounts {
    accepted_events: AtomicU64,
    refused_429: AtomicU64,
    other: AtomicU64,
}

/// Noisy clients post batches as fast as they can until `stop`.
fn flood(
    base: &str,
    key: &str,
    clients: u64,
    batch: u64,
    honour: bool,
    stop: Arc<AtomicBool>,
    counts: Arc<FloodCounts>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let url = format!("{base}/api/v1/events");
            let key = key.to_string();
            let stop = stop.clone();
            let counts = counts.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0u64;
                // The event with a placeholder id, serialized once: the
                // attacker's own CPU (it shares this machine's two cores)
                // should not be what slows the server down.
                let template = serde_json::to_string(&event(
                    "noisy: called `Option::unwrap()` on a `None` value",
                ))
                .unwrap();
                let run = uuid::Uuid::new_v4().as_u128() as u64 & 0xffff_ffff;
                while !stop.load(Ordering::Relaxed) {
                    let mut body = String::with_capacity(template.len() * batch as usize + 2);
                    body.push('[');
                    for i in 0..batch {
                        if i > 0 {
                            body.push(',');
                        }
                        let id = format!("{run:08x}-{c:04x}-4000-8000-{:012x}", n * batch + i);
                        body.push_str(&template.replacen(PLACEHOLDER_ID, &id, 1));
                    }
                    body.push(']');
                    n += 1;
                    let body = body.into_bytes();
                    match agent
                        .post(&url)
                        .header("X-Panicle-Key", &key)
                        .header("Content-Type", "application/json")
                        .send(&body[..])
                    {
                        Ok(resp) if resp.status().as_u16() == 202 => {
                            counts.accepted_events.fetch_add(batch, Ordering::Relaxed);
                        }
                        Ok(resp) if resp.status().as_u16() == 429 => {
                            counts.refused_429.fetch_add(1, Ordering::Relaxed);
                            if honour {
                                let secs: u64 = resp
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(1);
                                let until = Instant::now() + Duration::from_secs(secs);
                                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                            }
                        }
                        other => {
                            if counts.other.fetch_add(1, Ordering::Relaxed) == 0 {
                                match other {
                                    Ok(mut r) => eprintln!(
                                        "noisy: first failure {} {}",
                                        r.status(),
                                        r.body_mut().read_to_string().unwrap_or_default()
                                    ),
                                    Err(e) => eprintln!("noisy: first failure {e}"),
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// The quiet project: one event every `FLOOD_QUIET_MS` (20) ms for `secs`;
/// each request's latency.
fn quiet(base: &str, key: &str, secs: u64) -> (Vec<Duration>, u64) {
    let agent = agent();
    let url = format!("{base}/api/v1/events");
    let mut lat = Vec::new();
    let mut failed = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next = Instant::now();
    let mut i = 0;
    while Instant::now() < end {
        let body = serde_json::to_vec(&event(&format!("quiet {i}: index out of bounds"))).unwrap();
        i += 1;
        let t = Instant::now();
        let ok = agent
            .post(&url)
            .header("X-Panicle-Key", key)
            .header("Content-Type", "application/json")
            .send(&body[..])
            .map(|mut r| {
                let status = r.status().as_u16();
                if status != 202 && failed == 0 {
                    eprintln!(
                        "quiet: first failure {status} {}",
                        r.body_mut().read_to_string().unwrap_or_default()
                    );
                }
                status == 202
            })
            .unwrap_or(false);
        lat.push(t.elapsed());
        if !ok {
            failed += 1;
        }
        next += Duration::from_millis(env("FLOOD_QUIET_MS", 20));
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    (lat, failed)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// What one phase measured.
#[derive(Default)]
struct Outcome {
    quiet: Vec<Duration>,
    quiet_failed: u64,
    noisy_accepted: u64,
    noisy_429: u64,
    noisy_other: u64,
    secs: f64,
    /// Largest SQLite write-ahead log seen (0 on PostgreSQL).
    peak_wal: u64,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.quiet.extend(o.quiet);
        self.quiet_failed += o.quiet_failed;
        self.noisy_accepted += o.noisy_accepted;
        self.noisy_429 += o.noisy_429;
        self.noisy_other += o.noisy_other;
        self.secs += o.secs;
        self.peak_wal = self.peak_wal.max(o.peak_wal);
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<28} quiet: n={} p50 {} p99 {} max {} failed {} | noisy: {} events accepted ({:.0}/s), {} × 429, {} other | peak WAL {:.1} MiB",
            self.quiet.len(),
            ms(pct(&self.quiet, 0.5)),
            ms(pct(&self.quiet, 0.99)),
            ms(pct(&self.quiet, 1.0)),
            self.quiet_failed,
            self.noisy_accepted,
            self.noisy_accepted as f64 / self.secs,
            self.noisy_429,
            self.noisy_other,
            self.peak_wal as f64 / (1024.0 * 1024.0),
        );
    }
}

fn phase(server: &Server, noisy_key: Option<&str>, quiet_key: &str, secs: u64) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let clients = env("FLOOD_CLIENTS", 8);
    let started = Instant::now();
    let handles = match noisy_key {
        Some(k) => flood(
            &server.base,
            k,
            clients,
            env("FLOOD_BATCH", 100),
            env("FLOOD_HONOUR", 0) == 1,
            stop.clone(),
            counts.clone(),
        ),
        None => Vec::new(),
    };
    let peak_wal = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, store) = (stop.clone(), peak_wal.clone(), server.store.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(store.wal_bytes().unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Let the flood get going before measuring.
    if noisy_key.is_some() {
        std::thread::sleep(Duration::from_secs(1));
    }
    let (quiet, quiet_failed) = quiet(&server.base, quiet_key, secs);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let _ = sampler.join();
    Outcome {
        quiet,
        quiet_failed,
        noisy_accepted: counts.accepted_events.load(Ordering::Relaxed),
        noisy_429: counts.refused_429.load(Ordering::Relaxed),
        noisy_other: counts.other.load(Ordering::Relaxed),
        secs: started.elapsed().as_secs_f64(),
        peak_wal: peak_wal.load(Ordering::Relaxed),
    }
}

/// A fresh database with the two projects; the noisy one limited when asked.
fn setup(
    rt: &tokio::runtime::Runtime,
    backend: Backend,
    limit: Option<(i64, i64)>,
) -> (TestDb, Store, String, String) {
    rt.block_on(async {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let noisy = store.create_project("noisy").await.unwrap();
        let quiet = store.create_project("quiet").await.unwrap();
        if let Some((rate, burst)) = limit {
            store
                .update_project_limits(
                    "noisy",
                    &LimitsUpdate {
                        rate: Some(Some(rate)),
                        burst: Some(Some(burst)),
                        ..LimitsUpdate::default()
                    },
                )
                .await
                .unwrap();
        }
        (db, store, noisy.ingest_key, quiet.ingest_key)
    })
}

/// Each phase on a database of its own, so one phase's leftovers (a big
/// WAL, bloated tables) do not weigh on the next; the three phases take
/// turns for `FLOOD_ROUNDS` rounds so a busy machine weighs on all alike.
fn run(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let secs = env("FLOOD_SECS", 5);
    let rounds = env("FLOOD_ROUNDS", 3);
    println!(
        "--- {backend:?}: {rounds} rounds × {secs} s per phase, {} noisy clients × {} events per request, noisy clients {} Retry-After",
        env("FLOOD_CLIENTS", 8),
        env("FLOOD_BATCH", 100),
        if env("FLOOD_HONOUR", 0) == 1 {
            "honour"
        } else {
            "ignore"
        }
    );
    let (rate, burst) = (
        env("FLOOD_RATE", 500) as i64,
        env("FLOOD_BURST", 1000) as i64,
    );
    let phases = [
        ("(a) quiet alone".to_string(), false, None),
        ("(b) flood, no limits".to_string(), true, None),
        (
            format!("(c) flood, {rate}/s burst {burst}"),
            true,
            Some((rate, burst)),
        ),
    ];
    let mut totals: Vec<Outcome> = phases.iter().map(|_| Outcome::default()).collect();
    for round in 0..rounds {
        for ((name, flooding, limit), total) in phases.iter().zip(totals.iter_mut()) {
            let (db, store, noisy, quiet_key) = setup(&rt, backend, *limit);
            let server = start(&rt, &store);
            let o = phase(
                &server,
                flooding.then_some(noisy.as_str()),
                &quiet_key,
                secs,
            );
            o.print(&format!("  round {round} {name}"));
            total.add(o);
            drop(server);
            rt.block_on(store.close());
            drop(db);
        }
    }
    println!("all rounds:");
    for ((name, _, _), total) in phases.iter().zip(&totals) {
        total.print(name);
    }
    let p99 = |o: &Outcome| pct(&o.quiet, 0.99).as_secs_f64();
    println!(
        "quiet p99 vs alone: no limits {:.1}x, limits on {:.1}x (target <= 3x)",
        p99(&totals[1]) / p99(&totals[0]),
        p99(&totals[2]) / p99(&totals[0])
    );
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
