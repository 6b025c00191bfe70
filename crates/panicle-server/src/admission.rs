//! Backpressure before the body is read (issue 20): at most
//! `max_ingest_requests` ingest requests and `max_ingest_bytes` of their
//! declared bodies are in the server at once. Past either, a request is
//! answered 503 `overloaded` with `Retry-After` before a byte of its body is
//! read, so an overload costs the clients a retry instead of costing the
//! server memory and every client a longer queue. Nothing is lost: the SDK,
//! `panicle run` and Sentry SDKs keep a refused event and retry it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, Metrics};

/// Seconds a refused client is asked to wait: an overload clears fast (a
/// request takes milliseconds), and clients add their own backoff.
const RETRY_AFTER_SECS: u64 = 1;

/// What is in flight, and the bounds.
pub struct IngestGate {
    max_requests: u64,
    max_bytes: u64,
    /// A body with no `Content-Length` counts as this (the body limit).
    undeclared_bytes: u64,
    requests: AtomicU64,
    bytes: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Held while a request is in; gives its share back when dropped.
pub struct Pass {
    gate: Arc<IngestGate>,
    bytes: u64,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.requests.fetch_sub(1, Ordering::AcqRel);
        self.gate.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.gate.publish();
    }
}

impl IngestGate {
    /// Zero for either bound: no bound of that kind.
    pub fn new(
        max_requests: u64,
        max_bytes: u64,
        undeclared_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Arc<IngestGate> {
        Arc::new(IngestGate {
            max_requests,
            max_bytes,
            undeclared_bytes,
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            metrics,
        })
    }

    /// Lets a request of `declared` body bytes in, or says which bound it
    /// hit. A request alone is always let in, however large (the body limit
    /// still applies to it).
    pub fn try_enter(self: &Arc<Self>, declared: u64) -> Result<Pass, &'static str> {
        let before = self.requests.fetch_add(1, Ordering::AcqRel);
        if self.max_requests > 0 && before >= self.max_requests {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return Err("requests");
        }
        let bytes_before = self.bytes.fetch_add(declared, Ordering::AcqRel);
        if self.max_bytes > 0
            && before > 0
            && bytes_before.saturating_add(declared) > self.max_bytes
        {
            self.bytes.fetch_sub(declared, Ordering::AcqRel);
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return Err("bytes");
        }
        self.publish();
        Ok(Pass {
            gate: self.clone(),
            bytes: declared,
        })
    }

    fn publish(&self) {
        let m = &self.metrics;
        m.ingest_in_flight
            .set(i64::try_from(self.requests.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        m.ingest_in_flight_bytes
            .set(i64::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    }
}

/// True for the routes that take events: ours and Sentry's.
pub fn is_ingest(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let path = path.trim_end_matches('/');
    if path == "/api/v1/events" || path == "/api/v1/events/text" {
        return true;
    }
    // `/api/{project_id}/envelope` and `/api/{project_id}/store`.
    let mut parts = path.trim_start_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("api"), Some(id), Some("envelope" | "store"), None)
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    )
}

/// `axum::middleware::from_fn_with_state` body: admits an ingest request
/// or answers 503 before its body is read.
pub async fn admit(State(gate): State<Arc<IngestGate>>, request: Request, next: Next) -> Response {
    if !is_ingest(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(gate.undeclared_bytes);
    match gate.try_enter(declared) {
        Ok(pass) => {
            let response = next.run(request).await;
            drop(pass);
            response
        }
        Err(bound) => {
            let e = ApiError::Overloaded {
                bound,
                limit: match bound {
                    "requests" => gate.max_requests,
                    _ => gate.max_bytes,
                },
            };
            gate.metrics.rejected(e.code());
            gate.metrics.overloaded(bound);
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            // Its body was not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_routes_are_told_apart() {
        for p in [
            "/api/v1/events",
            "/api/v1/events/",
            "/api/v1/events/text",
            "/api/42/envelope/",
            "/api/7/store/",
        ] {
            assert!(is_ingest(&Method::POST, p), "{p}");
        }
        for p in [
            "/api/v1/debug-files",
            "/api/v1/clusters",
            "/api/x/envelope/",
        ] {
            assert!(!is_ingest(&Method::POST, p), "{p}");
        }
        assert!(!is_ingest(&Method::GET, "/api/v1/events"));
    }

    #[test]
    fn bounds_hold_and_passes_give_back() {
        let gate = IngestGate::new(2, 1000, 500, Arc::new(Metrics::new()));
        // Alone, a request larger than the byte bound is let in.
        let big = gate.try_enter(5000).unwrap();
        assert_eq!(gate.try_enter(10).err(), Some("bytes"));
        drop(big);
        let a = gate.try_enter(400).unwrap();
        let b = gate.try_enter(400).unwrap();
        assert_eq!(gate.try_enter(1).err(), Some("requests"));
        drop(a);
        assert_eq!(gate.try_enter(700).err(), Some("bytes"));
        let c = gate.try_enter(600).unwrap();
        drop((b, c));
        assert_eq!(gate.requests.load(Ordering::SeqCst), 0);
        assert_eq!(gate.bytes.load(Ordering::SeqCst), 0);
    }
}
