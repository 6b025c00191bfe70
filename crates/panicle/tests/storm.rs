//! Storm control in one process, against a real server, through
//! `PanicleLayer` (one test: the hook is process-global):
//!
//! - 5 panics a second for 2 s stay 10 events of their own;
//! - a storm of 10,000 handler panics (4 threads) ends as a few events of its own plus
//!   aggregates whose counts add up to exactly 10,000, each with a bounded
//!   sample of the folded panics' requests and traces;
//! - every event id a 500 body handed out is a stored event's or lies in
//!   exactly one aggregate's range, and is the one the request's span names.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::Request;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use panicle::protocol::Event;
use tower::ServiceExt;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

mod shop {
    #[inline(never)]
    pub fn find_order(id: u32) -> String {
        let found: Option<String> = std::hint::black_box(None);
        found.unwrap_or_else(|| panic!("order {id} not found"))
    }

    #[inline(never)]
    pub fn charge(id: u32) -> String {
        let answered: Option<String> = std::hint::black_box(None);
        answered.unwrap_or_else(|| panic!("payment gateway timed out for invoice {id}"))
    }
}

async fn order(Path(id): Path<u32>) -> String {
    shop::find_order(id)
}

async fn invoice(Path(id): Path<u32>) -> String {
    shop::charge(id)
}

const STORM: usize = 10_000;
const THREADS: usize = 4;

/// One request in a trace of its own; the event id its 500 body names.
async fn call(app: &Router, uri: String, request_id: &str) -> String {
    let span = tracing::info_span!("request", request_id);
    let request = Request::get(uri)
        .header("x-request-id", request_id)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).instrument(span).await.unwrap();
    assert_eq!(response.status(), 500);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    body["error"]["event_id"]
        .as_str()
        .expect("the 500 body names the event")
        .to_string()
}

fn count(event: &Event) -> u64 {
    event
        .extra
        .get("count")
        .and_then(|c| c.as_u64())
        .unwrap_or(1)
}

#[test]
fn a_storm_keeps_every_id_and_a_sample_of_traces_and_slow_repeats_stay_events() {
    let server = common::TestServer::start();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // 10,010 "thread panicked" lines would only slow the test down.
    std::panic::set_hook(Box::new(|_| {}));
    let mut options = server.options();
    options.delivery.storm_threshold_per_sec = panicle::DEFAULT_STORM_THRESHOLD_PER_SEC;
    let _guard = panicle::init(options);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .route("/invoices/{id}", get(invoice))
        .layer(panicle::PanicleLayer::new());

    // Below the rate: 5 a second for 2 s.
    let mut slow_ids = HashSet::new();
    for i in 0..10 {
        let id = runtime.block_on(call(&app, format!("/invoices/{i}"), &format!("slow-{i}")));
        slow_ids.insert(id);
        std::thread::sleep(Duration::from_millis(200));
    }

    // The storm, from 4 threads at once: handed-out id → the request it
    // answered.
    let mut request_of: HashMap<String, String> = HashMap::new();
    let per_thread = STORM / THREADS;
    let answered: Vec<Vec<(String, String)>> = std::thread::scope(|scope| {
        let app = &app;
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let mut out = Vec::with_capacity(per_thread);
                        for i in t * per_thread..(t + 1) * per_thread {
                            let request_id = format!("req-{i}");
                            let id = call(app, format!("/orders/{i}"), &request_id).await;
                            out.push((id, request_id));
                        }
                        out
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (id, request_id) in answered.into_iter().flatten() {
        assert!(
            request_of.insert(id.clone(), request_id).is_none(),
            "id {id} handed out twice"
        );
    }
    assert_eq!(request_of.len(), STORM);
    assert!(panicle::flush(Duration::from_secs(60)), "flush timed out");

    // The span of each request names the id its 500 body handed out, folded
    // or not.
    let handed_to: HashMap<&str, &str> = request_of
        .iter()
        .map(|(id, request)| (request.as_str(), id.as_str()))
        .collect();
    let spans = exporter.get_finished_spans().unwrap();
    let mut checked = 0;
    for span in &spans {
        let request = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "request_id")
            .map(|kv| kv.value.to_string());
        let Some(expected) = request.as_deref().and_then(|r| handed_to.get(r)) else {
            continue;
        };
        let named = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .and_then(|e| {
                e.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "panicle.event_id")
            })
            .map(|kv| kv.value.to_string());
        assert_eq!(named.as_deref(), Some(*expected));
        checked += 1;
    }
    assert_eq!(checked, STORM, "every request's span was checked");
    let events = server.events();

    let slow: Vec<&Event> = events
        .iter()
        .filter(|e| e.message.starts_with("payment gateway"))
        .collect();
    assert_eq!(slow.len(), 10, "below the rate every panic is an event");
    assert!(slow.iter().all(|e| count(e) == 1 && e.storm.is_none()));
    let stored_slow: HashSet<String> = slow.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(stored_slow, slow_ids, "each 500 body names its own event");

    let stormy: Vec<&Event> = events
        .iter()
        .filter(|e| e.message.starts_with("order "))
        .collect();
    assert_eq!(
        stormy.iter().map(|e| count(e)).sum::<u64>(),
        STORM as u64,
        "counts add up exactly"
    );
    let (aggregates, individual): (Vec<&Event>, Vec<&Event>) =
        stormy.iter().partition(|e| e.storm.is_some());
    assert!(
        individual.len() >= panicle::DEFAULT_STORM_THRESHOLD_PER_SEC as usize,
        "the first second's first panics go out on their own"
    );
    assert!(
        stormy.len() < STORM / 50,
        "storm control folded: {} events ({} aggregates) for {STORM} panics",
        stormy.len(),
        aggregates.len()
    );
    let individual_ids: HashSet<&str> = individual.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        panicle::delivery_stats().storm_suppressed,
        aggregates.iter().map(|e| count(e)).sum::<u64>()
    );

    // Every handed-out id resolves to exactly one stored event.
    for id in request_of.keys() {
        let holders = usize::from(individual_ids.contains(id.as_str()))
            + aggregates
                .iter()
                .filter(|a| a.storm.as_ref().is_some_and(|s| s.holds(id)))
                .count();
        assert_eq!(holders, 1, "id {id} is held by {holders} events");
    }
    assert!(
        individual_ids.iter().all(|id| request_of.contains_key(*id)),
        "every event sent on its own was handed out"
    );

    let mut sampled_traces = HashSet::new();
    let mut samples = 0;
    for aggregate in &aggregates {
        let storm = aggregate.storm.as_ref().unwrap();
        assert_eq!(count(aggregate), u64::from(storm.seq_end - storm.seq_start));
        assert!(
            storm.holds(&aggregate.event_id),
            "its id is its first panic's"
        );
        let first = storm
            .first_event_id
            .as_deref()
            .expect("names the last panic sent on its own");
        assert!(individual_ids.contains(first));
        assert_eq!(
            aggregate
                .tags
                .get("panicle.storm.first_event_id")
                .map(String::as_str),
            Some(first)
        );
        assert!(!aggregate.frames.is_empty(), "frames of the template event");
        assert!(storm.samples.len() <= 40 && storm.messages.len() <= 20);
        for sample in &storm.samples {
            assert!(storm.holds(&sample.event_id));
            assert_eq!(
                sample.request_id.as_ref(),
                request_of.get(&sample.event_id),
                "a sample carries its own panic's request"
            );
            assert_eq!(sample.route.as_deref(), Some("/orders/{id}"));
            let trace = sample.trace.as_ref().expect("each request had a trace");
            assert!(
                sampled_traces.insert(trace.trace_id.clone()),
                "one trace per request"
            );
        }
        samples += storm.samples.len();
        if let Some(first) = storm.samples.first() {
            assert_eq!(
                aggregate.trace, first.trace,
                "the aggregate's trace is its first sample's"
            );
            let request = aggregate.request.as_ref().unwrap();
            assert_eq!(request.request_id, first.request_id);
            assert_eq!(request.route.as_deref(), Some("/orders/{id}"));
            assert_eq!(Some(&aggregate.message), first.message.as_ref());
        }
    }
    eprintln!(
        "storm of {STORM}: {} events on their own, {} aggregates (counts {:?}), {samples} samples",
        individual.len(),
        aggregates.len(),
        aggregates.iter().map(|a| count(a)).collect::<Vec<_>>()
    );
    assert!(samples > 0, "the aggregates carry samples");
    assert!(samples <= 40 * aggregates.len());
    assert!(
        aggregates
            .iter()
            .any(|a| !a.storm.as_ref().unwrap().messages.is_empty()),
        "message variants are kept"
    );
}
