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

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// An event an hour old: inside every retention window, whatever the date.
fn event(message: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": rfc3339(now_ms() - 3_600_000),
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

/// Runs the futures at once (each posts on the blocking pool).
async fn futures_join_all<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

panicle_store::backend_tests! {
    // Issue 21: requests that create the same new group at once. On
    // PostgreSQL the upsert named one unique index while the table had a
    // second one over the same rows, and the losers got a unique violation
    // (503). Each round is a fingerprint nobody has sent yet.
    async fn concurrent_requests_create_one_group(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let url = format!("{}/api/v1/events", s.base);
        for round in 0..8 {
            let requests: Vec<_> = (0..32)
                .map(|_| {
                    let mut e = event("called `Option::unwrap()` on a `None` value");
                    e["frames"][0]["function"] = json!(format!("shop::orders::reserve_{round}"));
                    post(url.clone(), vec![("X-Panicle-Key", s.key.clone())], json_body(&e))
                })
                .collect();
            for (status, body) in futures_join_all(requests).await {
                assert_eq!(status, 202, "round {round}: {body}");
            }
        }
        let (_, groups) = get(format!("{}/api/v1/groups", s.base), Some(s.token.clone())).await;
        let groups = groups["items"].as_array().unwrap().clone();
        assert_eq!(groups.len(), 8, "{groups:?}");
        for g in &groups {
            assert_eq!(g["count"], 32, "{g}");
        }
    }

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
        // However the id is spelled (ingest stores it hyphenated, lowercase).
        let other_spelling = id.replace('-', "").to_ascii_uppercase();
        let (status, _) = get(format!("{}/api/v1/events/{other_spelling}", s.base), Some(s.token.clone())).await;
        assert_eq!(status, 200);
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

        // The same crash as `docker compose logs` ships it, another
        // container's lines in between, and as `kubectl logs --timestamps`.
        let compose: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| format!("db-1         | checkpoint {i}\ninventory-1  | {l}\n"))
            .collect();
        let (status, body) = post(format!("{}/api/v1/events/text", s.base), vec![("X-Panicle-Key", s.key.clone())], compose.into_bytes()).await;
        assert_eq!(status, 202, "{body}");
        let id = body["accepted"][0].as_str().unwrap().to_string();
        let (_, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(one["message"], "concurrent map writes", "{one}");
        assert_eq!(one["event"]["frames"][0]["function"], "main.reserve");
        assert_eq!(one["event"]["resource"]["container.name"], "inventory-1", "{one}");
        assert_eq!(one["event"]["tags"]["log.format"], "docker-compose");
        let kubectl: String = text.lines().map(|l| format!("2026-01-02T03:04:05.25Z {l}\n")).collect();
        let (status, body) = post(format!("{}/api/v1/events/text", s.base), vec![("X-Panicle-Key", s.key.clone())], kubectl.into_bytes()).await;
        assert_eq!(status, 202, "{body}");
        let id = body["accepted"][0].as_str().unwrap().to_string();
        let (_, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(one["message"], "concurrent map writes");
        assert_eq!(one["event"]["timestamp"], "2026-01-02T03:04:05.25Z", "{one}");
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
        assert_eq!(groups["items"][0]["count"], 1000 + panicle_protocol::decode::MAX_EVENT_COUNT, "{groups}");
    }

    async fn nul_characters_are_stored_the_same_on_both_backends(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let url = format!("{}/api/v1/events", s.base);
        let key = || vec![("X-Panicle-Key", s.key.clone())];
        let mut poison = event("bad\u{0}byte");
        poison["release"] = json!("shop@1\u{0}");
        poison["resource"]["service.name"] = json!("check\u{0}out");
        poison["frames"][0]["function"] = json!("shop::\u{0}reserve");
        poison["tags"] = json!({"k\u{0}": "v\u{0}"});
        let body = json!([poison.clone(), event("after the poison")]);
        let (status, answer) = post(url.clone(), key(), json_body(&body)).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["stored"], 2, "{answer}");
        assert_eq!(answer["rejected"], json!([]));
        let id = poison["event_id"].as_str().unwrap();
        let (status, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["message"], "bad\u{FFFD}byte");
        assert_eq!(one["release"], "shop@1\u{FFFD}");
        assert_eq!(one["service"], "check\u{FFFD}out");
        assert_eq!(one["event"]["tags"]["k\u{FFFD}"], "v\u{FFFD}");

        // Crash text and its metadata too.
        let text = "thread 'main' panicked at src/main.rs:2:5:\nbad\u{0}byte\nnote: run with `RUST_BACKTRACE=1`\n";
        let (status, answer) = post(format!("{}/api/v1/events/text?service=%00inv&pod=p%00", s.base), key(), text.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["accepted"][0].as_str().unwrap().to_string();
        let (_, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(one["service"], "\u{FFFD}inv", "{one}");
        assert_eq!(one["pod"], "p\u{FFFD}");
        assert!(one["message"].as_str().unwrap().contains('\u{FFFD}'), "{one}");

        // A read parameter with a NUL can match nothing: a 400, never a 5xx.
        // Nor may a cursor decode to one (hex of `1|\0x`).
        for bad in ["api/v1/events?cursor=317c0078", "api/v1/groups?cursor=317c0078"] {
            let (status, err) = get(format!("{}/{bad}", s.base), Some(s.token.clone())).await;
            assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_cursor")), "{bad}: {err}");
            assert!(!err["error"]["message"].as_str().unwrap().contains("internal"), "{err}");
        }
        for bad in ["api/v1/events?service=%00", "api/v1/events?q=a%00b", "api/v1/groups?release=%00", "api/v1/clusters?service=x%00", "api/v1/events/ab%00cd"] {
            let (status, err) = get(format!("{}/{bad}", s.base), Some(s.token.clone())).await;
            assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{bad}: {err}");
        }
        // Values longer than an index entry can hold are cut, not refused.
        let mut long = event("long release");
        long["release"] = json!("r".repeat(10_000));
        long["resource"]["service.name"] = json!("s".repeat(10_000));
        let (status, answer) = post(url.clone(), key(), json_body(&long)).await;
        assert_eq!(status, 202, "{answer}");
        let id = long["event_id"].as_str().unwrap();
        let (_, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(one["release"].as_str().unwrap().len(), 512);
        assert_eq!(one["event"]["release"].as_str().unwrap().len(), 10_000, "the raw event keeps it whole");
    }

    async fn one_bad_event_does_not_refuse_its_batch(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let url = format!("{}/api/v1/events", s.base);
        let key = || vec![("X-Panicle-Key", s.key.clone())];
        let good: Vec<Value> = (0..20).map(|i| event(&format!("good {i}"))).collect();
        let mut bad = event("bad time");
        bad["timestamp"] = json!("yesterday");
        let bad_id = bad["event_id"].as_str().unwrap().to_string();
        let mut batch = vec![bad];
        batch.extend(good.iter().cloned());
        batch.push(json!({"no": "event"}));
        // An older client, which takes any 2xx for the whole batch, gets the
        // whole-batch refusal it splits, as before.
        let (status, err) = post(url.clone(), key(), json_body(&Value::Array(batch.clone()))).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_field")), "{err}");
        let partial = || {
            let mut h = key();
            h.push(("X-Panicle-Partial-Batch", "1".into()));
            h
        };
        let (status, answer) = post(url.clone(), partial(), json_body(&Value::Array(batch))).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["stored"], 20);
        assert_eq!(answer["accepted"].as_array().unwrap().len(), 20);
        let rejected = answer["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), 2, "{answer}");
        assert_eq!(rejected[0]["index"], 0);
        assert_eq!(rejected[0]["event_id"], bad_id.as_str());
        assert_eq!(rejected[0]["code"], "invalid_field");
        assert!(rejected[0]["message"].as_str().unwrap().contains("[0].timestamp"), "{answer}");
        assert_eq!(rejected[1]["index"], 21);
        assert!(rejected[1].get("event_id").is_none());
        // Nothing good in it: every event is named.
        let (status, answer) = post(url.clone(), partial(), b"[{\"no\":1}]".to_vec()).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["rejected"][0]["code"], "invalid_json");
        // A single invalid event is still a 400.
        let (status, err) = post(url.clone(), partial(), b"{\"no\":1}".to_vec()).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_json")));
    }

    async fn an_event_the_database_refuses_is_named_and_the_rest_stored(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        // A row the database refuses for its data (SQLSTATE class 22 on
        // PostgreSQL, SQLITE_CONSTRAINT on SQLite), as a value no decoding
        // can foresee would be.
        db.execute(match db.backend {
            panicle_store::Backend::Postgres => "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.message = 'poison' THEN RAISE EXCEPTION 'internal trigger text' USING ERRCODE = '22023'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
               CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
            panicle_store::Backend::Sqlite => "CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
                 WHEN NEW.message = 'poison' BEGIN SELECT RAISE(ABORT, 'internal trigger text'); END;",
        })
        .await;
        let url = format!("{}/api/v1/events", s.base);
        let key = || vec![("X-Panicle-Key", s.key.clone())];
        let partial = || {
            let mut h = key();
            h.push(("X-Panicle-Partial-Batch", "1".into()));
            h
        };
        let poison = event("poison");
        let poison_id = poison["event_id"].as_str().unwrap().to_string();
        let (status, answer) = post(url.clone(), partial(), json_body(&json!([poison.clone(), event("good 1"), event("good 2")]))).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["stored"], 2, "{answer}");
        assert_eq!(answer["rejected"][0]["event_id"], poison_id.as_str());
        assert_eq!(answer["rejected"][0]["code"], "unstorable_event");
        assert!(!answer["rejected"][0]["message"].as_str().unwrap().contains("internal trigger text"), "the database's own text stays in the log: {answer}");
        // Alone it is a permanent refusal, not a 5xx to retry forever.
        let (status, err) = post(url.clone(), key(), json_body(&poison)).await;
        assert_eq!((status, err["error"]["code"].as_str()), (422, Some("unstorable_event")), "{err}");
        // An older client (no header) gets the whole-batch refusal it splits;
        // the good event is stored already, so its resend stores nothing twice.
        let good = event("good 3");
        let (status, _) = post(url.clone(), key(), json_body(&json!([poison, good.clone()]))).await;
        assert_eq!(status, 422);
        let (status, answer) = post(url.clone(), key(), json_body(&good)).await;
        assert_eq!((status, answer["stored"].as_u64()), (202, Some(0)), "{answer}");
        let (status, _) = get(format!("{}/readyz", s.base), None).await;
        assert_eq!(status, 200);
        let (_, list) = get(format!("{}/api/v1/events?limit=10", s.base), Some(s.token.clone())).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
    }

    async fn implausible_times_are_stored_as_received(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let url = format!("{}/api/v1/events", s.base);
        let before = now_ms();
        let mut ancient = event("from year zero");
        ancient["timestamp"] = json!("0000-01-01T00:00:00Z");
        let mut future = event("from year 9999");
        future["timestamp"] = json!("9999-12-31T23:59:59Z");
        let mut drift = event("a little fast");
        let fast = now_ms() + 30 * 60_000;
        drift["timestamp"] = json!(rfc3339(fast));
        let (status, answer) = post(url, vec![("X-Panicle-Key", s.key.clone())], json_body(&json!([ancient.clone(), future, drift]))).await;
        assert_eq!(status, 202, "{answer}");
        let after = now_ms();
        let (_, groups) = get(format!("{}/api/v1/groups", s.base), Some(s.token.clone())).await;
        for g in groups["items"].as_array().unwrap() {
            let last = time::OffsetDateTime::parse(g["last_seen"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
            let last = (last.unix_timestamp_nanos() / 1_000_000) as i64;
            if g["title"] == "a little fast" {
                assert_eq!(last, fast, "half an hour ahead is plausible: {g}");
            } else {
                assert!((before..=after).contains(&last), "stored at receive time: {g}");
            }
        }
        let id = ancient["event_id"].as_str().unwrap();
        let (_, one) = get(format!("{}/api/v1/events/{id}", s.base), Some(s.token.clone())).await;
        assert_eq!(one["event"]["timestamp"], "0000-01-01T00:00:00Z", "the raw event keeps the sent time");
    }
}
