//! The Panicle server: an axum app over a [`Store`].
//!
//! Ingest (`POST /api/v1/events`) decodes, validates, normalizes and
//! fingerprints events, then stores each request's batch in one transaction.
//! The read API under `/api/v1` answers with JSON; `/healthz`, `/readyz` and
//! `/metrics` serve operators; `/` serves the dashboard.
//!
//! Architecture invariant: the only crate that knows HTTP *and* SQL.

mod auth;
mod error;
mod ingest;
mod metrics;
mod read;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use panicle_store::Store;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use metrics::Metrics;

/// Settings a running server needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body, compressed or not (default 1 MiB).
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
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
    pub fn new(store: Store, config: ServerConfig) -> AppState {
        AppState {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
        }
    }
}
