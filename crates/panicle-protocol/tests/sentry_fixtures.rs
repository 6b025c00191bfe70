//! Sentry SDK payloads (testdata/sentry/, shaped as sentry-python,
//! @sentry/node, sentry-go and sentry-rust send them) mapped to schema v1.

use panicle_protocol::decode::validate;
use panicle_protocol::sentry::{Fallback, parse_envelope, parse_event};
use panicle_protocol::{Event, Frame, Kind, Platform, fingerprint};

const FALLBACK: Fallback<'static> = Fallback {
    event_id: "00000000000000000000000000000001",
    timestamp: "2026-03-04T00:00:00Z",
};

fn fixture(name: &str) -> Event {
    let path = format!(
        "{}/../../testdata/sentry/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let event = parse_event(&bytes, FALLBACK).unwrap();
    // Whatever the mapping gives must pass the native validation.
    validate(event.clone()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    event
}

fn names(event: &Event) -> Vec<&str> {
    event
        .frames
        .iter()
        .map(|f| f.function.as_deref().unwrap_or("?"))
        .collect()
}

fn in_app(event: &Event) -> Vec<Option<bool>> {
    event.frames.iter().map(|f| f.in_app).collect()
}

#[test]
fn python_keyerror_keeps_chain_frames_and_context() {
    let e = fixture("python-keyerror.json");
    assert_eq!(e.platform, Some(Platform::Python));
    assert_eq!(e.kind, Some(Kind::Exception));
    assert_eq!(e.message, "KeyError: 'customer_id'");
    assert_eq!(
        names(&e),
        [
            "shop.orders.customer_of",
            "shop.orders.load_order",
            "shop.api.get_order",
            "asyncio.events._run",
            "starlette.routing.app"
        ]
    );
    // Unset in_app: the stdlib and site-packages are not the service's.
    assert_eq!(
        in_app(&e),
        [Some(true), Some(true), Some(true), Some(false), Some(false)]
    );
    assert_eq!(e.frames[0].file.as_deref(), Some("shop/orders.py"));
    assert_eq!(e.frames[0].line, Some(64));
    let loc = e.location.as_ref().unwrap();
    assert_eq!((loc.file.as_str(), loc.line), ("shop/orders.py", Some(64)));
    let trace = e.trace.as_ref().unwrap();
    assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(trace.span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(e.release.as_deref(), Some("shop@1.4.2"));
    assert_eq!(e.resource_str("deployment.environment"), Some("production"));
    assert_eq!(e.resource_str("host.name"), Some("orders-7f9c"));
    assert_eq!(e.resource_str("process.runtime.name"), Some("CPython"));
    assert_eq!(e.resource_str("os.name"), Some("Linux"));
    assert_eq!(e.tags["region"], "eu-west-1");
    assert_eq!(e.tags["tenant"], "42");
    let req = e.request.as_ref().unwrap();
    assert_eq!(req.method.as_deref(), Some("GET"));
    assert_eq!(req.route.as_deref(), Some("/orders/{order_id}"));
    // The user's id only.
    assert_eq!(e.extra["user"], serde_json::json!({"id": "u-981"}));
    assert!(
        !serde_json::to_string(&e)
            .unwrap()
            .contains("ann@example.com")
    );
    // The chain in order, the raised one last.
    let chain = e.extra["exceptions"].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0]["type"], "ValueError");
    assert_eq!(chain[1]["type"], "KeyError");
    assert_eq!(e.breadcrumbs.len(), 2);
    assert_eq!(e.breadcrumbs[0].category.as_deref(), Some("httplib"));
    assert_eq!(
        e.breadcrumbs[1].message.as_deref(),
        Some("loading order 17")
    );
    assert!(
        e.breadcrumbs[1]
            .timestamp
            .as_deref()
            .unwrap()
            .starts_with("2026-03-04T10:11:12.2")
    );
    assert_eq!(e.sdk.as_ref().unwrap().name, "sentry.python.fastapi");
}

#[test]
fn node_typeerror_marks_node_modules_and_internals() {
    let e = fixture("node-typeerror.json");
    assert_eq!(e.platform, Some(Platform::Node));
    assert_eq!(e.kind, Some(Kind::Exception));
    assert_eq!(
        e.message,
        "TypeError: Cannot read properties of undefined (reading 'price')"
    );
    assert_eq!(
        names(&e),
        [
            "lineTotal",
            "cartTotal",
            "Object.{anonymous}",
            "Layer.handle [as handle_request]",
            "process.processTicksAndRejections"
        ]
    );
    assert_eq!(
        in_app(&e),
        [Some(true), Some(true), Some(true), Some(false), Some(false)]
    );
    assert_eq!(e.frames[0].column, Some(22));
    assert!(
        e.timestamp.starts_with("2026-03-04T10:11:12.5"),
        "{}",
        e.timestamp
    );
    assert_eq!(
        e.request.as_ref().unwrap().route.as_deref(),
        Some("/carts/:id")
    );
    assert_eq!(e.extra["user"], serde_json::json!({"id": "77"}));
    assert_eq!(e.resource_str("host.arch"), Some("x64"));
    assert_eq!(e.breadcrumbs[0].message.as_deref(), Some("fetching cart 9"));
    assert_eq!(e.resource_str("deployment.environment"), Some("staging"));
}

#[test]
fn go_nil_map_from_recover_is_a_panic_with_runtime_wording() {
    let e = fixture("go-nil-map.json");
    assert_eq!(e.platform, Some(Platform::Go));
    assert_eq!(e.kind, Some(Kind::Panic));
    // The runtime's own words, as the crash-text parser gives them, so the
    // Go rules and groups apply alike.
    assert_eq!(e.message, "assignment to entry in nil map");
    assert_eq!(
        names(&e),
        [
            "runtime.gopanic",
            "runtime.mapassign_faststr",
            "example.com/billing/ledger.Totals.Add",
            "example.com/billing/worker.(*Worker).Run",
            "main.main",
            "runtime.goexit"
        ]
    );
    assert_eq!(
        in_app(&e),
        [
            Some(false),
            Some(false),
            Some(true),
            Some(true),
            Some(true),
            Some(false)
        ]
    );
    assert_eq!(
        e.trace.as_ref().unwrap().trace_id,
        "5c4e3f2a1b0d9c8e7f6a5b4c3d2e1f0a"
    );
}

#[test]
fn rust_panic_starts_at_the_panicking_frame() {
    // As sentry-rust sends it: inlined frames named bare by DWARF
    // (`unwrap<&u32>`, `account_of`) and its in_app guess (`true` for tokio).
    let e = fixture("rust-panic.json");
    assert_eq!(e.platform, Some(Platform::Rust));
    assert_eq!(e.kind, Some(Kind::Panic));
    assert_eq!(e.message, "called `Option::unwrap()` on a `None` value");
    assert_eq!(
        names(&e),
        [
            "ledger::post::account_of",
            "ledger::post::post_batch",
            "tokio::runtime::task::harness::poll_future",
            "ledger::main",
            "std::rt::lang_start_internal",
            "<unknown>"
        ]
    );
    assert_eq!(
        e.frames[1].raw_function.as_deref(),
        Some("ledger::post::post_batch<ledger::store::Pg>")
    );
    assert_eq!(
        in_app(&e),
        [
            Some(true),
            Some(true),
            Some(false),
            Some(true),
            Some(false),
            Some(false)
        ]
    );
    assert_eq!(
        e.frames[0].instruction_addr.as_deref(),
        Some("0x55d1c0a03000")
    );
    let thread = e.thread.as_ref().unwrap();
    assert_eq!(thread.name.as_deref(), Some("worker-1"));
    assert_eq!(e.breadcrumbs[0].message.as_deref(), Some("posting batch 7"));
}

/// The same panic through Panicle's SDK: same message, the same frames as
/// its symbolizer names them (machinery cut, std and registry not in-app).
#[test]
fn rust_panic_fingerprints_like_panicles_own_sdk() {
    let sentry = fixture("rust-panic.json");
    let mut native = Event::new(
        "2b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f".into(),
        "2026-03-04T10:11:12Z".into(),
        "called `Option::unwrap()` on a `None` value".into(),
    );
    native.platform = Some(Platform::Rust);
    native.kind = Some(Kind::Panic);
    let frame = |f: &str, line: u32, in_app: bool| Frame {
        function: Some(f.into()),
        file: Some("src/post.rs".into()),
        line: Some(line),
        in_app: Some(in_app),
        ..Frame::default()
    };
    native.frames = vec![
        frame("ledger::post::account_of", 44, true),
        frame("ledger::post::post_batch", 30, true),
        frame("tokio::runtime::task::harness::poll_future", 473, false),
        frame("ledger::main", 12, true),
        frame("std::rt::lang_start_internal", 175, false),
    ];
    assert_eq!(fingerprint(&sentry), fingerprint(&native));
}

#[test]
fn thread_stack_is_used_when_the_exception_has_none() {
    let body = br#"{"event_id":"11111111111111111111111111111111","platform":"python",
        "exception":{"values":[{"type":"MemoryError","value":""}]},
        "threads":{"values":[
          {"id":1,"name":"MainThread","current":false,"stacktrace":{"frames":[{"function":"idle","module":"w"}]}},
          {"id":2,"name":"worker","crashed":true,"stacktrace":{"frames":[
            {"function":"run","module":"app.jobs","filename":"app/jobs.py","lineno":3},
            {"function":"grow","module":"app.jobs","filename":"app/jobs.py","lineno":9}]}}]}}"#;
    let e = parse_event(body, FALLBACK).unwrap();
    assert_eq!(e.message, "MemoryError");
    assert_eq!(names(&e), ["app.jobs.grow", "app.jobs.run"]);
    assert_eq!(e.thread.as_ref().unwrap().name.as_deref(), Some("worker"));
    assert_eq!(e.thread.as_ref().unwrap().id.as_deref(), Some("2"));
    // No timestamp: the fallback.
    assert_eq!(e.timestamp, FALLBACK.timestamp);
}

#[test]
fn a_message_event_and_odd_fields_map_without_failing() {
    let body = br#"{"logentry":{"message":"disk %s full","formatted":"disk /var full"},
        "platform":"other","tags":[["a","1"],["b",true],["bad"]],
        "contexts":{"trace":{"trace_id":"not-hex"}},"breadcrumbs":"nope","request":{"url":"/x?y=1"},
        "exception":{"values":"nope"},"threads":5,"timestamp":"2026-03-04T10:11:12"}"#;
    let e = parse_event(body, FALLBACK).unwrap();
    assert_eq!(e.event_id, FALLBACK.event_id);
    assert_eq!(e.kind, Some(Kind::Message));
    assert_eq!(e.message, "disk /var full");
    assert_eq!(e.timestamp, "2026-03-04T10:11:12Z");
    assert_eq!(e.tags.len(), 2);
    assert_eq!(e.tags["b"], "true");
    assert!(
        e.trace.is_none(),
        "an invalid trace id is dropped, not fatal"
    );
    assert_eq!(e.request.as_ref().unwrap().route.as_deref(), Some("/x"));
    validate(e).unwrap();
    assert_eq!(
        parse_event(b"[1]", FALLBACK).unwrap_err().code(),
        "invalid_event"
    );
    assert_eq!(
        parse_event(b"{", FALLBACK).unwrap_err().code(),
        "invalid_json"
    );
}

#[test]
fn an_envelope_event_item_maps() {
    let event = std::fs::read(format!(
        "{}/../../testdata/sentry/node-typeerror.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let compact =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&event).unwrap()).unwrap();
    let mut body = b"{\"event_id\":\"a3f1c2d4e5b6478990aabbccddeeff00\",\"dsn\":\"http://k@h/1\"}\n{\"type\":\"event\"}\n".to_vec();
    body.extend_from_slice(&compact);
    body.extend_from_slice(b"\n");
    let env = parse_envelope(&body).unwrap();
    let e = parse_event(env.items[0].payload, FALLBACK).unwrap();
    assert_eq!(e.event_id, "a3f1c2d4e5b6478990aabbccddeeff00");
    assert_eq!(e.frames.len(), 5);
}
