//! `shop`: an axum service as a team would write it, with Panicle's hook and
//! layer, tracing spans exported through OpenTelemetry, handlers that panic
//! in nested async fns and blocks, and background work on `tokio::spawn`,
//! `spawn_blocking` and a `std::thread`.
//!
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 POD_NAME=shop-a cargo run -p shop   # prints `listening on http://…`
//! ```

mod checkout;
mod jobs;
mod order;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// One span per request, so every request has a trace of its own.
async fn traced(request: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", path = %request.uri().path());
    next.run(request).instrument(span).await
}

fn app() -> Router {
    Router::new()
        .route("/orders/{id}", get(order::show))
        .route("/checkout/{items}", get(checkout::total))
        .route("/jobs/task", get(jobs::run_task))
        .route("/jobs/blocking", get(jobs::run_blocking))
        .route("/jobs/thread", get(jobs::run_thread))
        .route("/health", get(|| async { "ok" }))
        .layer(panicle::PanicleLayer::new())
        .layer(middleware::from_fn(traced))
}

#[tokio::main]
async fn main() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")));
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("tracing already set up: {e}");
    }
    let _guard = panicle::init(panicle::Options::from_env());
    let listen = std::env::var("SHOP_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(e) => eprintln!("no local address: {e}"),
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app())
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server failed: {e}");
    }
}
