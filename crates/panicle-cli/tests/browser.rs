//! The dashboard in a real browser: starts `panicle serve` (one server with
//! seeded panics, one empty, one filled by `--demo-data`), then runs the
//! headless-Chromium tests in `web/e2e/run.mjs` against them: the seeded one
//! for behaviour, the demo one for every page at 1,400 and 390 px wide.
//! Screenshots land in `<repo>/test-artifacts/` (the widths pass in
//! `test-artifacts/responsive/`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Server;
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

/// The panic message that must show as text and run nothing.
const XSS_MESSAGE: &str = "<img src=x onerror=alert(1)><script>window.__pwned=1</script>";
/// Trace links point here; the browser test answers these URLs itself.
const TRACE_URL_TEMPLATE: &str = "http://traces.invalid/trace/{trace_id}";
const HOUR_MS: i64 = 3_600_000;
/// The seeded storm: panics folded into one aggregate of the orders cluster.
const STORM_COUNT: u32 = 37;
const STORM_SAMPLES: u32 = 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// RFC 3339 (UTC, milliseconds) from epoch milliseconds.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn hex(n: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap()
        })
        .collect()
}

fn dep_frames() -> Vec<Value> {
    vec![
        json!({"function": "axum::routing::route::Route::call", "file": "axum-0.8.1/src/routing/route.rs", "line": 120, "in_app": false, "package": "axum"}),
        json!({"function": "tower::util::map_response::MapResponse::call", "file": "tower-0.5.2/src/util/map_response.rs", "line": 77, "in_app": false, "package": "tower"}),
        json!({"function": "hyper::server::conn::http1::Connection::poll", "file": "hyper-1.5.0/src/server/conn/http1.rs", "line": 410, "in_app": false, "package": "hyper"}),
        json!({"function": "tokio::runtime::task::harness::Harness::poll", "file": "tokio-1.44.0/src/runtime/task/harness.rs", "line": 151, "in_app": false, "package": "tokio"}),
    ]
}

/// Three root causes: an unwrap in the orders service reached through two
/// call paths, an index out of bounds in the cart, and a hostile message.
fn seed_events(now: i64) -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..30i64 {
        let caller = if i % 3 == 0 {
            json!({"function": "shop::admin::bulk_reserve", "file": "src/admin.rs", "line": 19, "in_app": true, "package": "shop"})
        } else {
            json!({"function": "shop::orders::place_order", "file": "src/orders.rs", "line": 88, "in_app": true, "package": "shop"})
        };
        let mut frames = vec![
            json!({"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "column": 17, "in_app": true, "package": "shop"}),
            caller,
            json!({"function": "shop::api::handler", "file": "src/api.rs", "line": 12, "in_app": true, "package": "shop"}),
        ];
        frames.extend(dep_frames());
        events.push(json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            // Denser towards now, so the trend grows.
            "timestamp": rfc3339(now - i * i * HOUR_MS / 18 - 60_000),
            "platform": "rust",
            "kind": "panic",
            "message": "called `Option::unwrap()` on a `None` value",
            "location": {"file": "src/orders.rs", "line": 42, "column": 17},
            "thread": {"name": "tokio-runtime-worker", "id": "ThreadId(7)"},
            "frames": frames,
            "trace": {"trace_id": hex(32, i as u64 + 1), "span_id": hex(16, i as u64 + 100)},
            "resource": {
                "service.name": "checkout",
                "service.version": "1.4.2",
                "deployment.environment": "prod",
                "k8s.pod.name": if i % 2 == 0 { "checkout-7d9f-a" } else { "checkout-7d9f-b" },
                "k8s.node.name": format!("node-{}", 1 + i % 3),
            },
            "request": {"method": "POST", "route": "/orders/{id}", "request_id": format!("req-{i}")},
            "release": if i > 25 { "checkout@1.4.1" } else { "checkout@1.4.2" },
            "tags": {"region": "eu-west-1"},
        }));
    }
    events.push(storm_aggregate(now));
    for i in 0..12i64 {
        let mut frames = vec![
            json!({"function": "shop::cart::total", "file": "src/cart.rs", "line": 31, "in_app": true, "package": "shop"}),
            json!({"function": "shop::cart::handler", "file": "src/cart.rs", "line": 60, "in_app": true, "package": "shop"}),
        ];
        frames.extend(dep_frames());
        events.push(json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": rfc3339(now - i * 5 * HOUR_MS - 120_000),
            "platform": "rust",
            "kind": "panic",
            "message": format!("index out of bounds: the len is 3 but the index is {}", 7 + i),
            "frames": frames,
            "resource": {"service.name": "cart", "deployment.environment": if i % 4 == 0 { "staging" } else { "prod" }, "k8s.pod.name": "cart-55c-x"},
            "request": {"method": "GET", "route": "/cart"},
            "release": "cart@2.0.0",
        }));
    }
    for i in 0..3i64 {
        let mut frames = vec![
            json!({"function": "evil::<img src=x onerror=alert(2)>", "file": "<script>x</script>.rs", "line": 1, "in_app": true, "package": "evil"}),
        ];
        frames.extend(dep_frames());
        events.push(json!({
            "event_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": rfc3339(now - i * HOUR_MS - 300_000),
            "platform": "rust",
            "kind": "panic",
            "message": XSS_MESSAGE,
            "frames": frames,
            "trace": {"trace_id": hex(32, 1000 + i as u64), "span_id": hex(16, 2000 + i as u64)},
            "resource": {"service.name": "web", "deployment.environment": "prod", "k8s.pod.name": "<b>pod</b>"},
            "request": {"method": "GET", "route": "/<script>alert(4)</script>"},
            "release": "web@0.1.0",
            "tags": {"note": "<img src=y onerror=alert(5)>"},
        }));
    }
    events
}

/// The storm's id prefix: its aggregate is `folded_event_id(prefix, 0)`.
fn storm_prefix() -> String {
    panicle_protocol::storm::storm_id_prefix(0x5707_0000_0000_0001, 0x2a)
}

/// An orders panic repeated in a storm: one aggregate of `STORM_COUNT`
/// panics with `STORM_SAMPLES` sampled traces and requests.
fn storm_aggregate(now: i64) -> Value {
    let prefix = storm_prefix();
    let ts = now - 3 * HOUR_MS;
    let samples: Vec<Value> = (0..STORM_SAMPLES)
        .map(|i| {
            json!({
                "event_id": panicle_protocol::storm::folded_event_id(&prefix, i),
                "timestamp": rfc3339(ts + i64::from(i) * 50),
                "trace": {"trace_id": hex(32, 5000 + u64::from(i)), "span_id": hex(16, 6000 + u64::from(i))},
                "request_id": format!("req-storm-{i}"),
                "route": "/orders/{id}",
                "message": "called `Option::unwrap()` on a `None` value",
            })
        })
        .collect();
    let mut frames = vec![
        json!({"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "column": 17, "in_app": true, "package": "shop"}),
        json!({"function": "shop::orders::place_order", "file": "src/orders.rs", "line": 88, "in_app": true, "package": "shop"}),
        json!({"function": "shop::api::handler", "file": "src/api.rs", "line": 12, "in_app": true, "package": "shop"}),
    ];
    frames.extend(dep_frames());
    json!({
        "event_id": panicle_protocol::storm::folded_event_id(&prefix, 0),
        "timestamp": rfc3339(ts),
        "platform": "rust",
        "kind": "panic",
        "message": "called `Option::unwrap()` on a `None` value",
        "location": {"file": "src/orders.rs", "line": 42, "column": 17},
        "frames": frames,
        "trace": {"trace_id": hex(32, 5000), "span_id": hex(16, 6000)},
        "resource": {"service.name": "checkout", "deployment.environment": "prod", "k8s.pod.name": "checkout-7d9f-a"},
        "request": {"method": "POST", "route": "/orders/{id}", "request_id": "req-storm-0"},
        "release": "checkout@1.4.2",
        "count": STORM_COUNT,
        "storm": {
            "id_prefix": prefix,
            "seq_start": 0,
            "seq_end": STORM_COUNT,
            "samples": samples,
            "messages": ["called `Option::unwrap()` on a `None` value"],
        },
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

fn ingest_key(server: &Server) -> String {
    server
        .dsn
        .strip_prefix("http://")
        .and_then(|r| r.split_once('@'))
        .map(|(k, _)| k.to_string())
        .expect("key in DSN")
}

/// An event of the cart cluster in a release newer than the seeded one: it
/// brings the cluster back after the browser resolves it in cart@2.0.0.
fn regression_event(now: i64) -> Value {
    let mut frames = vec![
        json!({"function": "shop::cart::total", "file": "src/cart.rs", "line": 31, "in_app": true, "package": "shop"}),
        json!({"function": "shop::cart::handler", "file": "src/cart.rs", "line": 60, "in_app": true, "package": "shop"}),
    ];
    frames.extend(dep_frames());
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": rfc3339(now),
        "platform": "rust",
        "kind": "panic",
        "message": "index out of bounds: the len is 3 but the index is 99",
        "frames": frames,
        "resource": {"service.name": "cart", "deployment.environment": "prod", "k8s.pod.name": "cart-55c-y"},
        "request": {"method": "GET", "route": "/cart"},
        "release": "cart@2.1.0",
    })
}

fn ingest(server: &Server, events: &[Value]) {
    let key = ingest_key(server);
    let mut resp = agent()
        .post(&format!("{}/api/v1/events", server.base))
        .header("X-Panicle-Key", &key)
        .send_json(json!(events))
        .expect("POST events");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 202, "ingest: {body}");
}

fn recompute(server: &Server) -> u16 {
    let mut resp = agent()
        .post(&format!("{}/api/v1/clusters/recompute", server.base))
        .header("Authorization", format!("Bearer {}", server.token))
        .send_empty()
        .expect("POST recompute");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert!(status == 200 || status == 404, "recompute: {status} {body}");
    status
}

/// `npm ci` when the e2e packages are not installed yet (CI installs them first).
fn ensure_packages(e2e: &Path) {
    if e2e
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(e2e)
        .status()
        .expect("run npm ci in web/e2e (is Node.js installed?)");
    assert!(status.success(), "npm ci in web/e2e failed");
}

#[test]
fn dashboard_in_headless_chromium() {
    let root = repo_root();
    let e2e = root.join("web/e2e");
    ensure_packages(&e2e);
    let artifacts = root.join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Sqlite));
    let empty_db = rt.block_on(TestDb::new(Backend::Sqlite));
    let env = [("PANICLE_TRACE_URL_TEMPLATE", TRACE_URL_TEMPLATE)];
    let server = Server::start_with(&db.url, &env);
    let empty = Server::start_with(&empty_db.url, &env);
    let demo_db = rt.block_on(TestDb::new(Backend::Sqlite));
    let (demo, _) = Server::start_until(&demo_db.url, &["--demo-data"], &env, "Demo dashboard: ");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events = seed_events(now);
    ingest(&server, &events);
    server.wait_for("/api/v1/events?limit=500", |b| {
        b["items"]
            .as_array()
            .is_some_and(|a| a.len() == events.len())
    });
    if recompute(&server) == 200 {
        server.wait_for("/api/v1/clusters?state=all", |b| {
            b["items"].as_array().is_some_and(|a| a.len() >= 3)
        });
    }

    let out = Command::new("node")
        .arg("run.mjs")
        .current_dir(&e2e)
        .env("BASE_URL", &server.base)
        .env("TOKEN", &server.token)
        .env("EMPTY_BASE_URL", &empty.base)
        .env("EMPTY_TOKEN", &empty.token)
        .env("EMPTY_DSN", &empty.dsn)
        .env("TRACE_URL_TEMPLATE", TRACE_URL_TEMPLATE)
        .env("XSS_MESSAGE", XSS_MESSAGE)
        .env(
            "STORM_EVENT_ID",
            panicle_protocol::storm::folded_event_id(&storm_prefix(), 0),
        )
        .env(
            "STORM_FOLDED_ID",
            panicle_protocol::storm::folded_event_id(&storm_prefix(), STORM_COUNT - 1),
        )
        .env("STORM_COUNT", STORM_COUNT.to_string())
        .env("STORM_TRACES", STORM_SAMPLES.to_string())
        .env("INGEST_KEY", ingest_key(&server))
        .env("REGRESSION_EVENT", regression_event(now).to_string())
        .env("DEMO_BASE_URL", &demo.base)
        .env("DEMO_TOKEN", &demo.token)
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("run node web/e2e/run.mjs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
    for page in ["signin", "clusters", "cluster", "event"] {
        let shot = artifacts.join(format!("{page}.png"));
        if page == "clusters" || page == "cluster" {
            // Only taken when the server has the cluster endpoints.
            if !stdout.contains("cluster checks not run") {
                assert!(shot.exists(), "screenshot {}", shot.display());
            }
        } else {
            assert!(shot.exists(), "screenshot {}", shot.display());
        }
    }
    // The widths pass kept a screenshot of each page at each width.
    for width in [1400, 390] {
        for page in [
            "signin",
            "clusters",
            "cluster-checkout",
            "event-go",
            "alerts",
        ] {
            let shot = artifacts.join(format!("responsive/{width}-{page}.png"));
            assert!(shot.exists(), "screenshot {}", shot.display());
        }
    }
}

#[test]
fn rfc3339_matches_known_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339(1_767_225_599_000), "2025-12-31T23:59:59.000Z");
}
