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
//!
//! A debug-file upload (`POST /api/v1/debug-files`, up to 1 GiB) cannot
//! arrive within a body deadline meant for event batches. Its body is
//! bounded by a stall timeout instead: the same `body` duration, counted
//! from the last bytes received (408 when nothing comes for that long), and
//! the whole request by [`UPLOAD_REQUEST_TIMEOUT`] (1 GiB at ~300 KB/s).
//! A 300 MB upload over loopback takes seconds and is never cut; a client
//! dripping a byte now and then holds its connection an hour at most.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
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

/// The whole-request bound of a debug-file upload.
pub const UPLOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

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
    let upload = crate::debug_files::is_upload(request.method(), request.uri().path());
    let request = if upload {
        request.map(|body| Body::new(StallBody::new(limits.body, body, flag)))
    } else {
        request.map(|body| {
            Body::new(DeadlineBody::new(limits.body, body).map_err(move |e| {
                if e.is::<TimeoutError>() {
                    flag.store(true, Ordering::Relaxed);
                }
                e
            }))
        })
    };
    let bound = if upload {
        UPLOAD_REQUEST_TIMEOUT.max(limits.request)
    } else {
        limits.request
    };
    let answered = tokio::time::timeout(bound, next.run(request)).await;
    // However the handler reported the failed read, the client hears why.
    if body_timed_out.load(Ordering::Relaxed) {
        limits.metrics.timed_out("body");
        let message = if upload {
            format!(
                "the upload stalled: no bytes arrived for {} s; send it again",
                limits.body.as_secs_f64()
            )
        } else {
            format!(
                "the request body did not arrive within {} s: send it at once, or smaller",
                limits.body.as_secs_f64()
            )
        };
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
                seconds = bound.as_secs_f64(),
                "a request was cut at the whole-request timeout"
            );
            let message = format!(
                "the server did not answer within {} s; retry later",
                bound.as_secs_f64()
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

/// A body that fails when no frame arrives for `idle`: the deadline of an
/// upload whose length makes a whole-body deadline wrong.
struct StallBody {
    inner: Body,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl StallBody {
    fn new(idle: Duration, inner: Body, timed_out: Arc<AtomicBool>) -> StallBody {
        StallBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            timed_out,
        }
    }
}

/// What a stalled upload body fails with.
#[derive(Debug, thiserror::Error)]
#[error("no bytes of the body arrived for the body timeout")]
struct Stalled;

impl http_body::Body for StallBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
