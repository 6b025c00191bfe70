//! Rate limits, quotas and retention through the HTTP API, on SQLite and on
//! PostgreSQL: a refusal is a 429 with `Retry-After` and nothing of the
//! batch is stored; counts agree after a purge.

use std::net::SocketAddr;

use panicle_server::{AppState, LimitDefaults, RetentionConfig, ServerConfig};
use panicle_store::{EventQuery, LimitsUpdate, NewEvent, Store};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

struct Running {
    base: String,
    state: AppState,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(store: &Store, config: ServerConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone(), config).unwrap();
    tokio::spawn(panicle_server::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        state,
        _shutdown: tx,
    }
}

fn event(message: &str, timestamp: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": timestamp,
        "message": message,
        "platform": "rust",
        "frames": [{"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "in_app": true}],
        "resource": {"service.name": "checkout"},
    })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn batch(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| event(&format!("boom {i}"), &now_rfc3339()))
            .collect(),
    )
}

/// An old event of a group of its own, stored directly.
fn new_event(ts: i64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp_ms: ts,
        platform: "rust".into(),
        kind: "panic".into(),
        message: "old boom".into(),
        service: None,
        environment: None,
        release: None,
        trace_id: None,
        pod: None,
        node: None,
        route: None,
        depth: 1,
        weight: 2,
        payload: "{}".into(),
        fingerprint: "old".into(),
        template: "old boom".into(),
        culprit: None,
        signature: vec!["old".into()],
        storm: None,
        missing_debug_files: Vec::new(),
    }
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

/// Posts blocking HTTP off the async runtime.
async fn post(url: String, key: &str, body: Vec<u8>) -> Answer {
    let key = key.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut resp = agent
            .post(&url)
            .header("X-Panicle-Key", key)
            .send(&body[..])
            .unwrap();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status: resp.status().as_u16(),
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    })
    .await
    .unwrap()
}

async fn post_json(s: &Running, key: &str, v: &Value) -> Answer {
    post(
        format!("{}/api/v1/events", s.base),
        key,
        serde_json::to_vec(v).unwrap(),
    )
    .await
}

async fn metrics(s: &Running) -> String {
    let url = format!("{}/metrics", s.base);
    tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn stored(store: &Store, project_id: i64) -> usize {
    store
        .list_events(&EventQuery {
            project_id: Some(project_id),
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .items
        .len()
}

/// Posts every body at once (a client thread each), answers in order.
async fn post_all(s: &Running, key: &str, bodies: &[Value]) -> Vec<Answer> {
    let tasks: Vec<_> = bodies
        .iter()
        .map(|b| {
            let url = format!("{}/api/v1/events", s.base);
            let (key, body) = (key.to_string(), serde_json::to_vec(b).unwrap());
            tokio::spawn(async move { post(url, &key, body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

const CRASH: &str = "thread 'main' panicked at src/main.rs:4:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";

panicle_store::backend_tests! {
    async fn over_the_rate_is_429_before_anything_is_stored(db: &TestDb) {
        let store = db.store().await;
        let noisy = store.create_project("noisy").await.unwrap();
        let quiet = store.create_project("quiet").await.unwrap();
        // A rate low enough that the test cannot refill it by being slow.
        store
            .update_project_limits("noisy", &LimitsUpdate {
                rate: Some(Some(1)),
                burst: Some(Some(20)),
                ..LimitsUpdate::default()
            })
            .await
            .unwrap();
        let s = start(&store, ServerConfig::default()).await;

        let a = post_json(&s, &noisy.ingest_key, &batch(18)).await;
        assert_eq!(a.status, 202, "the burst fits: {}", a.body);
        // 2 tokens left: 5 events are refused whole once counted.
        let a = post_json(&s, &noisy.ingest_key, &batch(5)).await;
        assert_eq!(a.status, 429, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "rate_limited");
        assert_eq!(a.body["error"]["limit"], "rate");
        assert!(a.body["error"]["message"].as_str().unwrap().contains("1 events/s"), "{}", a.body);
        // 3 missing tokens at 1/s: 3 s (2 if the test was slow).
        let wait = a.retry_after.expect("Retry-After");
        assert!((2..=3).contains(&wait), "Retry-After {wait}");
        assert_eq!(a.body["error"]["retry_after"], wait);
        assert_eq!(post_json(&s, &noisy.ingest_key, &batch(2)).await.status, 202, "what is left fits");
        // An empty bucket refuses before the body is read; the text route too.
        let t = post(format!("{}/api/v1/events/text?service=x", s.base), &noisy.ingest_key, CRASH.as_bytes().to_vec()).await;
        assert_eq!((t.status, t.body["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", t.body);
        assert_eq!(t.retry_after, Some(1), "one token");
        assert_eq!(stored(&store, noisy.id).await, 20, "nothing refused was stored");

        // Another project is not held back.
        let q = post_json(&s, &quiet.ingest_key, &batch(30)).await;
        assert_eq!(q.status, 202);
        let t = post(format!("{}/api/v1/events/text", s.base), &quiet.ingest_key, CRASH.as_bytes().to_vec()).await;
        assert_eq!(t.status, 202, "{}", t.body);

        let m = metrics(&s).await;
        assert!(m.contains("panicle_ingest_limited_total{project=\"noisy\",reason=\"rate_limited\"} 2"), "{m}");
        assert!(!m.contains("project=\"quiet\""), "{m}");
        assert!(m.contains("panicle_ingest_rejected_total{reason=\"rate_limited\"} 2"), "{m}");
    }

    async fn a_used_up_quota_is_429_until_its_period_ends_and_survives_a_restart(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        // The server default gives 30 a day; the project lifts its monthly quota.
        let config = || ServerConfig {
            limits: LimitDefaults { daily_quota: 30, monthly_quota: 1000, ..LimitDefaults::default() },
            ..ServerConfig::default()
        };
        store
            .update_project_limits("shop", &LimitsUpdate { monthly_quota: Some(Some(0)), ..LimitsUpdate::default() })
            .await
            .unwrap();
        let s = start(&store, config()).await;
        assert_eq!(post_json(&s, &p.ingest_key, &batch(20)).await.status, 202);
        // 20 do not fit in the 10 left: refused whole.
        let a = post_json(&s, &p.ingest_key, &batch(20)).await;
        assert_eq!((a.status, a.body["error"]["code"].as_str()), (429, Some("quota_exceeded")), "{}", a.body);
        assert_eq!(a.body["error"]["limit"], "daily_quota");
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("daily quota of 30") && message.contains("resets at"), "{message}");
        let wait = a.retry_after.unwrap();
        assert!((1..=86_400).contains(&wait), "until the next UTC midnight: {wait}");
        assert_eq!(stored(&store, p.id).await, 20);
        // Exactly the 10 left fit; then even one is refused.
        assert_eq!(post_json(&s, &p.ingest_key, &batch(10)).await.status, 202);
        let a = post_json(&s, &p.ingest_key, &batch(1)).await;
        assert_eq!(a.status, 429);
        assert_eq!(stored(&store, p.id).await, 30);
        let m = metrics(&s).await;
        assert!(m.contains("panicle_ingest_limited_total{project=\"shop\",reason=\"quota_exceeded\"} 2"), "{m}");

        // A restarted server (new state, same database) still refuses.
        drop(s);
        let s = start(&store, config()).await;
        let a = post_json(&s, &p.ingest_key, &batch(1)).await;
        assert_eq!((a.status, a.body["error"]["code"].as_str()), (429, Some("quota_exceeded")));
        let t = post(format!("{}/api/v1/events/text", s.base), &p.ingest_key, CRASH.as_bytes().to_vec()).await;
        assert_eq!(t.status, 429);
        // Lifting the project's daily quota lets it in again (settings are re-read).
        store
            .update_project_limits("shop", &LimitsUpdate { daily_quota: Some(Some(0)), ..LimitsUpdate::default() })
            .await
            .unwrap();
        let s = start(&store, config()).await;
        assert_eq!(post_json(&s, &p.ingest_key, &batch(5)).await.status, 202);
        assert_eq!(stored(&store, p.id).await, 35);
    }

    async fn retention_job_purges_old_events_per_project(db: &TestDb) {
        let store = db.store().await;
        let keep = store.create_project("keep").await.unwrap();
        let short = store.create_project("short").await.unwrap();
        store
            .update_project_limits("keep", &LimitsUpdate { retention_days: Some(Some(0)), ..LimitsUpdate::default() })
            .await
            .unwrap();
        store
            .update_project_limits("short", &LimitsUpdate { retention_days: Some(Some(7)), ..LimitsUpdate::default() })
            .await
            .unwrap();
        let config = ServerConfig {
            retention: RetentionConfig { days: 90, batch: 4, pause: std::time::Duration::ZERO },
            ..ServerConfig::default()
        };
        let s = start(&store, config).await;
        // Old events go in through the store: ingest may clamp old timestamps.
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        for p in [&keep, &short] {
            for (days_ago, n) in [(400, 5), (30, 6)] {
                let old: Vec<NewEvent> = (0..n).map(|_| new_event(now - days_ago * DAY)).collect();
                store.insert_events(p.id, &old).await.unwrap();
            }
            let a = post_json(&s, &p.ingest_key, &batch(3)).await;
            assert_eq!(a.status, 202, "{}", a.body);
        }
        let report = s.state.retention.run(now).await.unwrap();
        assert_eq!(report.events, 11, "short loses 5 + 6: {report:?}");
        assert_eq!(stored(&store, keep.id).await, 14, "retention 0 keeps everything");
        assert_eq!(stored(&store, short.id).await, 3);
        let groups = store.all_groups(Some(short.id)).await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].count, 3);
        assert!(store.count_mismatches(short.id).await.unwrap().is_empty());
        assert!(store.count_mismatches(keep.id).await.unwrap().is_empty());
        let m = metrics(&s).await;
        assert!(m.contains("panicle_events_purged_total 11"), "{m}");
        // A second run finds nothing.
        assert_eq!(s.state.retention.run(now).await.unwrap().rows(), 0);
    }

    async fn concurrent_requests_share_transactions_and_each_gets_its_own_answer(db: &TestDb) {
        let store = db.store().await;
        let shop = store.create_project("shop").await.unwrap();
        // One writer that waits 50 ms for more after the first request: the
        // requests share transactions however slowly the client threads start.
        let group_commit = panicle_server::commit::GroupCommit {
            writers: 1,
            window: std::time::Duration::from_millis(50),
            ..Default::default()
        };
        let s = start(&store, ServerConfig { limits: LimitDefaults { rate: 0, ..LimitDefaults::default() }, group_commit, ..ServerConfig::default() }).await;
        // 48 requests at once, 3 events each over 4 fingerprints; every
        // fourth request resends the events of the one before it.
        let mut bodies: Vec<Value> = Vec::new();
        for r in 0..48 {
            let body = if r % 4 == 3 {
                bodies[r - 1].clone()
            } else {
                Value::Array((0..3).map(|i| event(&format!("boom in {}", ["alpha", "beta", "gamma", "delta"][(r + i) % 4]), &now_rfc3339())).collect())
            };
            bodies.push(body);
        }
        let answers = post_all(&s, &shop.ingest_key, &bodies).await;
        let mut stored_total = 0;
        for (r, a) in answers.iter().enumerate() {
            assert_eq!(a.status, 202, "request {r}: {}", a.body);
            assert_eq!(a.body["accepted"].as_array().unwrap().len(), 3);
            stored_total += a.body["stored"].as_u64().unwrap();
        }
        // 36 distinct requests × 3 events; a resend stores nothing, whichever
        // of the pair its transaction took first.
        assert_eq!(stored_total, 108);
        assert_eq!(stored(&store, shop.id).await, 108);
        let groups = store.list_groups(&panicle_store::GroupQuery { project_id: Some(shop.id), limit: 50, ..Default::default() }).await.unwrap();
        assert_eq!(groups.items.len(), 4);
        assert_eq!(groups.items.iter().map(|g| g.count).sum::<i64>(), 108);
        let m = metrics(&s).await;
        let transactions: u64 = m.lines()
            .find_map(|l| l.strip_prefix("panicle_ingest_commit_batch_requests_count "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no commit batch metric: {m}"));
        assert!((1..48).contains(&transactions), "48 concurrent requests in {transactions} transactions");
    }

    async fn a_quota_crossed_inside_a_shared_transaction_is_judged_per_request(db: &TestDb) {
        let store = db.store().await;
        let shop = store.create_project("shop").await.unwrap();
        store
            .update_project_limits("shop", &LimitsUpdate { daily_quota: Some(Some(10)), ..LimitsUpdate::default() })
            .await
            .unwrap();
        let s = start(&store, ServerConfig { limits: LimitDefaults { rate: 0, ..LimitDefaults::default() }, ..ServerConfig::default() }).await;
        let bodies: Vec<Value> = (0..24).map(|_| batch(1)).collect();
        let answers = post_all(&s, &shop.ingest_key, &bodies).await;
        let taken = answers.iter().filter(|a| a.status == 202).count();
        let refused = answers.iter().filter(|a| a.status == 429 && a.body["error"]["code"] == "quota_exceeded").count();
        assert_eq!((taken, refused), (10, 14), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
        assert_eq!(stored(&store, shop.id).await, 10);
    }
}
