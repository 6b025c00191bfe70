//! An axum app behind `PanicleLayer` panics in `/orders/{id}`: the client
//! gets a JSON 500, the stored event has the matched route, the method, the
//! request id and the handler's tags.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;

mod orders {
    #[inline(never)]
    pub fn lookup(id: u32) -> String {
        panicle::set_tag("order.id", id.to_string());
        let found: Option<&str> = std::hint::black_box(None);
        found.unwrap().to_string()
    }
}

async fn order(Path(id): Path<u32>) -> String {
    tokio::task::yield_now().await;
    orders::lookup(id)
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

#[test]
fn handler_panic_is_answered_500_and_carries_the_request() {
    let server = common::TestServer::start();
    let _guard = panicle::init(server.options());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .route("/health", get(|| async { "ok" }))
        .layer(panicle::PanicleLayer::new());
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });

    let mut resp = agent()
        .get(format!("http://{addr}/orders/42"))
        .header("x-request-id", "req-7f3a")
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "req-7f3a");
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "internal_error");
    assert_eq!(body["error"]["request_id"], "req-7f3a");
    let event_id = body["error"]["event_id"]
        .as_str()
        .expect("the 500 names the event")
        .to_string();

    assert!(panicle::flush(Duration::from_secs(10)));
    let events = server.wait_for_events(1);
    let event = events
        .iter()
        .find(|e| e.event_id == event_id)
        .expect("event stored");
    let request = event.request.as_ref().expect("request context");
    assert_eq!(request.route.as_deref(), Some("/orders/{id}"));
    assert_eq!(request.method.as_deref(), Some("GET"));
    assert_eq!(request.request_id.as_deref(), Some("req-7f3a"));
    assert_eq!(event.tags.get("order.id").map(String::as_str), Some("42"));
    let top = event.frames[0].function.as_deref().unwrap();
    assert_eq!(top, "axum_layer::orders::lookup");
    assert_eq!(event.frames[0].in_app, Some(true));

    // Without a request id one is generated, answered and stored.
    let resp = agent()
        .get(format!("http://{addr}/orders/9"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let generated = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(!generated.is_empty());
    assert!(panicle::flush(Duration::from_secs(10)));
    let events = server.wait_for_events(2);
    let event = events
        .iter()
        .find(|e| e.tags.get("order.id").map(String::as_str) == Some("9"))
        .expect("second event");
    assert_eq!(
        event.request.as_ref().unwrap().request_id.as_deref(),
        Some(generated.as_str())
    );

    // The service keeps serving, and answers carry the request id.
    let resp = agent().get(format!("http://{addr}/health")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
}
