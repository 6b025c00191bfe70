//! OpenTelemetry and Panicle in one axum service: spans go to stdout
//! (opentelemetry-stdout; a collector takes opentelemetry-otlp's exporter
//! in its place), and a panic carries the trace and span ids of the request
//! it happened in, with the panic recorded on that span as an `exception`
//! event, so the trace backend and Panicle point at each other.
//!
//! A service's `Cargo.toml` for the same (the SDK's opentelemetry and
//! tracing-opentelemetry versions; `panicle::otel` re-exports both):
//! ```toml
//! panicle = { version = "0.1", features = ["axum", "otel"] }
//! opentelemetry_sdk = { version = "0.33", features = ["trace"] }
//! opentelemetry-stdout = { version = "0.33", default-features = false, features = ["trace"] }
//! tracing = "0.1"
//! tracing-subscriber = { version = "0.3", default-features = false, features = ["registry"] }
//! ```
//!
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example otel_axum            # serve on 127.0.0.1:3000
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example otel_axum -- once    # one request, then exit
//! ```

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use opentelemetry_sdk::trace::SdkTracerProvider;
use panicle::otel::opentelemetry::trace::TracerProvider as _;
use panicle::otel::tracing_opentelemetry;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

mod orders {
    #[inline(never)]
    pub fn reserve(id: u32) -> String {
        let stock: Option<u32> = std::hint::black_box(None);
        format!("reserved {id}: {}", stock.unwrap())
    }
}

/// Each request in its own span (tower-http's `TraceLayer` does this for
/// every route of a real service).
async fn order(Path(id): Path<u32>) -> String {
    async move { orders::reserve(id) }
        .instrument(tracing::info_span!("GET /orders/{id}", order.id = id))
        .await
}

#[tokio::main]
async fn main() {
    // Tracing first, so the hook finds the span a panic happens in.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")));
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("tracing was set up already: {e}");
    }
    let _guard = panicle::init(panicle::Options::from_env().with_release(panicle::release_name!()));

    let app = Router::new()
        .route("/orders/{id}", get(order))
        .layer(panicle::PanicleLayer::new());
    let once = std::env::args().nth(1).as_deref() == Some("once");
    let listen = if once {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    println!("listening on http://{addr}");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    if once {
        let answer = tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build(),
            );
            let mut resp = agent.get(format!("http://{addr}/orders/42")).call()?;
            let body = resp.body_mut().read_to_string()?;
            Ok::<_, ureq::Error>((resp.status(), body))
        })
        .await;
        match answer {
            Ok(Ok((status, body))) => println!("{status} {body}"),
            Ok(Err(e)) => eprintln!("request failed: {e}"),
            Err(e) => eprintln!("request task failed: {e}"),
        }
    } else {
        let _ = server.await;
    }
    panicle::flush(panicle::DEFAULT_FLUSH_TIMEOUT);
    // Exports what is left (the request's span, its `exception` event included).
    if let Err(e) = provider.shutdown() {
        eprintln!("tracer shutdown: {e}");
    }
}
