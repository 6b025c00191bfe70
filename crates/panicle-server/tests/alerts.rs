//! Alerts end to end on SQLite and PostgreSQL: rules made through the API,
//! events through ingest, notifications through the outbox worker to a real
//! HTTP receiver (an axum server on 127.0.0.1) that records what it got.
//!
//! Retries use a 50 ms backoff base (400 ms at most), so "receiver down for
//! a while" is a 1.5 s outage: long enough for several failed attempts per
//! notification, which is what the 30 s of the issue proves too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use panicle_server::alerts::AlertConfig;
use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::triggers::Trigger;
use panicle_store::{Backend, Destination, NewAlertRule, RuleKind};
use serde_json::{Value, json};

// ---- a webhook receiver ----

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Value>>>,
    failing: Arc<AtomicBool>,
}

impl Inbox {
    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
    fn count(&self, trigger: &str) -> usize {
        self.bodies()
            .iter()
            .filter(|b| b["trigger"] == trigger)
            .count()
    }
}

async fn receive(State(inbox): State<Inbox>, Json(body): Json<Value>) -> StatusCode {
    if inbox.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    inbox.got.lock().unwrap().push(body);
    StatusCode::OK
}

/// Serves the inbox on `addr` until the returned sender is dropped.
async fn serve_inbox(
    addr: SocketAddr,
    inbox: Inbox,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx)
}

// ---- an HTTPS receiver (the test CA of testdata/tls) ----

const TEST_CA: &[u8] = include_bytes!("../../../testdata/tls/ca.pem");

/// Serves HTTPS on 127.0.0.1 with the `localhost` certificate of
/// testdata/tls: each request's JSON body goes into `inbox`, answered 200.
/// Runs on a thread of its own (rustls over std's blocking sockets).
fn serve_tls_inbox(inbox: Inbox) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};

    let certs = vec![
        CertificateDer::from_pem_slice(include_bytes!("../../../testdata/tls/localhost.pem"))
            .unwrap(),
    ];
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../../../testdata/tls/localhost.key"))
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            // A client that does not trust the certificate ends here.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let body_start = loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(body_start) = body_start else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..body_start]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while got.len() < body_start + length {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if let Ok(body) = serde_json::from_slice(&got[body_start..]) {
                inbox.got.lock().unwrap().push(body);
            }
            let _ =
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

// ---- a Panicle server ----

struct Running {
    base: String,
    key: String,
    token: String,
    project: i64,
    state: AppState,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn fast_alerts() -> AlertConfig {
    AlertConfig {
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        max_attempts: 100,
        send_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(20),
        // Checks run when a test calls them, with the time it picks.
        check_interval: Duration::from_secs(3600),
        trust_roots: None,
    }
}

/// A server (a replica when the project exists already) with its alert worker.
async fn start(db: &TestDb) -> Running {
    start_with(db, fast_alerts()).await
}

async fn start_with(db: &TestDb, alerts: AlertConfig) -> Running {
    let store = db.store().await;
    let project = match store.project_by_name("shop").await.unwrap() {
        Some(p) => p,
        None => store.create_project("shop").await.unwrap(),
    };
    let token = store.create_token("test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        public_url: format!("http://{addr}"),
        alerts,
        ..ServerConfig::default()
    };
    let state = AppState::new(store, config).unwrap();
    state.alerts.spawn();
    tokio::spawn(panicle_server::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        key: project.ingest_key,
        token,
        project: project.id,
        state,
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
        let mut resp = match method {
            "GET" | "DELETE" => {
                let mut r = if method == "GET" {
                    agent().get(&url)
                } else {
                    agent().delete(&url)
                };
                if let Some(t) = &token {
                    r = r.header("Authorization", format!("Bearer {t}"));
                }
                r.call().unwrap()
            }
            _ => {
                let mut r = if method == "PUT" {
                    agent().put(&url)
                } else {
                    agent().post(&url)
                };
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

impl Running {
    async fn add_rule(&self, rule: Value) -> i64 {
        let (status, body) = call(
            "POST",
            format!(
                "{}/api/v1/projects/{}/alerts/rules",
                self.base, self.project
            ),
            Some(self.token.clone()),
            None,
            Some(rule),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    async fn ingest(&self, events: Vec<Value>) {
        let (status, body) = call(
            "POST",
            format!("{}/api/v1/events", self.base),
            None,
            Some(self.key.clone()),
            Some(Value::Array(events)),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }

    async fn recompute(&self) {
        let (status, body) = call(
            "POST",
            format!("{}/api/v1/clusters/recompute", self.base),
            Some(self.token.clone()),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn deliveries(&self) -> Vec<Value> {
        let (status, body) = call(
            "GET",
            format!(
                "{}/api/v1/projects/{}/alerts/deliveries",
                self.base, self.project
            ),
            Some(self.token.clone()),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }
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

/// An event of bug number `bug` (each its own fingerprint and cluster).
fn event(bug: usize, pod: &str, release: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": rfc3339(now_ms()),
        "message": format!("bug {bug}: called `Option::unwrap()` on a `None` value"),
        "platform": "rust",
        "kind": "panic",
        "frames": [
            {"function": format!("shop::module{bug}::handler{bug}"), "file": format!("src/m{bug}.rs"), "line": 10, "in_app": true},
            {"function": format!("shop::caller{bug}::run"), "file": "src/main.rs", "line": 5, "in_app": true},
        ],
        "resource": {"service.name": "shop", "k8s.pod.name": pod, "deployment.environment": "prod"},
        "release": release,
    })
}

/// Waits until `done` holds (at most 15 s).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Lets several worker polls pass, so a duplicate would have arrived.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

fn webhook_rule(kind: &str, addr: SocketAddr) -> Value {
    json!({"name": format!("{kind} to hook"), "kind": kind, "destination": "webhook", "url": format!("http://{addr}/hook")})
}

panicle_store::backend_tests! {
    async fn a_new_cluster_fires_once(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        let rule = s.add_rule(webhook_rule("new_cluster", hook)).await;
        // Filters that do not match: another service, fatal only.
        let mut other = webhook_rule("new_cluster", hook);
        other["service"] = json!("billing");
        s.add_rule(other).await;
        let mut fatal = webhook_rule("new_cluster", hook);
        fatal["min_level"] = json!("fatal");
        s.add_rule(fatal).await;

        s.ingest(vec![event(1, "web-1", "1.0")]).await;
        eventually("the new-cluster notification", || inbox.count("new_cluster") == 1).await;
        // More events of the bug, and a full run: the cluster is not new.
        s.ingest(vec![event(1, "web-1", "1.0"), event(1, "web-2", "1.0")]).await;
        s.recompute().await;
        settle().await;
        let bodies = inbox.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        let b = &bodies[0];
        assert_eq!(b["rule"]["id"], rule);
        assert_eq!(b["project"]["name"], "shop");
        assert_eq!(b["test"], false);
        assert_eq!(b["release"], "1.0");
        assert_eq!(b["cluster"]["culprit"], "shop::module1::handler1");
        let cluster = b["cluster"]["id"].as_str().unwrap();
        assert_eq!(b["links"]["cluster"], format!("{}/clusters/{cluster}", s.base));
        assert!(b["summary"].as_str().unwrap().starts_with("New cluster: "), "{b}");

        let log = s.deliveries().await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["status"], "delivered");
        assert_eq!(log[0]["attempts"], 1);
        assert_eq!(log[0]["last_error"], Value::Null);
    }

    async fn a_spike_fires_once_per_cooldown(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        let mut spike = webhook_rule("spike", hook);
        spike["threshold"] = json!(3);
        spike["window_seconds"] = json!(3600);
        spike["cooldown_seconds"] = json!(600);
        s.add_rule(spike).await;
        let mut confined = webhook_rule("confined", hook);
        confined["threshold"] = json!(4);
        s.add_rule(confined).await;

        // Bug 1: 5 events on web-1 (a spike, confined). Bug 2: 3 events (not over 3) on two pods.
        s.ingest((0..5).map(|_| event(1, "web-1", "1.0")).collect()).await;
        s.ingest(vec![event(2, "web-1", "1.0"), event(2, "web-2", "1.0"), event(2, "web-2", "1.0")]).await;
        s.recompute().await;
        let t = now_ms() + 1_000;
        assert_eq!(s.state.alerts.check(t).await.unwrap(), 2, "a spike and a confinement of bug 1");
        assert_eq!(s.state.alerts.check(t + 60_000).await.unwrap(), 0, "within the cooldown");
        assert_eq!(s.state.alerts.check(t + 599_000).await.unwrap(), 0, "still within it");
        // The default confined cooldown is an hour; the spike's 10 minutes are over.
        assert_eq!(s.state.alerts.check(t + 601_000).await.unwrap(), 1, "the cooldown passed");
        eventually("three notifications", || inbox.bodies().len() == 3).await;
        settle().await;
        assert_eq!(inbox.count("spike"), 2);
        assert_eq!(inbox.count("confined"), 1);
        let spikes: Vec<Value> = inbox.bodies().into_iter().filter(|b| b["trigger"] == "spike").collect();
        assert_eq!(spikes[0]["details"]["count"], 5);
        assert_eq!(spikes[0]["cluster"]["culprit"], "shop::module1::handler1");
        let confined = inbox.bodies().into_iter().find(|b| b["trigger"] == "confined").unwrap();
        assert_eq!(confined["details"]["host"], "web-1");
        assert_eq!(confined["details"]["host_kind"], "pod");
    }

    async fn a_receiver_down_then_up_gets_each_notification_once(db: &TestDb) {
        // A port with nothing listening: connections are refused.
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hook = reserved.local_addr().unwrap();
        drop(reserved);
        let s = start(db).await;
        s.add_rule(webhook_rule("new_cluster", hook)).await;
        s.ingest((1..=5).map(|bug| event(bug, "web-1", "1.0")).collect()).await;
        s.recompute().await;
        // The outage: every notification fails a few times.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let log = s.deliveries().await;
        assert_eq!(log.len(), 5, "{log:?}");
        for d in &log {
            assert_ne!(d["status"], "delivered", "{d}");
            assert!(d["attempts"].as_i64().unwrap() >= 2, "{d}");
            assert!(d["last_error"].as_str().unwrap().contains("cannot connect"), "{d}");
        }
        // Up again on the same port, answering 503 at first, then 200.
        let inbox = Inbox::default();
        inbox.failing.store(true, Ordering::SeqCst);
        let (_, _stop) = serve_inbox(hook, inbox.clone()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(inbox.bodies().is_empty());
        inbox.failing.store(false, Ordering::SeqCst);
        eventually("five notifications", || inbox.bodies().len() >= 5).await;
        settle().await;
        let mut clusters: Vec<String> = inbox
            .bodies()
            .iter()
            .map(|b| b["cluster"]["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(clusters.len(), 5);
        clusters.sort();
        clusters.dedup();
        assert_eq!(clusters.len(), 5, "each cluster once");
        let log = s.deliveries().await;
        assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:?}");
        assert!(
            log.iter().any(|d| d["details"].is_object() && d["attempts"].as_i64().unwrap() >= 3),
            "{log:?}"
        );
    }

    async fn two_replicas_send_one_notification_per_trigger(db: &TestDb) {
        if db.backend == Backend::Sqlite {
            return; // Replicas share a PostgreSQL; SQLite is one process.
        }
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let a = start(db).await;
        let b = start(db).await;
        a.add_rule(webhook_rule("new_cluster", hook)).await;
        let mut spike = webhook_rule("spike", hook);
        spike["threshold"] = json!(1);
        b.add_rule(spike).await;
        // Ten bugs, each sent to both replicas.
        let mut sends = Vec::new();
        for bug in 1..=10 {
            for (i, s) in [&a, &b].into_iter().enumerate() {
                let events = vec![event(bug, "web-1", "1.0"), event(bug, &format!("web-{i}"), "1.0")];
                sends.push(s.ingest(events));
            }
        }
        for f in sends {
            f.await;
        }
        let (_, _) = tokio::join!(a.recompute(), b.recompute());
        eventually("ten new clusters", || inbox.count("new_cluster") >= 10).await;
        let t = now_ms() + 1_000;
        // Both replicas check at once, a millisecond apart: the cooldown
        // gate, not only the unique occurrence, keeps one per cluster.
        let (x, y) = tokio::join!(a.state.alerts.check(t), b.state.alerts.check(t + 1));
        assert_eq!(x.unwrap() + y.unwrap(), 10, "one spike per cluster across replicas");
        eventually("ten spikes", || inbox.count("spike") >= 10).await;
        settle().await;
        assert_eq!(inbox.count("new_cluster"), 10);
        assert_eq!(inbox.count("spike"), 10);
        for trigger in ["new_cluster", "spike"] {
            let mut ids: Vec<String> = inbox
                .bodies()
                .iter()
                .filter(|b| b["trigger"] == trigger)
                .map(|b| b["cluster"]["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 10, "{trigger}: every cluster once");
        }
    }

    async fn a_recorded_regression_is_delivered_once(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        s.add_rule(webhook_rule("regression", hook)).await;
        s.add_rule(webhook_rule("new_cluster", "127.0.0.1:9".parse().unwrap())).await;
        s.ingest(vec![event(3, "web-1", "1.0")]).await;
        s.recompute().await;
        let cluster = s.state.store.all_groups(Some(s.project)).await.unwrap()[0].cluster_id.clone().unwrap();
        let store = &s.state.store;
        let regression = Trigger::Regression { cluster_id: &cluster, release: Some("2.0"), event_id: "e-regressed" };
        assert_eq!(store.fire(s.project, &regression).await.unwrap(), 1);
        // The same regression recorded again (a resend): nothing more.
        assert_eq!(store.fire(s.project, &regression).await.unwrap(), 0);
        eventually("the regression", || inbox.count("regression") == 1).await;
        settle().await;
        let bodies = inbox.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        // The log keeps a window of finished rows: a prune before it keeps
        // the delivered regression, after it drops it; the new-cluster
        // notification to a dead receiver is still pending and stays.
        let regressions = |log: Vec<Value>| log.iter().filter(|d| d["trigger"] == "regression").count();
        assert_eq!(store.prune_deliveries(now_ms() - 60_000).await.unwrap(), 0);
        assert_eq!(regressions(s.deliveries().await), 1);
        assert_eq!(store.prune_deliveries(now_ms() + 1).await.unwrap(), 1);
        let log = s.deliveries().await;
        assert_eq!(regressions(log.clone()), 0);
        assert!(log.iter().all(|d| d["status"] == "pending" || d["status"] == "sending"), "{log:?}");
        assert_eq!(bodies[0]["release"], "2.0");
        assert_eq!(bodies[0]["details"]["event_id"], "e-regressed");
        assert_eq!(bodies[0]["cluster"]["id"], cluster.as_str());
    }

    async fn a_regression_after_resolve_fires_once(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        s.add_rule(webhook_rule("regression", hook)).await;
        s.ingest(vec![event(5, "web-1", "1.0")]).await;
        s.recompute().await;
        let cluster = s.state.store.all_groups(Some(s.project)).await.unwrap()[0].cluster_id.clone().unwrap();
        let (status, body) = tokio::task::spawn_blocking({
            let url = format!("{}/api/v1/clusters/{cluster}/state", s.base);
            let token = s.token.clone();
            move || {
                let mut r = agent()
                    .put(&url)
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .send(br#"{"state": "resolved_in_release", "release": "1.0"}"#.as_slice())
                    .unwrap();
                (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
            }
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        // The same release stays resolved: nothing. A newer one regresses: one
        // notification; a further event of the reopened cluster: no more.
        s.ingest(vec![event(5, "web-1", "1.0")]).await;
        settle().await;
        assert_eq!(inbox.count("regression"), 0);
        s.ingest(vec![event(5, "web-1", "2.0")]).await;
        eventually("the regression", || inbox.count("regression") == 1).await;
        s.ingest(vec![event(5, "web-1", "3.0")]).await;
        settle().await;
        let bodies = inbox.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        assert_eq!(bodies[0]["release"], "2.0");
        assert_eq!(bodies[0]["cluster"]["id"], cluster.as_str());
    }

    async fn two_groups_of_a_cluster_new_to_a_release_in_one_batch_fire_it_once(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        s.ingest(vec![event(6, "web-1", "1.0"), event(7, "web-1", "1.0")]).await;
        s.recompute().await;
        // Both groups in one cluster.
        let groups = s.state.store.all_groups(Some(s.project)).await.unwrap();
        let of = |module: &str| groups.iter().find(|g| g.frames.iter().any(|f| f.contains(module))).unwrap();
        let cluster = of("module6").cluster_id.clone().unwrap();
        db.execute(&format!("UPDATE event_groups SET cluster_id = '{cluster}' WHERE id = '{}'", of("module7").id)).await;
        s.add_rule(webhook_rule("new_release", hook)).await;
        // Each group first sees 2.0 in the same request (one transaction).
        s.ingest(vec![event(6, "web-1", "2.0"), event(7, "web-2", "2.0")]).await;
        eventually("the new-release notification", || inbox.count("new_release") >= 1).await;
        settle().await;
        let clusters: Vec<String> = inbox.bodies().iter().map(|b| b["cluster"]["id"].to_string()).collect();
        assert_eq!(inbox.count("new_release"), 1, "{clusters:?}");
        assert_eq!(inbox.bodies()[0]["cluster"]["id"], cluster.as_str());
    }

    async fn slack_gets_a_formatted_message_for_a_new_release(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        s.add_rule(json!({"name": "releases", "kind": "new_release", "destination": "slack", "url": format!("http://{hook}/hook")})).await;
        s.ingest(vec![event(4, "web-1", "1.0")]).await;
        s.recompute().await;
        // The same release again: nothing; a new one: one message.
        s.ingest(vec![event(4, "web-1", "1.0")]).await;
        s.ingest(vec![event(4, "web-1", "2.0"), event(4, "web-2", "2.0")]).await;
        eventually("the Slack message", || !inbox.bodies().is_empty()).await;
        settle().await;
        let bodies = inbox.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        let m = &bodies[0];
        let text = m["text"].as_str().unwrap();
        assert!(text.starts_with("Seen in a new release: "), "{text}");
        assert!(text.contains(&format!("<{}/clusters/", s.base)), "{text}");
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[1]["type"], "section");
        let facts = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(facts.contains("*Release* 2.0"), "{facts}");
        assert!(facts.contains("*Culprit* `shop::module4::handler4`"), "{facts}");
        assert_eq!(blocks[2]["type"], "context");
    }

    async fn https_receivers_get_notifications_and_untrusted_ones_are_named(db: &TestDb) {
        let inbox = Inbox::default();
        let hook = serve_tls_inbox(inbox.clone());
        // Trusting the test CA: the Slack message arrives over TLS.
        let trusted = AlertConfig {
            trust_roots: Some(panicle_server::webhook::TrustRoots::from_pem(TEST_CA).unwrap()),
            ..fast_alerts()
        };
        let s = start_with(db, trusted).await;
        let url = format!("https://localhost:{}/hook", hook.port());
        s.add_rule(json!({"name": "tls", "kind": "new_cluster", "destination": "slack", "url": url})).await;
        s.ingest(vec![event(7, "web-1", "1.0")]).await;
        eventually("the Slack message over https", || !inbox.bodies().is_empty()).await;
        let text = inbox.bodies()[0]["text"].as_str().unwrap().to_string();
        assert!(text.starts_with("New cluster: "), "{text}");
        // The receiver has the message before the worker records the answer.
        let mut log = s.deliveries().await;
        for _ in 0..1500 {
            if log[0]["status"] != "sending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            log = s.deliveries().await;
        }
        assert_eq!(log[0]["status"], "delivered", "{log:?}");

        // Mozilla's roots only (the default): the receiver's private CA is
        // not trusted, the test send says why and nothing arrives.
        let db2 = TestDb::new(db.backend).await;
        let public = start(&db2).await;
        let rule = public.add_rule(json!({"name": "tls", "kind": "new_cluster", "destination": "webhook", "url": url})).await;
        let before = inbox.bodies().len();
        let (status, body) = call(
            "POST",
            format!("{}/api/v1/projects/{}/alerts/rules/{rule}/test", public.base, public.project),
            Some(public.token.clone()),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["delivered"], false, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("TLS") && error.contains("--alert-ca-file"), "{error}");
        assert_eq!(inbox.bodies().len(), before);
    }

    async fn the_rules_api_validates_tests_and_deletes(db: &TestDb) {
        let inbox = Inbox::default();
        let (hook, _stop) = serve_inbox("127.0.0.1:0".parse().unwrap(), inbox.clone()).await;
        let s = start(db).await;
        let url = format!("{}/api/v1/projects/{}/alerts/rules", s.base, s.project);
        let tok = Some(s.token.clone());
        for (bad, field) in [
            (json!({"name": "x", "kind": "sometimes", "destination": "webhook", "url": "http://h/"}), "kind"),
            (json!({"name": "x", "kind": "spike", "destination": "pager", "url": "http://h/"}), "destination"),
            (json!({"name": "x", "kind": "spike", "destination": "webhook", "url": "ftp://h/"}), "url"),
            (json!({"name": "x", "kind": "spike", "destination": "webhook", "url": "http://h/", "min_level": "loud"}), "min_level"),
            (json!({"name": "x", "kind": "spike", "destination": "webhook", "url": "http://h/", "threshold": 0}), "threshold"),
        ] {
            let (status, body) = call("POST", url.clone(), tok.clone(), None, Some(bad)).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"]["code"], "invalid_parameter");
            assert!(body["error"]["message"].as_str().unwrap().contains(field), "{body}");
        }
        let (status, _) = call("GET", format!("{}/api/v1/projects/999/alerts/rules", s.base), tok.clone(), None, None).await;
        assert_eq!(status, 404);

        let id = s.add_rule(webhook_rule("regression", hook)).await;
        let (status, list) = call("GET", url.clone(), tok.clone(), None, None).await;
        assert_eq!(status, 200);
        assert_eq!(list["items"][0]["id"], id);
        assert_eq!(list["items"][0]["cooldown_seconds"], 3600);

        // An update replaces the settings; a bad one is refused and changes nothing.
        let mut changed = webhook_rule("regression", hook);
        changed["name"] = json!("regressions in prod");
        changed["environment"] = json!("prod");
        changed["cooldown_seconds"] = json!(60);
        let (status, body) = call("PUT", format!("{url}/{id}"), tok.clone(), None, Some(changed)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["name"].as_str(), body["environment"].as_str(), body["cooldown_seconds"].as_i64()), (Some("regressions in prod"), Some("prod"), Some(60)));
        let bad = json!({"name": "x", "kind": "regression", "destination": "webhook", "url": "nope"});
        let (status, _) = call("PUT", format!("{url}/{id}"), tok.clone(), None, Some(bad)).await;
        assert_eq!(status, 400);
        let (_, now) = call("GET", format!("{url}/{id}"), tok.clone(), None, None).await;
        assert_eq!(now["name"], "regressions in prod");
        let (status, _) = call("PUT", format!("{url}/99999"), tok.clone(), None, Some(webhook_rule("regression", hook))).await;
        assert_eq!(status, 404);

        let (status, res) = call("POST", format!("{url}/{id}/test"), tok.clone(), None, None).await;
        assert_eq!(status, 200, "{res}");
        assert_eq!(res["delivered"], true, "{res}");
        assert_eq!(inbox.bodies()[0]["test"], true);

        let (status, _) = call("DELETE", format!("{url}/{id}"), tok.clone(), None, None).await;
        assert_eq!(status, 200);
        let (status, _) = call("GET", format!("{url}/{id}"), tok.clone(), None, None).await;
        assert_eq!(status, 404);
        // A test against a receiver that is not there says why.
        let dead = s.add_rule(webhook_rule("regression", "127.0.0.1:9".parse().unwrap())).await;
        let (_, res) = call("POST", format!("{url}/{dead}/test"), tok.clone(), None, None).await;
        assert_eq!(res["delivered"], false);
        assert!(res["error"].as_str().unwrap().contains("cannot connect"), "{res}");
    }

    async fn rules_in_the_store_round_trip(db: &TestDb) {
        let store = db.store().await;
        let p = store.create_project("shop").await.unwrap();
        let mut rule = NewAlertRule::new(p.id, "spikes", RuleKind::Spike, Destination::Slack, "http://h/x");
        rule.factor = Some(3.0);
        rule.service = Some("api".into());
        let made = store.create_alert_rule(&rule).await.unwrap();
        assert_eq!(made.kind, RuleKind::Spike);
        assert_eq!(made.factor, Some(3.0));
        assert_eq!(made.threshold, Some(10));
        assert_eq!(store.alert_rules(Some(p.id)).await.unwrap(), vec![made.clone()]);
        assert!(store.delete_alert_rule(made.id).await.unwrap());
        assert!(store.alert_rules(None).await.unwrap().is_empty());
    }
}
