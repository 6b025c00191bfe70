//! Ingest: decode → validate → normalize → fingerprint → store (in a
//! transaction shared with the requests that arrive alongside: `commit.rs`). Refusals (401/400/413/429) come before any 202;
//! an event answered 202 is committed. Rate limits and quotas: `limits.rs`.

use std::io::Read;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use flate2::read::GzDecoder;
use panicle_protocol::decode::{Decoded, event_weight, storable_str, stored_timestamp};
use panicle_protocol::{DecodedBody, decode_body, message_template, signature_frames};
use panicle_store::{NewEvent, StormRange};
use serde_json::json;

use crate::auth::IngestProject;
use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/api/v1/events", tag = "ingest",
    params(("X-Panicle-Partial-Batch" = Option<String>, Header, description = "`1`: judge each event of an array alone and list the refused ones in the 202's `rejected` (without it, one invalid event refuses the whole array, as older clients expect)")),
    request_body(content = Object, description = "One schema-v1 event or an array of them; `Content-Encoding: gzip` accepted"),
    responses((status = 202, description = "Accepted: `{accepted: [ids], stored: n, rejected: [{index?, event_id?, code, message}]}`; resent ids are stored once. With `X-Panicle-Partial-Batch: 1` each event of an array is judged alone: `rejected` names those that will never be taken as sent (invalid, or refused by the database), the rest are stored", body = Object),
              (status = 400, description = "Invalid JSON, an empty or oversized batch, or an invalid event (the field is named; with `X-Panicle-Partial-Batch: 1` only for a single event)", body = crate::openapi::ErrorBody),
              (status = 422, description = "An event the database cannot store (code `unstorable_event`; with `X-Panicle-Partial-Batch: 1` only for a single event)", body = crate::openapi::ErrorBody),
              (status = 503, description = "The database is unavailable (answered within ~2 s); retry after `Retry-After`", body = crate::openapi::ErrorBody),
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
    let received_ms = crate::now_ms();
    let max_age_ms = state.config.max_event_age_ms(admitted.retention_days);
    // Per-event answers only for clients that say they read them: an older
    // client takes any 2xx for the whole batch and would delete the events
    // a `rejected` list names; it gets the whole-batch refusal it splits.
    let partial = headers
        .get(PARTIAL_BATCH_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let mut decoded = Vec::new();
    let mut rejected = Vec::new();
    let body = decode_body(&raw)?;
    // The decoded events are what is kept from here: not the body too.
    drop(raw);
    let whole = !partial || matches!(body, DecodedBody::One(_));
    match body {
        DecodedBody::One(d) => decoded.push(*d),
        DecodedBody::Batch(items) => {
            for (index, item) in items.into_iter().enumerate() {
                match item.result {
                    Ok(d) => decoded.push(d),
                    Err(e) if !partial => return Err(e.into()),
                    Err(e) => rejected.push(Rejected {
                        index: Some(index),
                        event_id: item.event_id,
                        code: e.code(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
    state
        .limits
        .admit(&state.metrics, &project, &admitted, decoded.len())?;
    // Bare addresses named from uploaded debug files before they group.
    let (decoded, missing) = crate::symbolicate::symbolicate_decoded(state, decoded).await?;
    let events: Vec<NewEvent> = decoded
        .into_iter()
        .zip(missing)
        .map(|(d, missing)| NewEvent {
            missing_debug_files: missing,
            ..to_new_event(d, received_ms, max_age_ms)
        })
        .collect();
    let StoredEvents {
        outcome,
        unstorable,
    } = store_events(state, &project, &admitted, events).await?;
    if whole && let Some((event_id, message)) = unstorable.first() {
        // A permanent, named refusal; the other events of the batch are
        // stored, so the client's resend of them stores nothing twice.
        state.metrics.rejected(UNSTORABLE);
        attach_in_background(state, project.id, outcome.new_groups);
        return Err(ApiError::Unstorable(format!("event {event_id}: {message}")));
    }
    for (event_id, message) in unstorable {
        rejected.push(Rejected {
            index: None,
            event_id: Some(event_id),
            code: UNSTORABLE,
            message,
        });
    }
    attach_in_background(state, project.id, outcome.new_groups);
    let m = &state.metrics;
    m.events_accepted.inc_by(outcome.accepted.len() as u64);
    m.events_stored.inc_by(outcome.inserted as u64);
    m.events_duplicate
        .inc_by((outcome.accepted.len() - outcome.inserted) as u64);
    for r in &rejected {
        m.rejected(r.code);
    }
    m.events_sampled.inc_by(outcome.sampled as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted": outcome.accepted,
            "stored": outcome.inserted,
            "rejected": rejected,
        })),
    ))
}

/// A client sends `X-Panicle-Partial-Batch: 1` when it reads the per-event
/// `rejected` list of a 202 (the SDK, `panicle spool send`, `panicle run`).
pub const PARTIAL_BATCH_HEADER: &str = "x-panicle-partial-batch";

/// `code` of an event the database refused although it decoded.
const UNSTORABLE: &str = "unstorable_event";

/// One event of a request that will never be taken as sent: the client
/// moves it aside (the SDK's `rejected/`) and keeps sending the rest.
#[derive(Debug, serde::Serialize)]
struct Rejected {
    /// Position in the request's array, for events that failed decoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    code: &'static str,
    message: String,
}

pub(crate) struct StoredEvents {
    pub(crate) outcome: panicle_store::InsertOutcome,
    /// Events the database refused for their content: id and why.
    pub(crate) unstorable: Vec<(String, String)>,
}

/// Stores a request's events in one transaction (shared with other
/// requests: `commit.rs`), within the project's quotas; when the database
/// refuses the batch for the data in it (not for being unreachable), each
/// event is stored alone so one poison event cannot hold back the others.
pub(crate) async fn store_events(
    state: &AppState,
    project: &panicle_store::Project,
    admitted: &crate::limits::Effective,
    events: Vec<NewEvent>,
) -> Result<StoredEvents, ApiError> {
    let mut stored = StoredEvents {
        outcome: panicle_store::InsertOutcome::default(),
        unstorable: Vec::new(),
    };
    if events.is_empty() {
        return Ok(stored);
    }
    let insert = |batch: Vec<NewEvent>| {
        state
            .limits
            .insert(&state.committer, &state.metrics, project, admitted, batch)
    };
    let count = events.len();
    let events = match insert(events).await {
        (_, Ok(outcome)) => {
            stored.outcome = outcome;
            return Ok(stored);
        }
        (events, Err(ApiError::Store(e))) if e.is_refused_data() => {
            tracing::warn!(error = %e, project_id = project.id, events = count, "the database refused a batch; storing its events one by one");
            events
        }
        (_, Err(e)) => return Err(e),
    };
    for event in events {
        let event_id = event.event_id.clone();
        match insert(vec![event]).await {
            (_, Ok(one)) => {
                stored.outcome.accepted.extend(one.accepted);
                stored.outcome.inserted += one.inserted;
                stored.outcome.sampled += one.sampled;
                stored.outcome.new_groups += one.new_groups;
            }
            (_, Err(ApiError::Store(e))) if e.is_refused_data() => {
                tracing::warn!(error = %e, project_id = project.id, event_id = %event_id, "the database refused an event");
                stored.unstorable.push((event_id, e.refusal_reason()));
            }
            (_, Err(e)) => return Err(e),
        }
    }
    Ok(stored)
}

/// New groups: put them in clusters without holding up the client's 202.
pub(crate) fn attach_in_background(state: &AppState, project_id: i64, new_groups: usize) {
    if new_groups == 0 || !state.job.schedule_attach(project_id) {
        // No new group, or an attach for this project is already waiting to run.
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
        .map_err(|e| body_error(e, limit))?;
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

/// Why a body could not be read: over the limit, or (behind the Sentry
/// routes' decompression layer) not valid gzip, deflate or br.
fn body_error(e: axum::Error, limit: usize) -> ApiError {
    let inner = e.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            )
        {
            return ApiError::BadCompression(io.to_string());
        }
        source = err.source();
    }
    ApiError::TooLarge { limit }
}

/// Longest value kept in an indexed column (service, environment, release,
/// pod, node, route): PostgreSQL refuses a B-tree entry over ~2.7 kB, and no
/// real name is this long. The raw event keeps the whole value.
pub const MAX_INDEXED_BYTES: usize = 512;

fn indexed(value: Option<String>) -> Option<String> {
    value.map(|mut v| {
        v.truncate(panicle_protocol::truncate_str(&v, MAX_INDEXED_BYTES).len());
        v
    })
}

/// Derives the stored columns from a validated wire event. An implausible
/// time (clock drift, year 0000 or 9999) is stored as the receive time; the
/// raw event keeps what was sent.
pub fn to_new_event(decoded: Decoded, received_ms: i64, max_age_ms: i64) -> NewEvent {
    let Decoded {
        event,
        timestamp_ms,
    } = decoded;
    let timestamp_ms = stored_timestamp(timestamp_ms, received_ms, max_age_ms);
    let signature = signature_frames(&event);
    let resource = |key: &str| indexed(event.resource_str(key).map(str::to_string));
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
        release: indexed(event.release.clone()),
        trace_id: event
            .trace
            .as_ref()
            .map(|t| t.trace_id.to_ascii_lowercase()),
        pod: resource("k8s.pod.name"),
        node: resource("k8s.node.name"),
        route: indexed(event.request.as_ref().and_then(|r| r.route.clone())),
        depth: event.frames.len() as i64,
        // Storm control: one event standing for `count` panics.
        weight: event_weight(event.extra.get("count")),
        fingerprint: panicle_protocol::fingerprint(&event),
        template: message_template(&event.message),
        culprit: signature.first().cloned(),
        payload: serde_json::to_string(&event).unwrap_or_else(|_| "{}".into()),
        signature,
        // Validated (`decode::validate`): a UUID's head and a non-empty range.
        storm: event.storm.as_ref().map(|s| StormRange {
            id_prefix: s.id_prefix.clone(),
            seq_start: s.seq_start,
            seq_end: s.seq_end,
        }),
        // Set by ingest when a debug file is missing (`symbolicate`).
        missing_debug_files: Vec::new(),
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
    use panicle_protocol::crashtext::parse_crash_log;
    use serde_json::Value;

    let IngestProject(project) = project?;
    let admitted = state
        .limits
        .precheck(&state.store, &state.metrics, &project)
        .await?;
    let raw = read_body(headers, body, state.config.max_body_bytes).await?;
    let text = String::from_utf8_lossy(&raw);
    let text = storable_str(&text);
    // Text from a log pipeline (docker compose, journald, kubectl, CRI,
    // JSON lines) or copied from a web page is unwrapped first.
    let (crash, log) = parse_crash_log(&text).ok_or(ApiError::NoCrash)?;
    let event_id = params
        .event_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let log_time = log.timestamp.clone().filter(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
    });
    let timestamp = params.timestamp.clone().or(log_time).unwrap_or_else(|| {
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    });
    let mut event = crash.into_event(event_id, timestamp);
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value.as_ref().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            event
                .resource
                .insert(key.to_string(), Value::String(storable_str(v).into_owned()));
        }
    };
    put("service.name", &params.service);
    put("deployment.environment", &params.environment);
    put("k8s.pod.name", &params.pod);
    put("k8s.namespace.name", &params.namespace);
    put("k8s.node.name", &params.node);
    put("k8s.container.name", &params.container);
    // What the log prefixes said, where the query did not say it.
    let mut put_missing = |key: &str, value: &Option<String>| {
        if let Some(v) = value.as_ref().filter(|v| !v.trim().is_empty())
            && !event.resource.contains_key(key)
        {
            event
                .resource
                .insert(key.to_string(), Value::String(storable_str(v).into_owned()));
        }
    };
    put_missing("container.name", &log.container);
    put_missing("host.name", &log.host);
    put_missing("systemd.unit", &log.unit);
    if let Some(format) = log.format {
        event.tags.insert("log.format".into(), format.into());
    }
    event.release = params
        .release
        .as_deref()
        .map(|r| storable_str(r).into_owned());
    event.tags.insert("capture".into(), "text".into());
    let decoded = panicle_protocol::decode::validate(event).map_err(|(field, message)| {
        ApiError::Decode(panicle_protocol::DecodeError::InvalidField {
            field: field.to_string(),
            message,
        })
    })?;
    state.limits.admit(&state.metrics, &project, &admitted, 1)?;
    let events = vec![to_new_event(
        decoded,
        crate::now_ms(),
        state.config.max_event_age_ms(admitted.retention_days),
    )];
    let StoredEvents {
        outcome,
        unstorable,
    } = store_events(state, &project, &admitted, events).await?;
    if let Some((_, message)) = unstorable.first() {
        state.metrics.rejected(UNSTORABLE);
        return Err(ApiError::Unstorable(message.clone()));
    }
    attach_in_background(state, project.id, outcome.new_groups);
    state.metrics.events_accepted.inc();
    state.metrics.events_stored.inc_by(outcome.inserted as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": outcome.accepted, "stored": outcome.inserted})),
    ))
}
