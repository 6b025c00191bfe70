//! Cluster states over HTTP on SQLite and PostgreSQL: change one, change
//! many, list by state (unresolved by default), regressions through ingest
//! and through attach, the history, and the 4xx answers.

use std::net::SocketAddr;

use panicle_server::{AppState, ServerConfig};
use panicle_store::TokenScope;
use serde_json::{Value, json};

struct Running {
    base: String,
    key: String,
    other_key: String,
    admin: String,
    /// A token of the "shop" project only.
    shop_token: String,
    /// A token of the "other" project only.
    other_token: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: &panicle_store::testing::TestDb) -> Running {
    let store = db.store().await;
    let shop = store.create_project("shop").await.unwrap();
    let other = store.create_project("other").await.unwrap();
    let admin = store.create_token("admin").await.unwrap();
    let shop_token = store
        .create_token_with_scope("shop", &TokenScope::Projects([shop.id].into()))
        .await
        .unwrap()
        .token;
    let other_token = store
        .create_token_with_scope("other", &TokenScope::Projects([other.id].into()))
        .await
        .unwrap()
        .token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(store, ServerConfig::default()).unwrap();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        key: shop.ingest_key,
        other_key: other.ingest_key,
        admin,
        shop_token,
        other_token,
        _shutdown: tx,
    }
}

/// One request; `body` as raw text so malformed JSON can be sent too.
async fn call(
    method: &'static str,
    url: String,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let token = token.map(str::to_string);
    let key = key.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut resp = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call().unwrap()
            }
            _ => {
                let mut r = if method == "PUT" {
                    agent.put(&url)
                } else {
                    agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                if let Some(k) = &key {
                    r = r.header("X-Panicle-Key", k);
                }
                r = r.header("Content-Type", "application/json");
                r.send(body.unwrap_or_default().as_bytes()).unwrap()
            }
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

fn event(function: &str, release: &str, pod: &str) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "message": format!("index out of bounds in {function}"),
        "platform": "rust",
        "kind": "panic",
        "frames": [
            {"function": format!("shop::{function}"), "file": format!("src/{function}.rs"), "line": 10, "in_app": true},
            {"function": "shop::main", "file": "src/main.rs", "line": 3, "in_app": true},
        ],
        "resource": {"service.name": "shop", "k8s.pod.name": pod},
        "release": release,
    })
}

impl Running {
    async fn ingest(&self, events: Vec<Value>) {
        let (status, body) = call(
            "POST",
            format!("{}/api/v1/events", self.base),
            None,
            Some(&self.key),
            Some(Value::Array(events).to_string()),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }

    async fn list(&self, query: &str) -> Vec<Value> {
        let (status, body) = call(
            "GET",
            format!("{}/api/v1/clusters{query}", self.base),
            Some(&self.admin),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    async fn cluster(&self, id: &str) -> Value {
        let (status, body) = call(
            "GET",
            format!("{}/api/v1/clusters/{id}", self.base),
            Some(&self.admin),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn put_state(&self, id: &str, token: &str, body: Value) -> (u16, Value) {
        call(
            "PUT",
            format!("{}/api/v1/clusters/{id}/state", self.base),
            Some(token),
            None,
            Some(body.to_string()),
        )
        .await
    }

    /// Clusters, after a run, by the function their events panic in.
    async fn clusters_by_function(&self) -> Vec<(String, String)> {
        let (status, report) = call(
            "POST",
            format!("{}/api/v1/clusters/recompute", self.base),
            Some(&self.admin),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{report}");
        self.list("?state=all")
            .await
            .iter()
            .map(|c| {
                (
                    c["message"].as_str().unwrap().to_string(),
                    c["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn id_of(clusters: &[(String, String)], function: &str) -> String {
    clusters
        .iter()
        .find(|(m, _)| m.ends_with(function))
        .unwrap()
        .1
        .clone()
}

panicle_store::backend_tests! {
    async fn resolve_hides_and_a_newer_release_brings_it_back(db: &TestDb) {
        let s = start(db).await;
        s.ingest(vec![event("reserve", "shop@1.0.0", "web-1"), event("reserve", "shop@1.0.0", "web-1"), event("total", "shop@1.0.0", "web-2")]).await;
        let clusters = s.clusters_by_function().await;
        assert_eq!(clusters.len(), 2);
        let reserve = id_of(&clusters, "reserve");
        let total = id_of(&clusters, "total");
        // The default list is the unresolved clusters: all of them at first.
        let listed = s.list("").await;
        assert_eq!(ids(&listed), { let mut v = vec![reserve.clone(), total.clone()]; v.sort(); v });
        assert!(listed.iter().all(|c| c["state"]["status"] == "unresolved"));

        let (status, body) = s.put_state(&reserve, &s.shop_token, json!({"state": "resolved_in_release", "release": "shop@1.1.0"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"]["status"], "resolved");
        assert_eq!(body["state"]["resolution"], "in_release");
        assert_eq!(body["state"]["release"], "shop@1.1.0");
        assert!(body["state"]["changed_by"].as_str().unwrap().starts_with("token "));
        assert_eq!(ids(&s.list("").await), vec![total.clone()]);
        assert_eq!(ids(&s.list("?state=unresolved").await), vec![total.clone()]);
        assert_eq!(ids(&s.list("?state=resolved").await), vec![reserve.clone()]);
        assert_eq!(s.list("?state=all").await.len(), 2);
        assert!(s.list("?state=ignored").await.is_empty());

        // Events of the release it was fixed in, or an older one: still resolved.
        s.ingest(vec![event("reserve", "shop@1.1.0", "web-1"), event("reserve", "shop@1.0.0", "web-1")]).await;
        assert_eq!(s.cluster(&reserve).await["state"]["status"], "resolved");
        // A newer release: back, with the regression mark and the release.
        s.ingest(vec![event("reserve", "shop@1.2.0", "web-3")]).await;
        let c = s.cluster(&reserve).await;
        assert_eq!(c["state"]["status"], "unresolved", "{}", c["state"]);
        assert_eq!(c["state"]["regression"]["release"], "shop@1.2.0");
        let back = s.list("").await;
        let row = back.iter().find(|c| c["id"] == reserve.as_str()).expect("listed again");
        assert_eq!(row["state"]["regression"]["release"], "shop@1.2.0");
        // The history: who resolved it, and the regression, next to merges and splits.
        let kinds: Vec<&str> = c["changes"].as_array().unwrap().iter().map(|ch| ch["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"state") && kinds.contains(&"regression"), "{kinds:?}");
        let by = c["changes"].as_array().unwrap().iter().find(|ch| ch["kind"] == "state").unwrap();
        assert!(by["actor"].as_str().unwrap().starts_with("token "), "{by}");
        assert_eq!(by["detail"]["release"], "shop@1.1.0");
        // The quiet-period signal keeps a name of its own (and its old one).
        assert!(c.get("returned_after_quiet").is_some());
        assert_eq!(c["returned_after_quiet"], c["regression"]);
    }

    async fn next_release_ignore_and_attach(db: &TestDb) {
        let s = start(db).await;
        s.ingest(vec![event("reserve", "shop@1.0.0", "web-1"), event("reserve", "shop@1.0.0", "web-1"), event("total", "shop@1.0.0", "web-1"), event("total", "shop@1.1.0", "web-1")]).await;
        let clusters = s.clusters_by_function().await;
        let reserve = id_of(&clusters, "reserve");
        let total = id_of(&clusters, "total");
        // Resolved in the next release: the latest is shop@1.1.0 now.
        let (status, body) = s.put_state(&reserve, &s.admin, json!({"state": "resolved_in_next_release"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"]["release"], "shop@1.1.0");
        s.ingest(vec![event("reserve", "shop@1.1.0", "web-1")]).await;
        assert_eq!(s.cluster(&reserve).await["state"]["status"], "resolved");
        s.ingest(vec![event("reserve", "shop@1.2.0", "web-1")]).await;
        assert_eq!(s.cluster(&reserve).await["state"]["regression"]["release"], "shop@1.2.0");

        // Ignored until 10 more events: the 11th reopens it.
        let (status, body) = s.put_state(&total, &s.admin, json!({"state": "ignored", "until_events": 10})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"]["ignore"]["until_events"], 10);
        s.ingest((0..10).map(|_| event("total", "shop@1.1.0", "web-1")).collect()).await;
        let c = s.cluster(&total).await;
        assert_eq!((c["state"]["status"].as_str(), c["state"]["ignore"]["seen_events"].as_i64()), (Some("ignored"), Some(10)));
        assert!(s.list("").await.iter().all(|c| c["id"] != total.as_str()));
        s.ingest(vec![event("total", "shop@1.1.0", "web-1")]).await;
        let c = s.cluster(&total).await;
        assert_eq!(c["state"]["status"], "unresolved");
        assert!(c["state"]["regression"].is_null());
        assert!(c["changes"].as_array().unwrap().iter().any(|ch| ch["kind"] == "reopened"));

        // A new group joining a resolved cluster (attach between runs) brings it back.
        let (status, _) = s.put_state(&reserve, &s.admin, json!({"state": "resolved"})).await;
        assert_eq!(status, 200);
        let mut late = event("reserve", "shop@1.3.0", "web-9");
        late["frames"][1] = json!({"function": "shop::jobs::batch", "file": "src/jobs.rs", "line": 7, "in_app": true});
        late["message"] = json!("index out of bounds in reserve");
        s.ingest(vec![late]).await;
        let mut tries = 0;
        loop {
            let c = s.cluster(&reserve).await;
            // The view reads groups and state apart: wait for both.
            if c["state"]["status"] == "unresolved" && c["group_count"] == 2 {
                assert_eq!(c["state"]["regression"]["release"], "shop@1.3.0");
                break;
            }
            tries += 1;
            assert!(tries < 100, "the attached group never brought the cluster back: {}", c["state"]);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn bulk_changes_and_bad_input(db: &TestDb) {
        let s = start(db).await;
        s.ingest(vec![event("reserve", "shop@1.0.0", "web-1"), event("total", "shop@1.0.0", "web-1"), event("pay", "shop@1.0.0", "web-1")]).await;
        let (st, _) = call("POST", format!("{}/api/v1/events", s.base), None, Some(&s.other_key), Some(json!([event("elsewhere", "x@1.0.0", "p")]).to_string())).await;
        assert_eq!(st, 202);
        let clusters = s.clusters_by_function().await;
        let (reserve, total, pay) = (id_of(&clusters, "reserve"), id_of(&clusters, "total"), id_of(&clusters, "pay"));
        let elsewhere = id_of(&clusters, "elsewhere");
        let bulk = |token: &str, body: Value| {
            let url = format!("{}/api/v1/clusters/state", s.base);
            let token = token.to_string();
            async move { call("POST", url, Some(&token), None, Some(body.to_string())).await }
        };

        // Bulk: both ignored in one change.
        let (status, body) = bulk(&s.shop_token, json!({"ids": [reserve, total], "state": "ignored"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        assert_eq!(body["items"][0]["state"]["ignore"]["until"], "forever");
        assert_eq!(ids(&s.list("?state=ignored").await), { let mut v = vec![reserve.clone(), total.clone()]; v.sort(); v });
        // One id outside the token's projects (or unknown): 404, nothing changed.
        for bad_id in [elsewhere.clone(), "999999".to_string()] {
            let (status, err) = bulk(&s.shop_token, json!({"ids": [pay, bad_id], "state": "resolved"})).await;
            assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{err}");
        }
        assert_eq!(s.cluster(&pay).await["state"]["status"], "unresolved");
        // Reopen in bulk.
        let (status, _) = bulk(&s.admin, json!({"ids": [reserve, total], "state": "unresolved"})).await;
        assert_eq!(status, 200);
        assert!(s.list("?state=ignored").await.is_empty());

        // Bad input: 400 with the error body, never a change.
        let (status, err) = bulk(&s.admin, json!({"ids": [], "state": "resolved"})).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_parameter")));
        let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        let (status, _) = bulk(&s.admin, json!({"ids": many, "state": "resolved"})).await;
        assert_eq!(status, 400);
        for body in [
            json!({"state": "fixed"}),
            json!({"state": "resolved_in_release"}),
            json!({"state": "resolved_in_release", "release": "  "}),
            json!({"state": "resolved", "release": "1.0"}),
            json!({"state": "ignored", "until_events": 0}),
            json!({"state": "ignored", "until_pods": -1}),
            json!({"state": "ignored", "until_events": 5, "until_pods": 2}),
            json!({"state": "ignored", "until": "2001-01-01T00:00:00Z"}),
            json!({"state": "ignored", "until": "tomorrow"}),
            json!({"state": "resolved", "colour": "red"}),
            json!({"status": "resolved"}),
        ] {
            let (status, err) = s.put_state(&pay, &s.admin, body.clone()).await;
            assert_eq!(status, 400, "{body} → {err}");
            assert_eq!(err["error"]["code"], "invalid_parameter", "{body} → {err}");
            assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let (status, err) = call("PUT", format!("{}/api/v1/clusters/{pay}/state", s.base), Some(&s.admin), None, Some("{not json".into())).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_parameter")));
        assert_eq!(s.cluster(&pay).await["state"]["status"], "unresolved");
        let (status, err) = call("GET", format!("{}/api/v1/clusters?state=fixed", s.base), Some(&s.admin), None, None).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_parameter")));
        // Access: no token 401; another project's token 404; the project's own token may.
        let (status, _) = call("PUT", format!("{}/api/v1/clusters/{pay}/state", s.base), None, None, Some(json!({"state": "resolved"}).to_string())).await;
        assert_eq!(status, 401);
        let (status, _) = s.put_state(&pay, &s.other_token, json!({"state": "resolved"})).await;
        assert_eq!(status, 404);
        let (status, _) = s.put_state("999999", &s.admin, json!({"state": "resolved"})).await;
        assert_eq!(status, 404);
        let (status, body) = s.put_state(&pay, &s.shop_token, json!({"state": "ignored", "until": "2999-01-01T00:00:00Z"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"]["ignore"]["until"], "2999-01-01T00:00:00Z");
        // A project token lists its project's clusters by state too.
        let (status, list) = call("GET", format!("{}/api/v1/clusters?state=ignored", s.base), Some(&s.shop_token), None, None).await;
        assert_eq!(status, 200);
        assert_eq!(ids(list["items"].as_array().unwrap()), vec![pay.clone()]);
        let (_, list) = call("GET", format!("{}/api/v1/clusters?state=all", s.base), Some(&s.other_token), None, None).await;
        assert_eq!(ids(list["items"].as_array().unwrap()), vec![elsewhere]);
    }
}
