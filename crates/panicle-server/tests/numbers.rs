//! Numbers that agree (issue 16), on SQLite and PostgreSQL over real HTTP:
//! every view of a cluster — list, detail header, member groups, `where`,
//! trend, heatmap, paths, events list — counts the same panics, storm
//! aggregates' counts and events a group kept only as counts included; the
//! list filters narrow them all alike; unknown parameters are refused;
//! heatmap buckets are what they say; a new cluster's trend says "new".
//!
//! Fixture (the last two hours, groups keep 3 events in full):
//! - A1: `Option::unwrap()` in reserve ← checkout ← main, 10 panics sent one
//!   by one on pods checkout-0..3 (even ones with route /orders), plus two
//!   storm aggregates of 30 and 25 on checkout-1. Past the cap of 3 some of
//!   the 10 are kept only as counts.
//! - A2: the same panic through reserve ← batch ← main, 4 panics, pod
//!   worker-0, no route.
//! - C, an older cluster: an index panic in cart::total, 2 panics 30 h ago,
//!   2 panics 20 h ago, 4 an hour ago.

use std::net::SocketAddr;

use panicle_protocol::storm::{folded_event_id, storm_id_prefix};
use panicle_server::{AppState, LimitDefaults, ServerConfig};
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const UNWRAP: &str = "called `Option::unwrap()` on a `None` value";

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
        limits: LimitDefaults {
            group_event_cap: 3,
            ..LimitDefaults::default()
        },
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

/// One exchange: (status, body bytes, JSON body).
async fn call(
    url: String,
    token: Option<String>,
    key: Option<String>,
    body: Option<Value>,
) -> (u16, usize, Value) {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut resp = match body {
            None => {
                let mut r = agent.get(&url);
                if let Some(t) = &token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                r.call().unwrap()
            }
            Some(body) => {
                let mut r = agent.post(&url);
                if let Some(t) = &token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                if let Some(k) = &key {
                    r = r.header("X-Panicle-Key", k);
                }
                r.send(serde_json::to_vec(&body).unwrap().as_slice())
                    .unwrap()
            }
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            text.len(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    })
    .await
    .unwrap()
}

impl Running {
    async fn get(&self, path: &str) -> Value {
        let (status, _, body) = call(
            format!("{}{path}", self.base),
            Some(self.token.clone()),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn status(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = call(
            format!("{}{path}", self.base),
            Some(self.token.clone()),
            None,
            None,
        )
        .await;
        (status, body)
    }

    async fn ingest(&self, events: Vec<Value>) {
        let (status, _, body) = call(
            format!("{}/api/v1/events", self.base),
            None,
            Some(self.key.clone()),
            Some(Value::Array(events)),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn event(message: &str, frames: &[&str], ts: i64, pod: &str, route: Option<&str>) -> Value {
    let frames: Vec<Value> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| json!({"function": f, "file": "src/lib.rs", "line": 40 + i, "in_app": true}))
        .collect();
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": rfc3339(ts),
        "message": message,
        "platform": "rust",
        "frames": frames,
        "resource": {"service.name": "checkout", "k8s.pod.name": pod, "k8s.node.name": "node-a"},
    });
    if let Some(r) = route {
        e["request"] = json!({"method": "POST", "route": r});
    }
    e
}

const A1: &[&str] = &["shop::orders::reserve", "shop::api::checkout", "shop::main"];
const A2: &[&str] = &["shop::orders::reserve", "shop::jobs::batch", "shop::main"];
const C: &[&str] = &["shop::cart::total", "shop::api::checkout", "shop::main"];
const INDEX: &str = "index out of bounds: the len is 3 but the index is 7";

/// A storm aggregate of `count` A1 panics on checkout-1.
fn storm(count: u32, ts: i64) -> Value {
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    let prefix = storm_id_prefix(high, low as u32);
    let mut e = event(UNWRAP, A1, ts, "checkout-1", Some("/orders"));
    e["event_id"] = json!(folded_event_id(&prefix, 0));
    e["count"] = json!(count);
    e["storm"] = json!({"id_prefix": prefix, "seq_start": 0, "seq_end": count, "samples": [], "messages": [UNWRAP]});
    e
}

fn sum_counts(items: &Value) -> i64 {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_i64().unwrap())
        .sum()
}

fn heat_total(h: &Value) -> i64 {
    h["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[2].as_i64().unwrap())
        .sum()
}

/// Every view of cluster `id` over `filter` (a query string, may be
/// empty): the numbers each shows, all of which must be `want`.
async fn assert_views_agree(s: &Running, id: &str, filter: &str, want: i64) {
    let amp = if filter.is_empty() {
        String::new()
    } else {
        format!("&{filter}")
    };
    let q = if filter.is_empty() {
        String::new()
    } else {
        format!("?{filter}")
    };
    let list = s.get(&format!("/api/v1/clusters?state=all{amp}")).await;
    let row = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} listed: {list}"));
    assert_eq!(row["count"], want, "list [{filter}]");
    let c = s.get(&format!("/api/v1/clusters/{id}{q}")).await;
    assert_eq!(c["count"], want, "detail header [{filter}]");
    assert_eq!(
        sum_counts(&c["groups"]),
        want,
        "member groups [{filter}]: {}",
        c["groups"]
    );
    for dim in [
        "services",
        "releases",
        "environments",
        "pods",
        "nodes",
        "routes",
    ] {
        assert_eq!(
            sum_counts(&c["where"][dim]),
            want,
            "where.{dim} [{filter}]: {}",
            c["where"][dim]
        );
    }
    assert_eq!(sum_counts(&c["trend"]), want, "trend [{filter}]");
    // The heatmap over the filter's window (else the last three hours), narrowed alike.
    let window = if filter.contains("since=") {
        String::new()
    } else {
        format!("&since={}&until={}", now_ms() - 3 * HOUR, now_ms() + MINUTE)
    };
    let h = s
        .get(&format!(
            "/api/v1/clusters/{id}/heatmap?bucket=15m{window}{amp}"
        ))
        .await;
    assert_eq!(
        (heat_total(&h), h["total"].as_i64()),
        (want, Some(want)),
        "heatmap [{filter}]: {h}"
    );
    let paths = s.get(&format!("/api/v1/clusters/{id}/paths{q}")).await;
    assert_eq!(paths["root"]["count"], want, "paths [{filter}]: {paths}");
    let children: i64 = sum_counts(&paths["root"]["children"]);
    assert_eq!(children, want, "every panic is on a path [{filter}]");
    // The events list, every page.
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page_q = match &cursor {
            Some(c) => format!("?limit=7&cursor={c}{amp}"),
            None => format!("?limit=7{amp}"),
        };
        let page = s
            .get(&format!("/api/v1/clusters/{id}/events{page_q}"))
            .await;
        listed += sum_counts(&page["items"]);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, want, "events list [{filter}]");
}

panicle_store::backend_tests! {
    async fn every_view_of_a_cluster_counts_the_same_panics(db: &TestDb) {
        let s = start(db).await;
        let now = now_ms();
        let t = now - 2 * HOUR;
        // One by one, so the cap of 3 applies as they arrive.
        for i in 0..10i64 {
            let route = (i % 2 == 0).then_some("/orders");
            s.ingest(vec![event(UNWRAP, A1, t + i * MINUTE, &format!("checkout-{}", i % 4), route)]).await;
        }
        s.ingest(vec![storm(30, t + 20 * MINUTE), storm(25, t + 40 * MINUTE)]).await;
        s.ingest((0..4).map(|i| event(UNWRAP, A2, t + 50 * MINUTE + i * MINUTE, "worker-0", None)).collect()).await;
        let mut older: Vec<Value> = (0..2).map(|i| event(INDEX, C, now - 30 * HOUR + i, "checkout-2", Some("/cart"))).collect();
        older.extend((0..2).map(|i| event(INDEX, C, now - 20 * HOUR + i, "checkout-2", Some("/cart"))));
        older.extend((0..4).map(|i| event(INDEX, C, now - HOUR + i, "checkout-3", Some("/cart"))));
        s.ingest(older).await;
        let (status, _, report) = call(format!("{}/api/v1/clusters/recompute", s.base), Some(s.token.clone()), None, Some(Value::Null)).await;
        assert_eq!(status, 200, "{report}");

        let list = s.get("/api/v1/clusters?state=all&sort=events").await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{list}");
        let a = items[0]["id"].as_str().unwrap().to_string();
        let c_id = items[1]["id"].as_str().unwrap().to_string();
        assert_eq!(items[0]["group_count"], 2, "A1 and A2 are one cluster: {list}");

        // Some of A1's panics were kept only as counts: listed, marked.
        let events = s.get(&format!("/api/v1/clusters/{a}/events?limit=500")).await;
        let sampled: Vec<&Value> = events["items"].as_array().unwrap().iter().filter(|e| e["sampled"] == true).collect();
        assert!(!sampled.is_empty(), "the cap sampled some: {events}");
        assert!(sampled.iter().all(|e| e["count"] == 1 && e["pod"].is_null() && e["depth"].is_null()));
        // Its id resolves: what is known of it.
        let one = sampled[0]["event_id"].as_str().unwrap();
        let view = s.get(&format!("/api/v1/events/{one}")).await;
        assert_eq!((view["sampled"].as_bool(), view["count"].as_i64(), &view["event"]), (Some(true), Some(1), &Value::Null), "{view}");
        assert_eq!(view["group_id"], sampled[0]["group_id"]);
        let storms: Vec<i64> = events["items"].as_array().unwrap().iter().map(|e| e["count"].as_i64().unwrap()).filter(|n| *n > 1).collect();
        assert_eq!(storms, vec![25, 30], "storm aggregates listed with their counts");

        let total = 10 + 30 + 25 + 4;
        assert_views_agree(&s, &a, "", total).await;
        // C's trend window must hold its first panics (30 h ago) too.
        assert_views_agree(&s, &c_id, &format!("since={}", now - 31 * HOUR), 8).await;
        // A time filter takes the events' path (not the group counters): the same.
        assert_views_agree(&s, &a, &format!("since={}", now - 3 * HOUR), total).await;
        // The trend covers exactly the filter's window: its first panic,
        // right at `since`, is in the first bucket.
        assert_views_agree(&s, &a, &format!("since={t}&until={}", now + MINUTE), total).await;
        let first = s.get(&format!("/api/v1/clusters/{a}?since={t}&until={}", now + MINUTE)).await;
        assert_eq!(first["trend"][0]["t"], rfc3339(t));
        assert!(first["trend"][0]["count"].as_i64().unwrap() >= 1, "{}", first["trend"]);
        // A pod narrows every view alike: checkout-1 has the storms and
        // the stored ones of i = 1, 5, 9.
        let c1 = s.get(&format!("/api/v1/clusters/{a}/events?pod=checkout-1&limit=500")).await;
        let on_c1 = sum_counts(&c1["items"]);
        assert!(on_c1 >= 55, "{c1}");
        assert!(c1["items"].as_array().unwrap().iter().all(|e| e["pod"] == "checkout-1"));
        assert_views_agree(&s, &a, "pod=checkout-1", on_c1).await;
        let detail = s.get(&format!("/api/v1/clusters/{a}?pod=checkout-1")).await;
        assert_eq!(detail["where"]["pods"], json!([{"name": "checkout-1", "count": on_c1}]));
        // Not recorded: the sampled ones and the routeless are one `null` entry.
        let whole = s.get(&format!("/api/v1/clusters/{a}")).await;
        let routes = whole["where"]["routes"].as_array().unwrap();
        assert!(routes.last().unwrap()["name"].is_null(), "{routes:?}");
        assert_eq!(whole["where"]["services"][0], json!({"name": "checkout", "count": total - sampled.len() as i64}));

        // Filters on the project-wide list; a wrong filter matches nothing.
        let go = s.get("/api/v1/events?platform=go").await;
        assert_eq!(go["items"], json!([]));
        let rust = s.get("/api/v1/events?platform=rust&kind=panic&limit=500").await;
        assert_eq!(sum_counts(&rust["items"]), total + 8, "{rust}");
        let cart = s.get("/api/v1/events?route=/cart&node=node-a&limit=500").await;
        // C's group is capped too: its sampled panics have no route.
        let c_events = s.get(&format!("/api/v1/clusters/{c_id}/events?limit=500")).await;
        let c_stored = c_events["items"].as_array().unwrap().iter().filter(|e| e["sampled"] == false).count();
        assert!(c_stored < 8);
        assert_eq!(sum_counts(&cart["items"]), c_stored as i64);
        let listed = s.get("/api/v1/clusters?state=all&route=/cart").await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed["items"][0]["id"], c_id.as_str());
        let none = s.get("/api/v1/clusters?state=all&platform=go").await;
        assert_eq!(none["items"], json!([]));

        // The trend compares like with like: A began two hours ago (new);
        // C existed through the older half: 2 then 4, +100%.
        let list = s.get("/api/v1/clusters?state=all&sort=growth").await;
        let row = |id: &str| list["items"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
        assert_eq!(row(&a)["trend_change"], json!({"kind": "new"}));
        assert!(row(&a)["growth"].is_null());
        assert_eq!(row(&c_id)["trend_change"], json!({"kind": "growth", "ratio": 1.0}));
        assert_eq!(row(&c_id)["growth"], 1.0);
        assert_eq!(list["items"][0]["id"], a.as_str(), "new clusters lead the fastest growing");
        let detail = s.get(&format!("/api/v1/clusters/{c_id}")).await;
        assert_eq!(detail["trend_change"], json!({"kind": "growth", "ratio": 1.0}));
    }

    async fn heatmap_buckets_are_what_they_say_and_stay_small(db: &TestDb) {
        let s = start(db).await;
        let now = now_ms();
        s.ingest((0..6).map(|i| event(UNWRAP, A1, now - 2 * HOUR + i * 7 * MINUTE, "checkout-0", None)).collect()).await;
        s.ingest(vec![storm(40, now - HOUR)]).await;
        call(format!("{}/api/v1/clusters/recompute", s.base), Some(s.token.clone()), None, Some(Value::Null)).await;
        let list = s.get("/api/v1/clusters").await;
        let id = list["items"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(list["items"][0]["count"], 46);

        // 15m over three hours: 15-minute columns, as asked.
        let (since, until) = (now - 3 * HOUR, now);
        let h = s.get(&format!("/api/v1/clusters/{id}/heatmap?bucket=15m&since={since}&until={until}")).await;
        assert_eq!((h["bucket"].as_str(), h["requested_bucket"].as_str()), (Some("15m"), Some("15m")));
        assert_eq!(h["bucket_ms"], 15 * MINUTE);
        assert!(h["columns"].as_i64().unwrap() <= 13, "{h}");
        assert_eq!(heat_total(&h), 46);
        // A storm's 40 sit in one cell.
        assert_eq!(h["max"], 40);

        // 15m over 30 days would be 2,880 columns: drawn at 6h (120), said so,
        // sparse: a few cells, not 120 × depths zeros.
        let (since, until) = (now - 30 * DAY, now);
        let (status, bytes, h) = call(format!("{}/api/v1/clusters/{id}/heatmap?bucket=15m&since={since}&until={until}", s.base), Some(s.token.clone()), None, None).await;
        assert_eq!(status, 200, "{h}");
        assert_eq!((h["bucket"].as_str(), h["requested_bucket"].as_str()), (Some("6h"), Some("15m")), "{h}");
        assert_eq!(h["bucket_ms"], 6 * HOUR);
        let columns = h["columns"].as_i64().unwrap();
        assert!((120..=121).contains(&columns), "{columns}");
        assert_eq!(heat_total(&h), 46);
        // Stored events at depth 3 and sampled ones (depth not kept), each
        // in at most two 6-hour columns.
        assert!(h["cells"].as_array().unwrap().len() <= 4, "{h}");
        assert!(bytes < 2_000, "compact: {bytes} bytes");
        // Column starts are whole multiples of the bucket, and the
        // answer's start says where column 0 begins.
        let start = time::OffsetDateTime::parse(h["start"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        let start_ms = (start.unix_timestamp_nanos() / 1_000_000) as i64;
        assert_eq!(start_ms % (6 * HOUR), 0);
        assert!(start_ms <= since && since < start_ms + 6 * HOUR);
        // Ten years by the minute: at most 200 columns.
        let h = s.get(&format!("/api/v1/clusters/{id}/heatmap?bucket=1m&since={}&until={now}", now - 3650 * DAY)).await;
        assert!(h["columns"].as_i64().unwrap() <= 200, "{h}");
        assert_eq!(heat_total(&h), 46);
    }

    async fn unknown_parameters_are_refused_by_name(db: &TestDb) {
        let s = start(db).await;
        s.ingest(vec![event(UNWRAP, A1, now_ms() - MINUTE, "checkout-0", None)]).await;
        call(format!("{}/api/v1/clusters/recompute", s.base), Some(s.token.clone()), None, Some(Value::Null)).await;
        let list = s.get("/api/v1/clusters").await;
        let id = list["items"][0]["id"].as_str().unwrap().to_string();
        for (path, name) in [
            ("/api/v1/events?pdo=web-1".to_string(), "pdo"),
            ("/api/v1/events?pod=checkout-0&servise=x".to_string(), "servise"),
            ("/api/v1/clusters?sevrice=x".to_string(), "sevrice"),
            (format!("/api/v1/clusters/{id}?bucket=1h"), "bucket"),
            (format!("/api/v1/clusters/{id}/events?q=x"), "q"),
            (format!("/api/v1/clusters/{id}/heatmap?sort=x"), "sort"),
            ("/api/v1/groups?service=x".to_string(), "service"),
        ] {
            let (status, err) = s.status(&path).await;
            assert_eq!((status, err["error"]["code"].as_str()), (400, Some("unknown_parameter")), "{path}: {err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("`{name}`")), "{path}: {message}");
        }
        // Known ones, even empty (a form's blank field), are fine.
        let (status, ok) = s.status("/api/v1/events?pod=&service=&trace_id=&kind=&platform=&route=&node=&release=&environment=").await;
        assert_eq!(status, 200, "{ok}");
        assert_eq!(ok["items"].as_array().unwrap().len(), 1);
        let pod = s.get("/api/v1/events?pod=checkout-0").await;
        assert_eq!(pod["items"].as_array().unwrap().len(), 1);
        let other = s.get("/api/v1/events?pod=checkout-9").await;
        assert_eq!(other["items"], json!([]));
    }
}
