//! The breaker's tags on panic events, in a test binary of its own: it
//! installs a panic hook, which is process-global.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Request, Response};
use panicle::breaker::{BreakerConfig, BreakerLayer, ManualClock};
use tower::{Layer, ServiceExt};

const ROUTE: &str = "GET /orders/42";

/// The tags of each panic seen by the test's hook.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

#[tokio::test]
async fn panic_events_carry_the_breaker_state_as_tags() {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    // The SDK's hook adds these same tags to the event it spools.
    std::panic::set_hook(Box::new(move |_| {
        s.lock().unwrap().push(panicle::breaker::panic_tags());
    }));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let layer = BreakerLayer::with_clock(
        BreakerConfig {
            threshold: 2,
            cool_down: Duration::from_secs(30),
            ..BreakerConfig::default()
        },
        ManualClock::default(),
    );
    let svc = layer.layer(tower::service_fn(move |_req: Request<String>| {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            panic!("called `Option::unwrap()` on a `None` value");
            #[allow(unreachable_code)]
            Ok::<Response<String>, std::convert::Infallible>(Response::new(String::new()))
        }
    }));
    for _ in 0..2 {
        let svc = svc.clone();
        let r = tokio::spawn(async move {
            svc.oneshot(Request::get("/orders/42").body(String::new()).unwrap())
                .await
        })
        .await;
        assert!(r.unwrap_err().is_panic());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let seen = seen.lock().unwrap().clone();
    let tag = |i: usize, k: &str| {
        seen[i]
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(seen.len(), 2);
    assert_eq!(tag(0, "panicle.breaker.route"), ROUTE);
    assert_eq!(tag(0, "panicle.breaker.state"), "closed");
    assert_eq!(tag(0, "panicle.breaker.recent_panics"), "1");
    assert_eq!(tag(0, "panicle.breaker.opens"), "false");
    assert_eq!(tag(1, "panicle.breaker.recent_panics"), "2");
    assert_eq!(tag(1, "panicle.breaker.opens"), "true");
    assert!(
        panicle::breaker::panic_tags().is_empty(),
        "no tags outside a guarded handler"
    );
}
