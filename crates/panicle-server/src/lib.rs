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
mod metrics;
mod read;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use jobs::ClusterJob;
use panicle_cluster::Params;
use panicle_rules::RuleSet;
use panicle_store::Store;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use metrics::Metrics;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            public_url: "http://127.0.0.1:8471".into(),
            trace_url_template: None,
            regression_quiet_ms: 7 * 24 * 3_600_000,
            cluster: Params::default(),
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
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(read::readyz))
        .route("/metrics", get(metrics::render))
        .route(
            "/api/v1/events",
            post(ingest::post_events).get(read::list_events),
        )
        .route("/api/v1/events/text", post(ingest::post_text))
        .route("/api/v1/events/{id}", get(read::get_event))
        .route(
            "/api/v1/session",
            post(auth::sign_in).get(auth::whoami).delete(auth::sign_out),
        )
        .route("/api/v1/groups", get(read::list_groups))
        .route("/api/v1/groups/{id}", get(read::get_group))
        .route("/api/v1/projects", get(clusters::list_projects))
        .route("/api/v1/clusters", get(clusters::list_clusters))
        .route("/api/v1/clusters/recompute", post(clusters::recompute))
        .route("/api/v1/clusters/{id}", get(clusters::get_cluster))
        .route(
            "/api/v1/clusters/{id}/events",
            get(clusters::cluster_events),
        )
        .route(
            "/api/v1/clusters/{id}/heatmap",
            get(clusters::cluster_heatmap),
        )
        .route("/api/v1/clusters/{id}/paths", get(clusters::cluster_paths))
        .fallback(web::fallback)
        .with_state(state)
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
        AppState {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            job,
            rules: Arc::new(rules),
        }
    }
}
