//! The Panicle server: an axum app over a [`Store`].
//!
//! Ingest (`POST /api/v1/events`) decodes, validates, normalizes and
//! fingerprints events, then stores each request's batch in one transaction.
//! The read API under `/api/v1` answers with JSON; `/healthz`, `/readyz` and
//! `/metrics` serve operators; `/` serves the dashboard.
//!
//! Architecture invariant: the only crate that knows HTTP *and* SQL.

pub mod admission;
pub mod alerts;
mod auth;
mod clusters;
pub mod commit;
mod connections;
mod cookie;
mod debug_files;
mod error;
mod ingest;
pub mod jobs;
pub mod limits;
mod metrics;
pub mod openapi;
mod origin;
mod read;
pub mod retention;
mod sentry;
mod states;
mod storable;
pub mod symbolicate;
mod timeouts;
mod token_bucket;
mod web;
pub mod webhook;

/// What ingest stores of a decoded event (benches seed databases with it).
pub use ingest::to_new_event;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jobs::ClusterJob;
use panicle_cluster::Params;
use panicle_rules::RuleSet;
use panicle_store::{SessionPolicy, Store};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use limits::{LimitDefaults, Limits};
pub use metrics::Metrics;
pub use retention::{RetentionConfig, RetentionJob};

/// Settings a running server needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body, compressed or not (default 1 MiB).
    pub max_body_bytes: usize,
    /// URL clients reach the server at, for DSNs shown in the dashboard.
    pub public_url: String,
    /// Link to a trace backend with `{trace_id}`, e.g. a Jaeger or Tempo URL.
    pub trace_url_template: Option<String>,
    /// Silence after which a cluster back in a new release is a regression.
    pub regression_quiet_ms: i64,
    /// Clustering parameters of the job.
    pub cluster: Params,
    /// How long a dashboard session lives (12 h idle, 7 d at most).
    pub session: SessionPolicy,
    /// A request head (or the next one on a kept-alive connection) must be
    /// complete within this, else the connection is closed.
    pub header_timeout: Duration,
    /// A request body must be complete within this after its head: 408.
    pub body_timeout: Duration,
    /// A whole request must be answered within this: 503 + Retry-After.
    pub request_timeout: Duration,
    /// Connections served at once; at the limit a new one replaces the
    /// connection idle longest (waiting for a head), else it waits.
    pub max_connections: usize,
    /// Rate limits, quotas and the per-group cap every project gets unless
    /// it sets its own.
    pub limits: LimitDefaults,
    /// How long events are kept and how the purge runs.
    pub retention: RetentionConfig,
    /// How alert notifications are sent and retried.
    pub alerts: alerts::AlertConfig,
    /// Where uploaded debug files live, as
    /// `<dir>/<build_id[0..2]>/<build_id[2..]>.debug` (created at the first
    /// upload). Default `./panicle-data/debug-files`, beside the default
    /// SQLite database; `panicle serve` puts it beside the database file it
    /// is given. Replicas of one deployment must share it (one volume).
    pub debug_files_dir: PathBuf,
    /// Declared body bytes of the ingest requests in the server at once:
    /// past it a request is answered 503 before its body is read, which
    /// bounds the memory an overload takes. 0: no bound.
    pub max_ingest_bytes: u64,
    /// Ingest requests in the server at once, past which the same 503
    /// (0, the default: no bound). Off by default because a request counts
    /// from its head on: clients that stall mid-body would hold the slots
    /// until the body timeout, where they hold only their few declared
    /// bytes of the byte bound.
    pub max_ingest_requests: u64,
    /// Largest accepted debug file (default and most: 1 GiB); the ingest
    /// body limit does not apply to uploads.
    pub max_debug_file_bytes: u64,
    /// How ingest requests share transactions.
    pub group_commit: commit::GroupCommit,
}

/// Where debug files go unless told: beside the default SQLite database.
pub const DEFAULT_DEBUG_FILES_DIR: &str = "./panicle-data/debug-files";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            public_url: "http://127.0.0.1:8471".into(),
            trace_url_template: None,
            regression_quiet_ms: 7 * 24 * 3_600_000,
            cluster: Params::default(),
            session: SessionPolicy::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            limits: LimitDefaults::default(),
            retention: RetentionConfig::default(),
            alerts: alerts::AlertConfig::default(),
            debug_files_dir: PathBuf::from(DEFAULT_DEBUG_FILES_DIR),
            max_ingest_requests: 0,
            max_ingest_bytes: 16 * 1024 * 1024,
            max_debug_file_bytes: panicle_store::MAX_DEBUG_FILE_BYTES,
            group_commit: commit::GroupCommit::default(),
        }
    }
}

impl ServerConfig {
    /// The oldest plausible event time, as an age in milliseconds: the
    /// project's retention (else the server's); an event dated before it
    /// (or more than an hour ahead) is stored under its receive time. Kept
    /// forever (0 days): ten years, so a year-0000 clock is still caught.
    pub fn max_event_age_ms(&self, project_retention_days: Option<u64>) -> i64 {
        const FOREVER_DAYS: u64 = 3653;
        let days = match project_retention_days.unwrap_or(self.retention.days) {
            0 => FOREVER_DAYS,
            d => d,
        };
        i64::try_from(days.min(FOREVER_DAYS)).unwrap_or(0) * 86_400_000
    }
}

/// Milliseconds since the Unix epoch, UTC: the unit of every stored time.
pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    pub job: Arc<ClusterJob>,
    pub rules: Arc<RuleSet>,
    pub limits: Arc<Limits>,
    pub retention: Arc<RetentionJob>,
    /// The alert worker and checks; `spawn` starts them.
    pub alerts: Arc<alerts::Alerts>,
    /// Names bare addresses from uploaded debug files.
    pub symbolicator: Arc<symbolicate::Symbolicator>,
    /// Ingest's transactions, shared by the requests that arrive together.
    pub committer: Arc<commit::Committer>,
    /// Projects by ingest key, remembered once found.
    pub ingest_keys: Arc<auth::IngestKeys>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(read::readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(ingest::post_events, read::list_events))
        .routes(routes!(ingest::post_text))
        .routes(routes!(read::get_event))
        .routes(routes!(auth::sign_in, auth::whoami, auth::sign_out))
        .routes(routes!(read::list_groups))
        .routes(routes!(read::get_group))
        .routes(routes!(clusters::list_projects))
        .routes(routes!(clusters::list_clusters))
        .routes(routes!(clusters::recompute))
        .routes(routes!(clusters::get_cluster))
        .routes(routes!(clusters::cluster_events))
        .routes(routes!(clusters::cluster_heatmap))
        .routes(routes!(clusters::cluster_paths))
        .routes(routes!(states::put_cluster_state))
        .routes(routes!(states::bulk_cluster_state))
        .merge(sentry_routes(&state))
        .routes(routes!(alerts::list_rules, alerts::create_rule))
        .routes(routes!(
            alerts::get_rule,
            alerts::update_rule,
            alerts::delete_rule
        ))
        .routes(routes!(alerts::test_rule))
        .routes(routes!(alerts::list_deliveries))
        .routes(routes!(debug_files::upload, debug_files::list))
        .routes(routes!(debug_files::remove))
        .split_for_parts();
    let doc = Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .fallback(web::fallback)
    .layer(axum::middleware::from_fn(storable::refuse_nul))
    .with_state(state)
}

/// Sentry's ingest routes, behind the decompression SDKs use (gzip,
/// deflate, br) and a declared-size check that runs before it.
fn sentry_routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sentry::post_envelope))
        .routes(routes!(sentry::post_store))
        .layer(
            tower_http::decompression::RequestDecompressionLayer::new()
                .pass_through_unaccepted(true),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sentry::refuse_declared_too_large,
        ))
}

/// The process is up (the database may not be: see `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Serves until `shutdown` resolves, then lets open requests finish.
///
/// Slow clients cannot hold the server: see `ServerConfig`'s timeouts and
/// connection limit. Handlers get `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config.clone();
    let metrics = state.metrics.clone();
    let timeouts = timeouts::RequestTimeouts {
        body: config.body_timeout,
        request: config.request_timeout,
        metrics: metrics.clone(),
    };
    let gate = admission::IngestGate::new(
        config.max_ingest_requests,
        config.max_ingest_bytes,
        config.max_body_bytes as u64,
        metrics.clone(),
    );
    // Admission first: a refused request costs no timer and no body read.
    let app = router(state)
        .layer(axum::middleware::from_fn_with_state(
            timeouts,
            timeouts::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(gate, admission::admit));
    let limits = connections::ConnectionLimits {
        header_timeout: config.header_timeout,
        // A response that makes no progress this long: the client stopped
        // reading, as a stalled body is a client that stopped sending.
        write_timeout: config.body_timeout,
        shutdown_grace: config.request_timeout,
        max_connections: config.max_connections,
    };
    connections::serve_connections(listener, app, limits, metrics, shutdown).await
}

impl AppState {
    /// State with the built-in rule base.
    pub fn new(store: Store, config: ServerConfig) -> Result<AppState, panicle_rules::RuleError> {
        Ok(Self::with_rules(store, config, RuleSet::builtin()?))
    }

    pub fn with_rules(store: Store, config: ServerConfig, rules: RuleSet) -> AppState {
        let job = ClusterJob::new(store.clone(), config.cluster);
        let metrics = Arc::new(Metrics::new());
        let limits = Arc::new(Limits::new(config.limits));
        let retention = RetentionJob::new(store.clone(), config.retention, metrics.clone());
        let rules = Arc::new(rules);
        let alerts = alerts::Alerts::new(
            store.clone(),
            rules.clone(),
            config.alerts.clone(),
            &config.public_url,
        );
        let symbolicator = Arc::new(symbolicate::Symbolicator::new(
            config.debug_files_dir.clone(),
        ));
        let committer = Arc::new(commit::Committer::new(
            store.clone(),
            metrics.clone(),
            config.group_commit,
        ));
        AppState {
            committer,
            ingest_keys: Arc::default(),
            store,
            symbolicator,
            config: Arc::new(config),
            metrics,
            job,
            rules,
            limits,
            retention,
            alerts,
        }
    }
}
