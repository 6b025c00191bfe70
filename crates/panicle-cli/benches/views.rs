//! Every dashboard/API view as events pile up (issue 21): seeds a fresh
//! database with N events in G groups (14 days, several services, pods,
//! releases, routes and traces), clusters them the way the server does
//! (`POST /api/v1/clusters/recompute`), then times each view the dashboard
//! calls on a freshly started `panicle serve` (p50/p99 over up to 50 calls)
//! and reports the server's RSS after the calls. With `VIEWS_COMPARE` (on
//! unless `0`) a 10,000-event database runs first, and a side-by-side table
//! gives the N / 10k ratio of each view's p99.
//!
//! Seeding: the first 2,000 events go through the HTTP ingest API; the rest
//! through `Store::insert_events_with` with the limits ingest applies (the
//! server's default group cap), in the same wire format, decoded by
//! `panicle_protocol` and turned into stored rows as ingest does. The bench
//! checks that the rows it would have written for the HTTP-ingested events
//! equal those ingest wrote, so the bulk path stores what ingest would.
//!
//! `cargo bench -p panicle-cli --bench views`
//! Env: `VIEWS_EVENTS` (100000), `VIEWS_GROUPS` (2000), `VIEWS_DB` (`sqlite`,
//! or a `postgres://…/postgres` URL a fresh database is created beside),
//! `VIEWS_COMPARE` (`0`: only N), `VIEWS_CALLS` (50 per view),
//! `VIEWS_BUDGET_SECS` (60: a view stops early past it, after at least 5
//! calls; the table shows the calls made), `VIEWS_ANALYZE` (`1`: run
//! `ANALYZE` after seeding; by default the planner statistics are what the
//! server leaves, and autovacuum may be off).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::{now_ms, rfc3339};
use panicle_protocol::decode::Decoded;
use panicle_store::testing::TestDb;
use panicle_store::{Backend, InsertLimits, NewEvent, Store};

const DAY_MS: i64 = 86_400_000;
/// Days the events are spread over, ending now.
const SPAN_DAYS: i64 = 14;
/// Events seeded through HTTP ingest (and compared with the bulk path).
const HTTP_EVENTS: usize = 2_000;
/// Events per HTTP request: 200 × ~3 KB stays under the 1 MiB body limit.
const HTTP_BATCH: usize = 200;
/// Events per `insert_events_with` call of the bulk path.
const STORE_BATCH: usize = 2_000;
/// Groups per cluster the generator aims at.
const GROUPS_PER_CLUSTER: usize = 5;
/// The server's default `--group-event-cap`, which ingest applies.
const GROUP_CAP: i64 = 10_000;
/// The server's default retention (90 days), which bounds event times.
const MAX_AGE_MS: i64 = 90 * DAY_MS;

const SERVICES: [&str; 8] = [
    "checkout",
    "orders",
    "payments",
    "inventory",
    "search",
    "accounts",
    "shipping",
    "notify",
];
const RESOURCES: [&str; 6] = ["orders", "carts", "users", "items", "invoices", "sessions"];
const RUNTIME: [&str; 6] = [
    "tokio::runtime::task::harness::Harness<T,S>::poll",
    "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
    "tokio::runtime::scheduler::multi_thread::worker::Context::run",
    "tokio::runtime::context::scoped::Scoped<T>::set",
    "std::thread::local::LocalKey<T>::with",
    "std::sys::pal::unix::thread::Thread::new::thread_start",
];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A stable pseudo-random number per (stream, index): splitmix64.
fn mix(stream: u64, i: u64) -> u64 {
    let mut z = i
        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A name made of letters only: normalization keeps letters, and no two
/// clusters share their frames.
fn letters(mut n: usize) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    s
}

fn capitalized(n: usize) -> String {
    let s = letters(n + 26 * 26);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => s,
    }
}

/// The dataset: event `i` of `n`, in `groups` groups, over the 14 days
/// before `now_ms`, in time order.
#[derive(Clone, Copy)]
struct Dataset {
    n: usize,
    groups: usize,
    now_ms: i64,
}

impl Dataset {
    fn start_ms(&self) -> i64 {
        self.now_ms - SPAN_DAYS * DAY_MS + 60_000
    }

    fn timestamp_ms(&self, i: usize) -> i64 {
        let span = SPAN_DAYS * DAY_MS - 120_000;
        let step = span / self.n.max(1) as i64;
        self.start_ms() + i as i64 * step + (mix(1, i as u64) % step.max(1) as u64) as i64
    }

    /// Every group gets an event first; then a skewed spread (a few hot
    /// groups, a long tail), as real traffic has.
    fn group_of(&self, i: usize) -> usize {
        if i < self.groups {
            return i;
        }
        let r = (mix(2, i as u64) >> 11) as f64 / (1u64 << 53) as f64;
        ((r * r) * self.groups as f64) as usize % self.groups
    }

    fn release(&self, service: &str, ts: i64) -> String {
        // A release every two days per service.
        let k = ((ts - self.start_ms()) / (2 * DAY_MS)).max(0);
        format!("{service}@1.{k}.0")
    }

    /// The newest release of service 0.
    fn newest_release(&self) -> String {
        self.release(SERVICES[0], self.now_ms - 60_000)
    }

    /// Event `i` as a client sends it.
    fn wire_event(&self, i: usize) -> serde_json::Value {
        let g = self.group_of(i);
        let cluster = g / GROUPS_PER_CLUSTER;
        let variant = g % GROUPS_PER_CLUSTER;
        let h = mix(3, i as u64);
        let service = SERVICES[cluster % SERVICES.len()];
        let name = letters(cluster);
        let ts = self.timestamp_ms(i);
        let message = match cluster % 4 {
            0 => "called `Option::unwrap()` on a `None` value".to_string(),
            1 => format!(
                "called `Result::unwrap()` on an `Err` value: {}Error {{ kind: InvalidData }}",
                capitalized(cluster)
            ),
            2 => format!(
                "index out of bounds: the len is {} but the index is {}",
                h % 8,
                8 + h % 5
            ),
            _ => format!(
                "{} lookup failed: order {} of customer {} was not found",
                capitalized(cluster),
                h % 1_000_000,
                h % 9_999
            ),
        };
        // Innermost first: the cluster's own frames; its groups differ in
        // one caller frame deeper down.
        let mut frames = vec![
            serde_json::json!({"function": format!("{service}::{name}::validate_{name}"), "file": format!("src/{name}/validate.rs"), "line": 40 + cluster % 50, "in_app": true}),
            serde_json::json!({"function": format!("{service}::{name}::load_{name}"), "file": format!("src/{name}/mod.rs"), "line": 120, "in_app": true}),
            serde_json::json!({"function": format!("{service}::handlers::handle_{name}"), "file": "src/handlers.rs", "line": 310, "in_app": true}),
            serde_json::json!({"function": format!("{service}::api::caller_{}", letters(variant)), "file": "src/api.rs", "line": 77 + variant, "in_app": true}),
            serde_json::json!({"function": format!("{service}::server::route"), "file": "src/server.rs", "line": 51, "in_app": true}),
            serde_json::json!({"function": format!("{service}::main::{{{{closure}}}}"), "file": "src/main.rs", "line": 12, "in_app": true}),
        ];
        // Outer runtime frames: the stack depth varies per event (heatmap).
        for d in 0..(4 + (h >> 8) % 12) as usize {
            frames.push(serde_json::json!({
                "function": RUNTIME[d % RUNTIME.len()],
                "file": "/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/future/future.rs",
                "line": 124 + d,
                "in_app": false,
                "package": "tokio"
            }));
        }
        let route = if (h >> 20).is_multiple_of(5) {
            format!(
                "/api/{}/{{id}}",
                RESOURCES[(h >> 24) as usize % RESOURCES.len()]
            )
        } else {
            format!("/api/{}/{{id}}", RESOURCES[cluster % RESOURCES.len()])
        };
        let environment = if (h >> 28).is_multiple_of(10) {
            "staging"
        } else {
            "production"
        };
        // Four consecutive events share a trace: requests that cross clusters.
        let trace = mix(4, (i / 4) as u64);
        serde_json::json!({
            "event_id": uuid::Uuid::from_u64_pair(0x0000_0000_0000_4000 | (i as u64) << 16, 0x8000_0000_0000_0000 | h >> 2).to_string(),
            "timestamp": time::OffsetDateTime::from_unix_timestamp_nanos(ts as i128 * 1_000_000)
                .expect("a time")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339"),
            "message": message,
            "platform": "rust",
            "kind": "panic",
            "frames": frames,
            "thread": {"name": format!("tokio-runtime-worker-{}", h % 4)},
            "resource": {
                "service.name": service,
                "deployment.environment": environment,
                "k8s.pod.name": format!("{service}-7d9f8b6c5-{}", letters((h >> 32) as usize % 6 + 100)),
                "k8s.node.name": format!("node-{}", (h >> 36) % 6),
                "k8s.namespace.name": "shop",
            },
            "release": self.release(service, ts),
            "trace": {"trace_id": format!("{trace:016x}{:016x}", mix(5, trace)), "span_id": format!("{h:016x}")},
            "request": {"method": "GET", "route": route, "request_id": format!("req-{i}")},
        })
    }
}

/// What ingest stores for a decoded event: ingest's own conversion.
fn to_new_event(decoded: Decoded, received_ms: i64) -> NewEvent {
    panicle_server::to_new_event(decoded, received_ms, MAX_AGE_MS)
}

/// The stored rows of events `range`, decoded from their wire JSON as
/// ingest decodes a request body (at most 1,000 events each).
fn new_events(data: &Dataset, range: std::ops::Range<usize>, received_ms: i64) -> Vec<NewEvent> {
    let mut out = Vec::with_capacity(range.len());
    let mut start = range.start;
    while start < range.end {
        let end = (start + panicle_protocol::decode::MAX_BATCH).min(range.end);
        let body = serde_json::Value::Array((start..end).map(|i| data.wire_event(i)).collect());
        let bytes = serde_json::to_vec(&body).expect("JSON");
        out.extend(
            panicle_protocol::decode_events(&bytes)
                .expect("the generated events are valid")
                .into_iter()
                .map(|d| to_new_event(d, received_ms)),
        );
        start = end;
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build(),
    )
}

const SERVER_ENV: &[(&str, &str)] = &[
    // Clustering runs when the bench asks; nothing else writes meanwhile.
    ("PANICLE_CLUSTER_INTERVAL", "0"),
    ("PANICLE_RETENTION_INTERVAL", "0"),
    ("PANICLE_RATE_LIMIT", "0"),
    // A slow view is measured, not cut at the default 60 s.
    ("PANICLE_REQUEST_TIMEOUT", "600"),
    // Slow-statement warnings would bury the tables.
    ("PANICLE_LOG", "error"),
];

/// The checks that the bulk path stores what ingest stored.
fn assert_same(via_http: &panicle_store::EventRow, ours: &NewEvent) {
    let s = &via_http.summary;
    let pairs: [(&str, String, String); 14] = [
        (
            "ts",
            s.timestamp_ms.to_string(),
            ours.timestamp_ms.to_string(),
        ),
        ("platform", s.platform.clone(), ours.platform.clone()),
        ("kind", s.kind.clone(), ours.kind.clone()),
        ("message", s.message.clone(), ours.message.clone()),
        (
            "service",
            format!("{:?}", s.service),
            format!("{:?}", ours.service),
        ),
        (
            "environment",
            format!("{:?}", s.environment),
            format!("{:?}", ours.environment),
        ),
        (
            "release",
            format!("{:?}", s.release),
            format!("{:?}", ours.release),
        ),
        (
            "trace_id",
            format!("{:?}", s.trace_id),
            format!("{:?}", ours.trace_id),
        ),
        ("pod", format!("{:?}", s.pod), format!("{:?}", ours.pod)),
        ("node", format!("{:?}", s.node), format!("{:?}", ours.node)),
        (
            "route",
            format!("{:?}", s.route),
            format!("{:?}", ours.route),
        ),
        ("depth", s.depth.to_string(), ours.depth.to_string()),
        ("weight", s.weight.to_string(), ours.weight.to_string()),
        ("payload", via_http.payload.clone(), ours.payload.clone()),
    ];
    for (name, a, b) in pairs {
        assert_eq!(
            a, b,
            "event {}: {name} differs from ingest's",
            ours.event_id
        );
    }
}

struct Seeded {
    db: TestDb,
    token: String,
    project_id: i64,
    seed_secs: f64,
    cluster_report: serde_json::Value,
    groups: usize,
    counted: i64,
}

async fn seed(backend: Backend, data: &Dataset, analyze: bool) -> Seeded {
    let db = TestDb::new(backend).await;
    let started = Instant::now();
    // 1. The first events through HTTP ingest, on a first-started server.
    let first = common::Server::start_with(&db.url, SERVER_ENV);
    let key = first
        .dsn
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap_or_default()
        .to_string();
    let token = first.token.clone();
    let via_http = data.n.min(HTTP_EVENTS);
    let base = first.base.clone();
    let data_for_http = *data;
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        for start in (0..via_http).step_by(HTTP_BATCH) {
            let batch: Vec<serde_json::Value> = (start..(start + HTTP_BATCH).min(via_http))
                .map(|i| data_for_http.wire_event(i))
                .collect();
            let mut answer = agent
                .post(&format!("{base}/api/v1/events"))
                .header("X-Panicle-Key", &key)
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(&batch).expect("JSON").as_slice())
                .expect("POST /api/v1/events");
            let status = answer.status().as_u16();
            let body = answer.body_mut().read_to_string().unwrap_or_default();
            assert_eq!(status, 202, "ingest answered {status}: {body}");
        }
    })
    .await
    .expect("the HTTP seeding");
    drop(first);
    let http_secs = started.elapsed().as_secs_f64();

    // 2. The rest through the store, with the limits ingest applies.
    let store = Store::connect(&db.url).await.expect("the store");
    let project = store
        .project_by_name("default")
        .await
        .expect("projects")
        .expect("the first start's project");
    let received_ms = now_ms();
    // The rows the bulk path makes of the HTTP-ingested events are those ingest made.
    for ours in new_events(data, 0..via_http, received_ms) {
        let row = store
            .get_event(&ours.event_id, Some(project.id))
            .await
            .expect("read an event")
            .expect("the HTTP-ingested event is stored");
        assert_same(&row, &ours);
    }
    let limits = InsertLimits {
        daily_quota: 0,
        monthly_quota: 0,
        group_cap: GROUP_CAP,
    };
    let mut next_report = 100_000;
    for start in (via_http..data.n).step_by(STORE_BATCH) {
        let end = (start + STORE_BATCH).min(data.n);
        let events = new_events(data, start..end, now_ms());
        let outcome = store
            .insert_events_with(project.id, &events, &limits)
            .await
            .expect("insert a batch");
        assert_eq!(outcome.inserted, events.len(), "every event is new");
        if end >= next_report {
            eprintln!(
                "  seeded {end} events in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            next_report += 100_000;
        }
    }
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  {via_http} events through HTTP in {http_secs:.1} s, {} through the store in {:.1} s",
        data.n - via_http,
        seed_secs - http_secs
    );
    let groups = store.all_groups(Some(project.id)).await.expect("groups");
    let counted: i64 = groups.iter().map(|g| g.count).sum();
    assert_eq!(counted, data.n as i64, "every event is counted in a group");

    // 3. Clustering, as the server runs it.
    let server = common::Server::start_with(&db.url, SERVER_ENV);
    let (base, t) = (server.base.clone(), token.clone());
    let cluster_report = tokio::task::spawn_blocking(move || {
        let mut answer = agent()
            .post(&format!("{base}/api/v1/clusters/recompute"))
            .header("Authorization", format!("Bearer {t}"))
            .send(&b""[..])
            .expect("POST recompute");
        assert_eq!(answer.status().as_u16(), 200, "recompute");
        answer
            .body_mut()
            .read_json::<serde_json::Value>()
            .unwrap_or_default()
    })
    .await
    .expect("clustering");
    drop(server);
    if analyze {
        store.analyze().await.expect("ANALYZE");
    }
    store.close().await;
    Seeded {
        db,
        token,
        project_id: project.id,
        seed_secs,
        cluster_report,
        groups: groups.len(),
        counted,
    }
}

struct ViewTiming {
    name: String,
    calls: usize,
    p50: f64,
    p99: f64,
}

struct RunResult {
    label: String,
    views: Vec<ViewTiming>,
    hwm_mb: f64,
    rss_mb: f64,
}

/// The views, as the dashboard asks for them (`web/js/pages`).
fn views(data: &Dataset, big: &str, typical: &str) -> Vec<(String, String)> {
    let now = data.now_ms;
    let d7 = rfc3339(now - 7 * DAY_MS);
    let d1 = rfc3339(now - DAY_MS);
    let until = rfc3339(now);
    let list = |extra: &str| format!("/api/v1/clusters?state=unresolved&limit=25{extra}");
    let release = data.newest_release();
    vec![
        (
            "clusters (7d, last_seen)".into(),
            list(&format!("&since={d7}&sort=last_seen")),
        ),
        (
            "clusters (7d, events)".into(),
            list(&format!("&since={d7}&sort=events")),
        ),
        (
            "clusters (7d, growth)".into(),
            list(&format!("&since={d7}&sort=growth")),
        ),
        (
            "clusters (24h)".into(),
            list(&format!("&since={d1}&sort=last_seen")),
        ),
        ("clusters (all time)".into(), list("&sort=last_seen")),
        (
            "clusters ?service".into(),
            list(&format!("&since={d7}&service={}", SERVICES[0])),
        ),
        (
            "clusters ?release".into(),
            list(&format!("&since={d7}&release={release}")),
        ),
        (
            "clusters ?pod&route".into(),
            list(&format!(
                "&since={d7}&pod={}-7d9f8b6c5-{}&route=/api/orders/%7Bid%7D",
                SERVICES[1],
                letters(101)
            )),
        ),
        (
            "clusters ?q".into(),
            list(&format!("&since={d7}&q=validate")),
        ),
        (
            "cluster detail (largest)".into(),
            format!("/api/v1/clusters/{big}"),
        ),
        (
            "cluster detail (largest, 7d)".into(),
            format!("/api/v1/clusters/{big}?since={d7}"),
        ),
        (
            "cluster detail (typical)".into(),
            format!("/api/v1/clusters/{typical}"),
        ),
        (
            "heatmap 1h × 7d (largest)".into(),
            format!("/api/v1/clusters/{big}/heatmap?bucket=1h&since={d7}&until={until}"),
        ),
        (
            "heatmap hour_of_day (largest)".into(),
            format!("/api/v1/clusters/{big}/heatmap?bucket=hour_of_day&since={d7}&until={until}"),
        ),
        (
            "paths (largest)".into(),
            format!("/api/v1/clusters/{big}/paths"),
        ),
        (
            "cluster events (largest)".into(),
            format!("/api/v1/clusters/{big}/events?limit=20"),
        ),
        ("groups".into(), "/api/v1/groups?limit=50".into()),
        (
            "events (facets, 500)".into(),
            "/api/v1/events?limit=500".into(),
        ),
        (
            "events ?service".into(),
            format!("/api/v1/events?limit=50&service={}", SERVICES[2]),
        ),
    ]
}

fn measure(label: &str, seeded: &Seeded, data: &Dataset) -> RunResult {
    let calls = env("VIEWS_CALLS", 50) as usize;
    let budget = Duration::from_secs(env("VIEWS_BUDGET_SECS", 60));
    let mut server = common::Server::start_with(&seeded.db.url, SERVER_ENV);
    server.token = seeded.token.clone();
    let (status, top) = server.get("/api/v1/clusters?state=all&sort=events&limit=100");
    assert_eq!(status, 200, "cluster list: {top}");
    let items = top["items"].as_array().cloned().unwrap_or_default();
    let id = |i: usize| {
        items[i.min(items.len() - 1)]["id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let (big, typical) = (id(0), id(items.len() / 2));
    let agent = agent();
    let mut out = Vec::new();
    for (name, path) in views(data, &big, &typical) {
        let url = format!("{}{path}", server.base);
        let call = || {
            let t = Instant::now();
            let mut resp = agent
                .get(&url)
                .header("Authorization", format!("Bearer {}", server.token))
                .call()
                .expect("GET");
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            assert_eq!(status, 200, "{path}: {body}");
            t.elapsed().as_secs_f64() * 1e3
        };
        // One warm-up call, not counted.
        call();
        let started = Instant::now();
        let mut samples = Vec::new();
        while samples.len() < calls && (samples.len() < 5 || started.elapsed() < budget) {
            samples.push(call());
        }
        samples.sort_by(f64::total_cmp);
        out.push(ViewTiming {
            name,
            calls: samples.len(),
            p50: support::percentile(&samples, 0.5),
            p99: support::percentile(&samples, 0.99),
        });
    }
    let (hwm_mb, rss_mb) = support::rss_mb(server.child.id());
    drop(server);
    RunResult {
        label: label.to_string(),
        views: out,
        hwm_mb,
        rss_mb,
    }
}

fn print_run(r: &RunResult) {
    println!("\n{}", r.label);
    println!("| view | calls | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: |");
    for v in &r.views {
        println!("| {} | {} | {:.1} | {:.1} |", v.name, v.calls, v.p50, v.p99);
    }
    println!(
        "server RSS after the calls: VmHWM {:.0} MB, VmRSS {:.0} MB",
        r.hwm_mb, r.rss_mb
    );
}

fn print_compare(small: &RunResult, large: &RunResult) {
    println!("\n{} vs {}", small.label, large.label);
    println!("| view | p50 small | p99 small | p50 large | p99 large | p99 ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (a, b) in small.views.iter().zip(&large.views) {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}× |",
            a.name,
            a.p50,
            a.p99,
            b.p50,
            b.p99,
            b.p99 / a.p99
        );
    }
    println!(
        "| server VmHWM / VmRSS MB | {:.0} | {:.0} | {:.0} | {:.0} | |",
        small.hwm_mb, small.rss_mb, large.hwm_mb, large.rss_mb
    );
}

async fn run(backend: Backend, n: usize, groups: usize, analyze: bool) -> RunResult {
    let data = Dataset {
        n,
        groups,
        now_ms: now_ms(),
    };
    let seeded = seed(backend, &data, analyze).await;
    let size = match &seeded.db.backend {
        Backend::Sqlite => seeded
            .db
            .url
            .strip_prefix("sqlite://")
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| format!(", database file {:.0} MB", m.len() as f64 / 1e6))
            .unwrap_or_default(),
        Backend::Postgres => String::new(),
    };
    let label = format!(
        "{backend:?}, {n} events in {} groups, {} clusters (project {}; seeded in {:.1} s, clustered in {} ms{size}{})",
        seeded.groups,
        seeded.cluster_report["clusters"],
        seeded.project_id,
        seeded.seed_secs,
        seeded.cluster_report["millis"],
        if analyze {
            ", ANALYZE after seeding"
        } else {
            ""
        }
    );
    assert_eq!(seeded.counted, n as i64);
    eprintln!("{label}: measuring");
    let result = tokio::task::block_in_place(|| measure(&label, &seeded, &data));
    print_run(&result);
    result
}

fn main() {
    // `cargo test --benches` runs this binary in test mode: nothing to do then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let db = std::env::var("VIEWS_DB").unwrap_or_else(|_| "sqlite".into());
    let backend = if db == "sqlite" {
        Backend::Sqlite
    } else {
        // TestDb creates (and drops) a fresh database beside this URL.
        // SAFETY: set before any other thread runs.
        unsafe { std::env::set_var("PANICLE_TEST_POSTGRES_URL", &db) };
        Backend::Postgres
    };
    let n = env("VIEWS_EVENTS", 100_000) as usize;
    let groups = env("VIEWS_GROUPS", 2_000) as usize;
    let analyze = env("VIEWS_ANALYZE", 0) == 1;
    let compare = env("VIEWS_COMPARE", 1) == 1 && n != 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let small = if compare {
            Some(run(backend, 10_000, groups, analyze).await)
        } else {
            None
        };
        let large = run(backend, n, groups, analyze).await;
        if let Some(small) = small {
            print_compare(&small, &large);
        }
    });
}
