//! The read API: events and groups, paged with an opaque cursor.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use panicle_cluster::traces::{self, storm_summary};
use panicle_protocol::storm::StormRecord;
use panicle_store::{Cursor, EventFilter, EventQuery, EventSummary, GroupQuery, GroupRow, Page};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Reader;
use crate::error::ReadQuery;
use crate::{ApiError, AppState};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Filters shared by the list endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Project id.
    pub project: Option<i64>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    /// Pod (`k8s.pod.name`) the panic happened on.
    pub pod: Option<String>,
    /// Node (`k8s.node.name` or host) the panic happened on.
    pub node: Option<String>,
    /// Route template of the request, e.g. `/orders/{id}`.
    pub route: Option<String>,
    /// Trace id (32 hex digits) of the request.
    pub trace_id: Option<String>,
    /// Event kind: `panic`, `signal`, `error`, …
    pub kind: Option<String>,
    /// `rust`, `go`, `python`, `node`, …
    pub platform: Option<String>,
    /// RFC 3339 or epoch milliseconds (inclusive).
    pub since: Option<String>,
    /// RFC 3339 or epoch milliseconds (exclusive).
    pub until: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// One group only: its events, or a cluster view narrowed to that group.
    pub group: Option<String>,
}

/// An empty value filters nothing (a form's blank field).
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl ListParams {
    /// The event filters of these parameters (no group, no paging).
    pub fn event_filter(&self) -> Result<EventFilter, ApiError> {
        Ok(EventFilter {
            project_id: self.project,
            service: given(&self.service),
            environment: given(&self.environment),
            release: given(&self.release),
            since_ms: self.since_ms()?,
            until_ms: self.until_ms()?,
            group_id: given(&self.group),
            pod: given(&self.pod),
            node: given(&self.node),
            route: given(&self.route),
            trace_id: given(&self.trace_id),
            kind: given(&self.kind),
            platform: given(&self.platform),
        })
    }

    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::BadParam {
                name: "limit",
                message: format!("{n} is outside 1..={MAX_LIMIT}"),
            }),
        }
    }

    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.cursor
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(ApiError::from)
    }

    pub fn since_ms(&self) -> Result<Option<i64>, ApiError> {
        parse_time("since", self.since.as_deref())
    }

    pub fn until_ms(&self) -> Result<Option<i64>, ApiError> {
        parse_time("until", self.until.as_deref())
    }

    /// The events these parameters select, optionally within some groups.
    pub fn event_query(&self, group_ids: Option<Vec<String>>) -> Result<EventQuery, ApiError> {
        let group_ids = match (&self.group, group_ids) {
            (Some(g), Some(ids)) => Some(ids.into_iter().filter(|id| id == g).collect()),
            (Some(g), None) => Some(vec![g.clone()]),
            (None, ids) => ids,
        };
        let f = self.event_filter()?;
        Ok(EventQuery {
            project_id: self.project,
            project_ids: None,
            group_ids,
            service: f.service,
            environment: f.environment,
            release: f.release,
            pod: f.pod,
            node: f.node,
            route: f.route,
            trace_id: f.trace_id,
            kind: f.kind,
            platform: f.platform,
            since_ms: f.since_ms,
            until_ms: f.until_ms,
            limit: self.limit()?,
            cursor: self.cursor()?,
            include_sampled: true,
        })
    }
}

/// Latest accepted time: the end of year 9999, so time arithmetic never overflows.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Accepts RFC 3339 or epoch milliseconds, from 1970 to the end of 9999.
pub fn parse_time(name: &'static str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let out_of_range = || ApiError::BadParam {
        name,
        message: format!("`{v}` is outside 1970-01-01 .. 9999-12-31"),
    };
    if let Ok(ms) = v.parse::<i64>() {
        return (0..=MAX_TIME_MS)
            .contains(&ms)
            .then_some(Some(ms))
            .ok_or_else(out_of_range);
    }
    let t = OffsetDateTime::parse(v, &Rfc3339).map_err(|e| ApiError::BadParam {
        name,
        message: format!("expected RFC 3339 or epoch milliseconds: {e}"),
    })?;
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    (0..=MAX_TIME_MS)
        .contains(&ms)
        .then_some(Some(ms))
        .ok_or_else(out_of_range)
}

/// Epoch milliseconds as RFC 3339, for people and scripts alike.
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn event_json(e: &EventSummary) -> Value {
    json!({
        "event_id": e.event_id,
        "project_id": e.project_id,
        "group_id": e.group_id,
        "timestamp": format_ms(e.timestamp_ms),
        "received_at": format_ms(e.received_at_ms),
        "platform": e.platform,
        "kind": e.kind,
        "message": e.message,
        "service": e.service,
        "environment": e.environment,
        "release": e.release,
        "trace_id": e.trace_id,
        "pod": e.pod,
        "node": e.node,
        "route": e.route,
        "depth": (!e.sampled).then_some(e.depth),
        "count": e.weight,
        "sampled": e.sampled,
    })
}

/// RFC 3339 as epoch milliseconds; None when it is not one.
pub fn rfc3339_ms(value: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(value.trim(), &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `storm` of an aggregate's view: its record (samples, messages, folded id
/// range) with what it adds up to ("×37, 20 traces") and a trace link per
/// sample; None for an event that is no aggregate.
pub fn storm_json(state: &AppState, payload: &Value, trace_id: Option<&str>) -> Option<Value> {
    let record: StormRecord = serde_json::from_value(payload.get("storm")?.clone()).ok()?;
    let count = panicle_protocol::decode::event_weight(payload.get("count"));
    let summary = storm_summary(&record, count, trace_id);
    let mut out = json!(summary);
    out["id_prefix"] = json!(record.id_prefix);
    out["seq_start"] = json!(record.seq_start);
    out["seq_end"] = json!(record.seq_end);
    out["first_event_id"] = json!(record.first_event_id);
    out["messages"] = json!(record.messages);
    out["samples"] = record
        .samples
        .iter()
        .map(|s| {
            let trace = s.trace.as_ref().and_then(|t| traces::trace_id(&t.trace_id));
            json!({
                "event_id": s.event_id,
                "timestamp": s.timestamp,
                "trace_id": trace,
                "span_id": s.trace.as_ref().and_then(|t| t.span_id.clone()),
                "trace_url": crate::clusters::trace_url(state, trace.as_deref()),
                "request_id": s.request_id,
                "route": s.route,
                "message": s.message,
            })
        })
        .collect();
    Some(out)
}

pub fn group_json(g: &GroupRow) -> Value {
    json!({
        "id": g.id,
        "project_id": g.project_id,
        "fingerprint": g.fingerprint,
        "platform": g.platform,
        "kind": g.kind,
        "title": g.template,
        "culprit": g.culprit,
        "frames": g.frames,
        "count": g.count,
        "first_seen": format_ms(g.first_seen_ms),
        "last_seen": format_ms(g.last_seen_ms),
        "first_release": g.first_release,
        "cluster_id": g.cluster_id,
    })
}

pub fn page_json<T>(page: &Page<T>, f: impl Fn(&T) -> Value) -> Value {
    json!({
        "items": page.items.iter().map(f).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The database answers", body = Object),
              (status = 503, description = "The database does not answer", body = crate::openapi::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    // A probe must answer within its own timeout whatever the database does.
    let ping = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    match ping {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => not_ready(&e.to_string()),
        Err(_) => not_ready("no answer within 1 s"),
    }
}

/// Longest `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn not_ready(why: &str) -> (StatusCode, Json<Value>) {
    tracing::warn!(error = %why, "database not reachable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            json!({"error": {"code": "storage_unavailable", "message": "the database does not answer"}}),
        ),
    )
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(ListParams),
    responses((status = 200, description = "Events of the token's projects, newest first: `{items, next_cursor}`; `count` is the panics an event stands for (a storm aggregate's count, else 1), so the counts add up to the groups' and clusters'. An event its group kept only the id, time and count of (the per-group cap) is listed with `sampled: true`, its group's kind, platform and message template, and no service, pod, route, trace or depth; a filter on those leaves it out", body = Object),
              (status = 400, description = "Bad parameter or cursor (`invalid_parameter`, `invalid_cursor`), or a parameter this endpoint does not take (`unknown_parameter`, naming it)", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 404, description = "`project` is not one the token may read", body = crate::openapi::ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    reader: Reader,
    ReadQuery(p): ReadQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let mut q = p.event_query(None)?;
    q.project_ids = reader.list_projects(p.project)?;
    let page = state.store.list_events(&q).await?;
    Ok(Json(page_json(&page, |e| {
        let mut v = event_json(e);
        v["trace_url"] = json!(crate::clusters::trace_url(&state, e.trace_id.as_deref()));
        v
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectParam {
    /// The project the event belongs to. Event ids are made by clients, so
    /// two projects may hold the same one: without `project`, the event is
    /// looked up in the projects the token may read, and when several hold
    /// it the answer is 409 `ambiguous_event` asking for `project`.
    pub project: Option<i64>,
}

/// `GET /api/v1/events/{id}`: like Sentry's event-id lookup across an
/// organisation, the id is resolved within the caller's projects only, and
/// never silently picks one of several copies.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id, or the id of a panic storm control folded into an aggregate"), ProjectParam),
    responses((status = 200, description = "The stored columns (`count`: panics the event stands for) plus `event`, the whole event as received. A storm aggregate adds `storm`: `{count, traces, request_ids, routes, sampled, folded_ids, id_prefix, seq_start, seq_end, first_event_id, messages, samples: [{event_id, timestamp, trace_id, span_id, trace_url, request_id, route, message}]}`. When the id is a folded panic's, the answer is its aggregate with `folded: {requested_id, into}` (`into`: the aggregate's event id). An event its group kept only as a count answers `sampled: true` with its id, time, count and its group's kind, platform and message template, and `event: null`", body = Object),
              (status = 404, description = "No event and no storm aggregate with this id in the token's projects", body = crate::openapi::ErrorBody),
              (status = 409, description = "Several of the token's projects hold this event id: add `?project=`", body = crate::openapi::ErrorBody)))]
pub async fn get_event(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    ReadQuery(p): ReadQuery<ProjectParam>,
) -> Result<Json<Value>, ApiError> {
    // Ids are stored hyphenated and lowercase (as ingest canonicalizes
    // them): find one however the caller spells it.
    let id = uuid::Uuid::parse_str(id.trim())
        .map(|u| u.hyphenated().to_string())
        .unwrap_or(id);
    if let Some(project) = p.project {
        reader.check_project(project, "event")?;
    }
    let in_scope = |project: i64| match p.project {
        Some(asked) => project == asked,
        None => reader.scope().allows(project),
    };
    let holders: Vec<(i64, String)> = state
        .store
        .event_projects(&id)
        .await?
        .into_iter()
        .filter(|p| in_scope(*p))
        .map(|p| (p, id.clone()))
        .collect();
    // Not an event: a panic storm control folded into an aggregate.
    let holders = if holders.is_empty() {
        state
            .store
            .storm_holders(&id)
            .await?
            .into_iter()
            .filter(|(p, _)| in_scope(*p))
            .collect()
    } else {
        holders
    };
    // Counted but not kept in full (its group was over its cap): what is
    // known of it, so an id from the events list always resolves.
    if holders.is_empty() {
        let sampled: Vec<EventSummary> = state
            .store
            .sampled_events_by_id(&id)
            .await?
            .into_iter()
            .filter(|e| in_scope(e.project_id))
            .collect();
        if let [one] = sampled.as_slice() {
            let mut out = event_json(one);
            out["trace_url"] = Value::Null;
            out["event"] = Value::Null;
            return Ok(Json(out));
        }
        if sampled.len() > 1 {
            return Err(ApiError::AmbiguousEvent {
                id,
                projects: sampled
                    .iter()
                    .map(|e| e.project_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let (project, stored_id) = match holders.as_slice() {
        [] => return Err(ApiError::UnknownEvent(id)),
        [one] => one.clone(),
        many => {
            return Err(ApiError::AmbiguousEvent {
                id,
                projects: many
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let row = state
        .store
        .get_event(&stored_id, Some(project))
        .await?
        .ok_or_else(|| ApiError::UnknownEvent(id.clone()))?;
    let trace_id = row.summary.trace_id.as_deref();
    let mut out = event_json(&row.summary);
    out["trace_url"] = json!(crate::clusters::trace_url(&state, trace_id));
    let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
    if let Some(storm) = storm_json(&state, &payload, trace_id) {
        out["storm"] = storm;
    }
    if stored_id != id {
        out["folded"] = json!({"requested_id": id, "into": stored_id});
    }
    out["event"] = payload;
    Ok(Json(out))
}

/// The group list's query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupListParams {
    /// Project id.
    pub project: Option<i64>,
    /// Groups seen since (RFC 3339 or epoch milliseconds).
    pub since: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(GroupListParams),
    responses((status = 200, description = "Groups (same fingerprint) of the token's projects, most recently seen first: `{items, next_cursor}`", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 404, description = "`project` is not one the token may read", body = crate::openapi::ErrorBody)))]
pub async fn list_groups(
    State(state): State<AppState>,
    reader: Reader,
    ReadQuery(g): ReadQuery<GroupListParams>,
) -> Result<Json<Value>, ApiError> {
    let p = ListParams {
        project: g.project,
        since: g.since,
        limit: g.limit,
        cursor: g.cursor,
        ..ListParams::default()
    };
    let q = GroupQuery {
        project_ids: reader.list_projects(p.project)?,
        project_id: p.project,
        cluster_id: None,
        since_ms: p.since_ms()?,
        limit: p.limit()?,
        cursor: p.cursor()?,
    };
    let page = state.store.list_groups(&q).await?;
    Ok(Json(page_json(&page, group_json)))
}

#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "One group with count, first/last seen, cluster", body = Object),
              (status = 404, description = "No such group in the token's projects", body = crate::openapi::ErrorBody)))]
pub async fn get_group(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let g = state
        .store
        .get_group(&id)
        .await?
        .ok_or(ApiError::NotFound("group"))?;
    reader.check_project(g.project_id, "group")?;
    Ok(Json(group_json(&g)))
}
