//! The cluster views: the list, one cluster explained (culprit, paths,
//! where, traces, regression, fix suggestion), its events, heatmap and paths.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use panicle_cluster::attribution::{
    self, Bucket, EventFacts, FrameFacts, TrendChange, confinement, trend_change,
};
use panicle_cluster::traces::{self, TraceLink};
use panicle_cluster::{GroupSignature, explain};
use panicle_protocol::normalize::normalize_function;
use panicle_protocol::storm::StormRecord;
use panicle_rules::{
    Culprit as RuleCulprit, Evidence, MatchInput, Share, Suggestion, derived_suggestion,
};
use panicle_store::{ClusterEvent, EventFilter, GroupAggregate, GroupRow, HostColumn};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Reader};
use crate::error::ReadQuery;
use crate::read::{ListParams, event_json, format_ms, page_json, parse_time, rfc3339_ms};
use crate::{ApiError, AppState};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Events of a cluster that attribution reads (the newest).
const ATTRIBUTION_EVENTS: u32 = 2000;
/// Distinct traces a cluster view lists: every request of a real incident
/// (issue 13 follows 48 across four pods), not a first page of it.
const TRACES_SHOWN: usize = 200;
/// Storm aggregates a cluster view summarizes ("×37, 20 traces"), newest first.
const STORMS_SHOWN: usize = 20;
/// Columns of a list row's sparkline.
const TREND_BUCKETS: i64 = 24;

/// The list's query. Not `#[serde(flatten)]` over [`ListParams`]: flattened
/// query strings lose their number types.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClusterListParams {
    pub project: Option<i64>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    /// Clusters with events on this pod (counts: those events).
    pub pod: Option<String>,
    pub node: Option<String>,
    /// Route template, e.g. `/orders/{id}`.
    pub route: Option<String>,
    pub trace_id: Option<String>,
    /// `panic`, `signal`, …
    pub kind: Option<String>,
    pub platform: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Text in messages or function names.
    pub q: Option<String>,
    /// `last_seen` (default), `events` or `growth`.
    pub sort: Option<String>,
    /// `unresolved` (default), `resolved`, `ignored` or `all`.
    pub state: Option<String>,
}

impl ClusterListParams {
    fn list(&self) -> ListParams {
        ListParams {
            project: self.project,
            service: self.service.clone(),
            environment: self.environment.clone(),
            release: self.release.clone(),
            pod: self.pod.clone(),
            node: self.node.clone(),
            route: self.route.clone(),
            trace_id: self.trace_id.clone(),
            kind: self.kind.clone(),
            platform: self.platform.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            limit: self.limit,
            cursor: self.cursor.clone(),
            group: None,
        }
    }
}

/// The group that stands for a cluster: the one with most events.
pub(crate) fn representative<'a>(groups: &[&'a GroupRow]) -> Option<&'a GroupRow> {
    groups
        .iter()
        .copied()
        .max_by(|a, b| a.count.cmp(&b.count).then(b.id.cmp(&a.id)))
}

/// The title of the suggestion the rule base gives a group, if any.
pub(crate) fn suggestion_title(rules: &panicle_rules::RuleSet, g: &GroupRow) -> Option<String> {
    let message = g.sample_message.as_deref().unwrap_or(&g.template);
    rules
        .suggest(&MatchInput {
            platform: Some(&g.platform),
            message,
            frames: &g.frames,
        })
        .map(|s| s.title)
}

pub(crate) fn rule_title(state: &AppState, g: &GroupRow) -> Option<Value> {
    let message = g.sample_message.as_deref().unwrap_or(&g.template);
    let s = state.rules.suggest(&MatchInput {
        platform: Some(&g.platform),
        message,
        frames: &g.frames,
    })?;
    Some(json!({"title": s.title, "source": s.source}))
}

pub(crate) fn culprit_of_group(g: &GroupRow) -> Value {
    match &g.culprit {
        Some(f) => json!({"function": f, "file": null, "line_min": null, "line_max": null}),
        None => Value::Null,
    }
}

/// Trend windows: exactly the filter's range (default: the last 24 hours,
/// whose last bucket holds now), cut from its start into 24 buckets of one
/// width (the last takes the few milliseconds the division leaves), so the
/// buckets add up to the count over the same filter and the halves compared
/// are the same length. Returns the filter narrowed to the window, its
/// start and the bucket width.
fn trend_window(filter: &EventFilter) -> (EventFilter, i64, i64) {
    let until = filter.until_ms.unwrap_or_else(crate::now_ms);
    let since = filter.since_ms.unwrap_or(until - DAY_MS).min(until - 1);
    let width = ((until - since) / TREND_BUCKETS).max(1);
    let window = EventFilter {
        since_ms: Some(since),
        until_ms: Some(until),
        ..filter.clone()
    };
    (window, since, width)
}

/// The bucket of a relative bucket number the store answered.
fn trend_bucket(b: i64) -> i64 {
    b.clamp(0, TREND_BUCKETS - 1)
}

fn trend_points(counts: &HashMap<i64, i64>, start: i64, width: i64) -> Vec<Value> {
    (0..TREND_BUCKETS)
        .map(|i| {
            json!({"t": format_ms(start + i * width), "count": counts.get(&i).copied().unwrap_or(0)})
        })
        .collect()
}

/// `growth` (a ratio, or null when there is nothing like to compare with)
/// and `trend_change` (`{kind: new | returned | growth, ratio}`).
fn change_json(out: &mut Value, change: TrendChange) {
    out["growth"] = json!(change.ratio());
    out["trend_change"] = json!(change);
}

#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", params(ClusterListParams),
    responses((status = 200, description = "Clusters with title, counts, trend, services, suggestion and `state` (`{status, resolution, release, ignore, regression, changed_at, changed_by}`; `regression` is set when a new event reopened a resolved cluster); `{items, next_cursor, total}`. `count` is the panics of the cluster's events over the filters (storm counts and events kept only as counts included; the same number the cluster's views add up to). `trend`: 24 buckets of the window (the filter's range, else the last 24 hours); `trend_change` compares its newer half with its older, like with like: `{kind: \"new\"}` for a cluster first seen after the older half began, `{kind: \"returned\"}` for one quiet through it, else `{kind: \"growth\", ratio}`; `growth` is that ratio or null. Filters `pod`, `node`, `route`, `trace_id`, `kind`, `platform` count only the events that match (events kept only as counts match none of pod, node, route, trace_id). Only unresolved clusters unless `state` says otherwise", body = Object),
              (status = 400, description = "Bad parameter (`invalid_parameter`), or one this endpoint does not take (`unknown_parameter`, naming it)", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 404, description = "`project` is not one the token may read", body = crate::openapi::ErrorBody)))]
pub async fn list_clusters(
    State(state): State<AppState>,
    reader: Reader,
    ReadQuery(p): ReadQuery<ClusterListParams>,
) -> Result<Json<Value>, ApiError> {
    let list = p.list();
    let limit = list.limit()? as usize;
    let mut filter = list.event_filter()?;
    let allowed = reader.list_projects(filter.project_id)?;
    // A token of one project lists that project, as if it had asked for it.
    if let (None, Some([only])) = (filter.project_id, allowed.as_deref()) {
        filter.project_id = Some(*only);
    }
    let sort = p.sort.as_deref().unwrap_or("last_seen");
    if !["last_seen", "events", "growth"].contains(&sort) {
        return Err(ApiError::BadParam {
            name: "sort",
            message: format!("`{sort}`: use last_seen, events or growth"),
        });
    }
    let wanted_state = crate::states::list_filter(p.state.as_deref())?;
    let offset = match list.cursor.as_deref() {
        None => 0,
        Some(c) => {
            decode_offset(c).ok_or(ApiError::Store(panicle_store::StoreError::InvalidCursor))?
        }
    };
    let store = &state.store;
    let mut groups = store.all_groups(filter.project_id).await?;
    // Everything below reaches events through these groups only.
    if let Some(ids) = &allowed {
        groups.retain(|g| ids.contains(&g.project_id));
    }
    let mut by_cluster: HashMap<&str, Vec<&GroupRow>> = HashMap::new();
    let mut cluster_of: HashMap<&str, &str> = HashMap::new();
    for g in &groups {
        if let Some(c) = &g.cluster_id {
            by_cluster.entry(c.as_str()).or_default().push(g);
            cluster_of.insert(g.id.as_str(), c.as_str());
        }
    }
    // States: one read for the listed projects; no row is unresolved.
    let state_projects: Option<Vec<i64>> = match filter.project_id {
        Some(p) => Some(vec![p]),
        None => allowed.clone(),
    };
    let states = crate::states::states_for(&state, state_projects.as_deref()).await?;
    let now = crate::now_ms();
    let unresolved = panicle_store::ClusterState::unresolved();
    let state_of = |id: &str| states.get(id).unwrap_or(&unresolved);
    if let Some(wanted) = wanted_state {
        by_cluster.retain(|id, _| state_of(id).effective(now) == wanted);
    }
    // Text search runs over groups (their messages, templates and frames):
    // a thousand groups, not a hundred thousand events.
    if let Some(q) = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let q = q.to_lowercase();
        by_cluster.retain(|_, members| members.iter().any(|g| group_matches(g, &q)));
    }
    // Counts and first/last seen: the group counters, or the events when a
    // filter narrows them. Queries group by group id on `events` alone (the
    // `(group_id, ts)` index answers them); groups fold into clusters here.
    let mut totals: HashMap<&str, Totals> = HashMap::new();
    if filter.is_unfiltered() {
        for g in &groups {
            if let Some(c) = &g.cluster_id {
                totals
                    .entry(c.as_str())
                    .or_default()
                    .add(g.count, g.first_seen_ms, g.last_seen_ms);
            }
        }
    } else {
        for a in store.group_aggregates(&filter).await? {
            if let Some(c) = cluster_of.get(a.group_id.as_str()) {
                totals
                    .entry(*c)
                    .or_default()
                    .add(a.count, a.first_seen_ms, a.last_seen_ms);
            }
        }
    }
    let (trend_filter, start, width) = trend_window(&filter);
    // Sort keys for every cluster; everything else only for the page shown.
    let mid = start + (TREND_BUCKETS / 2) * width;
    let mut halves: HashMap<&str, (u64, u64)> = HashMap::new();
    for (g, older, newer) in store.group_halves(&trend_filter, mid).await? {
        if let Some(c) = cluster_of.get(g.as_str()) {
            let h = halves.entry(*c).or_default();
            h.0 += older.max(0) as u64;
            h.1 += newer.max(0) as u64;
        }
    }
    struct Row<'a> {
        id: &'a str,
        totals: Totals,
        members: &'a [&'a GroupRow],
        change: TrendChange,
        newer: u64,
    }
    let mut rows: Vec<Row<'_>> = totals
        .iter()
        .filter_map(|(id, t)| {
            let members = by_cluster.get(id)?;
            let (older, newer) = halves.get(id).copied().unwrap_or((0, 0));
            // When it began: the groups' history, whatever the filter.
            let born = members.iter().map(|g| g.first_seen_ms).min()?;
            Some(Row {
                id,
                totals: *t,
                members,
                change: trend_change(older, newer, born, start),
                newer,
            })
        })
        .collect();
    // Fastest growing: new and returned clusters first (by their recent
    // events), then by growth.
    let growth_key = |r: &Row<'_>| match r.change {
        TrendChange::Growth { ratio } => (0, ratio),
        _ => (1, r.newer as f64),
    };
    rows.sort_by(|a, b| {
        let key = match sort {
            "events" => b.totals.count.cmp(&a.totals.count),
            "growth" => {
                let (ka, kb) = (growth_key(a), growth_key(b));
                kb.0.cmp(&ka.0).then(kb.1.total_cmp(&ka.1))
            }
            _ => b.totals.last_seen_ms.cmp(&a.totals.last_seen_ms),
        };
        key.then_with(|| a.id.cmp(b.id))
    });
    let total = rows.len();
    let page: Vec<&Row<'_>> = rows.iter().skip(offset).take(limit).collect();
    let page_groups: Vec<String> = page
        .iter()
        .flat_map(|r| r.members.iter().map(|g| g.id.clone()))
        .collect();
    let mut trends: HashMap<&str, HashMap<i64, i64>> = HashMap::new();
    for (g, b, n) in store
        .group_trends(&trend_filter, start, width, &page_groups)
        .await?
    {
        if let Some(c) = cluster_of.get(g.as_str()) {
            *trends
                .entry(*c)
                .or_default()
                .entry(trend_bucket(b))
                .or_default() += n;
        }
    }
    let mut services: HashMap<&str, BTreeMap<String, i64>> = HashMap::new();
    for (g, s, n) in store.group_services(&filter, &page_groups).await? {
        if let Some(c) = cluster_of.get(g.as_str()) {
            *services.entry(*c).or_default().entry(s).or_default() += n;
        }
    }
    let empty = HashMap::new();
    let items: Vec<Value> = page
        .iter()
        .filter_map(|r| {
            let t = r.totals;
            let rep = representative(r.members)?;
            let first = r.members.iter().min_by_key(|g| g.first_seen_ms)?;
            let mut svc: Vec<(&String, &i64)> = services
                .get(r.id)
                .map(|m| m.iter().collect())
                .unwrap_or_default();
            svc.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
            let suggestion = rule_title(&state, rep);
            let title = suggestion
                .as_ref()
                .and_then(|s| s["title"].as_str().map(str::to_string))
                .unwrap_or_else(|| rep.template.clone());
            let mut item = json!({
                "id": r.id,
                "project_id": rep.project_id,
                "title": title,
                "message": rep.template,
                "platform": rep.platform,
                "kind": rep.kind,
                "culprit": culprit_of_group(rep),
                "count": t.count,
                "group_count": r.members.len(),
                "services": svc.iter().map(|(s, _)| s).collect::<Vec<_>>(),
                "first_seen": format_ms(t.first_seen_ms),
                "last_seen": format_ms(t.last_seen_ms),
                "first_release": first.first_release,
                "trend": trend_points(trends.get(r.id).unwrap_or(&empty), start, width),
                "suggestion": suggestion,
                "state": crate::states::state_json(state_of(r.id), now),
            });
            change_json(&mut item, r.change);
            Some(item)
        })
        .collect();
    let next = (offset + limit < total).then(|| encode_offset(offset + limit));
    Ok(Json(
        json!({"items": items, "next_cursor": next, "total": total}),
    ))
}

/// A cluster's events over the list's filter.
#[derive(Debug, Clone, Copy)]
struct Totals {
    count: i64,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            count: 0,
            first_seen_ms: i64::MAX,
            last_seen_ms: i64::MIN,
        }
    }
}

impl Totals {
    fn add(&mut self, count: i64, first: i64, last: i64) {
        self.count = self.count.saturating_add(count);
        self.first_seen_ms = self.first_seen_ms.min(first);
        self.last_seen_ms = self.last_seen_ms.max(last);
    }
}

fn group_matches(g: &GroupRow, q_lower: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(q_lower);
    hit(&g.template)
        || g.sample_message.as_deref().is_some_and(hit)
        || g.frames.iter().any(|f| hit(f))
}

fn encode_offset(n: usize) -> String {
    panicle_store::Cursor {
        ts: n as i64,
        id: "offset".into(),
    }
    .encode()
}

fn decode_offset(s: &str) -> Option<usize> {
    let c = panicle_store::Cursor::decode(s).ok()?;
    (c.id == "offset").then_some(c.ts.max(0) as usize)
}

/// The in-app frames of an event for attribution, innermost first.
fn facts(e: &ClusterEvent, payload: &Value) -> EventFacts {
    let frames = payload["frames"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let any_in_app = frames.iter().any(|f| f["in_app"] == true);
    EventFacts {
        timestamp_ms: e.timestamp_ms,
        app_frames: any_in_app,
        frames: frames
            .iter()
            .filter(|f| !any_in_app || f["in_app"] == true)
            .filter_map(|f| {
                let function = f["function"].as_str()?;
                if panicle_protocol::normalize::is_plumbing(function) {
                    return None;
                }
                Some(FrameFacts {
                    function: normalize_function(function),
                    file: f["file"].as_str().map(str::to_string),
                    line: f["line"].as_u64().map(|l| l as u32),
                })
            })
            .collect(),
        release: e.release.clone(),
        weight: e.weight.max(0) as u64,
    }
}

/// Values shown of a distribution; the rest is one `others` entry.
const DIST_SHOWN: usize = 20;

/// `[{name, count}]`, busiest first, adding up to the cluster's count: a
/// `name: null` entry holds the panics where the value was not recorded
/// (absent, or an event kept only as a count), and past [`DIST_SHOWN`]
/// values one `{name: null, others: n, count}` entry holds the rest.
fn dist_json(d: &[(Option<String>, i64)]) -> Value {
    let (named, unknown): (Vec<_>, Vec<_>) = d.iter().partition(|(v, _)| v.is_some());
    let mut out: Vec<Value> = named
        .iter()
        .take(DIST_SHOWN)
        .map(|(name, count)| json!({"name": name, "count": count}))
        .collect();
    if named.len() > DIST_SHOWN {
        let rest: i64 = named[DIST_SHOWN..].iter().map(|(_, n)| n).sum();
        out.push(json!({"name": null, "others": named.len() - DIST_SHOWN, "count": rest}));
    }
    let unknown: i64 = unknown.iter().map(|(_, n)| n).sum();
    if unknown > 0 {
        out.push(json!({"name": null, "count": unknown}));
    }
    Value::Array(out)
}

fn top_share(d: &[(String, u64)], total: u64) -> Option<Share> {
    d.first().map(|(name, count)| Share {
        name: name.clone(),
        count: *count,
        total,
        distinct: Some(d.len() as u64),
    })
}

pub fn trace_url(state: &AppState, trace_id: Option<&str>) -> Option<String> {
    let template = state.config.trace_url_template.as_deref()?;
    Some(template.replace("{trace_id}", trace_id?))
}

/// A cluster's groups; 404 when it does not exist or is outside the
/// caller's projects (and when `project=` names one outside them).
async fn load_cluster(
    state: &AppState,
    reader: &Reader,
    id: &str,
    project: Option<i64>,
) -> Result<Vec<GroupRow>, ApiError> {
    reader.list_projects(project)?;
    let mut groups = state.store.cluster_groups(id).await?;
    groups.retain(|g| reader.scope().allows(g.project_id));
    if groups.is_empty() {
        return Err(ApiError::NotFound("cluster"));
    }
    Ok(groups)
}

#[utoipa::path(get, path = "/api/v1/clusters/{id}", tag = "clusters",
    params(("id" = String, Path, description = "Cluster id"), ListParams),
    responses((status = 200, description = "Every number counts the same panics over the filter (storm counts and events kept only as counts included): `count`, each member group's `count`, each `where` distribution (`[{name, count}]`; `name: null` holds the panics where the value was not recorded, and `{name: null, others: n, count}` the values past the 20 busiest) and the `trend` all add up to it, as do the heatmap, the paths' root and the events list. `trend_change` and `growth` as in the list. Culprit, common path, groups and why merged, where, confinement, `state` (as in the list), `returned_after_quiet` (back in a new release after 7 quiet days; `regression` is its old name), `changes` (merges, splits, state changes, regressions and reopens: `{at, kind, others, actor, detail}`), traces, related clusters, trend, fix suggestion. `traces`: distinct trace ids of the events considered, newest first (up to 200; `trace_count` in all), each `{trace_id, url, event_id, timestamp, request_id, route, folded_into}`, storm samples included (`folded_into`: the aggregate holding that panic); `storms`: the newest storm aggregates, `{event_id, timestamp, count, traces, request_ids, routes, sampled, folded_ids}`", body = Object),
              (status = 404, description = "No such cluster in the token's projects", body = crate::openapi::ErrorBody)))]
pub async fn get_cluster(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    ReadQuery(p): ReadQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let groups = load_cluster(&state, &reader, &id, p.project).await?;
    let filter = p.event_filter()?;
    let events = state
        .store
        .cluster_events(Some(&id), &filter, ATTRIBUTION_EVENTS)
        .await?;
    let payloads: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap_or(Value::Null))
        .collect();
    let facts: Vec<EventFacts> = events
        .iter()
        .zip(&payloads)
        .map(|(e, p)| facts(e, p))
        .collect();
    let total = events.len() as u64;
    // `?group=` narrows the explanation to one member group.
    let refs: Vec<&GroupRow> = groups
        .iter()
        .filter(|g| filter.group_id.as_ref().is_none_or(|id| &g.id == id))
        .collect();
    let biggest = representative(&refs).ok_or(ApiError::NotFound("cluster"))?;
    // The biggest group stands for the cluster, unless the filter left it no
    // event: then the group of the newest event does.
    let rep = if events.iter().any(|e| e.group_id == biggest.id) {
        biggest
    } else {
        events
            .first()
            .and_then(|e| refs.iter().copied().find(|g| g.id == e.group_id))
            .unwrap_or(biggest)
    };

    let culprit = attribution::culprit(&facts);
    // Every number below counts the same panics: storm counts and events
    // kept only as counts (sampled) included, over the same filter.
    let member_ids: Vec<String> = refs.iter().map(|g| g.id.clone()).collect();
    let counts = member_counts(&state, &filter, &refs).await?;
    let count: i64 = counts.values().map(|a| a.count).sum();
    let d = state.store.distributions(&filter, &member_ids).await?;
    let named = |d: &[(Option<String>, i64)]| -> Vec<(String, u64)> {
        d.iter()
            .filter_map(|(v, n)| Some((v.clone()?, (*n).max(0) as u64)))
            .collect()
    };
    let (d_services, d_pods, d_nodes, d_routes) = (
        named(&d.services),
        named(&d.pods),
        named(&d.nodes),
        named(&d.routes),
    );
    let services: Vec<String> = d_services.iter().map(|(s, _)| s.clone()).collect();
    let confined = {
        let pods = state
            .store
            .distinct_hosts(rep.project_id, HostColumn::Pod, &services)
            .await?;
        let nodes = state
            .store
            .distinct_hosts(rep.project_id, HostColumn::Node, &services)
            .await?;
        confinement("pod", &d_pods, pods as usize)
            .or_else(|| confinement("node", &d_nodes, nodes as usize))
    };
    // Back in a new release after a quiet period: a signal of its own, apart
    // from the state's regression (a new event in a resolved cluster).
    let returned_after_quiet = attribution::regression(&facts, state.config.regression_quiet_ms)
        .map(|r| {
            json!({
                "release": r.release,
                "previous_release": r.previous_release,
                "after_quiet_days": (r.quiet_ms as f64 / DAY_MS as f64 * 10.0).round() / 10.0,
                "at": format_ms(r.at_ms),
            })
        });
    let first_group = groups.iter().min_by_key(|g| g.first_seen_ms).unwrap_or(rep);

    // The representative event: the newest of the biggest group.
    let rep_index = events
        .iter()
        .position(|e| e.group_id == rep.id)
        .unwrap_or(0);
    let rep_payload = payloads.get(rep_index).cloned().unwrap_or(Value::Null);
    let rep_frames: Vec<String> = rep_payload["frames"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f["function"].as_str().map(normalize_function))
                .collect()
        })
        .unwrap_or_default();
    let message = rep_payload["message"]
        .as_str()
        .or(rep.sample_message.as_deref())
        .unwrap_or(&rep.template)
        .to_string();
    let suggestion: Suggestion = state
        .rules
        .suggest(&MatchInput {
            platform: Some(&rep.platform),
            message: &message,
            frames: &rep_frames,
        })
        .unwrap_or_else(|| {
            derived_suggestion(&Evidence {
                culprit: culprit.as_ref().map(|(c, _)| RuleCulprit {
                    function: c.function.clone(),
                    file: c.file.clone(),
                    line_start: c.line_min,
                    line_end: c.line_max,
                }),
                path: culprit.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
                first_seen_release: first_group.first_release.clone(),
                top_pod: top_share(&d_pods, count.max(0) as u64),
                top_route: top_share(&d_routes, count.max(0) as u64),
            })
        });

    // Why the groups are together: what each shares with the representative.
    let params = state.job.params();
    let rep_sig = GroupSignature::new(rep.frames.clone(), Some(rep.template.clone()));
    let mut common: Option<Vec<String>> = None;
    let members: Vec<Value> = groups
        .iter()
        .map(|g| {
            let sig = GroupSignature::new(g.frames.clone(), Some(g.template.clone()));
            let why = explain(&sig, &rep_sig, params);
            common = Some(match common.take() {
                None => g.frames.clone(),
                Some(c) => c.into_iter().filter(|f| g.frames.contains(f)).collect(),
            });
            json!({
                "id": g.id,
                "title": g.template,
                "culprit": g.culprit,
                "count": counts.get(&g.id).map_or(0, |a| a.count),
                "frames": g.frames,
                "first_seen": format_ms(g.first_seen_ms),
                "last_seen": format_ms(g.last_seen_ms),
                "first_release": g.first_release,
                "core": g.core,
                "shared_frames": why.shared_frames,
                "same_message": why.same_message,
                "same_culprit": why.same_culprit,
                "same_kind": why.same_kind,
                "same_error_type": why.same_error_type(),
                "payload_differs": why.payload_differs.as_ref().map(|(this, rep)| json!({
                    "this": this,
                    "representative": rep,
                })),
                "why": why.summary(),
                "distance": why.distance,
            })
        })
        .collect();

    // Distinct traces, newest first, storm samples included (a folded panic
    // keeps its trace): TRACES_SHOWN shown, up to 500 to find related clusters.
    let mut links: Vec<TraceLink> = Vec::new();
    let mut storms: Vec<Value> = Vec::new();
    for (e, payload) in events.iter().zip(&payloads) {
        if let Some(t) = e.trace_id.as_deref().and_then(traces::trace_id) {
            links.push(TraceLink {
                trace_id: t,
                event_id: e.event_id.clone(),
                timestamp_ms: e.timestamp_ms,
                request_id: payload["request"]["request_id"]
                    .as_str()
                    .map(str::to_string),
                route: e.route.clone(),
                folded_into: None,
            });
        }
        let Some(record) = payload
            .get("storm")
            .and_then(|v| serde_json::from_value::<StormRecord>(v.clone()).ok())
        else {
            continue;
        };
        links.extend(traces::storm_links(
            &e.event_id,
            e.timestamp_ms,
            &record,
            rfc3339_ms,
        ));
        if storms.len() < STORMS_SHOWN {
            let count = panicle_protocol::decode::event_weight(payload.get("count"));
            let summary = traces::storm_summary(&record, count, e.trace_id.as_deref());
            let mut v = json!(summary);
            v["event_id"] = json!(e.event_id);
            v["timestamp"] = json!(format_ms(e.timestamp_ms));
            storms.push(v);
        }
    }
    let distinct = traces::distinct_traces(links);
    let trace_count = distinct.len();
    let traces: Vec<Value> = distinct
        .iter()
        .take(TRACES_SHOWN)
        .map(|l| {
            json!({
                "trace_id": l.trace_id,
                "url": trace_url(&state, Some(&l.trace_id)),
                "event_id": l.event_id,
                "timestamp": format_ms(l.timestamp_ms),
                "request_id": l.request_id,
                "route": l.route,
                "folded_into": l.folded_into,
            })
        })
        .collect();
    let trace_ids: Vec<String> = distinct.into_iter().take(500).map(|l| l.trace_id).collect();
    let mut related = Vec::new();
    for (cid, shared) in state
        .store
        .clusters_sharing_traces(rep.project_id, &trace_ids, &id)
        .await?
    {
        let title = state
            .store
            .cluster_groups(&cid)
            .await?
            .first()
            .map(|g| g.template.clone());
        related.push(json!({"id": cid, "title": title, "shared_traces": shared}));
    }

    // The same weighted trend as the list's, over every event of the window.
    let (trend_filter, start, width) = trend_window(&filter);
    let mut trend_counts: HashMap<i64, i64> = HashMap::new();
    for (_, b, n) in state
        .store
        .group_trends(&trend_filter, start, width, &member_ids)
        .await?
    {
        *trend_counts.entry(trend_bucket(b)).or_default() += n;
    }
    let changes: Vec<Value> = state
        .store
        .cluster_changes(&id)
        .await?
        .into_iter()
        .map(|(at, c)| {
            json!({"at": format_ms(at), "kind": c.kind, "others": c.others, "actor": c.actor, "detail": c.detail})
        })
        .collect();
    let cluster_state = state.store.cluster_state(&id).await?;
    // The list's comparison: the trend's older half against its newer.
    let (mut older, mut newer) = (0u64, 0u64);
    for (b, n) in &trend_counts {
        if *b < TREND_BUCKETS / 2 {
            older += (*n).max(0) as u64;
        } else {
            newer += (*n).max(0) as u64;
        }
    }
    let born = refs.iter().map(|g| g.first_seen_ms).min().unwrap_or(0);
    let seen = |f: fn(&GroupAggregate) -> i64, pick: fn(i64, i64) -> i64| {
        counts.values().map(f).reduce(pick).unwrap_or(0)
    };
    let (first_seen, last_seen) = if filter.is_unfiltered() {
        (
            groups.iter().map(|g| g.first_seen_ms).min().unwrap_or(0),
            groups.iter().map(|g| g.last_seen_ms).max().unwrap_or(0),
        )
    } else {
        (
            seen(|a| a.first_seen_ms, i64::min),
            seen(|a| a.last_seen_ms, i64::max),
        )
    };
    let mut out = json!({
        "id": id,
        "project_id": rep.project_id,
        "title": if matches!(suggestion.source, panicle_rules::SuggestionSource::Rule { .. }) { suggestion.title.clone() } else { rep.template.clone() },
        "message": message,
        "platform": rep.platform,
        "kind": rep.kind,
        "count": count,
        "group_count": groups.len(),
        "first_seen": format_ms(first_seen),
        "last_seen": format_ms(last_seen),
        "first_release": first_group.first_release,
        "culprit": culprit.as_ref().map(|(c, _)| c),
        "common_path": culprit.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
        "suggestion": suggestion,
        "representative": {
            "event_id": events.get(rep_index).map(|e| e.event_id.clone()),
            "frames": rep_payload["frames"].clone(),
        },
        "groups": members,
        "merged_because": common.unwrap_or_default(),
        "where": {
            "services": dist_json(&d.services),
            "releases": dist_json(&d.releases),
            "environments": dist_json(&d.environments),
            "pods": dist_json(&d.pods),
            "nodes": dist_json(&d.nodes),
            "routes": dist_json(&d.routes),
        },
        "confined": confined,
        "state": crate::states::state_json(&cluster_state, crate::now_ms()),
        "returned_after_quiet": returned_after_quiet,
        // The old name of `returned_after_quiet`, kept for older clients.
        "regression": returned_after_quiet,
        "traces": traces,
        "trace_count": trace_count,
        "storms": storms,
        "related": related,
        "trend": trend_points(&trend_counts, start, width),
        "changes": changes,
        "events_considered": total,
    });
    change_json(&mut out, trend_change(older, newer, born, start));
    Ok(Json(out))
}

/// Per member group, its panics over the filter: the group counters when
/// nothing narrows (what the list shows), else its events' weights.
async fn member_counts(
    state: &AppState,
    filter: &EventFilter,
    members: &[&GroupRow],
) -> Result<HashMap<String, GroupAggregate>, ApiError> {
    if filter.is_unfiltered() {
        return Ok(members
            .iter()
            .map(|g| {
                let a = GroupAggregate {
                    group_id: g.id.clone(),
                    count: g.count,
                    first_seen_ms: g.first_seen_ms,
                    last_seen_ms: g.last_seen_ms,
                };
                (g.id.clone(), a)
            })
            .collect());
    }
    let ids: Vec<String> = members.iter().map(|g| g.id.clone()).collect();
    Ok(state
        .store
        .aggregates_of_groups(filter, &ids)
        .await?
        .into_iter()
        .map(|a| (a.group_id.clone(), a))
        .collect())
}

#[utoipa::path(get, path = "/api/v1/clusters/{id}/events", tag = "clusters",
    params(("id" = String, Path, description = "Cluster id"), ListParams),
    responses((status = 200, description = "Events of the cluster, newest first, with trace links; `{items, next_cursor}`. Each item's `count` is the panics it stands for, and events kept only as a count (`sampled: true`) are listed too, so the counts of all pages add up to the cluster's `count` over the same filter", body = Object),
              (status = 400, description = "Bad or unknown parameter", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such cluster in the token's projects", body = crate::openapi::ErrorBody)))]
pub async fn cluster_events(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    ReadQuery(p): ReadQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let groups = load_cluster(&state, &reader, &id, p.project).await?;
    let q = p.event_query(Some(groups.into_iter().map(|g| g.id).collect()))?;
    let page = state.store.list_events(&q).await?;
    Ok(Json(page_json(&page, |e| {
        let mut v = event_json(e);
        v["trace_url"] = json!(trace_url(&state, e.trace_id.as_deref()));
        v
    })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeatmapParams {
    /// `15m`, `1h` (default), `1d`, … or `hour_of_day`. A range that would
    /// need more than 200 columns of it is drawn at a coarser bucket, named
    /// in the answer's `bucket`.
    pub bucket: Option<String>,
    /// Start of the window (default: 7 days before `until`).
    pub since: Option<String>,
    /// End of the window (default: now).
    pub until: Option<String>,
    /// One member group only (the project baseline stays whole).
    pub group: Option<String>,
    /// The cluster list's event filters narrow the cluster's map (the
    /// project baseline keeps only the window), so it counts what the
    /// cluster's other views count over the same filters.
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
    pub route: Option<String>,
    pub trace_id: Option<String>,
    pub kind: Option<String>,
    pub platform: Option<String>,
}

fn parse_bucket(s: &str) -> Option<Bucket> {
    if s == "hour_of_day" {
        return Some(Bucket::HourOfDay);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok().filter(|n| (1..=1000).contains(n))?;
    let ms = match unit {
        "m" => 60_000,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        _ => return None,
    };
    Some(Bucket::Every(n * ms))
}

/// A heatmap, sparse: the columns are `columns` buckets of `bucket_ms` from
/// `start` (or the 24 hours of the day), and `cells` lists only the
/// non-zero ones as `[row, column, count]` (row: index into `depths`), so a
/// quiet week is a few bytes, not 200 × depths zeros.
fn heatmap_json(h: &attribution::Heatmap, bucket: Bucket) -> Value {
    let cells: Vec<Value> = h
        .cells
        .iter()
        .enumerate()
        .flat_map(|(r, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(c, n)| json!([r, c, n]))
        })
        .collect();
    let start = match bucket {
        Bucket::HourOfDay => Value::Null,
        Bucket::Every(_) => json!(h.times.first().map(|t| format_ms(*t))),
    };
    json!({
        "start": start,
        "columns": h.times.len(),
        "depths": h.depths,
        "cells": cells,
        "max": h.max,
        "total": h.total,
    })
}

#[utoipa::path(get, path = "/api/v1/clusters/{id}/heatmap", tag = "clusters",
    params(("id" = String, Path, description = "Cluster id"), HeatmapParams),
    responses((status = 200, description = "Call depth × time counts of the cluster and of the whole project, storm counts included: `{bucket, requested_bucket, bucket_ms, since, until, start, columns, depths, cells, max, total, project}`. `bucket` is the width the columns really have: the one asked for, or a coarser one (`15m`, `30m`, `1h`, `3h`, `6h`, `12h`, `1d`, `7d`, whole days) when the window would need more than 200 columns. Columns are aligned to the bucket (UTC); column `i` starts at `start + i × bucket_ms` (for `hour_of_day`, `start` is null and column `i` is the hour `i`). `depths` ascending, `null` last for events whose depth was not kept (sampled). `cells` lists only non-zero cells, as `[row, column, count]`. The events' filters (`service`, `pod`, …, `group`) narrow the cluster's map; `project`: the same window for the whole project", body = Object),
              (status = 400, description = "Bad bucket or range, or an unknown parameter", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such cluster in the token's projects", body = crate::openapi::ErrorBody)))]
pub async fn cluster_heatmap(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    ReadQuery(p): ReadQuery<HeatmapParams>,
) -> Result<Json<Value>, ApiError> {
    let groups = load_cluster(&state, &reader, &id, None).await?;
    let bucket_name = p.bucket.clone().unwrap_or_else(|| "1h".into());
    let asked = parse_bucket(&bucket_name).ok_or_else(|| ApiError::BadParam {
        name: "bucket",
        message: format!("`{bucket_name}`: use e.g. 15m, 1h, 1d or hour_of_day"),
    })?;
    let until = parse_time("until", p.until.as_deref())?.unwrap_or_else(crate::now_ms);
    let since = parse_time("since", p.since.as_deref())?.unwrap_or(until - 7 * DAY_MS);
    if since >= until {
        return Err(ApiError::BadParam {
            name: "since",
            message: "must be before until".into(),
        });
    }
    let bucket = attribution::fit_bucket(asked, since, until);
    let filter = EventFilter {
        project_id: Some(groups[0].project_id),
        since_ms: Some(since),
        until_ms: Some(until),
        ..EventFilter::default()
    };
    let narrowed = ListParams {
        service: p.service.clone(),
        environment: p.environment.clone(),
        release: p.release.clone(),
        pod: p.pod.clone(),
        node: p.node.clone(),
        route: p.route.clone(),
        trace_id: p.trace_id.clone(),
        kind: p.kind.clone(),
        platform: p.platform.clone(),
        group: p.group.clone(),
        ..ListParams::default()
    }
    .event_filter()?;
    let cluster_filter = EventFilter {
        since_ms: Some(since),
        until_ms: Some(until),
        project_id: filter.project_id,
        ..narrowed
    };
    let width = attribution::column_width(bucket);
    let weighted = |rows: Vec<(Option<i64>, i64, i64)>| -> Vec<(Option<i64>, i64, u64)> {
        rows.into_iter()
            .map(|(d, t, n)| (d, t, n.max(0) as u64))
            .collect()
    };
    let cluster_points = weighted(
        state
            .store
            .depth_buckets(&cluster_filter, Some(&id), width)
            .await?,
    );
    let project_points = weighted(state.store.depth_buckets(&filter, None, width).await?);
    let h = attribution::heatmap(&cluster_points, bucket, since, until);
    let ph = attribution::heatmap(&project_points, bucket, since, until);
    let mut out = heatmap_json(&h, bucket);
    out["bucket"] = json!(attribution::bucket_name(bucket));
    out["requested_bucket"] = json!(bucket_name);
    out["bucket_ms"] = json!(width);
    out["since"] = json!(format_ms(since));
    out["until"] = json!(format_ms(until));
    out["project"] = heatmap_json(&ph, bucket);
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/clusters/{id}/paths", tag = "clusters",
    params(("id" = String, Path, description = "Cluster id"), ListParams),
    responses((status = 200, description = "Tree of in-app call paths with event counts (storm counts included; the root's count is the cluster's over the filter): `{root: {function, count, children}}`. The newest 2,000 stored events are walked; the group's other panics (older ones, and those kept only as counts) follow the path of their group's newest event, which the fingerprint fixes", body = Object),
              (status = 400, description = "Bad or unknown parameter", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such cluster in the token's projects", body = crate::openapi::ErrorBody)))]
pub async fn cluster_paths(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    ReadQuery(p): ReadQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let groups = load_cluster(&state, &reader, &id, p.project).await?;
    let filter = p.event_filter()?;
    let events = state
        .store
        .cluster_events(Some(&id), &filter, ATTRIBUTION_EVENTS)
        .await?;
    let mut facts: Vec<EventFacts> = events
        .iter()
        .map(|e| facts(e, &serde_json::from_str(&e.payload).unwrap_or(Value::Null)))
        .collect();
    // The panics not walked: each group's count less what was walked of it,
    // along the group's newest walked path (its signature when none was).
    let members: Vec<&GroupRow> = groups
        .iter()
        .filter(|g| filter.group_id.as_ref().is_none_or(|id| &g.id == id))
        .collect();
    let counts = member_counts(&state, &filter, &members).await?;
    let mut walked: HashMap<&str, (u64, usize)> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let w = walked.entry(e.group_id.as_str()).or_insert((0, i));
        w.0 += e.weight.max(0) as u64;
    }
    let mut rest = Vec::new();
    for g in &members {
        let total = counts.get(&g.id).map_or(0, |a| a.count).max(0) as u64;
        let (done, newest) = walked
            .get(g.id.as_str())
            .copied()
            .unwrap_or((0, usize::MAX));
        if total <= done {
            continue;
        }
        let frames = match facts.get(newest) {
            Some(f) => f.frames.clone(),
            None => g
                .frames
                .iter()
                .map(|f| FrameFacts {
                    function: f.clone(),
                    file: None,
                    line: None,
                })
                .collect(),
        };
        let app_frames = facts.get(newest).is_none_or(|f| f.app_frames);
        rest.push(EventFacts {
            timestamp_ms: g.last_seen_ms,
            frames,
            app_frames,
            release: None,
            weight: total - done,
        });
    }
    facts.extend(rest);
    Ok(Json(json!({"root": attribution::hot_paths(&facts)})))
}

#[utoipa::path(post, path = "/api/v1/clusters/recompute", tag = "clusters",
    responses((status = 200, description = "Run report: `{ran, projects, groups, clusters, merges, splits, millis}`", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Not an admin token, or a session cookie sent from another site", body = crate::openapi::ErrorBody)))]
pub async fn recompute(State(state): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    // Its own task: a client that hangs up does not cancel a run holding the lock.
    let job = state.job.clone();
    let report = tokio::spawn(async move { job.run().await })
        .await
        .map_err(|e| ApiError::Job(e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "clustering run failed");
            ApiError::Job(e.to_string())
        })?;
    Ok(Json(json!(report)))
}

#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, description = "The projects the token may read: `{items: [{id, name, dsn}]}`; `dsn` (it holds the ingest key) only for admin tokens, null otherwise", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody)))]
pub async fn list_projects(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Json<Value>, ApiError> {
    let base = state.config.public_url.trim_end_matches('/').to_string();
    let (scheme, host) = base.split_once("://").unwrap_or(("http", base.as_str()));
    let admin = reader.scope().is_admin();
    let items: Vec<Value> = state
        .store
        .projects()
        .await?
        .into_iter()
        .filter(|p| reader.scope().allows(p.id))
        .map(|p| {
            let dsn = admin.then(|| format!("{scheme}://{}@{host}/{}", p.ingest_key, p.id));
            json!({"id": p.id, "name": p.name, "dsn": dsn})
        })
        .collect();
    Ok(Json(json!({"items": items})))
}
