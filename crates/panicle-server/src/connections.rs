//! The accept loop: HTTP/1 connections served by hyper with a header-read
//! timeout, at most `max_connections` at a time, and a graceful shutdown.
//!
//! `axum::serve` has no knob for either, so a slowloris client (headers that
//! never end) held a connection and its file descriptor forever. Here hyper
//! closes a connection whose request head is not complete within
//! `header_timeout` (the timer also runs while a keep-alive connection sits
//! idle), and a connection beyond the limit waits in the kernel's accept
//! queue until one ends: nothing is refused and nothing crashes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::metrics::Metrics;

/// What the accept loop needs besides the app.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every open connection finish its request and returns.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, 1 << 20);
    let slots = Arc::new(Semaphore::new(max));
    // Dropped when the shutdown signal comes: every connection task watches it.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        // A slot first: at the limit, new connections wait in the accept queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors or memory: back off, never exit.
                tracing::warn!(error = %e, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(app.clone().map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                req
            }));
        let builder = builder.clone();
        let metrics = metrics.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            metrics.http_connections.inc();
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.timed_out("header");
                }
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
            metrics.http_connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(stop_rx);
    // Every slot back means every connection has finished.
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// Accept errors that concern one connection only (the peer gave up).
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
