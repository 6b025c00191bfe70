//! Cluster API on SQLite and PostgreSQL over real HTTP, on seeded events whose
//! culprit, distributions, heatmap and paths are worked out by hand below.
//!
//! Seed (T0 = 12 days ago, all service "shop"):
//! - A1 ×3: reserve(l.40) ← checkout ← main, pod web-1, route /orders/{id},
//!   release shop@1.0, traces t1 t2 t3, at T0, T0+1h, T0+2h; depth 3.
//! - A2 ×2: reserve(l.44) ← batch ← main (+1 tokio frame), pod web-1, release
//!   shop@1.1, at T0+10d and T0+10d+1m; depth 4.
//! - B ×2: index out of bounds in total ← checkout ← main, pods web-1/web-2,
//!   trace t1 (shared with A), at T0+30m and T0+90m; depth 3.
//!
//! A1 and A2 share the panicking frame and the message: one cluster.

use std::net::SocketAddr;

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

struct Running {
    base: String,
    key: String,
    token: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: &TestDb) -> Running {
    let store = db.store().await;
    let project = store.create_project("shop").await.unwrap();
    let token = store.create_token("test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        trace_url_template: Some("https://jaeger.example/trace/{trace_id}".into()),
        ..ServerConfig::default()
    };
    let state = AppState::new(store, config).unwrap();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        key: project.ingest_key,
        token,
        _shutdown: tx,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

async fn call(
    method: &'static str,
    url: String,
    token: Option<String>,
    key: Option<String>,
    body: Option<Value>,
) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let mut resp = match (method, body) {
            ("GET", _) => {
                let mut r = agent().get(&url);
                if let Some(t) = &token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                r.call().unwrap()
            }
            (_, body) => {
                let mut r = agent().post(&url);
                if let Some(t) = &token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                if let Some(k) = &key {
                    r = r.header("X-Panicle-Key", k);
                }
                r.send(
                    serde_json::to_vec(&body.unwrap_or(Value::Null))
                        .unwrap()
                        .as_slice(),
                )
                .unwrap()
            }
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[allow(clippy::too_many_arguments)]
fn event(
    message: &str,
    frames: &[(&str, u32, bool)],
    ts: i64,
    pod: &str,
    release: &str,
    trace: Option<&str>,
    route: Option<&str>,
) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": rfc3339(ts),
        "message": message,
        "platform": "rust",
        "kind": "panic",
        "frames": frames.iter().map(|(f, line, in_app)| json!({
            "function": f, "file": format!("src/{}.rs", f.split("::").nth(1).unwrap_or("x")), "line": line, "in_app": in_app
        })).collect::<Vec<_>>(),
        "resource": {"service.name": "shop", "k8s.pod.name": pod, "deployment.environment": "prod"},
        "release": release,
    });
    if let Some(t) = trace {
        e["trace"] = json!({"trace_id": t, "span_id": "00f067aa0ba902b7"});
    }
    if let Some(r) = route {
        e["request"] = json!({"method": "GET", "route": r});
    }
    e
}

const UNWRAP: &str = "called `Option::unwrap()` on a `None` value";
const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4737";
const T3: &str = "4bf92f3577b34da6a3ce929d0e0e4738";

fn seed(t0: i64) -> Vec<Value> {
    let a1 = [
        ("shop::orders::reserve", 40, true),
        ("shop::api::checkout", 12, true),
        ("shop::main", 5, true),
    ];
    let a2 = [
        ("shop::orders::reserve", 44, true),
        ("shop::jobs::batch", 20, true),
        ("tokio::runtime::task::raw::poll", 1, false),
        ("shop::main", 6, true),
    ];
    let b = [
        ("shop::cart::total", 9, true),
        ("shop::api::checkout", 14, true),
        ("shop::main", 5, true),
    ];
    vec![
        event(
            UNWRAP,
            &a1,
            t0,
            "web-1",
            "shop@1.0",
            Some(T1),
            Some("/orders/{id}"),
        ),
        event(
            UNWRAP,
            &a1,
            t0 + HOUR,
            "web-1",
            "shop@1.0",
            Some(T2),
            Some("/orders/{id}"),
        ),
        event(
            UNWRAP,
            &a1,
            t0 + 2 * HOUR,
            "web-1",
            "shop@1.0",
            Some(T3),
            Some("/orders/{id}"),
        ),
        event(UNWRAP, &a2, t0 + 10 * DAY, "web-1", "shop@1.1", None, None),
        event(
            UNWRAP,
            &a2,
            t0 + 10 * DAY + 60_000,
            "web-1",
            "shop@1.1",
            None,
            None,
        ),
        event(
            "index out of bounds: the len is 3 but the index is 5",
            &b,
            t0 + HOUR / 2,
            "web-1",
            "shop@1.0",
            Some(T1),
            None,
        ),
        event(
            "index out of bounds: the len is 3 but the index is 7",
            &b,
            t0 + 3 * HOUR / 2,
            "web-2",
            "shop@1.0",
            None,
            None,
        ),
    ]
}

fn names(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("(not recorded)").to_string(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

panicle_store::backend_tests! {
    async fn clusters_are_explained(db: &TestDb) {
        let s = start(db).await;
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let t0 = (now - 12 * DAY) / HOUR * HOUR;
        let (status, body) = call("POST", format!("{}/api/v1/events", s.base), None, Some(s.key.clone()), Some(Value::Array(seed(t0)))).await;
        assert_eq!(status, 202, "{body}");
        let tok = || Some(s.token.clone());
        let (status, report) = call("POST", format!("{}/api/v1/clusters/recompute", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["ran"], true);
        assert_eq!(report["groups"], 3);
        assert_eq!(report["clusters"], 2);

        // The list: A is newest (last seen T0+10d), B second.
        let (status, list) = call("GET", format!("{}/api/v1/clusters?state=all", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{list}");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        let a = &items[0];
        assert_eq!(a["count"], 5);
        assert_eq!(a["group_count"], 2);
        assert_eq!(a["services"], json!(["shop"]));
        assert_eq!(a["first_release"], "shop@1.0");
        assert_eq!(a["suggestion"]["source"]["id"], "rust.option-unwrap-none");
        assert_eq!(a["trend"].as_array().unwrap().len(), 24);
        assert_eq!(items[1]["count"], 2);
        let (_, by_events) = call("GET", format!("{}/api/v1/clusters?sort=events&limit=1", s.base), tok(), None, None).await;
        assert_eq!(by_events["items"][0]["id"], a["id"]);
        assert!(by_events["next_cursor"].is_string());
        let cursor = by_events["next_cursor"].as_str().unwrap();
        let (_, page2) = call("GET", format!("{}/api/v1/clusters?sort=events&limit=1&cursor={cursor}", s.base), tok(), None, None).await;
        assert_eq!(page2["items"][0]["id"], items[1]["id"]);
        assert!(page2["next_cursor"].is_null());
        // Filters and text search narrow by events.
        let (_, web2) = call("GET", format!("{}/api/v1/clusters?q=cart::total", s.base), tok(), None, None).await;
        assert_eq!(web2["items"].as_array().unwrap().len(), 1);
        assert_eq!(web2["items"][0]["id"], items[1]["id"]);
        let (_, rel) = call("GET", format!("{}/api/v1/clusters?release=shop@1.1", s.base), tok(), None, None).await;
        assert_eq!(rel["items"].as_array().unwrap().len(), 1);
        assert_eq!(rel["items"][0]["count"], 2);
        let (status, err) = call("GET", format!("{}/api/v1/clusters?sort=nope", s.base), tok(), None, None).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_parameter")));

        // One cluster, explained.
        let id = a["id"].as_str().unwrap().to_string();
        let (status, c) = call("GET", format!("{}/api/v1/clusters/{id}", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["culprit"]["function"], "shop::orders::reserve");
        assert_eq!(c["culprit"]["line_min"], 40);
        assert_eq!(c["culprit"]["line_max"], 44);
        assert_eq!(c["culprit"]["share"], 1.0);
        assert_eq!(c["common_path"], json!(["shop::main"]));
        assert_eq!(names(&c["where"]["pods"]), vec![("web-1".to_string(), 5)]);
        assert_eq!(names(&c["where"]["releases"]), vec![("shop@1.0".to_string(), 3), ("shop@1.1".to_string(), 2)]);
        // A2's two have no route: the distribution still adds up to 5.
        assert_eq!(names(&c["where"]["routes"]), vec![("/orders/{id}".to_string(), 3), ("(not recorded)".to_string(), 2)]);
        assert_eq!(c["confined"], json!({"kind": "pod", "name": "web-1"}));
        assert_eq!(c["regression"]["release"], "shop@1.1");
        assert_eq!(c["regression"]["previous_release"], "shop@1.0");
        assert_eq!(c["returned_after_quiet"], c["regression"], "the old name stays for older clients");
        assert_eq!(c["state"]["status"], "unresolved");
        assert_eq!(c["suggestion"]["source"]["kind"], "rule");
        assert!(c["suggestion"]["caught_by"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("unwrap_used")), "{}", c["suggestion"]);
        assert_eq!(c["groups"].as_array().unwrap().len(), 2);
        assert!(c["merged_because"].as_array().unwrap().contains(&json!("shop::orders::reserve")));
        for g in c["groups"].as_array().unwrap() {
            assert!(g["shared_frames"].as_array().unwrap().contains(&json!("shop::orders::reserve")));
        }
        let traces = c["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 3);
        assert_eq!(traces[0]["url"], format!("https://jaeger.example/trace/{T3}"));
        assert_eq!(c["related"][0]["id"], items[1]["id"], "{}", c["traces"]);
        assert_eq!(c["related"][0]["shared_traces"], 1);
        assert_eq!(c["representative"]["frames"][0]["function"], "shop::orders::reserve");

        // Narrowed to one member group: A2 alone.
        let a2 = c["groups"].as_array().unwrap().iter().find(|g| g["frames"].as_array().unwrap().contains(&json!("shop::jobs::batch"))).unwrap()["id"].as_str().unwrap().to_string();
        let (status, g) = call("GET", format!("{}/api/v1/clusters/{id}?group={a2}", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{g}");
        assert_eq!((g["culprit"]["line_min"].as_u64(), g["culprit"]["line_max"].as_u64()), (Some(44), Some(44)));
        assert_eq!(names(&g["where"]["releases"]), vec![("shop@1.1".to_string(), 2)]);
        assert_eq!(g["common_path"], json!(["shop::jobs::batch", "shop::main"]));
        let (_, gev) = call("GET", format!("{}/api/v1/clusters/{id}/events?group={a2}", s.base), tok(), None, None).await;
        assert_eq!(gev["items"].as_array().unwrap().len(), 2);
        let (_, gh) = call("GET", format!("{}/api/v1/clusters/{id}/heatmap?bucket=hour_of_day&group={a2}&since={}&until={}", s.base, t0 - DAY, now), tok(), None, None).await;
        assert_eq!(gh["depths"], json!([4]));
        let (status, _) = call("GET", format!("{}/api/v1/clusters/{id}?group=g-not-a-member", s.base), tok(), None, None).await;
        assert_eq!(status, 404);

        // Its events, with trace links.
        let (status, ev) = call("GET", format!("{}/api/v1/clusters/{id}/events?limit=10", s.base), tok(), None, None).await;
        assert_eq!(status, 200);
        let ev = ev["items"].as_array().unwrap();
        assert_eq!(ev.len(), 5);
        let linked: Vec<&Value> = ev.iter().filter(|e| e["trace_url"].is_string()).collect();
        assert_eq!(linked.len(), 3);
        let one = linked[0]["event_id"].as_str().unwrap();
        let (_, full) = call("GET", format!("{}/api/v1/events/{one}", s.base), tok(), None, None).await;
        assert_eq!(full["trace_url"], format!("https://jaeger.example/trace/{}", full["trace_id"].as_str().unwrap()));


        // Heatmap over T0..T0+3h by hour: A1 at depth 3 once per hour; the
        // project adds B's two events (T0+30m, T0+90m).
        let (status, h) = call("GET", format!("{}/api/v1/clusters/{id}/heatmap?bucket=1h&since={}&until={}", s.base, t0, t0 + 3 * HOUR), tok(), None, None).await;
        assert_eq!(status, 200, "{h}");
        assert_eq!(h["depths"], json!([3]));
        // Sparse: [row, column, count] of the non-zero cells.
        assert_eq!(h["cells"], json!([[0, 0, 1], [0, 1, 1], [0, 2, 1]]));
        assert_eq!((h["start"].as_str(), h["columns"].as_u64(), h["bucket"].as_str()), (Some(rfc3339(t0).as_str()), Some(3), Some("1h")));
        assert_eq!(h["project"]["cells"], json!([[0, 0, 2], [0, 1, 2], [0, 2, 1]]));
        assert_eq!(h["project"]["max"], 2);
        let (_, hod) = call("GET", format!("{}/api/v1/clusters/{id}/heatmap?bucket=hour_of_day&since={}&until={}", s.base, t0 - DAY, now), tok(), None, None).await;
        assert_eq!((hod["columns"].as_u64(), &hod["start"]), (Some(24), &Value::Null));
        assert_eq!(hod["depths"], json!([3, 4]));
        let total: u64 = hod["cells"].as_array().unwrap().iter().map(|c| c[2].as_u64().unwrap()).sum();
        assert_eq!((total, hod["total"].as_u64()), (5, Some(5)));
        let (status, _) = call("GET", format!("{}/api/v1/clusters/{id}/heatmap?bucket=7x", s.base), tok(), None, None).await;
        assert_eq!(status, 400);

        // Hot paths: main → checkout → reserve (3), main → batch → reserve (2).
        let (status, p) = call("GET", format!("{}/api/v1/clusters/{id}/paths", s.base), tok(), None, None).await;
        assert_eq!(status, 200);
        let main = &p["root"]["children"][0];
        assert_eq!((main["function"].as_str(), main["count"].as_u64()), (Some("shop::main"), Some(5)));
        assert_eq!(main["children"][0]["function"], "shop::api::checkout");
        assert_eq!(main["children"][0]["count"], 3);
        assert_eq!(main["children"][1]["function"], "shop::jobs::batch");
        assert_eq!(main["children"][1]["children"][0]["function"], "shop::orders::reserve");

        // Unknown cluster and no token.
        let (status, err) = call("GET", format!("{}/api/v1/clusters/999999", s.base), tok(), None, None).await;
        assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")));
        let (status, _) = call("GET", format!("{}/api/v1/clusters", s.base), None, None, None).await;
        assert_eq!(status, 401);

        // A second run keeps the ids.
        let (_, _) = call("POST", format!("{}/api/v1/clusters/recompute", s.base), tok(), None, None).await;
        let (_, again) = call("GET", format!("{}/api/v1/clusters", s.base), tok(), None, None).await;
        assert_eq!(again["items"][0]["id"], a["id"]);
        assert_eq!(again["items"][1]["id"], items[1]["id"]);

        // The sparkline's last bucket holds now: an event a minute ago counts.
        let recent = event(UNWRAP, &[("shop::orders::reserve", 40, true), ("shop::api::checkout", 12, true), ("shop::main", 5, true)], now - 60_000, "web-1", "shop@1.0", None, None);
        call("POST", format!("{}/api/v1/events", s.base), None, Some(s.key.clone()), Some(recent)).await;
        let (_, list) = call("GET", format!("{}/api/v1/clusters", s.base), tok(), None, None).await;
        let trend = list["items"][0]["trend"].as_array().unwrap();
        let counted: u64 = trend.iter().map(|p| p["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, 1, "{trend:?}");
        let last_start = time::OffsetDateTime::parse(trend.last().unwrap()["t"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        let last_start = (last_start.unix_timestamp_nanos() / 1_000_000) as i64;
        assert!(last_start <= now && now < last_start + HOUR, "the last bucket holds now: {trend:?}");
    }

    async fn new_groups_join_a_cluster_between_runs(db: &TestDb) {
        let s = start(db).await;
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let t0 = (now - 12 * DAY) / HOUR * HOUR;
        let mut seed = seed(t0);
        let late_a2 = seed.remove(4);
        let _ = seed.remove(3);
        call("POST", format!("{}/api/v1/events", s.base), None, Some(s.key.clone()), Some(Value::Array(seed))).await;
        let tok = || Some(s.token.clone());
        call("POST", format!("{}/api/v1/clusters/recompute", s.base), tok(), None, None).await;
        // A2 arrives after the run: attached to A's cluster through its core member.
        let (status, _) = call("POST", format!("{}/api/v1/events", s.base), None, Some(s.key.clone()), Some(late_a2)).await;
        assert_eq!(status, 202);
        let mut tries = 0;
        loop {
            let (_, groups) = call("GET", format!("{}/api/v1/groups", s.base), tok(), None, None).await;
            let groups = groups["items"].as_array().unwrap().clone();
            if groups.len() == 3 && groups.iter().all(|g| g["cluster_id"].is_string()) {
                let cluster_of = |f: &str| groups.iter().find(|g| g["frames"].as_array().unwrap().contains(&json!(f))).unwrap()["cluster_id"].clone();
                assert_eq!(cluster_of("shop::jobs::batch"), cluster_of("shop::api::checkout"));
                break;
            }
            tries += 1;
            assert!(tries < 100, "new group never got a cluster: {groups:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    // A crash in a library's goroutine: no frame of the program on the
    // stack. The culprit is the first frame outside the runtime, marked so.
    async fn a_culprit_outside_the_app_is_marked(db: &TestDb) {
        let s = start(db).await;
        let tok = || Some(s.token.clone());
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let events: Vec<Value> = (0..3)
            .map(|i| json!({
                "event_id": uuid::Uuid::new_v4().to_string(),
                "timestamp": rfc3339(now - (i + 1) * 60_000),
                "message": "runtime error: invalid memory address or nil pointer dereference",
                "platform": "go",
                "kind": "panic",
                "frames": [
                    {"function": "runtime.panicmem", "file": "/usr/lib/go-1.19/src/runtime/panic.go", "line": 260, "in_app": false},
                    {"function": "bytes.(*Buffer).Reset", "file": "/usr/lib/go-1.19/src/bytes/buffer.go", "line": 98, "in_app": false},
                    {"function": "time.goFunc", "file": "/usr/lib/go-1.19/src/time/sleep.go", "line": 176, "in_app": false},
                ],
                "resource": {"service.name": "sessions"},
            }))
            .collect();
        let (status, body) = call("POST", format!("{}/api/v1/events", s.base), None, Some(s.key.clone()), Some(Value::Array(events))).await;
        assert_eq!(status, 202, "{body}");
        call("POST", format!("{}/api/v1/clusters/recompute", s.base), tok(), None, None).await;
        let (_, list) = call("GET", format!("{}/api/v1/clusters", s.base), tok(), None, None).await;
        let id = list["items"][0]["id"].as_str().unwrap().to_string();
        let (status, c) = call("GET", format!("{}/api/v1/clusters/{id}", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["culprit"]["function"], "bytes.(*Buffer).Reset", "{c}");
        assert_eq!(c["culprit"]["in_app"], false, "{c}");
    }

    // `qty.parse::<u32>().unwrap()` reached with "ten" and with "": two
    // messages, two groups, one cluster, and the merge read in the terms
    // of the message's parts.
    async fn payload_variants_merge_and_are_explained(db: &TestDb) {
        let s = start(db).await;
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let unwrap = "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: ";
        let digit = format!("{unwrap}InvalidDigit }}");
        let empty = format!("{unwrap}Empty }}");
        let add = [("shop::cart::parse_qty", 10, true), ("shop::api::add_item", 20, true), ("shop::main", 5, true)];
        let update = [("shop::cart::parse_qty", 10, true), ("shop::api::update_item", 31, true), ("shop::main", 5, true)];
        let none = [("shop::cart::parse_qty", 12, true), ("shop::api::add_item", 20, true), ("shop::main", 5, true)];
        let mut events = Vec::new();
        for k in 0..2 {
            events.push(event(&digit, &add, now - HOUR + k, "web-1", "shop@2.0", None, None));
            events.push(event(&empty, &update, now - HOUR + 10 + k, "web-1", "shop@2.0", None, None));
            events.push(event(UNWRAP, &none, now - HOUR + 20 + k, "web-1", "shop@2.0", None, None));
        }
        let (status, body) = call("POST", format!("{}/api/v1/events", s.base), None, Some(s.key.clone()), Some(Value::Array(events))).await;
        assert_eq!(status, 202, "{body}");
        let tok = || Some(s.token.clone());
        let (status, report) = call("POST", format!("{}/api/v1/clusters/recompute", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["groups"], 3);
        // The payload variants join; the `Option::unwrap()` in the same function stays apart.
        assert_eq!(report["clusters"], 2, "{report}");
        let (_, list) = call("GET", format!("{}/api/v1/clusters?state=all", s.base), tok(), None, None).await;
        let merged = list["items"].as_array().unwrap().iter().find(|c| c["group_count"] == 2).unwrap();
        let id = merged["id"].as_str().unwrap();
        let (status, c) = call("GET", format!("{}/api/v1/clusters/{id}", s.base), tok(), None, None).await;
        assert_eq!(status, 200, "{c}");
        let groups = c["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        let member = groups.iter().find(|g| g["distance"].as_f64().unwrap() > 0.0).unwrap();
        let rep = groups.iter().find(|g| g["distance"].as_f64().unwrap() == 0.0).unwrap();
        let variant = |g: &Value| if g["title"].as_str().unwrap().contains("Empty") { "Empty" } else { "InvalidDigit" };
        assert_ne!(variant(member), variant(rep));
        assert_eq!(
            member["why"],
            format!("same culprit, same kind, same error type; payload differs: {} / {}", variant(member), variant(rep))
        );
        assert_eq!(member["same_culprit"], true);
        assert_eq!(member["same_kind"], true);
        assert_eq!(member["same_error_type"], true);
        assert_eq!(member["same_message"], false);
        assert_eq!(member["payload_differs"], json!({"this": [variant(member)], "representative": [variant(rep)]}));
    }
}
