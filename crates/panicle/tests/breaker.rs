//! The circuit breaker layer over a plain tower service, with a manual clock:
//! Closed → Open after N panics (503 + Retry-After, handler not called) →
//! HalfOpen after the cool-down (one probe) → Closed on success / Open on panic.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Request, Response, StatusCode};
use panicle::breaker::{BreakerConfig, BreakerLayer, BreakerState, ManualClock, PanicResponse};
use tower::{Layer, Service, ServiceExt};

const ROUTE: &str = "GET /orders/42";

#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
    panics: Arc<AtomicBool>,
}

type Svc =
    tower::util::BoxCloneSyncService<Request<String>, Response<String>, std::convert::Infallible>;

fn setup(threshold: u32) -> (Svc, Handler, Arc<ManualClock>, BreakerLayer) {
    let handler = Handler::default();
    let h = handler.clone();
    let inner = tower::service_fn(move |_req: Request<String>| {
        let h = h.clone();
        async move {
            h.calls.fetch_add(1, Ordering::SeqCst);
            if h.panics.load(Ordering::SeqCst) {
                panic!("called `Option::unwrap()` on a `None` value");
            }
            Ok::<_, std::convert::Infallible>(Response::new("ok".to_string()))
        }
    });
    let clock = Arc::new(ManualClock::default());
    let layer = BreakerLayer::with_clock(
        BreakerConfig {
            threshold,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            ..BreakerConfig::default()
        },
        clock.clone(),
    );
    (
        tower::util::BoxCloneSyncService::new(layer.layer(inner)),
        handler,
        clock,
        layer,
    )
}

fn req() -> Request<String> {
    Request::get("/orders/42").body(String::new()).unwrap()
}

/// Runs one request on its own task: a handler panic resumes through the
/// breaker, so it shows as a panicked task.
async fn call(svc: &Svc) -> Result<Response<String>, ()> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(req()).await.unwrap() })
        .await
        .map_err(|e| assert!(e.is_panic()))
}

fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

#[tokio::test]
async fn opens_after_n_panics_half_opens_after_cool_down_and_closes_on_success() {
    quiet_panics();
    let (svc, h, clock, layer) = setup(3);
    assert_eq!(call(&svc).await.unwrap().status(), StatusCode::OK);
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Closed));

    h.panics.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(call(&svc).await.is_err());
    }
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Open));
    assert_eq!(h.calls.load(Ordering::SeqCst), 4);

    // Open: 503 with Retry-After, the handler is not called.
    clock.advance(Duration::from_secs(10));
    let resp = call(&svc).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "20");
    assert_eq!(h.calls.load(Ordering::SeqCst), 4);

    // After the cool-down one probe goes through; it succeeds: closed.
    clock.advance(Duration::from_secs(20));
    h.panics.store(false, Ordering::SeqCst);
    assert_eq!(call(&svc).await.unwrap().status(), StatusCode::OK);
    assert_eq!(h.calls.load(Ordering::SeqCst), 5);
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Closed));

    // Closed again with a fresh window: one panic does not reopen it.
    h.panics.store(true, Ordering::SeqCst);
    assert!(call(&svc).await.is_err());
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Closed));
}

#[tokio::test]
async fn a_panicking_probe_reopens() {
    quiet_panics();
    let (svc, h, clock, layer) = setup(2);
    h.panics.store(true, Ordering::SeqCst);
    assert!(call(&svc).await.is_err());
    assert!(call(&svc).await.is_err());
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Open));

    clock.advance(Duration::from_secs(30));
    assert!(
        call(&svc).await.is_err(),
        "the probe ran the handler and panicked"
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Open));
    let resp = call(&svc).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()["retry-after"],
        "30",
        "a new cool-down from the probe's panic"
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn only_one_probe_while_half_open() {
    quiet_panics();
    let clock = Arc::new(ManualClock::default());
    let layer = BreakerLayer::with_clock(
        BreakerConfig {
            threshold: 1,
            cool_down: Duration::from_secs(5),
            ..BreakerConfig::default()
        },
        clock.clone(),
    );
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let panics = Arc::new(AtomicBool::new(true));
    let p = panics.clone();
    let inner = tower::service_fn(move |_req: Request<String>| {
        let panicking = p.load(Ordering::SeqCst);
        let release = if panicking {
            None
        } else {
            release.lock().unwrap().take()
        };
        async move {
            if panicking {
                panic!("boom");
            }
            if let Some(rx) = release {
                let _ = rx.await;
            }
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }
    });
    let svc: Svc = tower::util::BoxCloneSyncService::new(layer.layer(inner));
    assert!(call(&svc).await.is_err());
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Open));

    clock.advance(Duration::from_secs(5));
    panics.store(false, Ordering::SeqCst);
    let probe = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(req()).await.unwrap() }
    });
    while layer.state(ROUTE) != Some(BreakerState::HalfOpen) {
        tokio::task::yield_now().await;
    }
    let other = call(&svc).await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "only the probe goes through"
    );
    release_tx.send(()).unwrap();
    assert_eq!(probe.await.unwrap().status(), StatusCode::OK);
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Closed));
}

#[tokio::test]
async fn a_marked_500_from_an_inner_catch_layer_counts_as_a_panic() {
    let clock = Arc::new(ManualClock::default());
    let layer = BreakerLayer::with_clock(
        BreakerConfig {
            threshold: 2,
            ..BreakerConfig::default()
        },
        clock,
    );
    let mut svc = layer.layer(tower::service_fn(|_req: Request<String>| async {
        let mut resp = Response::new("internal error".to_string());
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp.extensions_mut().insert(PanicResponse);
        Ok::<_, std::convert::Infallible>(resp)
    }));
    for _ in 0..2 {
        let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(layer.state(ROUTE), Some(BreakerState::Open));
    let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}
