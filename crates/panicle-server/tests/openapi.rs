//! The OpenAPI document covers every route, and every documented route exists.

use std::collections::BTreeSet;

use panicle_server::{AppState, ServerConfig};
use panicle_store::Backend;
use panicle_store::testing::TestDb;
use serde_json::Value;

/// Every route the server answers, besides the dashboard's static files.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/api/v1/events"),
    ("get", "/api/v1/events"),
    ("post", "/api/v1/events/text"),
    ("get", "/api/v1/events/{id}"),
    ("post", "/api/v1/session"),
    ("get", "/api/v1/session"),
    ("delete", "/api/v1/session"),
    ("get", "/api/v1/groups"),
    ("get", "/api/v1/groups/{id}"),
    ("get", "/api/v1/projects"),
    ("get", "/api/v1/clusters"),
    ("post", "/api/v1/clusters/recompute"),
    ("get", "/api/v1/clusters/{id}"),
    ("get", "/api/v1/clusters/{id}/events"),
    ("get", "/api/v1/clusters/{id}/heatmap"),
    ("get", "/api/v1/clusters/{id}/paths"),
    ("put", "/api/v1/clusters/{id}/state"),
    ("post", "/api/v1/clusters/state"),
    ("post", "/api/{project_id}/envelope/"),
    ("post", "/api/{project_id}/store/"),
    ("get", "/api/v1/projects/{project}/alerts/rules"),
    ("post", "/api/v1/projects/{project}/alerts/rules"),
    ("get", "/api/v1/projects/{project}/alerts/rules/{id}"),
    ("put", "/api/v1/projects/{project}/alerts/rules/{id}"),
    ("delete", "/api/v1/projects/{project}/alerts/rules/{id}"),
    ("post", "/api/v1/projects/{project}/alerts/rules/{id}/test"),
    ("get", "/api/v1/projects/{project}/alerts/deliveries"),
    ("post", "/api/v1/debug-files"),
    ("get", "/api/v1/debug-files"),
    ("delete", "/api/v1/debug-files/{build_id}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_covers_every_route() {
    let db = TestDb::new(Backend::Sqlite).await;
    let state = AppState::new(db.store().await, ServerConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(panicle_server::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let (doc, statuses) = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let doc: Value = serde_json::from_str(
            &agent
                .get(&format!("{base}/api/v1/openapi.json"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap(),
        )
        .unwrap();
        let mut statuses = Vec::new();
        for (method, path) in ROUTES {
            let url = format!(
                "{base}{}",
                path.replace("{id}", "x").replace("{project_id}", "1")
            );
            let resp = match *method {
                "get" => agent.get(&url).call(),
                "delete" => agent.delete(&url).call(),
                "put" => agent.put(&url).send(&b"{}"[..]),
                _ => agent.post(&url).send(&b"{}"[..]),
            }
            .unwrap();
            statuses.push((*method, *path, resp.status().as_u16()));
        }
        (doc, statuses)
    })
    .await
    .unwrap();

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected, "the document and the routes differ");
    for (method, path, status) in statuses {
        assert!(
            status != 404 && status != 405 || path.contains("{id}"),
            "{method} {path} answered {status}"
        );
        assert_ne!(status, 405, "{method} {path} is not routed");
    }
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // An upload is the raw file, named by a query parameter.
    let upload = &doc["paths"]["/api/v1/debug-files"]["post"];
    assert!(
        upload["requestBody"]["content"]["application/octet-stream"].is_object(),
        "{upload}"
    );
    assert_eq!(upload["parameters"][0]["name"], "name", "{upload}");
    // A state change names its body: the states and their parameters.
    assert!(doc["components"]["schemas"]["StateBody"]["properties"]["until_events"].is_object());
    assert!(doc["components"]["schemas"]["BulkStateBody"]["properties"]["ids"].is_object());
    let list_params = doc["paths"]["/api/v1/clusters"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        list_params.iter().any(|p| p["name"] == "state"),
        "the list documents `state`"
    );
}
