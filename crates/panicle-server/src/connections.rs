//! The accept loop: HTTP/1 connections served by hyper with a header-read
//! timeout, at most `max_connections` at a time, and a graceful shutdown.
//!
//! `axum::serve` has no knob for either, so a slowloris client (headers that
//! never end) held a connection and its file descriptor forever. Here hyper
//! closes a connection whose request head is not complete within
//! `header_timeout` (the timer also runs while a keep-alive connection sits
//! idle), and a connection beyond the limit waits in the kernel's accept
//! queue until one ends: nothing is refused and nothing crashes. A client
//! that stops reading its answer holds its slot only until a write makes no
//! progress for `write_timeout`, and a shutdown waits at most
//! `shutdown_grace` for open connections before it drops them.

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
    pub write_timeout: Duration,
    pub shutdown_grace: Duration,
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
    let max = fit_to_file_limit(limits.max_connections.clamp(1, 1 << 20));
    let slots = Arc::new(Semaphore::new(max));
    // Dropped when the shutdown signal comes: every connection task watches it.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let mut last_accept_warning: Option<std::time::Instant> = None;
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
                // Out of file descriptors or memory: back off, never exit,
                // and say so once in a while, not 10 times a second.
                let now = std::time::Instant::now();
                if last_accept_warning.is_none_or(|t| now - t > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    last_accept_warning = Some(now);
                }
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
        let grace = limits.shutdown_grace;
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        tokio::spawn(async move {
            metrics.http_connections.inc();
            let conn = builder.serve_connection(TokioIo::new(Box::pin(stream)), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => Some(result),
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(grace, conn).await.ok()
                }
            };
            if let Some(Err(e)) = result {
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
    // Every slot back means every connection has finished (each is bounded
    // by the grace; the outer bound only guards against a stuck task).
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        limits.shutdown_grace + Duration::from_secs(1),
        slots.acquire_many(all),
    )
    .await;
    Ok(())
}

/// File descriptors kept for the database pool, the spool of the WAL
/// checkpointer and logs, besides client connections.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard one and, if the connection
/// limit still does not fit, lowers it (once, with a warning): past the file
/// limit `accept` fails in a loop instead of connections waiting their turn.
fn fit_to_file_limit(max_connections: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return max_connections;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let fits = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if max_connections > fits {
        tracing::warn!(
            max_connections,
            open_file_limit = soft,
            using = fits.max(1),
            "the connection limit does not fit the open-file limit; raise `ulimit -n` to serve more"
        );
        return fits.max(1);
    }
    max_connections
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
