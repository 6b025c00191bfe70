//! Sentry's ingest endpoints over real HTTP on loopback, on SQLite and on
//! PostgreSQL: every item type, every content encoding, the three places a
//! key travels, and malformed envelopes refused with nothing stored.

use std::io::Write;
use std::net::SocketAddr;

use panicle_server::{AppState, LimitDefaults, ServerConfig};
use panicle_store::testing::TestDb;
use serde_json::{Value, json};

struct Running {
    base: String,
    key: String,
    project_id: i64,
    token: String,
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
        project_id: project.id,
        token,
        _shutdown: tx,
    }
}

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

async fn post(url: String, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Answer {
    tokio::task::spawn_blocking(move || {
        let mut req = agent().post(&url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut resp = req.send(&body[..]).unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        }
    })
    .await
    .unwrap()
}

async fn get(url: String, token: String) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let mut resp = agent()
            .get(&url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

async fn get_text(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        agent()
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap()
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../testdata/sentry/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A Sentry event from a fixture with a fresh id.
fn fresh_event(name: &str) -> (String, Value) {
    let mut event = fixture(name);
    let id = uuid::Uuid::new_v4().simple().to_string();
    event["event_id"] = json!(id);
    (id, event)
}

/// An envelope as SDKs write it: header line, then items; `with_length`
/// picks whether item headers carry a `length`.
fn envelope(header: Value, items: &[(Value, Vec<u8>)], with_length: bool) -> Vec<u8> {
    let mut out = serde_json::to_vec(&header).unwrap();
    out.push(b'\n');
    for (item_header, payload) in items {
        let mut h = item_header.clone();
        if with_length {
            h["length"] = json!(payload.len());
        }
        out.extend(serde_json::to_vec(&h).unwrap());
        out.push(b'\n');
        out.extend(payload);
        out.push(b'\n');
    }
    out
}

fn auth(key: &str) -> Vec<(&'static str, String)> {
    vec![(
        "X-Sentry-Auth",
        format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=test/1.0"),
    )]
}

impl Running {
    fn envelope_url(&self) -> String {
        format!("{}/api/{}/envelope/", self.base, self.project_id)
    }

    async fn stored(&self) -> Vec<Value> {
        let (status, body) = get(
            format!("{}/api/v1/events?project={}", self.base, self.project_id),
            self.token.clone(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    async fn event(&self, id: &str) -> Value {
        let (status, body) = get(
            format!("{}/api/v1/events/{id}", self.base),
            self.token.clone(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn metrics(&self) -> String {
        get_text(format!("{}/metrics", self.base)).await
    }
}

/// Compresses a body as one `Content-Encoding` says.
type Encoder = fn(&[u8]) -> Vec<u8>;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

panicle_store::backend_tests! {
    async fn an_event_envelope_is_stored_in_every_encoding(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let encodings: [(&str, Encoder); 4] = [
            ("identity", |d| d.to_vec()),
            ("gzip", gzip),
            ("deflate", deflate),
            ("br", brotli),
        ];
        for (i, (encoding, encode)) in encodings.into_iter().enumerate() {
            let (id, event) = fresh_event("node-typeerror.json");
            let body = envelope(
                json!({"event_id": id, "sent_at": "2026-03-04T10:11:13Z"}),
                &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())],
                i % 2 == 0,
            );
            let mut headers = auth(&s.key);
            headers.push(("Content-Type", "application/x-sentry-envelope".into()));
            if encoding != "identity" {
                headers.push(("Content-Encoding", encoding.into()));
            }
            let a = post(s.envelope_url(), headers, encode(&body)).await;
            assert_eq!(a.status, 200, "{encoding}: {}", a.body);
            assert_eq!(a.body, json!({"id": id}), "{encoding}");
            let got = s.event(&id).await;
            assert_eq!(got["platform"], "node");
            assert_eq!(got["kind"], "exception");
            assert_eq!(got["environment"], "staging");
            assert_eq!(got["release"], "web@2.0.1");
            assert_eq!(got["trace_id"], "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(got["route"], "/carts/:id");
            let e = &got["event"];
            assert_eq!(e["frames"][0]["function"], "lineTotal");
            assert_eq!(e["frames"][0]["in_app"], true);
            assert_eq!(e["frames"][3]["in_app"], false);
            assert_eq!(e["breadcrumbs"][0]["message"], "fetching cart 9");
            assert_eq!(e["tags"]["feature"], "checkout");
        }
        assert_eq!(s.stored().await.len(), 4);
        let metrics = s.metrics().await;
        assert!(metrics.contains(r#"panicle_sentry_items_total{item_type="event"} 4"#), "{metrics}");
    }

    async fn other_item_types_are_accepted_and_counted_not_stored(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let items = [
            ("transaction", json!({"type": "transaction", "transaction": "GET /x", "contexts": {"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}}, "spans": []})),
            ("session", json!({"sid": "7c7b6585-5e46-4a45-8a6f-3ef6b0c3c4a1", "init": true, "status": "ok", "attrs": {"release": "r1"}})),
            ("sessions", json!({"aggregates": [{"started": "2026-03-04T10:00:00Z", "exited": 3}], "attrs": {"release": "r1"}})),
            ("client_report", json!({"timestamp": 1772619072.0, "discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 2}]})),
            ("check_in", json!({"check_in_id": "83a7c03ed0a04e1b97e2e3b18d38f244", "monitor_slug": "nightly", "status": "ok"})),
            ("span", json!({"span_id": "00f067aa0ba902b7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})),
            ("log", json!({"items": [{"timestamp": 1772619072.0, "level": "info", "body": "hello"}]})),
            ("profile_chunk", json!({"chunk_id": "x"})),
        ];
        for (item_type, payload) in &items {
            let body = envelope(
                json!({"sent_at": "2026-03-04T10:11:13Z"}),
                &[(json!({"type": item_type}), serde_json::to_vec(payload).unwrap())],
                true,
            );
            let a = post(s.envelope_url(), auth(&s.key), body).await;
            assert_eq!(a.status, 200, "{item_type}: {}", a.body);
        }
        // An attachment is raw bytes (newlines and all) and needs its length.
        let body = envelope(
            json!({"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"}),
            &[(json!({"type": "attachment", "filename": "log.txt"}), b"line 1\nline 2\n".to_vec())],
            true,
        );
        let a = post(s.envelope_url(), auth(&s.key), body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["id"], "9ec79c33ec9942ab8353589fcb2e04dc");
        assert!(s.stored().await.is_empty(), "only events are stored");
        let metrics = s.metrics().await;
        for t in ["transaction", "session", "sessions", "client_report", "attachment", "check_in", "span", "log", "unknown"] {
            let line = format!(r#"panicle_sentry_items_total{{item_type="{t}"}} 1"#);
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
    }

    async fn an_envelope_of_several_items_stores_its_event(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let (id, event) = fresh_event("rust-panic.json");
        let body = envelope(
            json!({"event_id": id}),
            &[
                (json!({"type": "event"}), serde_json::to_vec(&event).unwrap()),
                (json!({"type": "attachment", "filename": "a.bin"}), vec![0, 10, 13, 10]),
                (json!({"type": "session"}), br#"{"sid":"x","status":"crashed"}"#.to_vec()),
            ],
            true,
        );
        let a = post(s.envelope_url(), auth(&s.key), body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let got = s.event(&id).await;
        assert_eq!(got["kind"], "panic");
        assert_eq!(got["platform"], "rust");
        assert_eq!(got["event"]["frames"][0]["function"], "ledger::post::account_of");
        assert_eq!(s.stored().await.len(), 1);
    }

    async fn the_store_endpoint_takes_one_event(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let (id, event) = fresh_event("python-keyerror.json");
        let url = format!("{}/api/{}/store/", s.base, s.project_id);
        let mut headers = auth(&s.key);
        headers.push(("Content-Encoding", "gzip".into()));
        let a = post(url, headers, gzip(&serde_json::to_vec(&event).unwrap())).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["id"], id);
        let got = s.event(&id).await;
        assert_eq!(got["message"], "KeyError: 'customer_id'");
        assert_eq!(got["event"]["frames"][0]["function"], "shop.orders.customer_of");
        assert_eq!(got["event"]["user"], json!({"id": "u-981"}));
    }

    async fn keys_travel_in_the_header_the_query_or_the_dsn(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        // The query, as browsers send it.
        let (id, event) = fresh_event("go-nil-map.json");
        let body = envelope(json!({"event_id": id}), &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())], false);
        let url = format!("{}?sentry_version=7&sentry_key={}", s.envelope_url(), s.key);
        let a = post(url, vec![], body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        // The DSN in the envelope header.
        let (id2, event) = fresh_event("go-nil-map.json");
        let dsn = format!("http://{}@127.0.0.1/{}", s.key, s.project_id);
        let body = envelope(json!({"event_id": id2, "dsn": dsn}), &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())], false);
        let a = post(s.envelope_url(), vec![], body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(s.stored().await.len(), 2);
        let got = s.event(&id2).await;
        assert_eq!(got["message"], "assignment to entry in nil map");
        assert_eq!(got["kind"], "panic");
        assert_eq!(got["platform"], "go");

        // No key, an unknown key, another project's path.
        let (_, event) = fresh_event("go-nil-map.json");
        let body = envelope(json!({}), &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())], false);
        let a = post(s.envelope_url(), vec![], body.clone()).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.body["detail"].as_str().unwrap().contains("sentry_key"), "{}", a.body);
        assert_eq!(a.body["error"]["code"], "invalid_ingest_key");
        let a = post(s.envelope_url(), auth("nope"), body.clone()).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let other = format!("{}/api/{}/envelope/", s.base, s.project_id + 1000);
        let a = post(other, auth(&s.key), body.clone()).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.body["detail"].is_string(), "{}", a.body);
        assert_eq!(a.body["error"]["code"], "forbidden");
        assert_eq!(s.stored().await.len(), 2, "refused envelopes store nothing");
    }

    async fn malformed_envelopes_are_refused_whole(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let (_, good) = fresh_event("node-typeerror.json");
        let good = serde_json::to_vec(&good).unwrap();
        let mut past_end = b"{}\n{\"type\":\"event\"}\n".to_vec();
        past_end.extend(&good);
        past_end.extend(b"\n{\"type\":\"attachment\",\"length\":9999}\nshort\n");
        let mut bad_event = b"{}\n{\"type\":\"event\"}\n".to_vec();
        bad_event.extend(&good);
        bad_event.extend(b"\n{\"type\":\"event\"}\n{not json\n");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty body", vec![], "empty_envelope"),
            ("bad header line", b"this is not json\n{\"type\":\"event\"}\n{}\n".to_vec(), "invalid_envelope_header"),
            ("bad item header", b"{}\n{\"length\":2}\n{}\n".to_vec(), "invalid_item_header"),
            ("length past the end", past_end, "item_length_past_end"),
            ("an event that is not JSON after a good one", bad_event, "invalid_json"),
            ("an event that is not an object", b"{}\n{\"type\":\"event\"}\n[1,2]\n".to_vec(), "invalid_event"),
            ("an event with a bad id", b"{}\n{\"type\":\"event\"}\n{\"event_id\":\"zz\"}\n".to_vec(), "invalid_field"),
        ];
        for (what, body, code) in cases {
            let a = post(s.envelope_url(), auth(&s.key), body).await;
            assert_eq!(a.status, 400, "{what}: {}", a.body);
            assert_eq!(a.body["error"]["code"], code, "{what}: {}", a.body);
            assert!(a.body["detail"].is_string(), "{what}");
        }
        // A body that says gzip and is not.
        let mut headers = auth(&s.key);
        headers.push(("Content-Encoding", "gzip".into()));
        let a = post(s.envelope_url(), headers, b"{}\n".to_vec()).await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "invalid_compression");
        assert!(s.stored().await.is_empty(), "nothing half-stored");
        // The server is still up and takes a good envelope.
        let (id, event) = fresh_event("node-typeerror.json");
        let body = envelope(json!({"event_id": id}), &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())], true);
        assert_eq!(post(s.envelope_url(), auth(&s.key), body).await.status, 200);
        let metrics = s.metrics().await;
        assert!(metrics.contains(r#"panicle_ingest_rejected_total{reason="item_length_past_end"} 1"#), "{metrics}");
    }

    async fn oversized_bodies_are_413_before_and_after_decompression(db: &TestDb) {
        let config = ServerConfig { max_body_bytes: 4096, ..ServerConfig::default() };
        let s = start(db, config).await;
        // Small enough to sit in the socket's buffer while the 413 comes back.
        let big = vec![b' '; 16 * 1024];
        let a = post(s.envelope_url(), auth(&s.key), big.clone()).await;
        assert_eq!(a.status, 413, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "payload_too_large");
        // Small on the wire, too large once inflated.
        let mut bomb = b"{}\n{\"type\":\"attachment\"}\n".to_vec();
        bomb.extend(vec![b'a'; 1024 * 1024]);
        for (encoding, data) in [("gzip", gzip(&bomb)), ("br", brotli(&bomb)), ("deflate", deflate(&bomb))] {
            assert!(data.len() < 4096, "{encoding}: {}", data.len());
            let mut headers = auth(&s.key);
            headers.push(("Content-Encoding", encoding.into()));
            let a = post(s.envelope_url(), headers, data).await;
            assert_eq!(a.status, 413, "{encoding}: {}", a.body);
        }
    }

    async fn sentry_events_get_clusters_and_fix_suggestions(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        for name in ["python-keyerror.json", "node-typeerror.json", "go-nil-map.json"] {
            let (id, event) = fresh_event(name);
            let body = envelope(json!({"event_id": id}), &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())], true);
            let a = post(s.envelope_url(), auth(&s.key), body).await;
            assert_eq!(a.status, 200, "{name}: {}", a.body);
        }
        let recompute = tokio::task::spawn_blocking({
            let url = format!("{}/api/v1/clusters/recompute", s.base);
            let token = s.token.clone();
            move || {
                let mut resp = agent().post(&url).header("Authorization", format!("Bearer {token}")).send(&b""[..]).unwrap();
                let status = resp.status().as_u16();
                (status, resp.body_mut().read_to_string().unwrap())
            }
        })
        .await
        .unwrap();
        assert_eq!(recompute.0, 200, "{}", recompute.1);
        let (status, list) = get(format!("{}/api/v1/clusters?project={}", s.base, s.project_id), s.token.clone()).await;
        assert_eq!(status, 200, "{list}");
        let mut rules: Vec<(String, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["platform"].as_str().unwrap().to_string(),
                    c["suggestion"]["source"]["id"].as_str().unwrap_or("none").to_string(),
                )
            })
            .collect();
        rules.sort();
        assert_eq!(
            rules,
            [
                ("go".to_string(), "go.nil-map-assignment".to_string()),
                ("node".to_string(), "js.cannot-read-properties".to_string()),
                ("python".to_string(), "python.keyerror".to_string()),
            ],
            "{list}"
        );
    }

    async fn rate_limited_answers_speak_sentry(db: &TestDb) {
        let config = ServerConfig {
            limits: LimitDefaults { rate: 1, burst: 1, ..LimitDefaults::default() },
            ..ServerConfig::default()
        };
        let s = start(db, config).await;
        let mut limited = None;
        for _ in 0..5 {
            let (id, event) = fresh_event("python-keyerror.json");
            let body = envelope(json!({"event_id": id}), &[(json!({"type": "event"}), serde_json::to_vec(&event).unwrap())], true);
            let a = post(s.envelope_url(), auth(&s.key), body).await;
            if a.status == 429 {
                limited = Some(a);
                break;
            }
            assert_eq!(a.status, 200, "{}", a.body);
        }
        let a = limited.expect("five events at once pass a rate of 1/s");
        let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
        let rl = a.header("x-sentry-rate-limits").unwrap();
        assert_eq!(rl, format!("{retry}::organization:rate_limited"));
        assert!(a.body["detail"].is_string());
    }
}
