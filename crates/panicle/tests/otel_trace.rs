//! A tokio service traced through tracing-opentelemetry panics inside a span:
//! the stored event carries that span's trace and span ids, and the span got
//! the `exception` event. Also the opentelemetry Context used directly.

mod common;

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

mod orders {
    #[inline(never)]
    pub async fn reserve(id: u32) -> u32 {
        tokio::task::yield_now().await;
        let stock: Option<u32> = std::hint::black_box(None);
        stock.expect("no stock for the order") + id
    }
}

fn attribute(span: &SpanData, event: &str, key: &str) -> Option<String> {
    let e = span.events.iter().find(|e| e.name == event)?;
    e.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[test]
fn panic_in_a_span_carries_its_trace_and_is_recorded_on_it() {
    let server = common::TestServer::start();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let _guard = panicle::init(server.options());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let joined = runtime.block_on(async {
        tokio::spawn(orders::reserve(7).instrument(tracing::info_span!("reserve_order", order = 7)))
            .await
    });
    assert!(joined.is_err_and(|e| e.is_panic()));
    assert!(panicle::flush(Duration::from_secs(10)));

    let events = server.wait_for_events(1);
    let event = events
        .iter()
        .find(|e| e.message == "no stock for the order")
        .expect("the panic was stored");
    let spans = exporter.get_finished_spans().unwrap();
    let span = spans
        .iter()
        .find(|s| s.name == "reserve_order")
        .expect("span exported");
    let trace = event.trace.as_ref().expect("event has a trace");
    assert_eq!(trace.trace_id, span.span_context.trace_id().to_string());
    assert_eq!(
        trace.span_id.as_deref(),
        Some(span.span_context.span_id().to_string().as_str())
    );
    assert_eq!(trace.trace_id.len(), 32);

    assert_eq!(
        attribute(span, "exception", "exception.type").as_deref(),
        Some("panic")
    );
    assert_eq!(
        attribute(span, "exception", "exception.message").as_deref(),
        Some("no stock for the order")
    );
    let stack = attribute(span, "exception", "exception.stacktrace").unwrap();
    assert!(stack.contains("otel_trace::orders::reserve"), "{stack}");
    assert_eq!(
        attribute(span, "exception", "panicle.event_id").as_deref(),
        Some(event.event_id.as_str())
    );
    let top = event.frames[0].function.as_deref().unwrap();
    assert!(
        top.starts_with("otel_trace::orders::reserve"),
        "frames[0] is the user's: {top}"
    );

    // The opentelemetry API used directly, without tracing.
    let tracer = provider.tracer("direct");
    let otel_span = tracer.start("checkout");
    let cx = opentelemetry::Context::current_with_span(otel_span);
    let (trace_id, span_id) = (
        cx.span().span_context().trace_id().to_string(),
        cx.span().span_context().span_id().to_string(),
    );
    let result = std::thread::spawn(move || {
        let _attached = cx.attach();
        let cart: Vec<u32> = std::hint::black_box(Vec::new());
        cart[3]
    })
    .join();
    assert!(result.is_err());
    assert!(panicle::flush(Duration::from_secs(10)));
    let events = server.wait_for_events(2);
    let event = events
        .iter()
        .find(|e| e.message.contains("index out of bounds"))
        .expect("second panic stored");
    let trace = event.trace.as_ref().expect("trace from the otel Context");
    assert_eq!(trace.trace_id, trace_id);
    assert_eq!(trace.span_id.as_deref(), Some(span_id.as_str()));
    let spans = exporter.get_finished_spans().unwrap();
    let span = spans
        .iter()
        .find(|s| s.name == "checkout")
        .expect("direct span exported");
    assert!(
        attribute(span, "exception", "exception.message")
            .is_some_and(|m| m.contains("index out of bounds"))
    );
}
