//! The Panicle server: an axum app over a [`Store`].
//!
//! Ingest (`POST /api/v1/events`) decodes, validates, normalizes and
//! fingerprints events, then stores each request's batch in one transaction.
//! The read API under `/api/v1` answers with JSON; `/healthz`, `/readyz` and
//! `/metrics` serve operators; `/` serves the dashboard.
//!
//! Architecture invariant: the only crate that knows HTTP *and* SQL.

mod auth;
mod clusters;
mod error;
mod ingest;
pub mod jobs;
pub mod limits;
mod metrics;
pub mod openapi;
mod read;
pub mod retention;
mod token_bucket;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use jobs::ClusterJob;
use panicle_cluster::Params;
use panicle_rules::RuleSet;
use panicle_store::Store;
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
    /// Rate limits, quotas and the per-group cap every project gets unless
    /// it sets its own.
    pub limits: LimitDefaults,
    /// How long events are kept and how the purge runs.
    pub retention: RetentionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            public_url: "http://127.0.0.1:8471".into(),
            trace_url_template: None,
            regression_quiet_ms: 7 * 24 * 3_600_000,
            cluster: Params::default(),
            limits: LimitDefaults::default(),
            retention: RetentionConfig::default(),
        }
    }
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
    .with_state(state)
}

/// The process is up (the database may not be: see `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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
        AppState {
            store,
            config: Arc::new(config),
            metrics,
            job,
            rules: Arc::new(rules),
            limits,
            retention,
        }
    }
}
