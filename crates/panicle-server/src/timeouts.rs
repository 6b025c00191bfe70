//! Body-read and whole-request timeouts, answered with the usual JSON error.
//!
//! The body gets a deadline (tower-http's `DeadlineBody`, counted from the
//! request head): a client that stalls mid-body is answered 408
//! `request_body_timeout` and its connection closed. Handlers read the whole
//! body before they touch the database, so a stalled body never holds a
//! pooled connection. The whole request gets `request_timeout`; when that
//! fires, the body had arrived (its deadline is shorter), so the server was
//! the slow one: 503 `request_timeout` with `Retry-After`, which clients
//! retry. Ingest stays correct when the handler is cut: an uncommitted
//! transaction rolls back, and a resent event id is stored once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;
use tower_http::timeout::{DeadlineBody, TimeoutError};

use crate::metrics::Metrics;

/// The two deadlines of one request.
#[derive(Clone)]
pub struct RequestTimeouts {
    pub body: Duration,
    pub request: Duration,
    pub metrics: Arc<Metrics>,
}

/// `axum::middleware::from_fn_with_state` body: applies both deadlines.
pub async fn enforce(
    State(limits): State<RequestTimeouts>,
    request: Request,
    next: Next,
) -> Response {
    let body_timed_out = Arc::new(AtomicBool::new(false));
    let flag = body_timed_out.clone();
    let request = request.map(|body| {
        Body::new(DeadlineBody::new(limits.body, body).map_err(move |e| {
            if e.is::<TimeoutError>() {
                flag.store(true, Ordering::Relaxed);
            }
            e
        }))
    });
    let answered = tokio::time::timeout(limits.request, next.run(request)).await;
    // However the handler reported the failed read, the client hears why.
    if body_timed_out.load(Ordering::Relaxed) {
        limits.metrics.timed_out("body");
        let message = format!(
            "the request body did not arrive within {} s: send it at once, or smaller",
            limits.body.as_secs_f64()
        );
        let mut response = error(
            StatusCode::REQUEST_TIMEOUT,
            "request_body_timeout",
            &message,
        );
        // The rest of the body may still be on its way: do not reuse the connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    match answered {
        Ok(response) => response,
        Err(_) => {
            limits.metrics.timed_out("request");
            tracing::warn!(
                seconds = limits.request.as_secs_f64(),
                "a request was cut at the whole-request timeout"
            );
            let message = format!(
                "the server did not answer within {} s; retry later",
                limits.request.as_secs_f64()
            );
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "request_timeout", &message);
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            // The body may not have been read to its end.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The `{"error":{"code","message"}}` body every error has (see `ApiError`).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
