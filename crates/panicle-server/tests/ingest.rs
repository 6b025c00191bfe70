//! Ingest API over real HTTP on loopback, on SQLite and on PostgreSQL.

use std::io::Write;
use std::net::SocketAddr;

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

struct Running {
    base: String,
    key: String,
    token: String,
    store: panicle_store::Store,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: &TestDb, config: ServerConfig) -> Running {
    let store = db.store().await;
    let project = store.create_project("shop").await.unwrap();
    let token = store.create_token("test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store.clone(), config).unwrap();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        key: project.ingest_key,
        token,
        store,
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

fn event(message: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": "2026-11-26T10:00:00Z",
        "message": message,
        "platform": "rust",
        "frames": [{"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "in_app": true}],
        "resource": {"service.name": "checkout"},
    })
}

/// Posts blocking HTTP off the async runtime: returns (status, body).
async fn post(url: String, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let mut req = agent().post(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut resp = req.send(&body[..]).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

async fn get(url: String, token: Option<String>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let mut req = agent().get(&url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

panicle_store::backend_tests! {
    async fn batch_gzip_and_duplicates(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let url = format!("{}/api/v1/events", s.base);
        let key = || vec![("X-Panicle-Key", s.key.clone())];
        let a = event("called `Option::unwrap()` on a `None` value");
        let b = event("index out of bounds: the len is 3 but the index is 5");
        let (status, body) = post(url.clone(), key(), json_body(&json!([a, b]))).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["accepted"].as_array().unwrap().len(), 2);
        assert_eq!(body["stored"], 2);

        // gzip: the same event again, compressed; a resend stores nothing.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json_body(&a)).unwrap();
        let mut headers = key();
        headers.push(("Content-Encoding", "gzip".into()));
        let (status, body) = post(url.clone(), headers, gz.finish().unwrap()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["stored"], 0);

        let (status, list) = get(format!("{}/api/v1/events", s.base), Some(s.token.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        let (_, groups) = get(format!("{}/api/v1/groups", s.base), Some(s.token.clone())).await;
        assert_eq!(groups["items"].as_array().unwrap().len(), 2);
        let id = a["event_id"].as_str().unwrap();
        let (status, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(one["event"]["frames"][0]["function"], "shop::orders::reserve");
        assert_eq!(one["service"], "checkout");
    }

    async fn bad_keys_and_bodies_are_refused(db: &TestDb) {
        let s = start(db, ServerConfig { max_body_bytes: 4096, ..ServerConfig::default() }).await;
        let url = format!("{}/api/v1/events", s.base);
        let body = json_body(&event("boom"));

        let (status, err) = post(url.clone(), vec![], body.clone()).await;
        assert_eq!(status, 401);
        assert_eq!(err["error"]["code"], "invalid_ingest_key");
        let (status, _) = post(url.clone(), vec![("X-Panicle-Key", "wrong".into())], body.clone()).await;
        assert_eq!(status, 401);

        let key = || vec![("X-Panicle-Key", s.key.clone())];
        let (status, err) = post(url.clone(), key(), b"{not json".to_vec()).await;
        assert_eq!(status, 400);
        assert_eq!(err["error"]["code"], "invalid_json");

        let mut missing = event("x");
        missing.as_object_mut().unwrap().remove("timestamp");
        let (status, err) = post(url.clone(), key(), json_body(&missing)).await;
        assert_eq!(status, 400);
        assert!(err["error"]["message"].as_str().unwrap().contains("timestamp"), "{err}");

        let (status, err) = post(url.clone(), key(), json_body(&event(&"x".repeat(5000)))).await;
        assert_eq!(status, 413);
        assert_eq!(err["error"]["code"], "payload_too_large");

        // A gzip bomb: small on the wire, over the limit once decoded.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&json_body(&event(&"y".repeat(100_000)))).unwrap();
        let mut headers = key();
        headers.push(("Content-Encoding", "gzip".into()));
        let (status, _) = post(url.clone(), headers, gz.finish().unwrap()).await;
        assert_eq!(status, 413);

        let mut headers = key();
        headers.push(("Content-Encoding", "gzip".into()));
        let (status, err) = post(url.clone(), headers, b"not gzip".to_vec()).await;
        assert_eq!(status, 400);
        assert_eq!(err["error"]["code"], "invalid_gzip");

        // The server is still up and stores what is valid.
        let (status, _) = post(url.clone(), key(), body).await;
        assert_eq!(status, 202);
        let (status, _) = get(format!("{}/readyz", s.base), None).await;
        assert_eq!(status, 200);
        let (status, err) = get(format!("{}/api/v1/events", s.base), None).await;
        assert_eq!(status, 401);
        assert_eq!(err["error"]["code"], "invalid_token");
        let (status, err) = get(format!("{}/api/v1/events?limit=0", s.base), Some(s.token.clone())).await;
        assert_eq!(status, 400, "{err}");
        // Malformed query strings and out-of-range times get the JSON error body.
        for bad in ["limit=abc", "limit=-1", "project=x", "since=-9000000000000000000", "until=999999999999999999"] {
            let (status, err) = get(format!("{}/api/v1/events?{bad}", s.base), Some(s.token.clone())).await;
            assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{bad}: {err}");
        }
        let (status, err) = get(format!("{}/api/v1/events?cursor=zz", s.base), Some(s.token.clone())).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_cursor")));
        let metrics = tokio::task::spawn_blocking({
            let url = format!("{}/metrics", s.base);
            move || agent().get(&url).call().unwrap().body_mut().read_to_string().unwrap()
        })
        .await
        .unwrap();
        assert!(metrics.contains("panicle_ingest_rejected_total{reason=\"payload_too_large\"} 2"), "{metrics}");
        assert!(metrics.contains("panicle_events_stored_total 1"), "{metrics}");
    }

    async fn a_key_writes_only_its_project(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let other = s.store.create_project("other").await.unwrap();
        let url = format!("{}/api/v1/events", s.base);
        let e = event("only for other");
        let (status, _) = post(url.clone(), vec![("X-Panicle-Key", other.ingest_key.clone())], json_body(&e)).await;
        assert_eq!(status, 202);
        let shop = s.store.project_by_key(&s.key).await.unwrap().unwrap();
        let (_, mine) = get(format!("{}/api/v1/events?project={}", s.base, shop.id), Some(s.token.clone())).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 0);
        let (_, theirs) = get(format!("{}/api/v1/events?project={}", s.base, other.id), Some(s.token.clone())).await;
        assert_eq!(theirs["items"][0]["project_id"], other.id);
        let id = e["event_id"].as_str().unwrap();
        let (status, _) = get(format!("{}/api/v1/events/{id}?project={}", s.base, shop.id), Some(s.token.clone())).await;
        assert_eq!(status, 404);
    }

    async fn raw_crash_text_is_ingested(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let text = "goroutine 1 [running]:\nlevel=info msg=ok\nfatal error: concurrent map writes\n\ngoroutine 6 [running]:\nmain.reserve(0x1)\n\t/src/app/main.go:14 +0x2d\ncreated by main.main in goroutine 1\n\t/src/app/main.go:25 +0x5e\n\ngoroutine 1 [semacquire]:\nsync.runtime_Semacquire(0xc0000120c8)\n\t/usr/lib/go/src/runtime/sema.go:62 +0x25\nmain.main()\n\t/src/app/main.go:28 +0x95\nexit status 2\n";
        let url = format!("{}/api/v1/events/text?service=inventory&pod=inv-1&release=inventory@2.0", s.base);
        let (status, body) = post(url.clone(), vec![("X-Panicle-Key", s.key.clone())], text.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "{body}");
        let id = body["accepted"][0].as_str().unwrap().to_string();
        let (_, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(one["platform"], "go");
        assert_eq!(one["kind"], "fatal");
        assert_eq!(one["message"], "concurrent map writes");
        assert_eq!(one["service"], "inventory");
        assert_eq!(one["pod"], "inv-1");
        assert_eq!(one["release"], "inventory@2.0");
        assert_eq!(one["event"]["frames"][0]["function"], "main.reserve");

        let (status, err) = post(url.clone(), vec![("X-Panicle-Key", s.key.clone())], b"all good here\n".to_vec()).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("no_crash_found")));
        let (status, _) = post(url, vec![], text.as_bytes().to_vec()).await;
        assert_eq!(status, 401);
    }

    async fn storm_counts_add_up(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let url = format!("{}/api/v1/events", s.base);
        let mut storm = event("boom in a loop");
        storm["count"] = json!(998);
        let (status, _) = post(url.clone(), vec![("X-Panicle-Key", s.key.clone())], json_body(&json!([event("boom in a loop"), storm, event("boom in a loop")]))).await;
        assert_eq!(status, 202);
        let (_, groups) = get(format!("{}/api/v1/groups", s.base), Some(s.token.clone())).await;
        assert_eq!(groups["items"][0]["count"], 1000, "{groups}");
        // A count is not trusted without bound: it cannot overflow the counters.
        let mut huge = event("boom in a loop");
        huge["count"] = json!(i64::MAX);
        let (status, _) = post(url.clone(), vec![("X-Panicle-Key", s.key.clone())], json_body(&json!([huge.clone(), huge]))).await;
        assert_eq!(status, 202);
        let (status, groups) = get(format!("{}/api/v1/groups", s.base), Some(s.token.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(groups["items"][0]["count"], 1000 + 1_000_000, "{groups}");
    }
}
