//! `panicle serve --demo-data` on both backends: what the generated history
//! makes of the dashboard's API (clusters, states, the regression, the storm,
//! the Go crashes), and that a second start on the same database adds nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::Server;
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::Value;

const READY: &str = "Demo dashboard: ";

fn start(url: &str) -> (Server, Vec<String>) {
    Server::start_until(url, &["--demo-data"], &[], READY)
}

fn items(server: &Server, path: &str) -> Vec<Value> {
    let (status, body) = server.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

/// Every event of the project, page by page.
fn all_events(server: &Server, project: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = server.get(&format!(
            "/api/v1/events?project={project}&limit=500{cursor}"
        ));
        assert_eq!(status, 200, "{body}");
        out.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

fn cluster_of<'a>(clusters: &'a [Value], service: &str) -> &'a Value {
    clusters
        .iter()
        .find(|c| c["services"][0] == service)
        .unwrap_or_else(|| panic!("no {service} cluster in {clusters:#?}"))
}

fn demo_fills_the_dashboard(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(backend));
    let started = Instant::now();
    let (server, lines) = start(&db.url);
    let took = started.elapsed();
    let text = lines.join("\n");
    assert!(
        took.as_secs() < 60,
        "the demo took {took:?}, a newcomer waits under a minute"
    );
    // The first start prints the token and DSN of `default`, then the demo.
    assert!(text.contains("API token: pnk_"), "{text}");
    let summary = lines
        .iter()
        .find(|l| l.starts_with("Demo data: project `demo`"))
        .unwrap_or_else(|| panic!("no summary line: {text}"));
    assert!(summary.contains("(504 new)"), "{summary}");
    assert!(
        summary.contains("9 services, 16 pods, 11 releases, 9 clusters"),
        "{summary}"
    );
    assert!(
        text.contains("regression: cluster ")
            && text.contains("resolved in inventory@2.3.1 is back in inventory@2.4.0"),
        "{text}"
    );
    let projects = items(&server, "/api/v1/projects");
    let demo = projects
        .iter()
        .find(|p| p["name"] == "demo")
        .expect("a demo project")["id"]
        .as_i64()
        .unwrap();
    assert!(
        lines.last().unwrap().ends_with(&format!(
            "{}/clusters?project={demo}&range=30d",
            server.base
        )),
        "the dashboard URL: {text}"
    );

    let clusters = items(
        &server,
        &format!("/api/v1/clusters?project={demo}&state=all&limit=100"),
    );
    let services: BTreeSet<&str> = clusters
        .iter()
        .filter_map(|c| c["services"][0].as_str())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "batcher",
            "checkout",
            "gateway",
            "inventory",
            "ledger",
            "notifier",
            "payments",
            "search",
            "session-cache"
        ])
    );
    // Two call paths of the coupon bug: one cluster of two groups.
    let checkout = cluster_of(&clusters, "checkout");
    assert_eq!(checkout["group_count"], 2, "{checkout}");
    assert_eq!(checkout["count"], 240);
    // The regression: resolved in 2.3.1, back in 2.4.0, unresolved again.
    let inventory = cluster_of(&clusters, "inventory");
    assert_eq!(inventory["state"]["status"], "unresolved", "{inventory}");
    assert_eq!(
        inventory["state"]["regression"]["release"], "inventory@2.4.0",
        "{inventory}"
    );
    assert_eq!(inventory["count"], 84);
    assert_eq!(
        cluster_of(&clusters, "search")["state"]["status"],
        "resolved"
    );
    let notifier = cluster_of(&clusters, "notifier");
    assert_eq!(notifier["state"]["status"], "ignored");
    assert_eq!(notifier["state"]["ignore"]["until_events"], 500);
    // The storm counts every panic it folded.
    assert_eq!(cluster_of(&clusters, "payments")["count"], 70 + 1200);

    let events = all_events(&server, demo);
    assert_eq!(events.len(), 504);
    let storm: Vec<&Value> = events.iter().filter(|e| e["count"] != 1).collect();
    assert_eq!(storm.len(), 2, "two storm aggregates");
    let id = storm[0]["event_id"].as_str().unwrap();
    let (status, aggregate) = server.get(&format!("/api/v1/events/{id}"));
    assert_eq!(status, 200);
    assert_eq!(aggregate["storm"]["samples"].as_array().unwrap().len(), 40);
    // Go crashes came in as text and were parsed into frames.
    let go: Vec<&Value> = events.iter().filter(|e| e["platform"] == "go").collect();
    assert_eq!(go.len(), 30);
    let id = go[0]["event_id"].as_str().unwrap();
    let (_, event) = server.get(&format!("/api/v1/events/{id}"));
    assert_eq!(event["event"]["tags"]["capture"], "text", "{event}");
    assert!(
        event["event"]["frames"]
            .as_array()
            .is_some_and(|f| f.len() >= 2),
        "{event}"
    );
    // Spread over the past days, so trends and heatmaps have a shape.
    let days: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["timestamp"].as_str().map(|t| &t[..10]))
        .collect();
    assert!(days.len() >= 9, "events on {} days", days.len());

    // Again on the same database: nothing new, nothing changed.
    let token = server.token.clone();
    drop(server);
    let (mut server, lines) = start(&db.url);
    server.token = token;
    let text = lines.join("\n");
    assert!(
        !text.contains("API token:"),
        "no second first start: {text}"
    );
    assert!(text.contains("504 events sent (0 new)"), "{text}");
    assert!(
        !text.contains("regression: cluster"),
        "states set once: {text}"
    );
    assert_eq!(all_events(&server, demo).len(), 504);
    let again = items(
        &server,
        &format!("/api/v1/clusters?project={demo}&state=all&limit=100"),
    );
    let view = |cs: &[Value]| -> Vec<(String, String, i64)> {
        let mut v: Vec<_> = cs
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_string(),
                    c["state"]["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["count"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(view(&again), view(&clusters));
}

#[test]
fn demo_data_on_sqlite() {
    demo_fills_the_dashboard(Backend::Sqlite);
}

#[test]
fn demo_data_on_postgres() {
    demo_fills_the_dashboard(Backend::Postgres);
}
