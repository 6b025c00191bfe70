//! How fast the dashboard's first screen answers: `GET /api/v1/clusters`
//! over 100k events in 1,000 clusters, on SQLite and PostgreSQL, real HTTP.
//!
//! `cargo bench -p panicle-server --bench cluster_list` (PostgreSQL from
//! `PANICLE_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres).
//! Baseline printed beside it: `GET /healthz` on the same server, so the
//! ratio shows what the list costs over a bare HTTP round trip.

use std::time::{Duration, Instant};

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Backend, NewEvent};

const CLUSTERS: usize = 1_000;
const EVENTS: usize = 100_000;
const RUNS: usize = 30;

fn event(i: usize, now: i64) -> NewEvent {
    let bug = i % CLUSTERS;
    let frames = vec![
        format!("shop::module{}::handler{}", bug % 37, bug),
        format!("shop::api::route{}", bug % 11),
        "shop::main".to_string(),
    ];
    NewEvent {
        event_id: format!("00000000-0000-4000-8000-{i:012}"),
        timestamp_ms: now - (i as i64 % 604_800) * 1_000,
        platform: "rust".into(),
        kind: "panic".into(),
        message: format!("bug {bug}: called `Option::unwrap()` on a `None` value"),
        service: Some(format!("svc-{}", bug % 7)),
        environment: Some("prod".into()),
        release: Some(format!("svc@1.{}", i % 5)),
        trace_id: None,
        pod: Some(format!("pod-{}", i % 40)),
        node: None,
        route: Some("/orders/{id}".into()),
        depth: 3 + (i % 4) as i64,
        weight: 1,
        payload: "{}".into(),
        fingerprint: format!("fp{bug:06}"),
        template: format!("bug <n>: {}", bug),
        culprit: Some(frames[0].clone()),
        signature: frames,
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn bench(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let project = store.create_project("bench").await.unwrap();
    let token = store.create_token("bench").await.unwrap();
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let started = Instant::now();
    let all: Vec<NewEvent> = (0..EVENTS).map(|i| event(i, now)).collect();
    for chunk in all.chunks(1_000) {
        store.insert_events(project.id, chunk).await.unwrap();
    }
    let seeded = started.elapsed();
    // Planner statistics, as a server that has been running has them.
    store.analyze().await.unwrap();
    let state = AppState::new(store.clone(), ServerConfig::default()).unwrap();
    let report = state.job.run().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(panicle_server::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let (list, health, filtered) = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let time = |path: &str| {
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                let t = Instant::now();
                let mut resp = agent
                    .get(&format!("{base}{path}"))
                    .header("Authorization", format!("Bearer {token}"))
                    .call()
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let _ = resp.body_mut().read_to_string().unwrap();
                samples.push(t.elapsed());
            }
            median(samples)
        };
        (
            time("/api/v1/clusters?limit=50"),
            time("/healthz"),
            time("/api/v1/clusters?limit=50&service=svc-3&q=handler"),
        )
    })
    .await
    .unwrap();
    println!(
        "{backend:?}: {EVENTS} events in {} clusters (seeded in {:.1?}, clustered in {} ms)\n  GET /api/v1/clusters            median {:>8.2?}\n  GET /api/v1/clusters?service&q  median {:>8.2?}\n  GET /healthz (baseline)         median {:>8.2?}  → list/baseline = {:.0}×",
        report.clusters,
        seeded,
        report.millis,
        list,
        filtered,
        health,
        list.as_secs_f64() / health.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        bench(Backend::Sqlite).await;
        bench(Backend::Postgres).await;
    });
}
