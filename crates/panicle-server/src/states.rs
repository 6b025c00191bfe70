//! Cluster states over HTTP (issue 14): change one cluster's, change many at
//! once, and the JSON a cluster's state reads as in the list and the view.
//!
//! Any token may change the state of clusters in the projects its scope
//! reads (triage is the on-call's daily work, not an admin's); clusters
//! outside the scope answer 404 as they do to reads.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use panicle_store::{
    ClusterRef, ClusterState, ClusterStatus, IgnoreUntil, Resolution, StateChange,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Reader;
use crate::read::{format_ms, rfc3339_ms};
use crate::{ApiError, AppState};

/// Most clusters one bulk change takes.
const BULK_MAX: usize = 1000;

/// The state to set and its parameters.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// `unresolved`, `resolved`, `resolved_in_next_release`,
    /// `resolved_in_release` (with `release`) or `ignored` (forever, or with
    /// one of `until_events`, `until`, `until_pods`).
    pub state: String,
    /// For `resolved_in_release`: events of a newer release reopen it.
    pub release: Option<String>,
    /// For `ignored`: reopen at the (N+1)-th event from now.
    pub until_events: Option<i64>,
    /// For `ignored`: reopen after this time (RFC 3339 or epoch ms).
    pub until: Option<String>,
    /// For `ignored`: reopen when the (N+1)-th distinct pod sends an event
    /// (pods are the "users" of a service).
    pub until_pods: Option<i64>,
}

/// A state for many clusters at once.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkStateBody {
    /// Cluster ids (at most 1000); one outside the token's projects fails the whole change.
    pub ids: Vec<String>,
    /// As in `PUT /api/v1/clusters/{id}/state`.
    pub state: String,
    pub release: Option<String>,
    pub until_events: Option<i64>,
    pub until: Option<String>,
    pub until_pods: Option<i64>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

fn positive(name: &str, n: i64) -> Result<i64, ApiError> {
    if n >= 1 {
        Ok(n)
    } else {
        Err(bad(format!("`{name}` must be 1 or more, got {n}")))
    }
}

/// The change a body asks for; 400 for a state or parameter that does not fit.
pub fn parse_change(b: &StateBody, now_ms: i64) -> Result<StateChange, ApiError> {
    let only = |allowed: &[&str]| -> Result<(), ApiError> {
        let given = [
            ("release", b.release.is_some()),
            ("until_events", b.until_events.is_some()),
            ("until", b.until.is_some()),
            ("until_pods", b.until_pods.is_some()),
        ];
        match given.iter().find(|(n, set)| *set && !allowed.contains(n)) {
            Some((n, _)) => Err(bad(format!("`{n}` does not apply to state `{}`", b.state))),
            None => Ok(()),
        }
    };
    Ok(match b.state.as_str() {
        "unresolved" => {
            only(&[])?;
            StateChange::Unresolve
        }
        "resolved" => {
            only(&[])?;
            StateChange::Resolve
        }
        "resolved_in_next_release" => {
            only(&[])?;
            StateChange::ResolveInNextRelease
        }
        "resolved_in_release" => {
            only(&["release"])?;
            let release = b
                .release
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| bad("`resolved_in_release` needs `release`"))?;
            if release.len() > 512 {
                return Err(bad("`release` is longer than 512 bytes"));
            }
            StateChange::ResolveInRelease(release.to_string())
        }
        "ignored" => {
            only(&["until_events", "until", "until_pods"])?;
            let set = [
                b.until_events.is_some(),
                b.until.is_some(),
                b.until_pods.is_some(),
            ];
            if set.iter().filter(|s| **s).count() > 1 {
                return Err(bad(
                    "give at most one of `until_events`, `until`, `until_pods`",
                ));
            }
            let until = if let Some(n) = b.until_events {
                IgnoreUntil::Events(positive("until_events", n)?)
            } else if let Some(n) = b.until_pods {
                IgnoreUntil::Pods(positive("until_pods", n)?)
            } else if let Some(t) = &b.until {
                let ms = rfc3339_ms(t)
                    .or_else(|| t.trim().parse::<i64>().ok())
                    .ok_or_else(|| bad(format!("`until`: `{t}` is not an RFC 3339 time")))?;
                if ms <= now_ms {
                    return Err(bad("`until` is in the past"));
                }
                IgnoreUntil::Time(ms)
            } else {
                IgnoreUntil::Forever
            };
            StateChange::Ignore(until)
        }
        other => {
            return Err(bad(format!(
                "unknown state `{other}`: use unresolved, resolved, resolved_in_next_release, \
                 resolved_in_release or ignored"
            )));
        }
    })
}

/// A cluster's state as the API shows it.
pub fn state_json(s: &ClusterState, now_ms: i64) -> Value {
    let (resolution, release) = match &s.status {
        ClusterStatus::Resolved(Resolution::Now) => (Some("now"), None),
        ClusterStatus::Resolved(Resolution::NextRelease { latest }) => {
            (Some("next_release"), latest.clone())
        }
        ClusterStatus::Resolved(Resolution::InRelease(x)) => (Some("in_release"), Some(x.clone())),
        _ => (None, None),
    };
    let ignore = match &s.status {
        ClusterStatus::Ignored(u) => Some(match u {
            IgnoreUntil::Forever => json!({"until": "forever"}),
            IgnoreUntil::Events(n) => json!({"until_events": n, "seen_events": s.seen_events}),
            IgnoreUntil::Time(t) => json!({"until": format_ms(*t)}),
            IgnoreUntil::Pods(n) => json!({"until_pods": n, "seen_pods": s.seen_pods.len()}),
        }),
        _ => None,
    };
    let changed = s.changed_at_ms > 0;
    json!({
        "status": s.effective(now_ms),
        "resolution": resolution,
        "release": release,
        "ignore": ignore,
        "regression": s.regression.as_ref().map(|r| json!({
            "at": format_ms(r.at_ms),
            "release": r.release,
            "event_id": r.event_id,
        })),
        "changed_at": changed.then(|| format_ms(s.changed_at_ms)),
        "changed_by": changed.then(|| s.changed_by.clone()),
    })
}

/// Who changed a state: the token's public id (a session acts with its token).
fn actor(reader: &Reader) -> String {
    if reader.access.token_id.is_empty() {
        "api".into()
    } else {
        format!("token {}", reader.access.token_id)
    }
}

/// The clusters of `ids` the caller may change, with their projects; 404
/// naming the first that does not exist or is outside the scope.
async fn resolve_refs(
    state: &AppState,
    reader: &Reader,
    ids: &[String],
) -> Result<Vec<ClusterRef>, ApiError> {
    let projects = state.store.cluster_projects(ids).await?;
    ids.iter()
        .map(|id| match projects.get(id) {
            Some(&p) if reader.scope().allows(p) => Ok(ClusterRef {
                cluster_id: id.clone(),
                project_id: p,
            }),
            _ => Err(ApiError::NotFoundNamed {
                what: "cluster",
                id: id.clone(),
            }),
        })
        .collect()
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

#[utoipa::path(put, path = "/api/v1/clusters/{id}/state", tag = "clusters",
    params(("id" = String, Path, description = "Cluster id")),
    request_body(content = StateBody, description = "The state and its parameters, e.g. `{\"state\":\"resolved_in_release\",\"release\":\"shop@1.4.0\"}` or `{\"state\":\"ignored\",\"until_events\":10}`"),
    responses((status = 200, description = "`{id, state: {status, resolution, release, ignore, regression, changed_at, changed_by}}`; the change is in the cluster's `changes`", body = Object),
              (status = 400, description = "Unknown state, a parameter that does not apply, or a bad value", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "A session cookie sent from another site", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such cluster in the token's projects", body = crate::openapi::ErrorBody)))]
pub async fn put_cluster_state(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    b: Result<Json<StateBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let now = crate::now_ms();
    let change = parse_change(&b, now)?;
    let refs = resolve_refs(&state, &reader, std::slice::from_ref(&id)).await?;
    let states = state
        .store
        .set_cluster_states(&refs, &change, &actor(&reader))
        .await?;
    let s = states.first().ok_or(ApiError::NotFound("cluster"))?;
    Ok(Json(json!({"id": id, "state": state_json(s, now)})))
}

#[utoipa::path(post, path = "/api/v1/clusters/state", tag = "clusters",
    request_body(content = BulkStateBody, description = "`{ids: [...], state, ...}`: one state for every cluster named, in one transaction"),
    responses((status = 200, description = "`{items: [{id, state}]}` in the order of `ids`", body = Object),
              (status = 400, description = "No ids, more than 1000, or a bad state", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "A session cookie sent from another site", body = crate::openapi::ErrorBody),
              (status = 404, description = "An id is no cluster of the token's projects: nothing changed", body = crate::openapi::ErrorBody)))]
pub async fn bulk_cluster_state(
    State(state): State<AppState>,
    reader: Reader,
    b: Result<Json<BulkStateBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    if b.ids.is_empty() {
        return Err(bad("`ids` is empty: name the clusters to change"));
    }
    if b.ids.len() > BULK_MAX {
        return Err(bad(format!(
            "{} ids: change at most {BULK_MAX} at once",
            b.ids.len()
        )));
    }
    let now = crate::now_ms();
    let change = parse_change(
        &StateBody {
            state: b.state,
            release: b.release,
            until_events: b.until_events,
            until: b.until,
            until_pods: b.until_pods,
        },
        now,
    )?;
    let mut ids = b.ids;
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let refs = resolve_refs(&state, &reader, &ids).await?;
    let states = state
        .store
        .set_cluster_states(&refs, &change, &actor(&reader))
        .await?;
    let items: Vec<Value> = ids
        .iter()
        .zip(&states)
        .map(|(id, s)| json!({"id": id, "state": state_json(s, now)}))
        .collect();
    Ok(Json(json!({"items": items})))
}

/// Which states the list shows: `unresolved` (default), `resolved`,
/// `ignored` or `all`; 400 otherwise.
pub fn list_filter(p: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match p.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("unresolved") => Ok(Some("unresolved")),
        Some("resolved") => Ok(Some("resolved")),
        Some("ignored") => Ok(Some("ignored")),
        Some("all") => Ok(None),
        Some(other) => Err(ApiError::BadParam {
            name: "state",
            message: format!("`{other}`: use unresolved, resolved, ignored or all"),
        }),
    }
}

/// States of the clusters of the given projects, by cluster id.
pub async fn states_for(
    state: &AppState,
    projects: Option<&[i64]>,
) -> Result<HashMap<String, ClusterState>, ApiError> {
    Ok(state.store.cluster_states(projects).await?)
}
