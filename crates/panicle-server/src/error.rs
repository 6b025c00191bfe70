//! Every error a client sees: a status and `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use panicle_debuginfo::InspectError;
use panicle_protocol::DecodeError;
use panicle_protocol::sentry::{EnvelopeError, SentryEventError};
use panicle_store::{DebugFileError, StoreError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown ingest key: send the key of your DSN in the X-Panicle-Key header")]
    BadIngestKey,
    #[error(
        "missing or unknown sentry_key: send the DSN's key in `X-Sentry-Auth: Sentry sentry_key=<key>`, `?sentry_key=` or the envelope header's `dsn`"
    )]
    BadSentryKey,
    #[error("malformed Sentry envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("malformed Sentry event: {0}")]
    SentryEvent(#[from] SentryEventError),
    #[error("the compressed body could not be decoded: {0}")]
    BadCompression(String),
    #[error(
        "missing or invalid API token: send `Authorization: Bearer <token>` (create one with `panicle token create`)"
    )]
    BadToken,
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "cross-site request refused: a request made with the session cookie that changes something must come from the dashboard (Origin or Referer of this server); scripts use `Authorization: Bearer`"
    )]
    CrossOrigin,
    #[error("event `{id}` is in several of your projects ({projects}): add `?project=ID`")]
    AmbiguousEvent { id: String, projects: String },
    #[error("request body is larger than the limit of {limit} bytes: send smaller batches")]
    TooLarge { limit: usize },
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("unsupported Content-Encoding `{0}`: send identity or gzip")]
    BadEncoding(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("invalid query parameter `{name}`: {message}")]
    BadParam { name: &'static str, message: String },
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("unknown query parameter `{name}`: this endpoint takes {known}")]
    UnknownParam { name: String, known: String },
    #[error("no Rust or Go crash found in the text: send the whole stderr from the panic line on")]
    NoCrash,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{what} `{id}` not found in your projects")]
    NotFoundNamed { what: &'static str, id: String },
    #[error(
        "no event `{0}` in your projects, nor a storm aggregate that folded it (events older than their project's retention are deleted)"
    )]
    UnknownEvent(String),
    #[error("{0}; the event will not be taken as sent: fix or drop it")]
    Unstorable(String),
    #[error("internal error: {0}")]
    Store(#[from] StoreError),
    /// A refused debug-file upload or removal (`debug_files.rs`); database
    /// errors arrive as `Store`.
    #[error(transparent)]
    DebugFile(DebugFileError),
    #[error("the clustering run failed: {0}")]
    Job(String),
    /// Too much ingest in flight (see `admission.rs`): 503 before the body
    /// is read.
    #[error(
        "the server is at its bound of {limit} ingest {bound} in flight and read nothing of this request: retry after Retry-After"
    )]
    Overloaded { bound: &'static str, limit: u64 },
    /// A rate limit or quota (see `limits.rs`): 429 with `Retry-After`.
    #[error("{message}")]
    Limited {
        code: &'static str,
        /// Which limit: `rate`, `daily_quota` or `monthly_quota`.
        limit: &'static str,
        message: String,
        /// Seconds until the request may fit.
        retry_after: u64,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadIngestKey | ApiError::BadSentryKey | ApiError::BadToken => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) | ApiError::CrossOrigin => StatusCode::FORBIDDEN,
            ApiError::AmbiguousEvent { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadGzip(_)
            | ApiError::BadCompression(_)
            | ApiError::Envelope(_)
            | ApiError::SentryEvent(_)
            | ApiError::Decode(_)
            | ApiError::BadParam { .. }
            | ApiError::BadRequest(_)
            | ApiError::UnknownParam { .. }
            | ApiError::NoCrash => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NotFoundNamed { .. } | ApiError::UnknownEvent(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Unstorable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::DebugFile(e) => match e {
                DebugFileError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                DebugFileError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                DebugFileError::BadBuildId(_) => StatusCode::BAD_REQUEST,
                DebugFileError::Io { .. } | DebugFileError::Store(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            ApiError::Store(StoreError::InvalidCursor) => StatusCode::BAD_REQUEST,
            ApiError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            // The database answered, and refused the statement: retrying the
            // same request may fail the same way (a client narrows it down).
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Job(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable snake_case code; also the `reason` label of rejection metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadIngestKey | ApiError::BadSentryKey => "invalid_ingest_key",
            ApiError::Envelope(e) => e.code(),
            ApiError::SentryEvent(e) => e.code(),
            ApiError::BadCompression(_) => "invalid_compression",
            ApiError::BadToken => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CrossOrigin => "cross_origin_request",
            ApiError::AmbiguousEvent { .. } => "ambiguous_event",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::BadGzip(_) => "invalid_gzip",
            ApiError::BadEncoding(_) => "unsupported_encoding",
            ApiError::Decode(e) => e.code(),
            ApiError::BadParam { .. } | ApiError::BadRequest(_) => "invalid_parameter",
            ApiError::UnknownParam { .. } => "unknown_parameter",
            ApiError::NoCrash => "no_crash_found",
            ApiError::NotFound(_) | ApiError::NotFoundNamed { .. } | ApiError::UnknownEvent(_) => {
                "not_found"
            }
            ApiError::Unstorable(_) => "unstorable_event",
            ApiError::DebugFile(e) => match e {
                DebugFileError::Invalid(InspectError::NotElf(_)) => "not_elf",
                DebugFileError::Invalid(InspectError::NoBuildId) => "no_build_id",
                DebugFileError::Invalid(InspectError::NoDebugInfo) => "no_debug_info",
                DebugFileError::Invalid(InspectError::Truncated(_)) => "truncated",
                DebugFileError::TooLarge { .. } => "too_large",
                DebugFileError::BadBuildId(_) => "invalid_parameter",
                DebugFileError::Io { .. } | DebugFileError::Store(_) => "debug_file_storage_failed",
            },
            ApiError::Store(StoreError::InvalidCursor) => "invalid_cursor",
            ApiError::Store(e) if e.is_unavailable() => "storage_unavailable",
            ApiError::Store(_) => "database_error",
            ApiError::Job(_) => "clustering_failed",
            ApiError::Limited { code, .. } => code,
            ApiError::Overloaded { .. } => "overloaded",
        }
    }
}

impl From<DebugFileError> for ApiError {
    fn from(e: DebugFileError) -> Self {
        match e {
            DebugFileError::Store(e) => ApiError::Store(e),
            other => ApiError::DebugFile(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(false)
    }
}

impl ApiError {
    /// The response; `sentry` adds Sentry's `detail` beside `error`, which
    /// Sentry SDKs log.
    pub(crate) fn respond(self, sentry: bool) -> Response {
        let status = self.status();
        // An overload refusal is the server working as meant (counted in
        // /metrics); a line each would flood the log when it matters most.
        if status.is_server_error() && !matches!(self, ApiError::Overloaded { .. }) {
            tracing::error!(error = %self, "request failed");
        }
        let message = match &self {
            ApiError::Store(e @ StoreError::InvalidCursor) => e.to_string(),
            // Do not leak database internals; the log has them.
            ApiError::Store(e) if e.is_unavailable() => {
                "the database is unavailable; retry later".to_string()
            }
            ApiError::Store(e) => format!(
                "the database refused the request ({}); see the server log",
                e.refusal_reason()
            ),
            // The server's paths are its own; the log has them.
            ApiError::DebugFile(DebugFileError::Io { action, .. }) => format!(
                "the server could not store the debug file ({action} failed); see the server log"
            ),
            other => other.to_string(),
        };
        let mut error = json!({"code": self.code(), "message": message});
        if let ApiError::Limited {
            limit, retry_after, ..
        } = &self
        {
            error["limit"] = json!(limit);
            error["retry_after"] = json!(retry_after);
        }
        let mut body = json!({ "error": error });
        if sentry {
            body["detail"] = json!(message);
        }
        let body = Json(body);
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::Limited { retry_after, .. } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        response
    }
}

/// `Query` whose rejection is an [`ApiError`]: a malformed query string gets
/// the same `{"error":{"code","message"}}` body as every other error.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// [`ApiQuery`] that refuses a parameter the endpoint does not take: 400
/// `unknown_parameter` naming it. A filter the server ignored silently
/// (`/api/v1/events?pod=…`) answered every event as if it had matched; the
/// known names are the ones the OpenAPI document lists (`IntoParams`), so
/// the check and the documentation cannot drift apart.
pub struct ReadQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ReadQuery<T>
where
    T: serde::de::DeserializeOwned + utoipa::IntoParams,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let known: Vec<String> = T::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        for (name, _) in pairs.0 {
            if !known.contains(&name) {
                return Err(ApiError::UnknownParam {
                    name: name.chars().take(64).collect(),
                    known: known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let ApiQuery(v) = ApiQuery::<T>::from_request_parts(parts, state).await?;
        Ok(ReadQuery(v))
    }
}
