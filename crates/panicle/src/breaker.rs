//! Per-route circuit breaker for tower services (feature `tower`).
//!
//! A route whose handler panics `threshold` times within `window` opens: for
//! `cool_down` it answers 503 with `Retry-After` at once, without calling the
//! handler. Then one request goes through as a probe (half-open): if it
//! completes without a panic the route closes, if it panics the route opens
//! again. Other requests meanwhile get 503.
//!
//! ```text
//!   Closed ──(threshold panics in window)──▶ Open ──(cool-down over: one probe)──▶ HalfOpen
//!     ▲                                       ▲                                      │
//!     └────────────────(probe ok)─────────────┼──────────────(probe panics)──────────┘
//! ```
//!
//! Invariants: the request path reads state without locks (an atomic per
//! route, the route table behind `ArcSwap`; the mutex is taken only to add a
//! route never seen before). A panic is seen either as an unwind through the
//! handler future (caught here, counted, then resumed so the catch-panic layer
//! outside still answers 500) or as a response the catch-panic layer inside
//! marked with the extension [`PanicResponse`].
//! State changes are `tracing` events (target `panicle::breaker`) and tags
//! on the panic event (`panicle.breaker.*`).
//!
//! Put it with `Router::route_layer` so axum's `MatchedPath` names the route;
//! otherwise the key is method + path, bounded by `max_routes`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode};

/// Where the breaker reads the time; [`ManualClock`] makes tests exact.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds on a monotonic clock.
    fn now_ms(&self) -> u64;
}

/// The real monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// A clock that moves only when told (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Marker a catch-panic layer puts on the 500 it produced, so a breaker
/// outside it counts the panic (`PanicleLayer` should insert it).
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicResponse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Panics within `window` that open the route.
    pub threshold: u32,
    pub window: Duration,
    /// How long an open route answers 503 before it lets a probe through.
    pub cool_down: Duration,
    /// Routes tracked at most; requests to further routes pass unguarded.
    pub max_routes: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            max_routes: 1000,
        }
    }
}

const BUCKETS: u64 = 10;
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Sliding window of panic counts: ten buckets, each one atomic word holding
/// (bucket epoch, count), so recording is one CAS loop and reading sums the
/// buckets still inside the window.
struct Window {
    buckets: [AtomicU64; BUCKETS as usize],
    bucket_ms: u64,
}

impl Window {
    fn new(window: Duration) -> Window {
        Window {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            bucket_ms: (window.as_millis() as u64 / BUCKETS).max(1),
        }
    }

    fn record(&self, now: u64) {
        let epoch = now / self.bucket_ms + 1; // +1: epoch 0 marks an empty bucket
        let Some(bucket) = self.buckets.get((epoch % BUCKETS) as usize) else {
            return;
        };
        let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            if word >> COUNT_BITS == epoch {
                Some(word + u64::from((word & COUNT_MASK) < COUNT_MASK))
            } else {
                Some((epoch << COUNT_BITS) | 1)
            }
        });
    }

    fn count(&self, now: u64) -> u64 {
        let epoch = now / self.bucket_ms + 1;
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Acquire))
            .filter(|w| {
                let e = w >> COUNT_BITS;
                e != 0 && e <= epoch && epoch - e < BUCKETS
            })
            .map(|w| w & COUNT_MASK)
            .sum()
    }

    fn clear(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Release);
        }
    }
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

fn pack(tag: u64, since_ms: u64) -> u64 {
    (since_ms << 2) | tag
}

fn tag_of(word: u64) -> BreakerState {
    match word & 3 {
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

/// One route's breaker: state and since-when packed in one atomic word.
struct RouteBreaker {
    route: String,
    state: AtomicU64,
    window: Window,
}

enum Admit {
    Pass { probe: bool },
    Reject { retry_after_secs: u64 },
}

struct Registry {
    config: BreakerConfig,
    clock: Box<dyn Clock>,
    routes: ArcSwap<HashMap<String, Arc<RouteBreaker>>>,
    /// Only for adding a route never seen before; never on the steady path.
    insert: Mutex<()>,
}

impl Registry {
    fn route(&self, key: &str) -> Option<Arc<RouteBreaker>> {
        if let Some(rb) = self.routes.load().get(key) {
            return Some(rb.clone());
        }
        let _g = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.routes.load_full();
        if let Some(rb) = current.get(key) {
            return Some(rb.clone());
        }
        if current.len() >= self.config.max_routes {
            return None;
        }
        let rb = Arc::new(RouteBreaker {
            route: key.to_string(),
            state: AtomicU64::new(pack(CLOSED, 0)),
            window: Window::new(self.config.window),
        });
        let mut next = HashMap::clone(&current);
        next.insert(key.to_string(), rb.clone());
        self.routes.store(Arc::new(next));
        Some(rb)
    }

    fn cool_ms(&self) -> u64 {
        self.config.cool_down.as_millis() as u64
    }

    fn admit(&self, rb: &RouteBreaker) -> Admit {
        let now = self.clock.now_ms();
        loop {
            let word = rb.state.load(Ordering::Acquire);
            let since = word >> 2;
            let ready_at = since.saturating_add(self.cool_ms());
            match tag_of(word) {
                BreakerState::Closed => return Admit::Pass { probe: false },
                // A half-open probe that has not finished within a cool-down
                // is presumed lost: another request may probe.
                state @ (BreakerState::Open | BreakerState::HalfOpen) => {
                    if now < ready_at {
                        let secs = if state == BreakerState::Open {
                            (ready_at - now).div_ceil(1000).max(1)
                        } else {
                            1
                        };
                        return Admit::Reject {
                            retry_after_secs: secs,
                        };
                    }
                    if rb
                        .state
                        .compare_exchange(
                            word,
                            pack(HALF_OPEN, now),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        transition(rb, state, BreakerState::HalfOpen, rb.window.count(now));
                        return Admit::Pass { probe: true };
                    }
                }
            }
        }
    }

    fn on_panic(&self, rb: &RouteBreaker, probe: bool) {
        let now = self.clock.now_ms();
        rb.window.record(now);
        let recent = rb.window.count(now);
        let word = rb.state.load(Ordering::Acquire);
        let from = tag_of(word);
        let opens = match from {
            BreakerState::HalfOpen => probe,
            BreakerState::Closed => recent >= u64::from(self.config.threshold.max(1)),
            BreakerState::Open => false,
        };
        if opens
            && rb
                .state
                .compare_exchange(word, pack(OPEN, now), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            transition(rb, from, BreakerState::Open, recent);
        }
    }

    fn on_success(&self, rb: &RouteBreaker, probe: bool) {
        if !probe {
            return;
        }
        let now = self.clock.now_ms();
        let word = rb.state.load(Ordering::Acquire);
        if tag_of(word) == BreakerState::HalfOpen
            && rb
                .state
                .compare_exchange(word, pack(CLOSED, now), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            rb.window.clear();
            transition(rb, BreakerState::HalfOpen, BreakerState::Closed, 0);
        }
    }

    /// The probe's future was dropped unfinished (client went away): open
    /// again, but due for a new probe at once.
    fn on_abandoned_probe(&self, rb: &RouteBreaker) {
        let now = self.clock.now_ms();
        let word = rb.state.load(Ordering::Acquire);
        if tag_of(word) == BreakerState::HalfOpen {
            let since = now.saturating_sub(self.cool_ms());
            if rb
                .state
                .compare_exchange(word, pack(OPEN, since), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                transition(
                    rb,
                    BreakerState::HalfOpen,
                    BreakerState::Open,
                    rb.window.count(now),
                );
            }
        }
    }
}

fn transition(rb: &RouteBreaker, from: BreakerState, to: BreakerState, recent_panics: u64) {
    tracing::warn!(
        target: "panicle::breaker",
        route = %rb.route,
        from = from.as_str(),
        to = to.as_str(),
        recent_panics,
        "panicle circuit breaker: route {} {} -> {}",
        rb.route,
        from.as_str(),
        to.as_str()
    );
}

/// The breaker layer; clones share one route table.
#[derive(Clone)]
pub struct BreakerLayer {
    registry: Arc<Registry>,
}

impl Default for BreakerLayer {
    fn default() -> Self {
        BreakerLayer::new(BreakerConfig::default())
    }
}

impl BreakerLayer {
    pub fn new(config: BreakerConfig) -> BreakerLayer {
        BreakerLayer::with_clock(config, SystemClock::default())
    }

    pub fn with_clock(config: BreakerConfig, clock: impl Clock) -> BreakerLayer {
        BreakerLayer {
            registry: Arc::new(Registry {
                config,
                clock: Box::new(clock),
                routes: ArcSwap::from_pointee(HashMap::new()),
                insert: Mutex::new(()),
            }),
        }
    }

    /// The state of a route (`"GET /orders/{id}"`), if it has been seen.
    pub fn state(&self, route: &str) -> Option<BreakerState> {
        let rb = self.registry.routes.load().get(route).cloned()?;
        Some(tag_of(rb.state.load(Ordering::Acquire)))
    }
}

impl<S> tower_layer::Layer<S> for BreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker {
            inner,
            registry: self.registry.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Breaker<S> {
    inner: S,
    registry: Arc<Registry>,
}

/// `METHOD matched-path` when axum routed the request, else `METHOD path`.
fn route_key<B>(req: &Request<B>) -> String {
    #[cfg(feature = "axum")]
    if let Some(p) = req.extensions().get::<axum::extract::MatchedPath>() {
        return format!("{} {}", req.method(), p.as_str());
    }
    format!("{} {}", req.method(), req.uri().path())
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Breaker<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BreakerFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(rb) = self.registry.route(&route_key(&req)) else {
            return BreakerFuture(Inner::Pass {
                fut: Box::pin(self.inner.call(req)),
                guard: None,
            });
        };
        match self.registry.admit(&rb) {
            Admit::Reject { retry_after_secs } => {
                let mut resp = Response::new(ResBody::default());
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs),
                );
                resp.headers_mut()
                    .insert("x-panicle-circuit", HeaderValue::from_static("open"));
                BreakerFuture(Inner::Rejected(Some(resp)))
            }
            Admit::Pass { probe } => BreakerFuture(Inner::Pass {
                fut: Box::pin(self.inner.call(req)),
                guard: Some(Watch {
                    registry: self.registry.clone(),
                    rb,
                    probe,
                    done: false,
                }),
            }),
        }
    }
}

/// Tracks one admitted request until it ends; reports an unfinished probe.
struct Watch {
    registry: Arc<Registry>,
    rb: Arc<RouteBreaker>,
    probe: bool,
    done: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.probe && !self.done {
            self.registry.on_abandoned_probe(&self.rb);
        }
    }
}

/// The response future of [`Breaker`].
pub struct BreakerFuture<F, B>(Inner<F, B>);

enum Inner<F, B> {
    Rejected(Option<Response<B>>),
    Pass {
        fut: Pin<Box<F>>,
        guard: Option<Watch>,
    },
}

// Nothing is pinned in place: the inner future is boxed.
impl<F, B> Unpin for BreakerFuture<F, B> {}

impl<F, B, E> Future for BreakerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Rejected(resp) => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            Inner::Pass { fut, guard } => {
                let Some(watch) = guard else {
                    return fut.as_mut().poll(cx);
                };
                let polled = {
                    let _current = CurrentRoute::enter(watch);
                    std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
                };
                match polled {
                    Err(payload) => {
                        watch.done = true;
                        watch.registry.on_panic(&watch.rb, watch.probe);
                        std::panic::resume_unwind(payload)
                    }
                    Ok(Poll::Pending) => Poll::Pending,
                    Ok(Poll::Ready(out)) => {
                        watch.done = true;
                        let panicked = matches!(&out, Ok(r) if is_panic_response(r));
                        if panicked {
                            watch.registry.on_panic(&watch.rb, watch.probe);
                        } else {
                            watch.registry.on_success(&watch.rb, watch.probe);
                        }
                        Poll::Ready(out)
                    }
                }
            }
        }
    }
}

fn is_panic_response<B>(resp: &Response<B>) -> bool {
    resp.extensions().get::<PanicResponse>().is_some()
}

struct Current {
    registry: Arc<Registry>,
    rb: Arc<RouteBreaker>,
    probe: bool,
}

thread_local! {
    /// The route whose handler this thread is polling, for the panic hook.
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Sets [`CURRENT`] for the duration of one poll, restoring the outer value
/// (nested breakers) even when the poll unwinds.
struct CurrentRoute(Option<Current>);

impl CurrentRoute {
    fn enter(w: &Watch) -> CurrentRoute {
        let next = Current {
            registry: w.registry.clone(),
            rb: w.rb.clone(),
            probe: w.probe,
        };
        CurrentRoute(CURRENT.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.replace(next))))
    }
}

impl Drop for CurrentRoute {
    fn drop(&mut self) {
        let outer = self.0.take();
        CURRENT.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = outer;
            }
        });
    }
}

/// The breaker tags for a panic on this thread right now: the route, its
/// state, the panics in its window counting this one, and whether this panic
/// opens the circuit. Empty outside a guarded handler. Never panics (it runs
/// in the panic hook).
pub fn panic_tags() -> Vec<(String, String)> {
    CURRENT.with(|c| {
        let Ok(c) = c.try_borrow() else {
            return Vec::new();
        };
        let Some(cur) = c.as_ref() else {
            return Vec::new();
        };
        let reg = &cur.registry;
        let now = reg.clock.now_ms();
        let state = tag_of(cur.rb.state.load(Ordering::Acquire));
        let recent = cur.rb.window.count(now).saturating_add(1);
        let opens = match state {
            BreakerState::Closed => recent >= u64::from(reg.config.threshold.max(1)),
            BreakerState::HalfOpen => cur.probe,
            BreakerState::Open => false,
        };
        vec![
            ("panicle.breaker.route".into(), cur.rb.route.clone()),
            ("panicle.breaker.state".into(), state.as_str().into()),
            ("panicle.breaker.recent_panics".into(), recent.to_string()),
            ("panicle.breaker.opens".into(), opens.to_string()),
        ]
    })
}

/// Adds [`panic_tags`] to an event captured by the hook.
pub(crate) fn annotate(event: &mut panicle_protocol::Event) {
    event.tags.extend(panic_tags());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_recent_buckets_only() {
        let w = Window::new(Duration::from_secs(10));
        w.record(0);
        w.record(500);
        w.record(5_000);
        assert_eq!(w.count(5_000), 3);
        assert_eq!(w.count(10_500), 1, "the first second has slid out");
        assert_eq!(w.count(30_000), 0);
        w.record(30_000);
        assert_eq!(w.count(30_000), 1);
        w.clear();
        assert_eq!(w.count(30_000), 0);
    }

    #[test]
    fn state_word_round_trips() {
        assert_eq!(tag_of(pack(OPEN, 12345)), BreakerState::Open);
        assert_eq!(pack(HALF_OPEN, 7) >> 2, 7);
        assert_eq!(tag_of(pack(CLOSED, 1)), BreakerState::Closed);
    }
}
