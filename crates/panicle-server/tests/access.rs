//! Access control over real HTTP on loopback, on SQLite and on PostgreSQL:
//! token scopes, server-side sessions, the cookie's cross-site guard and
//! event ids shared by two projects.

use std::net::SocketAddr;
use std::time::Duration;

use panicle_server::{AppState, ServerConfig};
use panicle_store::testing::TestDb;
use panicle_store::{Project, SessionPolicy, Store, TokenScope};
use serde_json::{Value, json};

struct Running {
    base: String,
    store: Store,
    shop: Project,
    web: Project,
    /// Admin token.
    admin: String,
    /// Reads project `web` only.
    web_token: String,
    web_token_id: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: &TestDb, config: ServerConfig) -> Running {
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
    let state = AppState::new(store.clone(), config).unwrap();
    tokio::spawn(panicle_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        store,
        shop,
        web,
        admin,
        web_token: scoped.token,
        web_token_id: scoped.id,
        _shutdown: tx,
    }
}

/// How a request proves who it is.
#[derive(Clone)]
enum Cred {
    None,
    Bearer(String),
    Cookie(String),
}

/// One HTTP exchange: (status, JSON body, Set-Cookie session value if any).
async fn call(
    method: &'static str,
    url: String,
    cred: Cred,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        match &cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header("Authorization", format!("Bearer {t}")),
            Cred::Cookie(c) => req = req.header("Cookie", format!("panicle_session={c}")),
        }
        for (k, v) in headers {
            req = req.header(k, v);
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
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("panicle_session="))
            .map(|v| v.split(';').next().unwrap_or("").to_string())
            .filter(|v| !v.is_empty());
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            cookie,
        )
    })
    .await
    .unwrap()
}

async fn get(s: &Running, path: &str, cred: Cred) -> (u16, Value) {
    let (status, body, _) = call("GET", format!("{}{path}", s.base), cred, vec![], None).await;
    (status, body)
}

fn event(id: &str, message: &str, function: &str) -> Value {
    json!({
        "event_id": id,
        "timestamp": "2026-11-26T10:00:00Z",
        "message": message,
        "platform": "rust",
        "frames": [{"function": function, "file": "src/lib.rs", "line": 7, "in_app": true}],
        "resource": {"service.name": "svc"},
        "trace": {"trace_id": "0123456789abcdef0123456789abcdef", "span_id": "0123456789abcdef"},
    })
}

async fn ingest(s: &Running, project: &Project, events: Value) {
    let (status, body, _) = call(
        "POST",
        format!("{}/api/v1/events", s.base),
        Cred::None,
        vec![("X-Panicle-Key", project.ingest_key.clone())],
        Some(events),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

fn ids(list: &Value, field: &str) -> Vec<Value> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].clone())
        .collect()
}

/// Signs in with `token` from the server's own origin; returns the session id.
async fn sign_in(s: &Running, token: &str) -> String {
    let (status, body, cookie) = call(
        "POST",
        format!("{}/api/v1/session", s.base),
        Cred::None,
        vec![("Origin", s.base.clone())],
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.expect("a session cookie");
    assert_ne!(cookie, token, "the cookie must not hold the token");
    cookie
}

panicle_store::backend_tests! {
    async fn a_project_token_reads_its_projects_only(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let shop_event = uuid::Uuid::new_v4().to_string();
        let web_event = uuid::Uuid::new_v4().to_string();
        ingest(&s, &s.shop, json!([event(&shop_event, "shop broke", "shop::orders::reserve")])).await;
        ingest(&s, &s.web, json!([event(&web_event, "web broke", "web::pages::render")])).await;
        let admin = || Cred::Bearer(s.admin.clone());
        let scoped = || Cred::Bearer(s.web_token.clone());

        // Projects: the scoped token sees its project, without the ingest key.
        let (status, projects) = get(&s, "/api/v1/projects", scoped()).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&projects, "name"), vec![json!("web")]);
        assert_eq!(projects["items"][0]["dsn"], Value::Null);
        assert!(!projects.to_string().contains(&s.shop.ingest_key));
        assert!(!projects.to_string().contains(&s.web.ingest_key));
        let (_, projects) = get(&s, "/api/v1/projects", admin()).await;
        assert_eq!(ids(&projects, "name"), vec![json!("shop"), json!("web")]);
        assert!(projects["items"][0]["dsn"].as_str().unwrap().contains(&s.shop.ingest_key));

        let (_, me) = get(&s, "/api/v1/session", scoped()).await;
        assert_eq!(me["admin"], false);
        assert_eq!(me["projects"], json!([s.web.id]));
        assert_eq!(me["token_id"], json!(s.web_token_id));

        // Events and groups: lists show the scope; another project is a 404.
        let (_, events) = get(&s, "/api/v1/events", scoped()).await;
        assert_eq!(ids(&events, "event_id"), vec![json!(web_event)]);
        let (_, events) = get(&s, "/api/v1/events", admin()).await;
        assert_eq!(events["items"].as_array().unwrap().len(), 2);
        let (status, body) = get(&s, &format!("/api/v1/events?project={}", s.shop.id), scoped()).await;
        assert_eq!(status, 404, "{body}");
        let (status, _) = get(&s, &format!("/api/v1/events?project={}", s.web.id), scoped()).await;
        assert_eq!(status, 200);
        let (status, _) = get(&s, &format!("/api/v1/events/{shop_event}"), scoped()).await;
        assert_eq!(status, 404);
        let (status, _) = get(&s, &format!("/api/v1/events/{shop_event}?project={}", s.shop.id), scoped()).await;
        assert_eq!(status, 404);
        let (status, _) = get(&s, &format!("/api/v1/events/{shop_event}"), admin()).await;
        assert_eq!(status, 200);

        let (_, groups) = get(&s, "/api/v1/groups", scoped()).await;
        assert_eq!(ids(&groups, "project_id"), vec![json!(s.web.id)]);
        let (_, groups) = get(&s, "/api/v1/groups", admin()).await;
        let shop_group = groups["items"].as_array().unwrap().iter()
            .find(|g| g["project_id"] == json!(s.shop.id)).unwrap()["id"].as_str().unwrap().to_string();
        let (status, _) = get(&s, &format!("/api/v1/groups/{shop_group}"), scoped()).await;
        assert_eq!(status, 404);
        let (status, _) = get(&s, &format!("/api/v1/groups/{shop_group}"), admin()).await;
        assert_eq!(status, 200);
        let (status, _) = get(&s, &format!("/api/v1/groups?project={}", s.shop.id), scoped()).await;
        assert_eq!(status, 404);

        // Recompute changes every project's clusters: admin only.
        let recompute = |cred| call("POST", format!("{}/api/v1/clusters/recompute", s.base), cred, vec![], None);
        let (status, body, _) = recompute(scoped()).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, body, _) = recompute(admin()).await;
        assert_eq!(status, 200, "{body}");

        // Clusters: the list and every view of one.
        let (_, clusters) = get(&s, "/api/v1/clusters", scoped()).await;
        assert_eq!(ids(&clusters, "project_id"), vec![json!(s.web.id)]);
        assert_eq!(clusters["total"], 1);
        let (_, clusters) = get(&s, "/api/v1/clusters", admin()).await;
        assert_eq!(clusters["total"], 2);
        let shop_cluster = clusters["items"].as_array().unwrap().iter()
            .find(|c| c["project_id"] == json!(s.shop.id)).unwrap()["id"].as_str().unwrap().to_string();
        let (status, _) = get(&s, &format!("/api/v1/clusters?project={}", s.shop.id), scoped()).await;
        assert_eq!(status, 404);
        for view in ["", "/events", "/heatmap", "/paths"] {
            let path = format!("/api/v1/clusters/{shop_cluster}{view}");
            let (status, body) = get(&s, &path, scoped()).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert!(!body.to_string().contains("shop broke"), "{path}: {body}");
            let (status, body) = get(&s, &path, admin()).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        // Both clusters share a trace id, but a related cluster in another
        // project is not shown (related clusters stay within a project).
        let (_, web_clusters) = get(&s, "/api/v1/clusters", scoped()).await;
        let web_cluster = web_clusters["items"][0]["id"].as_str().unwrap().to_string();
        let (status, one) = get(&s, &format!("/api/v1/clusters/{web_cluster}"), scoped()).await;
        assert_eq!(status, 200);
        assert!(!one["related"].as_array().unwrap().iter().any(|r| r["id"] == json!(shop_cluster)), "{one}");
    }

    async fn an_event_id_in_two_projects_is_not_shadowed(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let id = uuid::Uuid::new_v4().to_string();
        // The shop project (the lower id) sends the id first.
        ingest(&s, &s.shop, json!([event(&id, "shop copy", "shop::a")])).await;
        ingest(&s, &s.web, json!([event(&id, "web copy", "web::a")])).await;

        // The web token finds its own copy, never the shop's.
        let (status, one) = get(&s, &format!("/api/v1/events/{id}"), Cred::Bearer(s.web_token.clone())).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["project_id"], json!(s.web.id));
        assert_eq!(one["message"], "web copy");

        // The admin reads both: without `project` it is asked to choose.
        let admin = || Cred::Bearer(s.admin.clone());
        let (status, body) = get(&s, &format!("/api/v1/events/{id}"), admin()).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "ambiguous_event");
        assert!(body["error"]["message"].as_str().unwrap().contains("project="), "{body}");
        for (p, message) in [(&s.shop, "shop copy"), (&s.web, "web copy")] {
            let (status, one) = get(&s, &format!("/api/v1/events/{id}?project={}", p.id), admin()).await;
            assert_eq!(status, 200);
            assert_eq!(one["message"], message);
        }
        // An id held by one project only needs no `project`.
        let single = uuid::Uuid::new_v4().to_string();
        ingest(&s, &s.web, json!([event(&single, "web only", "web::b")])).await;
        let (status, one) = get(&s, &format!("/api/v1/events/{single}"), admin()).await;
        assert_eq!(status, 200);
        assert_eq!(one["project_id"], json!(s.web.id));
    }

    async fn sessions_end_at_sign_out_and_revoke(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let session = sign_in(&s, &s.web_token).await;
        let (status, me) = get(&s, "/api/v1/session", Cred::Cookie(session.clone())).await;
        assert_eq!(status, 200);
        // The session carries the token's scope.
        assert_eq!(me["admin"], false);
        assert_eq!(me["projects"], json!([s.web.id]));
        let (status, projects) = get(&s, "/api/v1/projects", Cred::Cookie(session.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&projects, "name"), vec![json!("web")]);
        // The raw token is not a cookie any more.
        let (status, _) = get(&s, "/api/v1/events", Cred::Cookie(s.web_token.clone())).await;
        assert_eq!(status, 401);

        // Sign-out ends the session: the old cookie is refused.
        let (status, body, _) = call("DELETE", format!("{}/api/v1/session", s.base),
            Cred::Cookie(session.clone()), vec![("Origin", s.base.clone())], None).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = get(&s, "/api/v1/events", Cred::Cookie(session.clone())).await;
        assert_eq!(status, 401, "{body}");

        // Revoking the token ends its sessions and its bearer use.
        let a = sign_in(&s, &s.web_token).await;
        let b = sign_in(&s, &s.web_token).await;
        let other = sign_in(&s, &s.admin).await;
        assert_ne!(a, b);
        assert!(s.store.revoke_token(&s.web_token_id).await.unwrap());
        for cred in [Cred::Cookie(a), Cred::Cookie(b), Cred::Bearer(s.web_token.clone())] {
            let (status, _) = get(&s, "/api/v1/events", cred).await;
            assert_eq!(status, 401);
        }
        let (status, _) = get(&s, "/api/v1/events", Cred::Cookie(other)).await;
        assert_eq!(status, 200, "another token's session lives on");
        let (status, _, cookie) = call("POST", format!("{}/api/v1/session", s.base), Cred::None,
            vec![], Some(json!({"token": s.web_token}))).await;
        assert_eq!(status, 401);
        assert!(cookie.is_none());
    }

    async fn sessions_expire(db: &TestDb) {
        // The store's contract tests check the limits exactly with a given
        // clock; this checks the server applies them, with limits of 4 s so a
        // loaded machine's slow requests stay inside them.
        // Idle: a session unused for longer than the idle limit is refused.
        let idle = ServerConfig {
            session: SessionPolicy { idle_ms: 4_000, absolute_ms: 60_000 },
            ..ServerConfig::default()
        };
        let s = start(db, idle).await;
        let session = sign_in(&s, &s.admin).await;
        let (status, _) = get(&s, "/api/v1/events", Cred::Cookie(session.clone())).await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(5_000)).await;
        let (status, _) = get(&s, "/api/v1/events", Cred::Cookie(session)).await;
        assert_eq!(status, 401);

        // Absolute: a session older than the limit is refused however busy.
        let old = ServerConfig {
            session: SessionPolicy { idle_ms: 60_000, absolute_ms: 4_000 },
            ..ServerConfig::default()
        };
        let db2 = TestDb::new(db.backend).await;
        let s = start(&db2, old).await;
        let session = sign_in(&s, &s.admin).await;
        for _ in 0..3 {
            let (status, _) = get(&s, "/api/v1/events", Cred::Cookie(session.clone())).await;
            assert_eq!(status, 200);
        }
        tokio::time::sleep(Duration::from_millis(5_000)).await;
        let (status, _) = get(&s, "/api/v1/events", Cred::Cookie(session)).await;
        assert_eq!(status, 401);
    }

    async fn cookie_changes_need_the_servers_origin(db: &TestDb) {
        let s = start(db, ServerConfig::default()).await;
        let session = sign_in(&s, &s.admin).await;
        let recompute = |cred: Cred, headers: Vec<(&'static str, String)>| {
            call("POST", format!("{}/api/v1/clusters/recompute", s.base), cred, headers, None)
        };
        let cookie = || Cred::Cookie(session.clone());
        let evil = || "https://evil.example".to_string();

        let (status, body, _) = recompute(cookie(), vec![("Origin", evil())]).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "cross_origin_request");
        let (status, _, _) = recompute(cookie(), vec![("Referer", format!("{}/x", evil()))]).await;
        assert_eq!(status, 403);
        let (status, _, _) = recompute(cookie(), vec![]).await;
        assert_eq!(status, 403, "no Origin, no Referer, no dashboard header");
        let (status, _, _) = recompute(cookie(), vec![("Origin", evil()), ("X-Panicle-Dashboard", "1".into())]).await;
        assert_eq!(status, 403);

        let (status, body, _) = recompute(cookie(), vec![("Origin", s.base.clone())]).await;
        assert_eq!(status, 200, "{body}");
        let (status, _, _) = recompute(cookie(), vec![("Origin", "null".into()), ("Referer", format!("{}/clusters", s.base))]).await;
        assert_eq!(status, 200);
        let (status, _, _) = recompute(cookie(), vec![("X-Panicle-Dashboard", "1".into())]).await;
        assert_eq!(status, 200);
        // Bearer requests are not subject to it, with or without an Origin.
        let (status, _, _) = recompute(Cred::Bearer(s.admin.clone()), vec![]).await;
        assert_eq!(status, 200);
        let (status, _, _) = recompute(Cred::Bearer(s.admin.clone()), vec![("Origin", evil())]).await;
        assert_eq!(status, 200);
        // Reads with the cookie need no Origin.
        let (status, _) = get(&s, "/api/v1/clusters", cookie()).await;
        assert_eq!(status, 200);

        // Another site can neither sign the browser out nor in.
        let (status, _, _) = call("DELETE", format!("{}/api/v1/session", s.base), cookie(), vec![("Origin", evil())], None).await;
        assert_eq!(status, 403);
        let (status, _) = get(&s, "/api/v1/session", cookie()).await;
        assert_eq!(status, 200, "the session survived the foreign sign-out");
        let (status, _, cookie_set) = call("POST", format!("{}/api/v1/session", s.base), Cred::None,
            vec![("Origin", evil())], Some(json!({"token": s.admin}))).await;
        assert_eq!(status, 403);
        assert!(cookie_set.is_none());
    }
}
