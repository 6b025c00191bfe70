//! The Sentry protocol's ingest endpoints, so official Sentry SDKs report
//! with their DSN pointed at Panicle: `POST /api/{project_id}/envelope/`
//! and `POST /api/{project_id}/store/`.
//!
//! Events go through the native path (limits, quotas, one transaction);
//! every other item type is accepted and counted, not stored, so SDKs
//! neither retry nor log errors. Errors answer Sentry's `{"detail"}` next to
//! Panicle's `{"error":{"code","message"}}`; a 429 carries `Retry-After` and
//! `X-Sentry-Rate-Limits`, which Sentry SDKs obey.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use panicle_protocol::decode::validate;
use panicle_protocol::sentry::envelope::{Item, ItemType};
use panicle_protocol::sentry::{Fallback, auth, parse_envelope, parse_event};
use panicle_store::{NewEvent, Project};
use serde_json::json;

use crate::ingest::{StoredEvents, attach_in_background, read_body, store_events, to_new_event};
use crate::{ApiError, AppState};

/// An error in Sentry's shape (`detail`) and Panicle's (`error`).
pub struct SentryError(pub ApiError);

impl From<ApiError> for SentryError {
    fn from(e: ApiError) -> Self {
        SentryError(e)
    }
}

impl IntoResponse for SentryError {
    fn into_response(self) -> Response {
        let e = self.0;
        let retry_after = match &e {
            ApiError::Limited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let code = e.code();
        let mut response = e.respond(true);
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            // `retry_after:categories:scope:reason`; no category: all of them.
            let secs = retry_after.unwrap_or(60);
            if let Ok(v) = HeaderValue::from_str(&format!("{secs}::organization:{code}")) {
                response.headers_mut().insert("x-sentry-rate-limits", v);
            }
        }
        response
    }
}

/// Refuses a body whose declared length is over the limit before it is
/// read or decompressed (the decompression layer drops the header).
pub async fn refuse_declared_too_large(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let e = ApiError::TooLarge { limit };
        state.metrics.rejected(e.code());
        return SentryError(e).into_response();
    }
    next.run(request).await
}

/// The key an SDK sent in a header or the query, when it sent one there.
fn header_or_query_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::sentry_key)
            .map(str::to_string)
    };
    from_header("x-sentry-auth")
        .or_else(|| from_header("authorization"))
        .or_else(|| query.and_then(auth::query_key).map(str::to_string))
}

/// The project of `key`, which must be the project of the path.
async fn project_for(state: &AppState, key: &str, path_project: &str) -> Result<Project, ApiError> {
    let project = state
        .ingest_keys
        .project(&state.store, key.trim())
        .await?
        .ok_or(ApiError::BadSentryKey)?;
    if path_project.trim().parse::<i64>().ok() != Some(project.id) {
        return Err(ApiError::Forbidden(format!(
            "this key belongs to project {}, not `{path_project}`: use the DSN of the project as given",
            project.id
        )));
    }
    Ok(project)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[utoipa::path(post, path = "/api/{project_id}/envelope/", tag = "sentry",
    params(("project_id" = String, Path, description = "The project id of the DSN"),
           ("sentry_key" = Option<String>, Query, description = "The DSN's key, when not in `X-Sentry-Auth` or the envelope header's `dsn`"),
           ("X-Sentry-Auth" = Option<String>, Header, description = "`Sentry sentry_key=<key>, sentry_version=7, …`")),
    request_body(content = String, content_type = "application/x-sentry-envelope", description = "A Sentry envelope; `Content-Encoding` gzip, deflate or br. `event` items are stored as schema-v1 events; `transaction`, `session(s)`, `client_report`, `attachment`, `check_in`, `span`, `log` and unknown items are accepted and counted, not stored"),
    responses((status = 200, description = "Accepted: `{\"id\": \"<event_id>\"}`", body = Object),
              (status = 400, description = "Malformed envelope or event (`empty_envelope`, `invalid_envelope_header`, `invalid_item_header`, `item_length_past_end`, `invalid_json`, …); nothing of it stored. Body: `{detail, error:{code,message}}`", body = crate::openapi::ErrorBody),
              (status = 401, description = "Missing or unknown key", body = crate::openapi::ErrorBody),
              (status = 403, description = "The key is not the path's project's", body = crate::openapi::ErrorBody),
              (status = 413, description = "Body over the limit, before or after decompression", body = crate::openapi::ErrorBody),
              (status = 429, description = "Over the project's rate limit or quota: `Retry-After` and `X-Sentry-Rate-Limits`", body = crate::openapi::ErrorBody),
              (status = 503, description = "The database is unavailable; retry after `Retry-After`", body = crate::openapi::ErrorBody)))]
pub async fn post_envelope(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, SentryError> {
    let result = accept(
        &state,
        Shape::Envelope,
        &project_id,
        query.as_deref(),
        &headers,
        body,
    )
    .await;
    if let Err(e) = &result {
        state.metrics.rejected(e.code());
    }
    result.map_err(SentryError)
}

#[utoipa::path(post, path = "/api/{project_id}/store/", tag = "sentry",
    params(("project_id" = String, Path, description = "The project id of the DSN"),
           ("sentry_key" = Option<String>, Query, description = "The DSN's key, when not in `X-Sentry-Auth`"),
           ("X-Sentry-Auth" = Option<String>, Header, description = "`Sentry sentry_key=<key>, sentry_version=7, …`")),
    request_body(content = Object, description = "One Sentry event (older SDKs); `Content-Encoding` gzip, deflate or br"),
    responses((status = 200, description = "Stored: `{\"id\": \"<event_id>\"}`", body = Object),
              (status = 400, description = "Not a Sentry event (`invalid_json`, `invalid_event`, `invalid_field`)", body = crate::openapi::ErrorBody),
              (status = 401, description = "Missing or unknown key", body = crate::openapi::ErrorBody),
              (status = 403, description = "The key is not the path's project's", body = crate::openapi::ErrorBody),
              (status = 413, description = "Body over the limit, before or after decompression", body = crate::openapi::ErrorBody),
              (status = 429, description = "Over the project's rate limit or quota: `Retry-After` and `X-Sentry-Rate-Limits`", body = crate::openapi::ErrorBody),
              (status = 503, description = "The database is unavailable; retry after `Retry-After`", body = crate::openapi::ErrorBody)))]
pub async fn post_store(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, SentryError> {
    let result = accept(
        &state,
        Shape::Store,
        &project_id,
        query.as_deref(),
        &headers,
        body,
    )
    .await;
    if let Err(e) = &result {
        state.metrics.rejected(e.code());
    }
    result.map_err(SentryError)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Envelope,
    Store,
}

async fn accept(
    state: &AppState,
    shape: Shape,
    path_project: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    // With the key in a header or the query, refuse before reading.
    let mut project = None;
    let mut admitted = None;
    if let Some(key) = header_or_query_key(headers, query) {
        let p = project_for(state, &key, path_project).await?;
        admitted = Some(
            state
                .limits
                .precheck(&state.store, &state.metrics, &p)
                .await?,
        );
        project = Some(p);
    }
    let raw = read_body(headers, body, state.config.max_body_bytes).await?;
    let received = now_rfc3339();
    let fresh_id = uuid::Uuid::new_v4().simple().to_string();

    // Every item is judged before anything is stored.
    let mut mapped = Vec::new();
    let mut counted: Vec<ItemType> = Vec::new();
    let answer_id: Option<String>;
    match shape {
        Shape::Store => {
            let fallback = Fallback {
                event_id: &fresh_id,
                timestamp: &received,
            };
            let event = parse_event(&raw, fallback)?;
            answer_id = Some(event.event_id.clone());
            mapped.push(event);
            counted.push(ItemType::Event);
        }
        Shape::Envelope => {
            let envelope = parse_envelope(&raw)?;
            if project.is_none() {
                let key = envelope
                    .dsn()
                    .and_then(auth::dsn_key)
                    .ok_or(ApiError::BadSentryKey)?;
                let p = project_for(state, key, path_project).await?;
                admitted = Some(
                    state
                        .limits
                        .precheck(&state.store, &state.metrics, &p)
                        .await?,
                );
                project = Some(p);
            }
            let envelope_id = envelope.event_id().map(str::to_string);
            let fallback_id = envelope_id.clone().unwrap_or(fresh_id.clone());
            let mut first_event_id = None;
            for Item {
                item_type, payload, ..
            } in &envelope.items
            {
                counted.push(*item_type);
                if *item_type == ItemType::Event {
                    let event = parse_event(
                        payload,
                        Fallback {
                            event_id: &fallback_id,
                            timestamp: &received,
                        },
                    )?;
                    first_event_id.get_or_insert_with(|| event.event_id.clone());
                    mapped.push(event);
                }
            }
            answer_id = envelope_id.or(first_event_id);
        }
    }
    let (Some(project), Some(admitted)) = (project, admitted) else {
        return Err(ApiError::BadSentryKey);
    };
    let max_age_ms = state.config.max_event_age_ms(admitted.retention_days);
    let received_ms = crate::now_ms();
    let mut events: Vec<NewEvent> = Vec::with_capacity(mapped.len());
    for event in mapped {
        let decoded = validate(event).map_err(|(field, message)| {
            ApiError::Decode(panicle_protocol::DecodeError::InvalidField {
                field: field.to_string(),
                message,
            })
        })?;
        events.push(to_new_event(decoded, received_ms, max_age_ms));
    }
    state
        .limits
        .admit(&state.metrics, &project, &admitted, events.len())?;
    let StoredEvents {
        outcome,
        unstorable,
    } = store_events(state, &project, &admitted, events).await?;
    attach_in_background(state, project.id, outcome.new_groups);
    if let Some((event_id, message)) = unstorable.first() {
        return Err(ApiError::Unstorable(format!("event {event_id}: {message}")));
    }
    let m = &state.metrics;
    m.events_accepted.inc_by(outcome.accepted.len() as u64);
    m.events_stored.inc_by(outcome.inserted as u64);
    m.events_duplicate
        .inc_by((outcome.accepted.len() - outcome.inserted) as u64);
    m.events_sampled.inc_by(outcome.sampled as u64);
    for t in counted {
        m.sentry_item(t.as_str());
    }
    Ok(Json(match answer_id {
        Some(id) => json!({ "id": id }),
        None => json!({}),
    }))
}
