//! Two `panicle serve` processes on one PostgreSQL database, as replicas
//! behind a load balancer (issue 20): clients post to both at once, the
//! same events to each (a client retrying on the other replica), storm
//! aggregates among them; both run the clustering job every second and
//! attach new groups after each batch; both run the alert worker and the
//! spike check. Afterwards every accepted id is stored once, every count is
//! exact, every group is in one cluster of the expected partition, and each
//! notification reached the receiver once.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, now_ms, rfc3339};
use panicle_protocol::dsn::Dsn;
use panicle_protocol::storm::{folded_event_id, storm_id_prefix};
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection, Row};

/// Ten bugs, each reached through four call paths: 40 fingerprints that a
/// clustering run must fold into 10 clusters of 4 groups.
const BUGS: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];
const PATHS: [&str; 4] = ["checkout", "batch", "retry", "admin"];
/// Plain events per fingerprint.
const EVENTS_PER_FINGERPRINT: usize = 30;
/// Panics folded into the one storm aggregate each fingerprint also gets.
const STORM_COUNT: u32 = 7;
const BATCH: usize = 25;
const THREADS_PER_SERVER: usize = 4;

/// A panic of `bug` reached through `path`: the culprit and kind are the
/// bug's, the caller the path's (the architecture's worked example: one
/// frame apart, distance 0.44, one cluster).
fn event(id: &str, bug: &str, path: &str, ts: i64, n: usize) -> Value {
    json!({
        "event_id": id,
        "timestamp": rfc3339(ts),
        "message": format!("{bug} ledger refused: called `Option::unwrap()` on a `None` value"),
        "platform": "rust",
        "kind": "panic",
        "frames": [
            {"function": format!("shop::{bug}::settle"), "file": format!("src/{bug}.rs"), "line": 10, "in_app": true},
            {"function": format!("shop::{path}::{bug}_step"), "file": format!("src/{path}.rs"), "line": 20, "in_app": true},
        ],
        "resource": {"service.name": "shop", "k8s.pod.name": format!("shop-{}", n % 3)},
        "release": "1.0.0",
    })
}

/// A storm aggregate of `STORM_COUNT` panics of the fingerprint.
fn aggregate(bug: &str, path: &str, ts: i64) -> Value {
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    let prefix = storm_id_prefix(high, low as u32);
    let mut e = event(&folded_event_id(&prefix, 0), bug, path, ts, 0);
    let samples: Vec<Value> = (0..3)
        .map(|i| json!({"event_id": folded_event_id(&prefix, i), "timestamp": rfc3339(ts + i as i64)}))
        .collect();
    e["count"] = json!(STORM_COUNT);
    e["storm"] =
        json!({"id_prefix": prefix, "seq_start": 0, "seq_end": STORM_COUNT, "samples": samples});
    e
}

/// Every event of the test, as (fingerprint index, weight, body).
fn all_events() -> Vec<(usize, i64, Value)> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut n = 0;
    for (b, bug) in BUGS.iter().enumerate() {
        for (p, path) in PATHS.iter().enumerate() {
            let fp = b * PATHS.len() + p;
            for _ in 0..EVENTS_PER_FINGERPRINT {
                n += 1;
                let id = uuid::Uuid::new_v4().to_string();
                out.push((
                    fp,
                    1,
                    event(&id, bug, path, now - 600_000 + n as i64 * 10, n),
                ));
            }
            out.push((fp, STORM_COUNT as i64, aggregate(bug, path, now - 300_000)));
        }
    }
    // Mixed batches: each touches many groups, in no particular order.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// Posts a batch with the partial-batch header, as the SDK does.
fn ingest(agent: &ureq::Agent, base: &str, key: &str, batch: &[Value]) -> (u16, Value) {
    let mut resp = agent
        .post(&format!("{base}/api/v1/events"))
        .header("X-Panicle-Key", key)
        .header("X-Panicle-Partial-Batch", "1")
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(batch).unwrap().as_slice())
        .expect("POST /api/v1/events");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn send_json(agent: &ureq::Agent, server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let mut resp = agent
        .post(&format!("{}{path}", server.base))
        .header("Authorization", format!("Bearer {}", server.token))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(body).unwrap().as_slice())
        .expect("POST");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A webhook receiver on loopback: answers 200 to every POST and keeps
/// the JSON bodies.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let inbox = Arc::clone(&got);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let inbox = Arc::clone(&inbox);
            thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                if let Ok(v) = serde_json::from_slice(&body) {
                    inbox.lock().unwrap().push(v);
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, got)
}

/// Polls `done` every 100 ms for up to 30 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

struct Db {
    rt: tokio::runtime::Runtime,
    url: String,
}

impl Db {
    fn rows(&self, sql: &str) -> Vec<sqlx::any::AnyRow> {
        self.rt.block_on(async {
            let mut conn = AnyConnection::connect(&self.url).await.unwrap();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}: {sql}"));
            let _ = conn.close().await;
            rows
        })
    }

    fn count(&self, sql: &str) -> i64 {
        self.rows(sql)[0].try_get::<i64, _>(0).unwrap()
    }
}

#[test]
fn two_replicas_ingest_cluster_and_alert_as_one() {
    replicas(None);
}

/// With a group cap below each fingerprint's events, a replica's batch
/// stores an event in full while the other's, counting the group past the
/// cap, keeps the same id as sampled: both must not happen.
#[test]
fn two_replicas_keep_each_id_once_past_the_group_cap() {
    replicas(Some(20));
}

/// Runs the scenario, with `--group-event-cap` when given.
fn replicas(group_cap: Option<usize>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let test_db = rt.block_on(TestDb::new(Backend::Postgres));
    let db = Db {
        rt,
        url: test_db.url.clone(),
    };
    let cap = group_cap.map(|c| c.to_string());
    let mut args = vec![
        "--cluster-interval",
        "1",
        "--alert-check-interval",
        "1",
        "--alert-backoff-ms",
        "100",
    ];
    if let Some(cap) = &cap {
        args.extend(["--group-event-cap", cap.as_str()]);
    }
    // The first start creates the project and token; the second is a replica.
    let (a, _) = Server::start_until(&test_db.url, &args, &[], "panicle listening on ");
    let (mut b, _) = Server::start_until(&test_db.url, &args, &[], "panicle listening on ");
    assert!(b.dsn.is_empty(), "a replica creates no second project");
    b.token = a.token.clone();
    let dsn: Dsn = a.dsn.parse().unwrap();
    let (key, project) = (dsn.key.clone(), dsn.project_id);

    let (hook, inbox) = receiver();
    let http = agent();
    let (status, rule) = send_json(
        &http,
        &a,
        &format!("/api/v1/projects/{project}/alerts/rules"),
        &json!({"name": "new bugs", "kind": "new_cluster", "destination": "webhook", "url": hook}),
    );
    assert_eq!(status, 201, "{rule}");

    let events = all_events();
    let expected: HashMap<usize, i64> = events.iter().fold(HashMap::new(), |mut m, (fp, w, _)| {
        *m.entry(*fp).or_default() += w;
        m
    });
    let batches: Vec<Vec<Value>> = events
        .chunks(BATCH)
        .map(|c| c.iter().map(|(_, _, e)| e.clone()).collect())
        .collect();
    let batches = Arc::new(batches);

    // Each batch goes to both replicas at about the same time (thread t of
    // each takes batches t, t + THREADS, …); every third batch is sent to
    // its replica a second time.
    let accepted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for server in [&a, &b] {
        for t in 0..THREADS_PER_SERVER {
            let (batches, accepted, refusals) = (
                Arc::clone(&batches),
                Arc::clone(&accepted),
                Arc::clone(&refusals),
            );
            let (base, key) = (server.base.clone(), key.clone());
            clients.push(thread::spawn(move || {
                let http = agent();
                for (i, batch) in batches
                    .iter()
                    .enumerate()
                    .skip(t)
                    .step_by(THREADS_PER_SERVER)
                {
                    let sends = if i % 3 == 0 { 2 } else { 1 };
                    for _ in 0..sends {
                        let (status, answer) = ingest(&http, &base, &key, batch);
                        if status != 202
                            || !answer["rejected"].as_array().is_none_or(|r| r.is_empty())
                        {
                            refusals
                                .lock()
                                .unwrap()
                                .push(format!("{base} batch {i}: {status} {answer}"));
                            continue;
                        }
                        let ids = answer["accepted"].as_array().unwrap();
                        assert_eq!(ids.len(), batch.len(), "{answer}");
                        let mut acc = accepted.lock().unwrap();
                        acc.extend(ids.iter().map(|v| v.as_str().unwrap().to_string()));
                    }
                }
            }));
        }
    }
    // Meanwhile, full runs asked of both replicas at once.
    let recomputes = {
        let (a_base, b_base, token) = (a.base.clone(), b.base.clone(), a.token.clone());
        thread::spawn(move || {
            let http = agent();
            let mut ran = 0;
            for _ in 0..5 {
                let both: Vec<_> = [a_base.clone(), b_base.clone()]
                    .into_iter()
                    .map(|base| {
                        let (http, token) = (http.clone(), token.clone());
                        thread::spawn(move || {
                            let mut resp = http
                                .post(&format!("{base}/api/v1/clusters/recompute"))
                                .header("Authorization", format!("Bearer {token}"))
                                .send(&b""[..])
                                .unwrap();
                            let status = resp.status().as_u16();
                            let text = resp.body_mut().read_to_string().unwrap_or_default();
                            (status, text)
                        })
                    })
                    .collect();
                for h in both {
                    let (status, text) = h.join().unwrap();
                    assert_eq!(status, 200, "recompute under ingest: {text}");
                    let report: Value = serde_json::from_str(&text).unwrap();
                    ran += i32::from(report["ran"] == true);
                }
                thread::sleep(Duration::from_millis(200));
            }
            ran
        })
    };
    for c in clients {
        c.join().unwrap();
    }
    let ran = recomputes.join().unwrap();
    assert!(ran >= 1, "some of the asked runs ran");
    let refusals = refusals.lock().unwrap().clone();
    assert!(
        refusals.is_empty(),
        "every batch is a 202 with every event accepted: {refusals:#?}"
    );

    // Every id sent was accepted and is stored once, in full or as sampled.
    let accepted = accepted.lock().unwrap().clone();
    let sent: BTreeSet<String> = events
        .iter()
        .map(|(_, _, e)| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accepted, sent);
    let stored = db.rows(
        "SELECT event_id, COUNT(*) AS n FROM \
         (SELECT event_id FROM events UNION ALL SELECT event_id FROM sampled_events) s \
         GROUP BY event_id",
    );
    let twice: Vec<String> = stored
        .iter()
        .filter(|r| r.try_get::<i64, _>("n").unwrap() != 1)
        .map(|r| r.try_get::<String, _>("event_id").unwrap())
        .collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let stored: BTreeSet<String> = stored
        .iter()
        .map(|r| r.try_get::<String, _>("event_id").unwrap())
        .collect();
    assert_eq!(stored, sent);

    // Each group's count is its fingerprint's panics; the counters agree
    // with the rows they count; the cap held.
    let groups = db.rows(
        "SELECT id, frames, event_count, stored_events, sampled_events FROM event_groups ORDER BY id",
    );
    assert_eq!(groups.len(), BUGS.len() * PATHS.len());
    let fp_of = |frames: &str| -> usize {
        let b = BUGS
            .iter()
            .position(|b| frames.contains(&format!("shop::{b}::settle")))
            .unwrap();
        let p = PATHS
            .iter()
            .position(|p| frames.contains(&format!("shop::{p}::")))
            .unwrap();
        b * PATHS.len() + p
    };
    let mut group_fp: BTreeMap<String, usize> = BTreeMap::new();
    for g in &groups {
        let id: String = g.try_get("id").unwrap();
        let frames: String = g.try_get("frames").unwrap();
        let fp = fp_of(&frames);
        let count: i64 = g.try_get("event_count").unwrap();
        assert_eq!(count, expected[&fp], "group {id} ({frames})");
        group_fp.insert(id, fp);
    }
    let mismatches = db.count(
        "SELECT COUNT(*) FROM event_groups g WHERE event_count <> \
         COALESCE((SELECT SUM(weight) FROM events e WHERE e.group_id = g.id), 0) + \
         COALESCE((SELECT SUM(weight) FROM sampled_events s WHERE s.group_id = g.id), 0) \
         OR stored_events <> (SELECT COUNT(*) FROM events e WHERE e.group_id = g.id) \
         OR sampled_events <> (SELECT COUNT(*) FROM sampled_events s WHERE s.group_id = g.id)",
    );
    assert_eq!(mismatches, 0, "group counters equal their rows");
    let sampled = db.count("SELECT COUNT(*) FROM sampled_events");
    assert_eq!(
        group_cap.is_some(),
        sampled > 0,
        "{sampled} events kept as sampled"
    );
    let storms = db.count("SELECT COUNT(*) FROM storm_ranges");
    assert_eq!(
        storms,
        (BUGS.len() * PATHS.len()) as i64,
        "one range per aggregate"
    );
    let usage = db.count("SELECT MAX(count) FROM project_usage");
    assert_eq!(usage, sent.len() as i64, "usage counts each new event once");

    // Clustering settles: every group attached, then one more run gives
    // the partition the bugs make, whichever replica runs it.
    eventually("every group in a cluster", || {
        db.count("SELECT COUNT(*) FROM event_groups WHERE cluster_id IS NULL") == 0
    });
    let (status, report) = a.post("/api/v1/clusters/recompute");
    assert_eq!(status, 200, "{report}");
    let (status, report) = b.post("/api/v1/clusters/recompute");
    assert_eq!(status, 200, "{report}");
    let members = db.rows("SELECT id, cluster_id FROM event_groups ORDER BY id");
    let mut clusters: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for r in &members {
        let id: String = r.try_get("id").unwrap();
        let cluster: String = r.try_get("cluster_id").unwrap();
        clusters.entry(cluster).or_default().insert(group_fp[&id]);
    }
    let partition: BTreeSet<BTreeSet<usize>> = clusters.values().cloned().collect();
    let want: BTreeSet<BTreeSet<usize>> = (0..BUGS.len())
        .map(|b| (b * PATHS.len()..(b + 1) * PATHS.len()).collect())
        .collect();
    assert_eq!(partition, want, "one cluster per bug: {clusters:?}");
    let next = db.count("SELECT next_cluster FROM cluster_state WHERE id = 1");
    for c in clusters.keys() {
        assert!(
            c.parse::<i64>().unwrap() < next,
            "cluster {c} was minted from the counter ({next})"
        );
    }
    let (status, list) = a.get("/api/v1/clusters?limit=100");
    assert_eq!(status, 200, "{list}");
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), BUGS.len(), "{list}");

    // A spike rule made now: each of the ten clusters is over it, both
    // replicas check every second, one notification per cluster.
    let (status, rule) = send_json(
        &http,
        &b,
        &format!("/api/v1/projects/{project}/alerts/rules"),
        &json!({"name": "spikes", "kind": "spike", "destination": "webhook", "url": hook,
                "threshold": 10, "window_seconds": 3600}),
    );
    assert_eq!(status, 201, "{rule}");
    let spikes = || {
        inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["trigger"] == "spike")
            .count()
    };
    eventually("ten spike notifications", || spikes() >= BUGS.len());
    // Three more checks on each replica: nothing more.
    thread::sleep(Duration::from_secs(3));
    let (status, log) = a.get(&format!(
        "/api/v1/projects/{project}/alerts/deliveries?limit=1000"
    ));
    assert_eq!(status, 200, "{log}");
    let log = log["items"].as_array().unwrap().clone();
    assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:#?}");
    let got = inbox.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        log.len(),
        "each notification sent once: {got:#?}"
    );
    let mut by_delivery: BTreeMap<i64, usize> = BTreeMap::new();
    for body in &got {
        *by_delivery
            .entry(body["delivery"]["id"].as_i64().unwrap())
            .or_default() += 1;
    }
    assert!(by_delivery.values().all(|&n| n == 1), "{by_delivery:?}");
    let spike_clusters: BTreeSet<String> = got
        .iter()
        .filter(|b| b["trigger"] == "spike")
        .map(|b| b["cluster"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(spike_clusters.len(), BUGS.len());
    assert_eq!(
        spikes(),
        BUGS.len(),
        "one spike per cluster across replicas"
    );
    assert!(spike_clusters.iter().all(|c| clusters.contains_key(c)));
    // A new-cluster notification names the group that started it: no group
    // started two clusters, whichever replica attached or ran.
    let mut started: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in log.iter().filter(|d| d["trigger"] == "new_cluster") {
        started
            .entry(d["details"]["group_id"].as_str().unwrap().to_string())
            .or_default()
            .push(d["cluster_id"].as_str().unwrap().to_string());
    }
    assert!(!started.is_empty());
    let twice: Vec<_> = started.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "groups announced as new clusters twice: {twice:?}"
    );
}

/// Two replicas started at once on an empty database (a deployment of
/// two): both serve, one made the first project and printed its
/// credentials, and there is one project.
#[test]
fn two_replicas_started_together_make_one_project() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..3 {
        let test_db = rt.block_on(TestDb::new(Backend::Postgres));
        let starts: Vec<_> = (0..2)
            .map(|_| {
                let url = test_db.url.clone();
                thread::spawn(move || {
                    Server::start_until(&url, &[], &[], "panicle listening on ").0
                })
            })
            .collect();
        let mut servers: Vec<Server> = starts.into_iter().map(|h| h.join().unwrap()).collect();
        let printed: Vec<String> = servers
            .iter()
            .filter(|s| !s.dsn.is_empty())
            .map(|s| s.token.clone())
            .collect();
        assert_eq!(
            printed.len(),
            1,
            "one replica prints the first-start credentials"
        );
        for s in &mut servers {
            s.token = printed[0].clone();
            let (status, projects) = s.get("/api/v1/projects");
            assert_eq!(status, 200, "{projects}");
            assert_eq!(projects["items"].as_array().unwrap().len(), 1, "{projects}");
        }
    }
}
