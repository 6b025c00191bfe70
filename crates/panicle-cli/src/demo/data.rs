//! The demo history as data: no I/O, no clock, no randomness beyond a
//! seeded generator, so the same seed and `now` give the same events and a
//! test can assert on them. Event ids come from the seed alone (never from
//! `now`): a second fill sends the same ids and the server stores nothing twice.
//!
//! The story it tells, over the past ten days of a small shop:
//! - `checkout` (Rust): an `Option::unwrap()` on `None` in the coupon code,
//!   reached from two call paths (two groups, one cluster), growing since
//!   release 1.9.0.
//! - `payments` (Rust): a `ParseIntError` unwrap with a storm two days ago
//!   (two aggregates, as the SDK ships one every few seconds).
//! - `inventory` (Rust): an index out of bounds fixed in 2.3.1 (resolved in
//!   that release) that comes back in 2.4.0: the regression.
//! - `search` (Rust): an overflow, resolved and quiet since.
//! - `notifier` (Rust): a `RefCell` double borrow, ignored until 500 events.
//! - `gateway` (Rust): a config panic at startup, staging only.
//! - `ledger`, `session-cache`, `batcher` (Go): real Go crash texts sent as
//!   raw text, as a log shipper does.

use panicle_store::{IgnoreUntil, StateChange};
use serde_json::{Value, json};

/// The seed `panicle serve --demo-data` uses.
pub const SEED: u64 = 0x7061_6e69_636c_6521;
/// The project the demo fills.
pub const PROJECT: &str = "demo";

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// How far back the history reaches.
pub const SPAN_DAYS: i64 = 10;

/// A crash sent as raw text to `POST /api/v1/events/text`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCrash {
    /// The query: service, release, environment, pod, node, event_id, timestamp.
    pub query: Vec<(&'static str, String)>,
    pub text: &'static str,
    pub event_id: String,
}

/// A state to give the cluster whose culprit names `culprit`, once clustered.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedState {
    pub culprit: &'static str,
    pub change: StateChange,
}

/// Everything the demo sends, in the order it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// JSON events (schema v1) for `POST /api/v1/events`, oldest first.
    pub history: Vec<Value>,
    /// Go crashes for the text ingest path, oldest first.
    pub text_crashes: Vec<TextCrash>,
    /// Set after the first clustering run.
    pub states: Vec<PlannedState>,
    /// Sent after the states: events of a newer release of a resolved cluster.
    pub regression: Vec<Value>,
}

impl Plan {
    /// Every event id the plan sends (aggregates once, not their folded ids).
    pub fn event_ids(&self) -> Vec<String> {
        let json_ids = self
            .history
            .iter()
            .chain(&self.regression)
            .filter_map(|e| e["event_id"].as_str().map(str::to_string));
        json_ids
            .chain(self.text_crashes.iter().map(|c| c.event_id.clone()))
            .collect()
    }

    /// Panics the plan stands for: storm aggregates count their `count`.
    pub fn panics(&self) -> u64 {
        let json: u64 = self
            .history
            .iter()
            .chain(&self.regression)
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum();
        json + self.text_crashes.len() as u64
    }

    /// The last event sent: once it is stored, the fill ran to its end.
    pub fn last_event_id(&self) -> Option<&str> {
        self.regression.last().and_then(|e| e["event_id"].as_str())
    }
}

/// SplitMix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(digits);
        s
    }

    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }
}

/// RFC 3339 (UTC, milliseconds) from epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Relative traffic by UTC hour: quiet nights, a working-day hump.
const HOUR_WEIGHTS: [u32; 24] = [
    2, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 11, 12, 12, 11, 10, 8, 6, 5, 4, 3, 2,
];

/// A time in the past: `days_back` whole days before today (UTC), at an
/// hour drawn from the daily shape. Never later than a minute ago.
fn time_of_day(rng: &mut Rng, now_ms: i64, days_back: i64) -> i64 {
    let total: u32 = HOUR_WEIGHTS.iter().sum();
    let mut pick = rng.below(u64::from(total)) as u32;
    let mut hour = 0;
    for (h, w) in HOUR_WEIGHTS.iter().enumerate() {
        if pick < *w {
            hour = h as i64;
            break;
        }
        pick -= w;
    }
    let within = hour * HOUR_MS + rng.below(HOUR_MS as u64) as i64;
    let day_start = now_ms.div_euclid(DAY_MS) * DAY_MS - days_back * DAY_MS;
    let mut ts = day_start + within;
    // Today's later hours have not happened yet: fold them into the hours before now.
    if ts > now_ms - MINUTE_MS {
        let elapsed = (now_ms - MINUTE_MS - day_start).max(MINUTE_MS);
        ts = day_start + within % elapsed;
    }
    ts
}

/// How a scenario's events spread over the days before now.
#[derive(Clone, Copy)]
enum Shape {
    /// Days `from..=to` back, evenly.
    Even { from: i64, to: i64 },
    /// Days `0..=span` back, more the nearer to now (a growing problem).
    Growing { span: i64 },
}

fn days_back(rng: &mut Rng, shape: Shape) -> i64 {
    match shape {
        Shape::Even { from, to } => from + rng.below((to - from + 1) as u64) as i64,
        Shape::Growing { span } => {
            let u = rng.unit();
            ((u * u) * (span + 1) as f64).floor() as i64
        }
    }
}

fn frame(function: &str, file: &str, line: u32, package: &str, in_app: bool) -> Value {
    json!({"function": function, "file": file, "line": line, "in_app": in_app, "package": package})
}

/// What an axum service's panic runs under: folded as dependencies on the pages.
fn server_frames() -> Vec<Value> {
    vec![
        frame(
            "axum::routing::route::Route::call",
            "axum-0.8.4/src/routing/route.rs",
            139,
            "axum",
            false,
        ),
        frame(
            "tower::util::map_response::MapResponseFuture::poll",
            "tower-0.5.2/src/util/map_response.rs",
            77,
            "tower",
            false,
        ),
        frame(
            "hyper::proto::h1::dispatch::Dispatcher::poll_catch",
            "hyper-1.6.0/src/proto/h1/dispatch.rs",
            173,
            "hyper",
            false,
        ),
        frame(
            "tokio::runtime::task::harness::Harness::poll",
            "tokio-1.45.1/src/runtime/task/harness.rs",
            151,
            "tokio",
            false,
        ),
    ]
}

/// A service's deployment: pods (each on a node) and its releases by age.
struct Service {
    name: &'static str,
    namespace: &'static str,
    pods: &'static [(&'static str, &'static str)],
    /// (release, newest day back it shipped on): events older than a
    /// release's day get the release before it.
    releases: &'static [(&'static str, i64)],
}

impl Service {
    fn release(&self, days_back: i64) -> &'static str {
        self.releases
            .iter()
            .find(|(_, since)| days_back <= *since)
            .or(self.releases.last())
            .map_or("", |(r, _)| r)
    }
}

const NODES: [&str; 4] = [
    "ip-10-0-1-23.eu-west-1.compute.internal",
    "ip-10-0-2-41.eu-west-1.compute.internal",
    "ip-10-0-3-17.eu-west-1.compute.internal",
    "ip-10-0-3-88.eu-west-1.compute.internal",
];

const CHECKOUT: Service = Service {
    name: "checkout",
    namespace: "shop",
    pods: &[
        ("checkout-6d8f9c7b5-x7k2p", NODES[0]),
        ("checkout-6d8f9c7b5-m4q8z", NODES[1]),
        ("checkout-6d8f9c7b5-t9w3n", NODES[2]),
    ],
    releases: &[("checkout@1.9.0", 4), ("checkout@1.8.2", SPAN_DAYS)],
};

const PAYMENTS: Service = Service {
    name: "payments",
    namespace: "shop",
    pods: &[
        ("payments-7c5d4f8d9-2hbxv", NODES[1]),
        ("payments-7c5d4f8d9-9rjlm", NODES[3]),
    ],
    releases: &[("payments@3.2.0", SPAN_DAYS)],
};

const INVENTORY: Service = Service {
    name: "inventory",
    namespace: "shop",
    pods: &[
        ("inventory-5b9c6d7f4-qz8sd", NODES[0]),
        ("inventory-5b9c6d7f4-wl5nk", NODES[2]),
    ],
    releases: &[("inventory@2.3.0", SPAN_DAYS)],
};

const SEARCH: Service = Service {
    name: "search",
    namespace: "shop",
    pods: &[("search-85f7b6c9d-d2mvc", NODES[3])],
    releases: &[("search@0.14.1", SPAN_DAYS)],
};

const NOTIFIER: Service = Service {
    name: "notifier",
    namespace: "ops",
    pods: &[
        ("notifier-64c8d9b7f-kkd9w", NODES[1]),
        ("notifier-64c8d9b7f-p2x7r", NODES[2]),
    ],
    releases: &[("notifier@0.6.3", SPAN_DAYS)],
};

const GATEWAY: Service = Service {
    name: "gateway",
    namespace: "edge",
    pods: &[("gateway-7f9d8c6b5-hx4tq", NODES[0])],
    releases: &[("gateway@4.0.0-rc.2", SPAN_DAYS)],
};

/// The release the inventory bug was fixed in, and the one it came back in.
pub const FIXED_RELEASE: &str = "inventory@2.3.1";
pub const REGRESSED_RELEASE: &str = "inventory@2.4.0";
/// Culprits of the clusters the plan changes the state of.
/// A deep module path, as a large service's names are: long enough that an
/// unwrapped frame name once made the cluster page wider than a 1,400 px window.
pub const INVENTORY_CULPRIT: &str = "inventory::domain::reservations::warehouse_allocation::ShelfAllocator::pick_reserved_quantities::{closure}";
pub const CHECKOUT_CULPRIT: &str =
    "checkout::pricing::coupons::CouponBook::apply_coupon_to_line_items::{closure}";
pub const SEARCH_CULPRIT: &str = "search::rank::bm25::score";
pub const NOTIFIER_CULPRIT: &str = "notifier::templates::Cache::render";
/// Panics the payments storm stands for, over its two aggregates.
pub const STORM_PANICS: u32 = 1200;
const STORM_SPLIT: u32 = 700;

/// One panic of a Rust service: the common fields; the scenario adds the rest.
struct Panic<'a> {
    service: &'a Service,
    message: String,
    frames: Vec<Value>,
    route: (&'static str, &'static str),
    environment: &'static str,
    thread: &'static str,
}

fn rust_event(rng: &mut Rng, p: Panic<'_>, ts: i64, release: &str) -> Value {
    let (pod, node) = *rng.pick(p.service.pods);
    let location = p
        .frames
        .first()
        .map(|f| json!({"file": f["file"], "line": f["line"], "column": 5 + rng.below(40)}));
    let mut frames = p.frames;
    frames.extend(server_frames());
    json!({
        "event_id": rng.uuid(),
        "timestamp": rfc3339(ts),
        "platform": "rust",
        "kind": "panic",
        "message": p.message,
        "location": location,
        "thread": {"name": p.thread, "id": format!("ThreadId({})", 2 + rng.below(14))},
        "frames": frames,
        "trace": {"trace_id": rng.hex(32), "span_id": rng.hex(16)},
        "resource": {
            "service.name": p.service.name,
            "service.version": release.rsplit_once('@').map_or(release, |(_, v)| v),
            "deployment.environment": p.environment,
            "k8s.namespace.name": p.service.namespace,
            "k8s.pod.name": pod,
            "k8s.node.name": node,
            "k8s.container.name": p.service.name,
        },
        "request": {"method": p.route.0, "route": p.route.1, "request_id": format!("req-{}", rng.hex(12))},
        "release": release,
        "tags": {"region": "eu-west-1"},
        "sdk": {"name": "panicle", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn checkout(rng: &mut Rng, now_ms: i64, out: &mut Vec<Value>) {
    for _ in 0..240 {
        let back = days_back(
            rng,
            Shape::Growing {
                span: SPAN_DAYS - 1,
            },
        );
        let ts = time_of_day(rng, now_ms, back);
        let (caller, route) = if rng.below(3) == 0 {
            (
                frame(
                    "checkout::api::preview_total",
                    "src/api.rs",
                    64,
                    "checkout",
                    true,
                ),
                ("GET", "/api/cart/{cart_id}/preview"),
            )
        } else {
            (
                frame(
                    "checkout::orders::place_order",
                    "src/orders.rs",
                    211,
                    "checkout",
                    true,
                ),
                ("POST", "/api/orders"),
            )
        };
        let frames = vec![
            // As long as real async Rust names get: the pages must wrap it.
            frame(
                CHECKOUT_CULPRIT,
                "src/pricing/coupons.rs",
                118,
                "checkout",
                true,
            ),
            frame(
                "checkout::pricing::price_cart",
                "src/pricing/mod.rs",
                47,
                "checkout",
                true,
            ),
            caller,
        ];
        let p = Panic {
            service: &CHECKOUT,
            message: "called `Option::unwrap()` on a `None` value".into(),
            frames,
            route,
            environment: if rng.below(10) == 0 {
                "staging"
            } else {
                "prod"
            },
            thread: "tokio-runtime-worker",
        };
        out.push(rust_event(rng, p, ts, CHECKOUT.release(back)));
    }
}

fn payments_frames() -> Vec<Value> {
    vec![
        frame(
            "payments::currency::parse_minor_units",
            "src/currency.rs",
            33,
            "payments",
            true,
        ),
        frame(
            "payments::refunds::RefundRequest::amount",
            "src/refunds.rs",
            92,
            "payments",
            true,
        ),
        frame(
            "payments::api::create_refund",
            "src/api.rs",
            140,
            "payments",
            true,
        ),
    ]
}

const PAYMENTS_MESSAGE: &str =
    "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }";

fn payments(rng: &mut Rng, now_ms: i64, out: &mut Vec<Value>) {
    for _ in 0..70 {
        let back = days_back(
            rng,
            Shape::Even {
                from: 0,
                to: SPAN_DAYS - 1,
            },
        );
        let ts = time_of_day(rng, now_ms, back);
        let p = Panic {
            service: &PAYMENTS,
            message: PAYMENTS_MESSAGE.into(),
            frames: payments_frames(),
            route: ("POST", "/api/refunds"),
            environment: "prod",
            thread: "tokio-runtime-worker",
        };
        out.push(rust_event(rng, p, ts, PAYMENTS.release(back)));
    }
    // The storm: a bad batch of refunds two days ago, folded by the SDK
    // into aggregates that keep the first and last panics as samples.
    let start = now_ms.div_euclid(DAY_MS) * DAY_MS - 2 * DAY_MS + 14 * HOUR_MS + 7 * MINUTE_MS;
    let prefix = panicle_protocol::storm::storm_id_prefix(rng.next(), rng.next() as u32);
    for (seq_start, seq_end) in [(0, STORM_SPLIT), (STORM_SPLIT, STORM_PANICS)] {
        let at = |seq: u32| start + i64::from(seq) * 9;
        let sample = |rng: &mut Rng, seq: u32| {
            json!({
                "event_id": panicle_protocol::storm::folded_event_id(&prefix, seq),
                "timestamp": rfc3339(at(seq)),
                "trace": {"trace_id": rng.hex(32), "span_id": rng.hex(16)},
                "request_id": format!("req-{}", rng.hex(12)),
                "route": "/api/refunds",
                "message": PAYMENTS_MESSAGE,
            })
        };
        let samples: Vec<Value> = (seq_start..seq_start + 20)
            .chain(seq_end - 20..seq_end)
            .map(|seq| sample(rng, seq))
            .collect();
        let p = Panic {
            service: &PAYMENTS,
            message: PAYMENTS_MESSAGE.into(),
            frames: payments_frames(),
            route: ("POST", "/api/refunds"),
            environment: "prod",
            thread: "tokio-runtime-worker",
        };
        let mut event = rust_event(rng, p, at(seq_start), PAYMENTS.release(2));
        event["event_id"] = json!(panicle_protocol::storm::folded_event_id(&prefix, seq_start));
        event["trace"] = samples[0]["trace"].clone();
        event["count"] = json!(seq_end - seq_start);
        event["storm"] = json!({
            "id_prefix": prefix,
            "seq_start": seq_start,
            "seq_end": seq_end,
            "samples": samples,
            "messages": [PAYMENTS_MESSAGE],
        });
        out.push(event);
    }
}

fn inventory_panic(rng: &mut Rng) -> Panic<'static> {
    let len = rng.below(3);
    Panic {
        service: &INVENTORY,
        message: format!(
            "index out of bounds: the len is {len} but the index is {}",
            len + rng.below(4)
        ),
        frames: vec![
            frame(
                INVENTORY_CULPRIT,
                "src/domain/reservations/warehouse_allocation.rs",
                57,
                "inventory",
                true,
            ),
            frame(
                "inventory::domain::reservations::reserve",
                "src/domain/reservations/mod.rs",
                102,
                "inventory",
                true,
            ),
            frame(
                "inventory::grpc::ReserveService::reserve",
                "src/grpc.rs",
                31,
                "inventory",
                true,
            ),
        ],
        route: ("POST", "/inventory.v1.Reserve/Reserve"),
        environment: "prod",
        thread: "tokio-runtime-worker",
    }
}

fn inventory(rng: &mut Rng, now_ms: i64, out: &mut Vec<Value>) {
    for _ in 0..60 {
        let back = days_back(rng, Shape::Even { from: 4, to: 8 });
        let ts = time_of_day(rng, now_ms, back);
        let p = inventory_panic(rng);
        out.push(rust_event(rng, p, ts, INVENTORY.release(back)));
    }
}

/// The inventory bug back in a release newer than the one that fixed it:
/// the last 20 hours.
fn regression(rng: &mut Rng, now_ms: i64) -> Vec<Value> {
    let mut out: Vec<Value> = (0..24)
        .map(|_| {
            let ts = now_ms - MINUTE_MS - rng.below((20 * HOUR_MS) as u64) as i64;
            let p = inventory_panic(rng);
            rust_event(rng, p, ts, REGRESSED_RELEASE)
        })
        .collect();
    out.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    out
}

fn search(rng: &mut Rng, now_ms: i64, out: &mut Vec<Value>) {
    for _ in 0..36 {
        let back = days_back(rng, Shape::Even { from: 6, to: 9 });
        let ts = time_of_day(rng, now_ms, back);
        let p = Panic {
            service: &SEARCH,
            message: "attempt to subtract with overflow".into(),
            frames: vec![
                frame(SEARCH_CULPRIT, "src/rank/bm25.rs", 74, "search", true),
                frame(
                    "search::rank::rank_documents",
                    "src/rank/mod.rs",
                    29,
                    "search",
                    true,
                ),
                frame("search::api::query", "src/api.rs", 88, "search", true),
            ],
            route: ("GET", "/api/search"),
            environment: "prod",
            thread: "tokio-runtime-worker",
        };
        out.push(rust_event(rng, p, ts, SEARCH.release(back)));
    }
}

fn notifier(rng: &mut Rng, now_ms: i64, out: &mut Vec<Value>) {
    for _ in 0..30 {
        let back = days_back(
            rng,
            Shape::Even {
                from: 0,
                to: SPAN_DAYS - 1,
            },
        );
        let ts = time_of_day(rng, now_ms, back);
        let p = Panic {
            service: &NOTIFIER,
            message: "already borrowed: BorrowMutError".into(),
            frames: vec![
                frame(NOTIFIER_CULPRIT, "src/templates.rs", 151, "notifier", true),
                frame(
                    "notifier::email::send_receipt",
                    "src/email.rs",
                    66,
                    "notifier",
                    true,
                ),
                frame(
                    "notifier::worker::handle_job",
                    "src/worker.rs",
                    40,
                    "notifier",
                    true,
                ),
            ],
            route: ("POST", "/jobs/receipt"),
            environment: "prod",
            thread: "notifier-worker",
        };
        out.push(rust_event(rng, p, ts, NOTIFIER.release(back)));
    }
}

fn gateway(rng: &mut Rng, now_ms: i64, out: &mut Vec<Value>) {
    for _ in 0..12 {
        let back = days_back(rng, Shape::Even { from: 1, to: 3 });
        let ts = time_of_day(rng, now_ms, back);
        let p = Panic {
            service: &GATEWAY,
            message: "called `Result::unwrap()` on an `Err` value: Error { inner: TomlError { message: \"missing field `upstream_timeout_ms`\", key: [\"routes\", \"checkout\"] } }".into(),
            frames: vec![
                frame("gateway::config::Config::load", "src/config.rs", 58, "gateway", true),
                frame("gateway::main", "src/main.rs", 21, "gateway", true),
            ],
            route: ("GET", "/healthz"),
            environment: "staging",
            thread: "main",
        };
        out.push(rust_event(rng, p, ts, GATEWAY.release(back)));
    }
}

/// A Go service and the real crash text it dies with (from the protocol's fixtures).
struct GoCrash {
    service: &'static str,
    release: &'static str,
    pods: &'static [&'static str],
    text: &'static str,
    events: usize,
    shape: Shape,
}

const GO_CRASHES: [GoCrash; 3] = [
    GoCrash {
        service: "ledger",
        release: "v0.9.3",
        pods: &["ledger-0", "ledger-1"],
        text: include_str!("../../../../testdata/crashtext/go/go1.19-nil-pointer.txt"),
        events: 16,
        shape: Shape::Growing { span: 6 },
    },
    GoCrash {
        service: "session-cache",
        release: "v1.4.0",
        pods: &["session-cache-7d6f5-abcde", "session-cache-7d6f5-fghij"],
        text: include_str!("../../../../testdata/crashtext/go/go1.19-concurrent-map-writes.txt"),
        events: 9,
        shape: Shape::Even { from: 0, to: 8 },
    },
    GoCrash {
        service: "batcher",
        release: "v2.0.1",
        pods: &["batcher-28310415-q7x2m"],
        text: include_str!("../../../../testdata/crashtext/go/go1.19-gotraceback-all.txt"),
        events: 5,
        shape: Shape::Even { from: 1, to: 5 },
    },
];

fn go_crashes(rng: &mut Rng, now_ms: i64) -> Vec<TextCrash> {
    let mut out = Vec::new();
    for crash in &GO_CRASHES {
        for _ in 0..crash.events {
            let back = days_back(rng, crash.shape);
            let ts = time_of_day(rng, now_ms, back);
            let pod = *rng.pick(crash.pods);
            let node = *rng.pick(&NODES);
            let event_id = rng.uuid();
            out.push((
                ts,
                TextCrash {
                    query: vec![
                        ("service", crash.service.to_string()),
                        ("release", crash.release.to_string()),
                        ("environment", "prod".to_string()),
                        ("namespace", "platform".to_string()),
                        ("pod", pod.to_string()),
                        ("node", node.to_string()),
                        ("event_id", event_id.clone()),
                        ("timestamp", rfc3339(ts)),
                    ],
                    text: crash.text,
                    event_id,
                },
            ));
        }
    }
    out.sort_by_key(|(ts, _)| *ts);
    out.into_iter().map(|(_, c)| c).collect()
}

/// The demo history for `seed`, with times relative to `now_ms`.
pub fn generate(seed: u64, now_ms: i64) -> Plan {
    // One stream per scenario, so ids do not shift when another scenario
    // draws more or fewer numbers (and never depend on `now`).
    let stream = |n: u64| Rng(seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
    let mut history = Vec::new();
    checkout(&mut stream(1), now_ms, &mut history);
    payments(&mut stream(2), now_ms, &mut history);
    inventory(&mut stream(3), now_ms, &mut history);
    search(&mut stream(4), now_ms, &mut history);
    notifier(&mut stream(5), now_ms, &mut history);
    gateway(&mut stream(6), now_ms, &mut history);
    history.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    Plan {
        history,
        text_crashes: go_crashes(&mut stream(7), now_ms),
        states: vec![
            PlannedState {
                culprit: INVENTORY_CULPRIT,
                change: StateChange::ResolveInRelease(FIXED_RELEASE.into()),
            },
            PlannedState {
                culprit: SEARCH_CULPRIT,
                change: StateChange::Resolve,
            },
            PlannedState {
                culprit: NOTIFIER_CULPRIT,
                change: StateChange::Ignore(IgnoreUntil::Events(500)),
            },
        ],
        regression: regression(&mut stream(8), now_ms),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn parse_ms(s: &str) -> i64 {
        use time::format_description::well_known::Rfc3339;
        (time::OffsetDateTime::parse(s, &Rfc3339)
            .unwrap()
            .unix_timestamp_nanos()
            / 1_000_000) as i64
    }

    #[test]
    fn the_same_seed_and_time_give_the_same_plan() {
        assert_eq!(generate(SEED, NOW), generate(SEED, NOW));
        assert_ne!(
            generate(SEED, NOW).event_ids(),
            generate(SEED + 1, NOW).event_ids()
        );
    }

    #[test]
    fn event_ids_do_not_depend_on_the_time_so_a_second_fill_sends_the_same_ones() {
        let a = generate(SEED, NOW).event_ids();
        let b = generate(SEED, NOW + 3 * DAY_MS + 12_345).event_ids();
        // The order follows the times; the ids are the same.
        let a_set: BTreeSet<&String> = a.iter().collect();
        let b_set: BTreeSet<&String> = b.iter().collect();
        assert!(a_set == b_set, "the ids changed with the time");
        assert_eq!(a_set.len(), a.len(), "every event id is used once");
    }

    #[test]
    fn every_event_is_one_the_ingest_path_accepts() {
        let plan = generate(SEED, NOW);
        let body = serde_json::to_vec(&plan.history).unwrap();
        let decoded = panicle_protocol::decode::decode_events(&body).expect("valid history");
        assert_eq!(decoded.len(), plan.history.len());
        let body = serde_json::to_vec(&plan.regression).unwrap();
        panicle_protocol::decode::decode_events(&body).expect("valid regression");
        for crash in &plan.text_crashes {
            let (parsed, _) = panicle_protocol::crashtext::parse_crash_log(crash.text)
                .expect("the Go fixture parses as a crash");
            assert!(!parsed.into_event("x".into(), "y".into()).frames.is_empty());
        }
    }

    #[test]
    fn the_history_spreads_over_the_past_days_and_stops_before_now() {
        let plan = generate(SEED, NOW);
        let times: Vec<i64> = plan
            .history
            .iter()
            .chain(&plan.regression)
            .map(|e| parse_ms(e["timestamp"].as_str().unwrap()))
            .chain(plan.text_crashes.iter().map(|c| {
                let ts = &c.query.iter().find(|(k, _)| *k == "timestamp").unwrap().1;
                parse_ms(ts)
            }))
            .collect();
        let oldest = NOW - (SPAN_DAYS + 1) * DAY_MS;
        assert!(times.iter().all(|t| (oldest..NOW).contains(t)));
        let days: BTreeSet<i64> = times.iter().map(|t| (NOW - t) / DAY_MS).collect();
        assert!(days.len() >= 9, "events on {} distinct days", days.len());
        // Growing: the last three days hold more checkout panics than the three before.
        let checkout_in = |from: i64, to: i64| {
            plan.history
                .iter()
                .filter(|e| e["resource"]["service.name"] == "checkout")
                .filter(|e| {
                    let age = NOW - parse_ms(e["timestamp"].as_str().unwrap());
                    (from * DAY_MS..to * DAY_MS).contains(&age)
                })
                .count()
        };
        assert!(checkout_in(0, 3) > checkout_in(3, 6));
    }

    #[test]
    fn the_story_has_services_pods_releases_a_storm_go_crashes_and_a_regression() {
        let plan = generate(SEED, NOW);
        let values = |key: &str| -> BTreeSet<String> {
            plan.history
                .iter()
                .filter_map(|e| e["resource"][key].as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(values("service.name").len(), 6);
        assert!(values("k8s.pod.name").len() >= 10);
        assert_eq!(values("k8s.node.name").len(), NODES.len());
        let releases: BTreeSet<&str> = plan
            .history
            .iter()
            .filter_map(|e| e["release"].as_str())
            .collect();
        assert!(releases.contains("checkout@1.8.2") && releases.contains("checkout@1.9.0"));
        let storm: Vec<&Value> = plan
            .history
            .iter()
            .filter(|e| e["count"].is_u64())
            .collect();
        assert_eq!(storm.len(), 2);
        let counted: u64 = storm.iter().map(|e| e["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, u64::from(STORM_PANICS));
        assert_eq!(storm[0]["storm"]["seq_end"], storm[1]["storm"]["seq_start"]);
        let go: BTreeSet<&str> = plan
            .text_crashes
            .iter()
            .map(|c| c.query[0].1.as_str())
            .collect();
        assert_eq!(go.len(), 3);
        // The regression: the resolved cluster's stack, in a newer release.
        assert!(plan.regression.iter().all(|e| {
            e["release"] == REGRESSED_RELEASE && e["frames"][0]["function"] == INVENTORY_CULPRIT
        }));
        assert!(panicle_store::release_newer(
            REGRESSED_RELEASE,
            FIXED_RELEASE,
            &|_| None
        ));
        assert!(
            plan.history
                .iter()
                .filter(|e| e["frames"][0]["function"] == INVENTORY_CULPRIT)
                .all(|e| !panicle_store::release_newer(
                    e["release"].as_str().unwrap(),
                    FIXED_RELEASE,
                    &|_| None
                ))
        );
        assert_eq!(
            plan.last_event_id(),
            plan.regression.last().unwrap()["event_id"].as_str()
        );
        assert!(plan.panics() > u64::from(STORM_PANICS) + 400);
    }
}
