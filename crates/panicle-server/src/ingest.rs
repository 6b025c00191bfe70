//! Ingest: decode → validate → normalize → fingerprint → store (one
//! transaction per request). Refusals (401/400/413/429) come before any 202;
//! an event answered 202 is committed. Rate limits and quotas: `limits.rs`.

use std::io::Read;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use flate2::read::GzDecoder;
use panicle_protocol::decode::Decoded;
use panicle_protocol::{decode_events, message_template, signature_frames};
use panicle_store::NewEvent;
use serde_json::json;

use crate::auth::IngestProject;
use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    request_body(content = Object, description = "One schema-v1 event or an array of them; `Content-Encoding: gzip` accepted"),
    responses((status = 202, description = "Accepted: `{accepted: [ids], stored: n}`; resent ids are stored once", body = Object),
              (status = 400, description = "Invalid JSON or field (named)", body = crate::openapi::ErrorBody),
              (status = 401, description = "Missing or unknown X-Panicle-Key", body = crate::openapi::ErrorBody),
              (status = 413, description = "Body over the limit, before or after gzip", body = crate::openapi::ErrorBody),
              (status = 429, description = "Over the project's rate limit (`rate_limited`) or quota (`quota_exceeded`); nothing of the batch was stored; `Retry-After` says when to retry", body = crate::openapi::ErrorBody)),
    security(("ingest_key" = [])))]
pub async fn post_events(
    State(state): State<AppState>,
    project: Result<IngestProject, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let result = accept(&state, project, &headers, body).await;
    if let Err(e) = &result {
        state.metrics.rejected(e.code());
    }
    result
}

async fn accept(
    state: &AppState,
    project: Result<IngestProject, ApiError>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let IngestProject(project) = project?;
    let admitted = state
        .limits
        .precheck(&state.store, &state.metrics, &project)
        .await?;
    let limit = state.config.max_body_bytes;
    let raw = read_body(headers, body, limit).await?;
    let decoded = decode_events(&raw)?;
    let events: Vec<NewEvent> = decoded.into_iter().map(to_new_event).collect();
    state
        .limits
        .admit(&state.metrics, &project, &admitted, events.len())?;
    let outcome = state
        .limits
        .insert(&state.store, &state.metrics, &project, &admitted, &events)
        .await?;
    attach_in_background(state, project.id, outcome.inserted);
    let m = &state.metrics;
    m.events_accepted.inc_by(outcome.accepted.len() as u64);
    m.events_stored.inc_by(outcome.inserted as u64);
    m.events_duplicate
        .inc_by((outcome.accepted.len() - outcome.inserted) as u64);
    m.events_sampled.inc_by(outcome.sampled as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": outcome.accepted, "stored": outcome.inserted})),
    ))
}

/// New events may have made new groups: put them in clusters without
/// holding up the client's 202.
fn attach_in_background(state: &AppState, project_id: i64, inserted: usize) {
    if inserted == 0 || !state.job.schedule_attach(project_id) {
        // Nothing new, or an attach for this project is already waiting to run.
        return;
    }
    let job = state.job.clone();
    tokio::spawn(async move {
        if let Err(e) = job.attach_scheduled(project_id).await {
            tracing::warn!(error = %e, project_id, "attaching new groups failed; the next run places them");
        }
    });
}

/// Reads the body within `limit` bytes, before and after gzip decoding (so a
/// small gzip bomb is refused as well).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = ApiError::TooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large);
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge { limit })?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(bytes.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            GzDecoder::new(&bytes[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadGzip(e.to_string()))?;
            if out.len() > limit {
                return Err(too_large);
            }
            Ok(out)
        }
        other => Err(ApiError::BadEncoding(other.to_string())),
    }
}

/// Most panics one event may stand for: a storm is counted, not trusted
/// without bound (counts are summed in BIGINT columns).
pub const MAX_EVENT_WEIGHT: i64 = 1_000_000;

/// Derives the stored columns from a validated wire event.
pub fn to_new_event(decoded: Decoded) -> NewEvent {
    let Decoded {
        event,
        timestamp_ms,
    } = decoded;
    let signature = signature_frames(&event);
    let resource = |key: &str| event.resource_str(key).map(str::to_string);
    NewEvent {
        event_id: event.event_id.clone(),
        timestamp_ms,
        platform: event
            .platform
            .map(|p| p.as_str())
            .unwrap_or("other")
            .to_string(),
        kind: event
            .kind
            .map(|k| k.as_str())
            .unwrap_or("panic")
            .to_string(),
        message: event.message.clone(),
        service: resource("service.name"),
        environment: resource("deployment.environment")
            .or_else(|| resource("deployment.environment.name")),
        release: event.release.clone(),
        trace_id: event
            .trace
            .as_ref()
            .map(|t| t.trace_id.to_ascii_lowercase()),
        pod: resource("k8s.pod.name"),
        node: resource("k8s.node.name"),
        route: event.request.as_ref().and_then(|r| r.route.clone()),
        depth: event.frames.len() as i64,
        // Storm control: one event standing for `count` panics.
        weight: event
            .extra
            .get("count")
            .and_then(serde_json::Value::as_i64)
            .map(|n| n.clamp(1, MAX_EVENT_WEIGHT))
            .unwrap_or(1),
        fingerprint: panicle_protocol::fingerprint(&event),
        template: message_template(&event.message),
        culprit: signature.first().cloned(),
        payload: serde_json::to_string(&event).unwrap_or_else(|_| "{}".into()),
        signature,
    }
}

/// Metadata a log shipper adds to raw crash text.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TextParams {
    pub service: Option<String>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    pub container: Option<String>,
    /// Client-chosen event id, for idempotent resends (default: new).
    pub event_id: Option<String>,
    /// When the crash happened, RFC 3339 (default: now).
    pub timestamp: Option<String>,
}

/// `POST /api/v1/events/text`: raw crash text (a Rust panic or a Go
/// panic/fatal error dump) in the body, metadata in the query.
#[utoipa::path(post, path = "/api/v1/events/text", tag = "ingest", params(TextParams),
    request_body(content = String, description = "Raw crash text: a Rust panic or a Go panic / fatal error dump", content_type = "text/plain"),
    responses((status = 202, description = "Accepted: `{accepted: [id], stored: n}`", body = Object),
              (status = 400, description = "No crash found in the text", body = crate::openapi::ErrorBody),
              (status = 401, description = "Missing or unknown X-Panicle-Key", body = crate::openapi::ErrorBody),
              (status = 429, description = "Over the project's rate limit or quota; `Retry-After` says when to retry", body = crate::openapi::ErrorBody)),
    security(("ingest_key" = [])))]
pub async fn post_text(
    State(state): State<AppState>,
    project: Result<IngestProject, ApiError>,
    crate::error::ApiQuery(params): crate::error::ApiQuery<TextParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let result = accept_text(&state, project, params, &headers, body).await;
    if let Err(e) = &result {
        state.metrics.rejected(e.code());
    }
    result
}

async fn accept_text(
    state: &AppState,
    project: Result<IngestProject, ApiError>,
    params: TextParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    use panicle_protocol::crashtext::parse_crash;
    use serde_json::Value;

    let IngestProject(project) = project?;
    let admitted = state
        .limits
        .precheck(&state.store, &state.metrics, &project)
        .await?;
    let raw = read_body(headers, body, state.config.max_body_bytes).await?;
    let text = String::from_utf8_lossy(&raw);
    let crash = parse_crash(&text).ok_or(ApiError::NoCrash)?;
    let event_id = params
        .event_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let timestamp = params.timestamp.clone().unwrap_or_else(|| {
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    });
    let mut event = crash.into_event(event_id, timestamp);
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value.as_ref().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            event
                .resource
                .insert(key.to_string(), Value::String(v.to_string()));
        }
    };
    put("service.name", &params.service);
    put("deployment.environment", &params.environment);
    put("k8s.pod.name", &params.pod);
    put("k8s.namespace.name", &params.namespace);
    put("k8s.node.name", &params.node);
    put("k8s.container.name", &params.container);
    event.release = params.release.clone();
    event.tags.insert("capture".into(), "text".into());
    let decoded = panicle_protocol::decode::validate(event).map_err(|(field, message)| {
        ApiError::Decode(panicle_protocol::DecodeError::InvalidField {
            field: field.to_string(),
            message,
        })
    })?;
    state.limits.admit(&state.metrics, &project, &admitted, 1)?;
    let outcome = state
        .limits
        .insert(
            &state.store,
            &state.metrics,
            &project,
            &admitted,
            &[to_new_event(decoded)],
        )
        .await?;
    attach_in_background(state, project.id, outcome.inserted);
    state.metrics.events_accepted.inc();
    state.metrics.events_stored.inc_by(outcome.inserted as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": outcome.accepted, "stored": outcome.inserted})),
    ))
}
