//! Storm aggregates over real HTTP on loopback, on SQLite and on PostgreSQL:
//! every id the SDK handed out for a folded panic resolves to its aggregate
//! within the caller's projects, retention takes the range with the
//! aggregate, and a cluster's traces keep the folded panics' traces.

use std::collections::HashSet;
use std::net::SocketAddr;

use panicle_protocol::storm::{folded_event_id, storm_id_prefix};
use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{LimitsUpdate, Project, TokenScope};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

struct Running {
    base: String,
    state: AppState,
    shop: Project,
    web: Project,
    /// Admin token.
    admin: String,
    /// Reads project `web` only.
    web_token: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: &TestDb) -> Running {
    let store = db.store().await;
    let shop = store.create_project("shop").await.unwrap();
    let web = store.create_project("web").await.unwrap();
    let admin = store.create_token("admin").await.unwrap();
    let scoped = store
        .create_token_with_scope("web only", &TokenScope::Projects([web.id].into()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        trace_url_template: Some("https://traces.invalid/trace/{trace_id}".into()),
        ..ServerConfig::default()
    };
    let state = AppState::new(store.clone(), config).unwrap();
    tokio::spawn(panicle_server::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        state,
        shop,
        web,
        admin,
        web_token: scoped.token,
        _shutdown: tx,
    }
}

/// One HTTP exchange: (status, JSON body).
async fn call(
    method: &'static str,
    url: String,
    token: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let mut resp = match body {
            Some(b) => {
                let req = req.header("Content-Type", "application/json");
                agent.run(req.body(serde_json::to_vec(&b).unwrap()).unwrap())
            }
            None => agent.run(req.body(()).unwrap()),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

impl Running {
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        call(
            "GET",
            format!("{}{path}", self.base),
            Some(token.to_string()),
            vec![],
            None,
        )
        .await
    }

    async fn ingest(&self, project: &Project, events: Value) -> (u16, Value) {
        call(
            "POST",
            format!("{}/api/v1/events", self.base),
            None,
            vec![("X-Panicle-Key", project.ingest_key.clone())],
            Some(events),
        )
        .await
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

/// The trace of request `n` (distinct per n).
fn trace(n: u64) -> String {
    format!("{:016x}{n:016x}", 0xfeed_u64)
}

/// A panic of the checkout loop, as the SDK sends it on its own.
fn event(id: &str, ts: i64, request: u64) -> Value {
    json!({
        "event_id": id,
        "timestamp": rfc3339(ts),
        "message": "called `Option::unwrap()` on a `None` value",
        "platform": "rust",
        "frames": [{"function": "shop::orders::reserve", "file": "src/orders.rs", "line": 42, "in_app": true}],
        "resource": {"service.name": "checkout", "k8s.pod.name": format!("checkout-{}", request % 4)},
        "request": {"method": "POST", "route": "/orders", "request_id": format!("req-{request}")},
        "trace": {"trace_id": trace(request), "span_id": "0123456789abcdef"},
    })
}

/// An aggregate of the panics `seq_start..seq_end` of storm `prefix`, whose
/// samples are requests `requests` (one per folded panic, from seq_start on).
fn aggregate(prefix: &str, seq_start: u32, seq_end: u32, ts: i64, requests: &[u64]) -> Value {
    let mut e = event(&folded_event_id(prefix, seq_start), ts, requests[0]);
    let samples: Vec<Value> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "event_id": folded_event_id(prefix, seq_start + i as u32),
                "timestamp": rfc3339(ts + i as i64),
                "trace": {"trace_id": trace(*r), "span_id": "0123456789abcdef"},
                "request_id": format!("req-{r}"),
                "route": if r % 2 == 0 { "/orders" } else { "/orders/{id}" },
                "message": format!("called `Option::unwrap()` on a `None` value (order {r})"),
            })
        })
        .collect();
    e["count"] = json!(seq_end - seq_start);
    e["storm"] = json!({
        "id_prefix": prefix,
        "seq_start": seq_start,
        "seq_end": seq_end,
        "samples": samples,
        "messages": ["called `Option::unwrap()` on a `None` value (order 1)"],
    });
    e
}

fn new_prefix() -> String {
    let id = uuid::Uuid::new_v4();
    let (high, low) = id.as_u64_pair();
    storm_id_prefix(high, low as u32)
}

panicle_store::backend_tests! {
    async fn folded_ids_resolve_to_their_aggregate_within_the_callers_projects(db: &TestDb) {
        let s = start(db).await;
        let prefix = new_prefix();
        let ts = now_ms() - 3_600_000;
        let requests: Vec<u64> = (1..=20).collect();
        let agg = aggregate(&prefix, 0, 37, ts, &requests);
        let agg_id = folded_event_id(&prefix, 0);
        let (status, answer) = s.ingest(&s.shop, json!([agg])).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["accepted"], json!([agg_id]));
        let admin = s.admin.clone();

        // The aggregate itself: its storm record with what it adds up to.
        let (status, view) = s.get(&format!("/api/v1/events/{agg_id}"), &admin).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["event_id"], agg_id);
        assert_eq!(view["count"], 37);
        assert!(view.get("folded").is_none(), "{view}");
        let storm = &view["storm"];
        assert_eq!((storm["count"].as_i64(), storm["traces"].as_i64()), (Some(37), Some(20)), "{storm}");
        assert_eq!((storm["sampled"].as_i64(), storm["folded_ids"].as_i64()), (Some(20), Some(37)));
        assert_eq!(storm["request_ids"], 20);
        assert_eq!(storm["routes"], json!(["/orders/{id}", "/orders"]));
        assert_eq!(storm["messages"].as_array().unwrap().len(), 1);
        assert_eq!(storm["samples"].as_array().unwrap().len(), 20);
        assert_eq!(storm["samples"][4]["request_id"], "req-5");
        assert_eq!(storm["samples"][4]["trace_url"], format!("https://traces.invalid/trace/{}", trace(5)));
        assert_eq!(view["event"]["storm"]["id_prefix"], prefix, "the raw event keeps its record");

        // Every id the SDK handed out in the storm: a folded one in range, a
        // sampled one, any spelling: the aggregate, marked folded.
        let sampled_id = storm["samples"][7]["event_id"].as_str().unwrap().to_string();
        for asked in [folded_event_id(&prefix, 36), folded_event_id(&prefix, 25), sampled_id.clone(), folded_event_id(&prefix, 12).to_uppercase()] {
            let (status, view) = s.get(&format!("/api/v1/events/{asked}"), &admin).await;
            assert_eq!(status, 200, "{asked}: {view}");
            assert_eq!(view["event_id"], agg_id);
            assert_eq!(view["folded"], json!({"requested_id": asked.to_lowercase(), "into": agg_id}));
            assert_eq!(view["storm"]["count"], 37);
        }
        let (status, view) = s.get(&format!("/api/v1/events/{sampled_id}?project={}", s.shop.id), &admin).await;
        assert_eq!((status, &view["folded"]["into"]), (200, &json!(agg_id)), "{view}");

        // Past the range, another storm, no UUID: a clear 404.
        for unknown in [folded_event_id(&prefix, 37), uuid::Uuid::new_v4().to_string(), "nope".into()] {
            let (status, err) = s.get(&format!("/api/v1/events/{unknown}"), &admin).await;
            assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{unknown}: {err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.contains(&unknown) && message.contains("storm"), "{message}");
        }

        // Another project's token cannot resolve it, nor can `?project=` of another project.
        let (status, err) = s.get(&format!("/api/v1/events/{sampled_id}"), &s.web_token).await;
        assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{err}");
        let (status, _) = s.get(&format!("/api/v1/events/{agg_id}"), &s.web_token).await;
        assert_eq!(status, 404);
        let (status, _) = s.get(&format!("/api/v1/events/{sampled_id}?project={}", s.web.id), &admin).await;
        assert_eq!(status, 404);

        // The same storm in two projects (ids are the client's): ambiguous
        // for a token reading both, the project's own for one reading one.
        let (status, _) = s.ingest(&s.web, json!([aggregate(&prefix, 0, 37, ts, &requests)])).await;
        assert_eq!(status, 202);
        let (status, err) = s.get(&format!("/api/v1/events/{sampled_id}"), &admin).await;
        assert_eq!((status, err["error"]["code"].as_str()), (409, Some("ambiguous_event")), "{err}");
        let (status, view) = s.get(&format!("/api/v1/events/{sampled_id}"), &s.web_token).await;
        assert_eq!((status, view["project_id"].as_i64()), (200, Some(s.web.id)), "{view}");
    }

    async fn an_invalid_storm_record_is_refused_naming_storm(db: &TestDb) {
        let s = start(db).await;
        let prefix = new_prefix();
        let mut bad_prefix = aggregate(&prefix, 0, 3, now_ms(), &[1]);
        bad_prefix["storm"]["id_prefix"] = json!("not-a-uuid-head");
        let mut empty = aggregate(&prefix, 5, 6, now_ms(), &[1]);
        empty["storm"]["seq_end"] = json!(5);
        let mut negative = aggregate(&prefix, 0, 3, now_ms(), &[1]);
        negative["storm"]["seq_start"] = json!(-1);
        for bad in [bad_prefix, empty, negative] {
            let (status, err) = s.ingest(&s.shop, bad.clone()).await;
            assert_eq!(status, 400, "{bad}: {err}");
            assert!(err["error"]["code"].is_string(), "{err}");
            assert!(err["error"]["message"].as_str().unwrap().contains("storm"), "{err}");
        }
        let (_, events) = s.get("/api/v1/events", &s.admin).await;
        assert_eq!(events["items"], json!([]), "nothing stored");
    }

    async fn retention_takes_the_range_with_its_aggregate(db: &TestDb) {
        let s = start(db).await;
        let store = &s.state.store;
        let now = now_ms();
        let (old, fresh) = (new_prefix(), new_prefix());
        let (status, answer) = s.ingest(&s.shop, json!([
            aggregate(&old, 0, 10, now - 10 * DAY, &[1, 2]),
            aggregate(&fresh, 0, 10, now - DAY, &[3, 4]),
        ])).await;
        assert_eq!(status, 202, "{answer}");
        let admin = s.admin.clone();
        let (status, _) = s.get(&format!("/api/v1/events/{}", folded_event_id(&old, 4)), &admin).await;
        assert_eq!(status, 200);

        // Shortened after ingest: ingest dates an event older than its
        // project's retention as received.
        store
            .update_project_limits("shop", &LimitsUpdate { retention_days: Some(Some(7)), ..LimitsUpdate::default() })
            .await
            .unwrap();
        let report = s.state.retention.run(now).await.unwrap();
        assert_eq!((report.events, report.weight), (1, 10), "{report:?}");
        for id in [folded_event_id(&old, 0), folded_event_id(&old, 4)] {
            let (status, err) = s.get(&format!("/api/v1/events/{id}"), &admin).await;
            assert_eq!(status, 404, "{id}: {err}");
        }
        let (status, view) = s.get(&format!("/api/v1/events/{}", folded_event_id(&fresh, 4)), &admin).await;
        assert_eq!((status, &view["folded"]["into"]), (200, &json!(folded_event_id(&fresh, 0))), "{view}");
        assert!(store.count_mismatches(s.shop.id).await.unwrap().is_empty());
    }

    async fn a_clusters_traces_keep_every_folded_request(db: &TestDb) {
        let s = start(db).await;
        let now = now_ms();
        // 48 requests across 4 pods: 8 panics sent on their own, then two
        // storms that folded 20 each into aggregates of 30 and 25 panics.
        let mut events: Vec<Value> = (1..=8u64)
            .map(|r| event(&uuid::Uuid::new_v4().to_string(), now - 3_600_000 + r as i64, r))
            .collect();
        let (a, b) = (new_prefix(), new_prefix());
        let first: Vec<u64> = (9..=28).collect();
        let second: Vec<u64> = (29..=48).collect();
        events.push(aggregate(&a, 0, 30, now - 1_800_000, &first));
        events.push(aggregate(&b, 0, 25, now - 900_000, &second));
        let (status, answer) = s.ingest(&s.shop, Value::Array(events)).await;
        assert_eq!(status, 202, "{answer}");
        let admin = s.admin.clone();
        let (status, report) = call("POST", format!("{}/api/v1/clusters/recompute", s.base), Some(admin.clone()), vec![], None).await;
        assert_eq!(status, 200, "{report}");
        let (_, list) = s.get("/api/v1/clusters?state=all", &admin).await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{list}");
        assert_eq!(items[0]["count"], 8 + 30 + 25);
        let cid = items[0]["id"].as_str().unwrap().to_string();

        let (status, cluster) = s.get(&format!("/api/v1/clusters/{cid}"), &admin).await;
        assert_eq!(status, 200, "{cluster}");
        let traces = cluster["traces"].as_array().unwrap();
        let ids: HashSet<&str> = traces.iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
        let want: HashSet<String> = (1..=48).map(trace).collect();
        assert_eq!(ids.len(), 48, "{cluster}");
        assert!(want.iter().all(|t| ids.contains(t.as_str())), "every request's trace is listed");
        assert_eq!(cluster["trace_count"], 48);
        // A folded request's link names its own event id, its request and
        // the aggregate; that event id resolves to the aggregate.
        let t30 = traces.iter().find(|t| t["trace_id"] == trace(30)).unwrap();
        assert_eq!(t30["request_id"], "req-30");
        assert_eq!(t30["folded_into"], folded_event_id(&b, 0));
        assert_eq!(t30["url"], format!("https://traces.invalid/trace/{}", trace(30)));
        let own = traces.iter().find(|t| t["trace_id"] == trace(3)).unwrap();
        assert_eq!((own["request_id"].as_str(), &own["folded_into"]), (Some("req-3"), &Value::Null));
        for t in traces {
            let id = t["event_id"].as_str().unwrap();
            let (status, view) = s.get(&format!("/api/v1/events/{id}"), &admin).await;
            assert_eq!(status, 200, "{id}: {view}");
            let holder = t["folded_into"].as_str().unwrap_or(id);
            assert_eq!(view["event_id"], holder);
        }
        // Each aggregate: "×30, 20 traces", newest first.
        let storms = cluster["storms"].as_array().unwrap();
        let summary: Vec<(i64, i64)> = storms.iter().map(|s| (s["count"].as_i64().unwrap(), s["traces"].as_i64().unwrap())).collect();
        assert_eq!(summary, vec![(25, 20), (30, 20)], "{storms:?}");
        assert_eq!(storms[0]["event_id"], folded_event_id(&b, 0));

        // Narrowed to the group, the same traces.
        let gid = cluster["groups"][0]["id"].as_str().unwrap();
        let (_, narrowed) = s.get(&format!("/api/v1/clusters/{cid}?group={gid}"), &admin).await;
        assert_eq!(narrowed["trace_count"], 48, "{narrowed}");
        // The cluster's events list shows each aggregate's count.
        let (_, listed) = s.get(&format!("/api/v1/clusters/{cid}/events"), &admin).await;
        let counts: Vec<i64> = listed["items"].as_array().unwrap().iter().map(|e| e["count"].as_i64().unwrap()).collect();
        assert_eq!(counts.iter().sum::<i64>(), 63, "{listed}");
    }

    async fn the_poison_fallback_writes_ranges_with_their_aggregates_only(db: &TestDb) {
        let s = start(db).await;
        // A row the database refuses for its data, as in ingest.rs.
        db.execute(match db.backend {
            panicle_store::Backend::Postgres => "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.message = 'poison' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
               CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
            panicle_store::Backend::Sqlite => "CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
                 WHEN NEW.message = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        })
        .await;
        let (kept, refused) = (new_prefix(), new_prefix());
        let ts = now_ms() - 3_600_000;
        let good = aggregate(&kept, 0, 12, ts, &[1, 2, 3]);
        let mut poison = aggregate(&refused, 0, 12, ts, &[4, 5, 6]);
        poison["message"] = json!("poison");
        let (status, answer) = call(
            "POST",
            format!("{}/api/v1/events", s.base),
            None,
            vec![("X-Panicle-Key", s.shop.ingest_key.clone()), ("X-Panicle-Partial-Batch", "1".into())],
            Some(json!([poison, good.clone()])),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["stored"], 1, "{answer}");
        assert_eq!(answer["rejected"][0]["event_id"], folded_event_id(&refused, 0));
        // Stored one by one: the kept aggregate's range is there, the refused
        // one's rolled back with its event.
        let admin = s.admin.clone();
        let (status, view) = s.get(&format!("/api/v1/events/{}", folded_event_id(&kept, 11)), &admin).await;
        assert_eq!((status, &view["folded"]["into"]), (200, &json!(folded_event_id(&kept, 0))), "{view}");
        let (status, _) = s.get(&format!("/api/v1/events/{}", folded_event_id(&refused, 5)), &admin).await;
        assert_eq!(status, 404);
        // A resend stores nothing twice and the range still resolves.
        let (status, answer) = s.ingest(&s.shop, good).await;
        assert_eq!((status, answer["stored"].as_u64()), (202, Some(0)), "{answer}");
        let (status, _) = s.get(&format!("/api/v1/events/{}", folded_event_id(&kept, 3)), &admin).await;
        assert_eq!(status, 200);
    }
}
