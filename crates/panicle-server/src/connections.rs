//! The accept loop: HTTP/1 connections served by hyper with a header-read
//! timeout, at most `max_connections` at a time, and a graceful shutdown.
//!
//! `axum::serve` has no knob for either, so a slowloris client (headers that
//! never end) held a connection and its file descriptor forever. Here hyper
//! closes a connection whose request head is not complete within
//! `header_timeout` (the timer also runs while a keep-alive connection sits
//! idle). At the limit a new connection takes the place of the one that has
//! waited longest for a request head (a slowloris or an idle keep-alive;
//! one in the middle of a request is never cut), and only when every
//! connection is busy with a request does it wait for one to end: nothing is
//! refused and nothing crashes. A client
//! that stops reading its answer holds its slot only until a write makes no
//! progress for `write_timeout`, and a shutdown waits at most
//! `shutdown_grace` for open connections before it drops them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
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
    let idle = Arc::new(IdleConnections::default());
    loop {
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
        // At the limit: the connection idle longest makes room; while every
        // one is inside a request (or idle only a moment), wait for one to end.
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break Some(slot);
            }
            let evicted = idle.close_oldest(EVICTABLE_AFTER);
            if evicted {
                metrics.timed_out("evicted");
            }
            let wait = if evicted {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            };
            tokio::select! {
                slot = slots.clone().acquire_owned() => break slot.ok(),
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(slot) = slot else { break };
        let _ = stream.set_nodelay(true);
        let (id, activity) = idle.register();
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    req
                })
                .map_future({
                    let activity = activity.clone();
                    move |answer| {
                        // Busy from the head until the body is written out.
                        let busy = activity.begin();
                        async move {
                            let answer: Result<axum::response::Response, _> = answer.await;
                            answer.map(|r| {
                                r.map(|body| axum::body::Body::new(BusyBody { body, _busy: busy }))
                            })
                        }
                    }
                }),
        );
        let builder = builder.clone();
        let metrics = metrics.clone();
        let mut stop = stop_rx.clone();
        let grace = limits.shutdown_grace;
        let idle = idle.clone();
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
                // Idle (waiting for a head) for a while: dropped at once;
                // hyper's graceful shutdown would wait for the head.
                () = activity.evicted.notified() => None,
            };
            idle.remove(id);
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

/// The open connections and since when each has waited for a request head,
/// so that at the limit the longest-waiting one can be asked to close.
#[derive(Default)]
struct IdleConnections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

/// One connection: requests in progress, when it last became idle, and how
/// to ask it to close.
struct Activity {
    in_requests: AtomicUsize,
    idle_since: Mutex<Instant>,
    evicted: Notify,
}

/// Held while a request is answered; its drop makes the connection idle.
struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_requests.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

/// A response body that keeps its connection busy until it is written out
/// (or dropped with the connection).
struct BusyBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.idle_since.lock() {
            *since = Instant::now();
        }
        self.0.in_requests.fetch_sub(1, Ordering::AcqRel);
    }
}

impl IdleConnections {
    fn register(&self) -> (u64, Arc<Activity>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            in_requests: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evicted: Notify::new(),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, activity.clone());
        }
        (id, activity)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Asks the connection that has waited longest for a request head, for
    /// at least `idle_for`, to close; false when there is none (every
    /// connection is inside a request, or has been idle only a moment: a
    /// response may still be on its way out).
    fn close_oldest(&self, idle_for: Duration) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        let now = Instant::now();
        let oldest = open
            .iter()
            .filter(|(_, a)| a.in_requests.load(Ordering::Acquire) == 0)
            .filter_map(|(id, a)| a.idle_since.lock().ok().map(|since| (*since, *id)))
            .filter(|(since, _)| now.duration_since(*since) >= idle_for)
            .min();
        match oldest.and_then(|(_, id)| open.remove(&id)) {
            Some(activity) => {
                // `notify_one` keeps the permit if the task is not waiting yet.
                activity.evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

/// How long a connection must have waited for a request head before it
/// may be closed to make room (a connection is busy until its answer is
/// written out, so this only spares one that just finished).
const EVICTABLE_AFTER: Duration = Duration::from_millis(50);

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
