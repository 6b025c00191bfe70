//! The server's own telemetry, named in one place and served as Prometheus text.

use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemTypeLabel {
    pub item_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectReasonLabel {
    pub project: String,
    pub reason: String,
}

/// Counters of what ingest did; every rejection has a named reason.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub events_accepted: Counter,
    pub events_stored: Counter,
    pub events_duplicate: Counter,
    pub requests_rejected: Family<ReasonLabel, Counter>,
    /// Open HTTP connections (at most `max_connections`).
    pub http_connections: Gauge,
    /// Requests cut by a timeout, by stage: header, body, request.
    pub http_timeouts: Family<StageLabel, Counter>,
    /// Size of the SQLite write-ahead log, refreshed when /metrics is read.
    pub sqlite_wal_bytes: Gauge,
    /// Refusals by a rate limit or quota, per project and reason.
    pub requests_limited: Family<ProjectReasonLabel, Counter>,
    /// Rows the retention job deleted (events and sampled ones).
    pub events_purged: Counter,
    /// New events counted but not kept in full (their group was over its cap).
    pub events_sampled: Counter,
    /// Items of accepted Sentry envelopes (and store requests), by type:
    /// `event` is stored, the others only counted.
    pub sentry_items: Family<ItemTypeLabel, Counter>,
    /// Events whose bare addresses were named from an uploaded debug file,
    /// at ingest or later (when the file arrived after them).
    pub events_symbolicated: Family<StageLabel, Counter>,
    /// Ingest requests in the server now, and their declared body bytes.
    pub ingest_in_flight: Gauge,
    pub ingest_in_flight_bytes: Gauge,
    /// Ingest requests refused before their body was read, by the bound
    /// they hit (`requests`, `bytes`).
    pub ingest_overloaded: Family<StageLabel, Counter>,
    /// Group commit: requests waiting for a writer.
    pub commit_queue_depth: Gauge,
    /// Events (new or resent) per committed transaction, and the requests in it.
    pub commit_batch_events: Histogram,
    pub commit_batch_requests: Histogram,
    /// Seconds from a request's hand-off to its answer (queue wait included),
    /// and of each transaction alone.
    pub commit_wait_seconds: Histogram,
    pub commit_seconds: Histogram,
    /// Transactions of several requests that failed and were run again one
    /// request each (a quota crossed, an event the database refuses, an outage).
    pub commit_split: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("panicle");
        let events_accepted = Counter::default();
        let events_stored = Counter::default();
        let events_duplicate = Counter::default();
        let requests_rejected = Family::<ReasonLabel, Counter>::default();
        let http_connections = Gauge::default();
        let http_timeouts = Family::<StageLabel, Counter>::default();
        let sqlite_wal_bytes = Gauge::default();
        registry.register(
            "events_accepted",
            "Events answered 202 (new or resent)",
            events_accepted.clone(),
        );
        registry.register(
            "events_stored",
            "Events stored for the first time",
            events_stored.clone(),
        );
        registry.register(
            "events_duplicate",
            "Resent events stored nothing twice",
            events_duplicate.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Ingest requests refused, by reason (the error code)",
            requests_rejected.clone(),
        );
        registry.register(
            "http_connections",
            "Open HTTP connections",
            http_connections.clone(),
        );
        registry.register(
            "http_timeouts",
            "Connections or requests cut short, by stage (header, body, request timeouts; evicted: idle, closed to make room at the connection limit)",
            http_timeouts.clone(),
        );
        registry.register(
            "sqlite_wal_bytes",
            "Size of the SQLite write-ahead log file (0 on PostgreSQL)",
            sqlite_wal_bytes.clone(),
        );
        let requests_limited = Family::<ProjectReasonLabel, Counter>::default();
        registry.register(
            "ingest_limited",
            "Ingest requests refused by a rate limit or quota, by project and reason",
            requests_limited.clone(),
        );
        let events_purged = Counter::default();
        registry.register(
            "events_purged",
            "Events deleted by retention",
            events_purged.clone(),
        );
        let events_sampled = Counter::default();
        registry.register(
            "events_sampled",
            "New events counted in their group but not kept in full (group over its cap)",
            events_sampled.clone(),
        );
        let sentry_items = Family::<ItemTypeLabel, Counter>::default();
        registry.register(
            "sentry_items",
            "Items of accepted Sentry envelopes, by type (events stored, the rest counted only)",
            sentry_items.clone(),
        );
        let events_symbolicated = Family::<StageLabel, Counter>::default();
        registry.register(
            "events_symbolicated",
            "Events whose bare addresses the server named from an uploaded debug file, by stage (ingest; later: stored before the file arrived)",
            events_symbolicated.clone(),
        );
        let ingest_in_flight = Gauge::default();
        registry.register(
            "ingest_in_flight",
            "Ingest requests in the server now (admitted, not yet answered)",
            ingest_in_flight.clone(),
        );
        let ingest_in_flight_bytes = Gauge::default();
        registry.register(
            "ingest_in_flight_bytes",
            "Declared body bytes of the ingest requests in the server now",
            ingest_in_flight_bytes.clone(),
        );
        let ingest_overloaded = Family::<StageLabel, Counter>::default();
        registry.register(
            "ingest_overloaded",
            "Ingest requests answered 503 before their body was read, by the bound they hit (requests, bytes)",
            ingest_overloaded.clone(),
        );
        let commit_queue_depth = Gauge::default();
        registry.register(
            "ingest_commit_queue_depth",
            "Ingest requests waiting for a group-commit writer",
            commit_queue_depth.clone(),
        );
        let counts = || {
            Histogram::new([
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
            ])
        };
        let seconds = || {
            Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ])
        };
        let commit_batch_events = counts();
        registry.register(
            "ingest_commit_batch_events",
            "Events per group-commit transaction",
            commit_batch_events.clone(),
        );
        let commit_batch_requests = counts();
        registry.register(
            "ingest_commit_batch_requests",
            "Ingest requests per group-commit transaction",
            commit_batch_requests.clone(),
        );
        let commit_wait_seconds = seconds();
        registry.register(
            "ingest_commit_wait_seconds",
            "From an ingest request's hand-off to the group-commit writer until it is committed (queue wait included)",
            commit_wait_seconds.clone(),
        );
        let commit_seconds = seconds();
        registry.register(
            "ingest_commit_seconds",
            "Duration of one group-commit transaction",
            commit_seconds.clone(),
        );
        let commit_split = Counter::default();
        registry.register(
            "ingest_commit_split",
            "Group-commit transactions that failed and were run again one request each",
            commit_split.clone(),
        );
        Metrics {
            commit_queue_depth,
            commit_batch_events,
            commit_batch_requests,
            commit_wait_seconds,
            commit_seconds,
            commit_split,
            registry: Mutex::new(registry),
            events_symbolicated,
            ingest_in_flight,
            ingest_in_flight_bytes,
            ingest_overloaded,
            sentry_items,
            requests_limited,
            events_purged,
            events_sampled,
            events_accepted,
            events_stored,
            events_duplicate,
            requests_rejected,
            http_connections,
            http_timeouts,
            sqlite_wal_bytes,
        }
    }

    pub fn timed_out(&self, stage: &'static str) {
        self.http_timeouts
            .get_or_create(&StageLabel { stage })
            .inc();
    }

    pub fn rejected(&self, reason: &str) {
        self.requests_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// An ingest request refused before its body was read.
    pub fn overloaded(&self, bound: &'static str) {
        self.ingest_overloaded
            .get_or_create(&StageLabel { stage: bound })
            .inc();
    }

    /// Events the server named, at `stage` (`ingest` or `later`).
    pub fn symbolicated(&self, stage: &'static str, events: u64) {
        if events > 0 {
            self.events_symbolicated
                .get_or_create(&StageLabel { stage })
                .inc_by(events);
        }
    }

    /// An item of an accepted Sentry envelope.
    pub fn sentry_item(&self, item_type: &'static str) {
        self.sentry_items
            .get_or_create(&ItemTypeLabel { item_type })
            .inc();
    }

    /// A refusal by a limit; also counted in `ingest_rejected` by the handler.
    pub fn limited(&self, project: &str, reason: &str) {
        self.requests_limited
            .get_or_create(&ProjectReasonLabel {
                project: project.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus / OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(bytes) = state.store.wal_bytes() {
        state
            .metrics
            .sqlite_wal_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
