//! With the Downward API variables set, the stored event names the pod,
//! namespace, node and container, and the OTEL_* resource.

mod common;

use std::time::Duration;

#[test]
fn pod_variables_become_k8s_resource_keys() {
    let server = common::TestServer::start();
    for (k, v) in [
        ("POD_NAME", "checkout-7d9f"),
        ("POD_NAMESPACE", "shop"),
        ("NODE_NAME", "node-3"),
        ("POD_UID", "0b8e6a52-1111-2222-3333-444455556666"),
        ("CONTAINER_NAME", "app"),
        ("OTEL_SERVICE_NAME", "checkout"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=payments,cloud.region=eu-west-1",
        ),
    ] {
        // SAFETY: set before any other thread of this test process reads the env.
        unsafe { std::env::set_var(k, v) };
    }
    let from_env = panicle::Options::from_env();
    let options = panicle::Options {
        service_name: from_env.service_name,
        service_version: Some("1.4.2".into()),
        ..server.options().with_environment("prod")
    };
    let _guard = panicle::init(options);
    let worker = std::thread::Builder::new()
        .name("worker-1".into())
        .spawn(|| {
            panicle::set_tag("tenant", "acme");
            let n: Option<u32> = std::hint::black_box(None);
            n.unwrap()
        })
        .unwrap();
    assert!(worker.join().is_err());
    assert!(panicle::flush(Duration::from_secs(10)));
    let events = server.wait_for_events(1);
    let r = &events[0].resource;
    let get = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(get("k8s.pod.name").as_deref(), Some("checkout-7d9f"));
    assert_eq!(get("k8s.namespace.name").as_deref(), Some("shop"));
    assert_eq!(get("k8s.node.name").as_deref(), Some("node-3"));
    assert_eq!(
        get("k8s.pod.uid").as_deref(),
        Some("0b8e6a52-1111-2222-3333-444455556666")
    );
    assert_eq!(get("k8s.container.name").as_deref(), Some("app"));
    assert_eq!(get("service.name").as_deref(), Some("checkout"));
    assert_eq!(get("service.version").as_deref(), Some("1.4.2"));
    assert_eq!(get("deployment.environment").as_deref(), Some("prod"));
    assert_eq!(get("team").as_deref(), Some("payments"));
    assert!(get("host.name").is_some());
    assert_eq!(
        r.get("process.pid").and_then(|v| v.as_u64()),
        Some(u64::from(std::process::id()))
    );
    assert_eq!(events[0].release.as_deref(), Some("checkout@1.4.2"));
    assert_eq!(
        events[0].tags.get("tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(
        events[0].thread.as_ref().unwrap().name.as_deref(),
        Some("worker-1")
    );
}
