//! Ingest throughput with 10 active alert rules against none (issue 14:
//! within 10%). Real HTTP on loopback, SQLite and PostgreSQL: clients post
//! batches as fast as they can; a fresh database per phase; phases
//! alternate (none, rules, rules, none, …) so drift hits both alike.
//!
//! The rules are two of each kind (new cluster, regression, spike, new
//! release, confined) to a local receiver, with the alert worker running.
//! Events spread over 20 bugs and a release that changes every second, so
//! the new-release check finds new (group, release) pairs all along and new
//! clusters fire.
//!
//! `cargo bench -p panicle-server --bench alert_ingest [-- sqlite|postgres]`
//! Env: `ALERT_BENCH_SECS` (per phase, default 5), `ALERT_BENCH_ROUNDS` (2:
//! each round is one phase of each), `ALERT_BENCH_CLIENTS` (4),
//! `ALERT_BENCH_BATCH` (50 events per request), `ALERT_BENCH_COOLDOWN`
//! (the rules' cooldown in seconds, default 3600 as `alert add`'s),
//! `ALERT_BENCH_CHECK_SECS` (spike/confined checks, default 60 as `serve`'s;
//! `ALERT_BENCH_COOLDOWN=0 ALERT_BENCH_CHECK_SECS=1` is the stress case:
//! every trigger notifies and the checks scan their windows every second).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use panicle_server::alerts::AlertConfig;
use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, Destination, NewAlertRule, RuleKind};
use serde_json::json;

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

/// A receiver that takes every notification.
async fn receiver() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One phase: a fresh database, `rules` alert rules, clients posting for
/// `secs`; events per second accepted.
fn phase(rt: &tokio::runtime::Runtime, backend: Backend, rules: usize, hook: SocketAddr) -> f64 {
    let secs = env("ALERT_BENCH_SECS", 5);
    let clients = env("ALERT_BENCH_CLIENTS", 4);
    let batch = env("ALERT_BENCH_BATCH", 50);
    let (_db, base, key, _shutdown) = rt.block_on(async {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let project = store.create_project("bench").await.unwrap();
        for i in 0..rules {
            let kind = RuleKind::ALL[i % RuleKind::ALL.len()];
            let destination = if i % 2 == 0 {
                Destination::Webhook
            } else {
                Destination::Slack
            };
            let mut rule = NewAlertRule::new(
                project.id,
                &format!("rule {i}"),
                kind,
                destination,
                &format!("http://{hook}/hook"),
            );
            rule.cooldown_ms = env("ALERT_BENCH_COOLDOWN", 3600) as i64 * 1000;
            store.create_alert_rule(&rule).await.unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let config = ServerConfig {
            alerts: AlertConfig {
                check_interval: Duration::from_secs(env("ALERT_BENCH_CHECK_SECS", 60).max(1)),
                ..AlertConfig::default()
            },
            ..ServerConfig::default()
        };
        let state = AppState::new(store.clone(), config).unwrap();
        state.alerts.spawn();
        tokio::spawn(panicle_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        (db, format!("http://{addr}"), project.ingest_key, tx)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (url, key) = (format!("{base}/api/v1/events"), key.clone());
            let (stop, accepted) = (stop.clone(), accepted.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let release = format!("1.{}", started.elapsed().as_secs());
                    let now = time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap();
                    let events: Vec<serde_json::Value> = (0..batch)
                        .map(|i| {
                            let bug = (n * batch + i) % 20;
                            json!({
                                "event_id": uuid::Uuid::new_v4().to_string(),
                                "timestamp": now,
                                "message": format!("bug {bug}: called `Option::unwrap()` on a `None` value"),
                                "platform": "rust",
                                "frames": [{"function": format!("shop::m{bug}::handler"), "file": "src/m.rs", "line": 42, "in_app": true},
                                           {"function": "shop::main", "file": "src/main.rs", "line": 7, "in_app": true}],
                                "resource": {"service.name": "checkout", "k8s.pod.name": format!("checkout-{c}")},
                                "release": release,
                            })
                        })
                        .collect();
                    n += 1;
                    let body = serde_json::to_vec(&events).unwrap();
                    if let Ok(resp) = agent
                        .post(&url)
                        .header("X-Panicle-Key", &key)
                        .header("Content-Type", "application/json")
                        .send(&body[..])
                        && resp.status().as_u16() == 202
                    {
                        accepted.fetch_add(batch, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    accepted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hook = rt.block_on(receiver());
    let rounds = env("ALERT_BENCH_ROUNDS", 2);
    let (mut none, mut ten) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 10] } else { [10, 0] };
        for rules in order {
            let rate = phase(&rt, backend, rules, hook);
            println!("{backend:?} round {round}: {rules:>2} rules: {rate:>8.0} events/s");
            if rules == 0 {
                none.push(rate);
            } else {
                ten.push(rate);
            }
        }
    }
    let (a, b) = (median(&mut none), median(&mut ten));
    println!(
        "{backend:?}: median {a:.0} events/s without rules, {b:.0} with 10 rules: ratio {:.3}",
        b / a
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
