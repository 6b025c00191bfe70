//! Cluster states (issue 14): resolved or ignored clusters, the rules that
//! reopen them (regressions), and how states survive re-clustering.
//!
//! The rules are pure functions ([`evaluate`], [`merge_states`],
//! [`release_newer`]); the store applies them in the transaction that
//! brought the events (ingest, attach) or the new memberships (a run).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::page::{Bind, Filter, bind_all, push_in, push_in_ids};
use crate::triggers::{self, Trigger};
use crate::{Backend, Result, Store, StoreError, now_ms};

/// How a resolved cluster comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Any new event reopens it.
    Now,
    /// An event of a release newer than the latest one at resolve time
    /// (`None`: the project had no release then, so any release).
    NextRelease { latest: Option<String> },
    /// An event of a release newer than this one.
    InRelease(String),
}

/// Until when an ignored cluster stays ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreUntil {
    Forever,
    /// More than this many events (storm counts included) since ignored.
    Events(i64),
    /// A time (epoch ms): the first event received after it reopens.
    Time(i64),
    /// More than this many distinct pods (the "users" of a service) since ignored.
    Pods(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterStatus {
    Unresolved,
    Resolved(Resolution),
    Ignored(IgnoreUntil),
}

impl ClusterStatus {
    /// `unresolved`, `resolved` or `ignored`: what the list filters on.
    pub fn name(&self) -> &'static str {
        match self {
            ClusterStatus::Unresolved => "unresolved",
            ClusterStatus::Resolved(_) => "resolved",
            ClusterStatus::Ignored(_) => "ignored",
        }
    }
}

/// A new event that reopened a resolved cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegressionMark {
    pub at_ms: i64,
    pub release: Option<String>,
    pub event_id: String,
}

/// A cluster's state with who set it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    pub status: ClusterStatus,
    /// Events counted since ignored (for [`IgnoreUntil::Events`]).
    pub seen_events: i64,
    /// Distinct pods since ignored (for [`IgnoreUntil::Pods`]).
    pub seen_pods: Vec<String>,
    /// Set when a new event reopened the cluster; cleared by the next change.
    pub regression: Option<RegressionMark>,
    pub changed_at_ms: i64,
    pub changed_by: String,
}

impl ClusterState {
    /// The default: unresolved, never changed.
    pub fn unresolved() -> ClusterState {
        ClusterState {
            status: ClusterStatus::Unresolved,
            seen_events: 0,
            seen_pods: Vec::new(),
            regression: None,
            changed_at_ms: 0,
            changed_by: String::new(),
        }
    }

    /// The status as of `now_ms`: an ignore until a time that has passed
    /// reads as unresolved even before an event arrives.
    pub fn effective(&self, now_ms: i64) -> &'static str {
        match self.status {
            ClusterStatus::Ignored(IgnoreUntil::Time(t)) if now_ms >= t => "unresolved",
            ref s => s.name(),
        }
    }
}

/// What a caller asks a cluster's state to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Unresolve,
    Resolve,
    ResolveInNextRelease,
    ResolveInRelease(String),
    Ignore(IgnoreUntil),
}

/// An event as the state rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent<'a> {
    pub event_id: &'a str,
    pub release: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub weight: i64,
    pub received_ms: i64,
}

/// What new events did to a resolved or ignored cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still resolved or ignored (an ignore's counters may have moved).
    Stays,
    /// A resolved cluster is back: this event in this release.
    Regressed {
        event_id: String,
        release: Option<String>,
    },
    /// An ignore's condition was met at this event.
    Reopened { event_id: String, why: String },
}

/// A release version: `[package@][v]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`.
#[derive(Debug, PartialEq, Eq)]
struct Version<'a> {
    package: &'a str,
    core: [u64; 3],
    pre: Option<&'a str>,
}

fn parse_version(release: &str) -> Option<Version<'_>> {
    let (package, v) = match release.rsplit_once('@') {
        Some((p, v)) => (p, v),
        None => ("", release),
    };
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(v, _)| v);
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let mut parts = [0u64; 3];
    for (n, part) in core.split('.').enumerate() {
        if n == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = part.parse().ok()?;
    }
    Some(Version {
        package,
        core: parts,
        pre,
    })
}

fn compare_versions(a: &Version<'_>, b: &Version<'_>) -> Ordering {
    a.core.cmp(&b.core).then_with(|| match (a.pre, b.pre) {
        (None, None) => Ordering::Equal,
        // A pre-release comes before its release.
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

/// True when release `a` is newer than `b`: by semver when both parse (and
/// name the same package, if any), else by the first time each was seen in
/// the project (a release never seen is newer than none).
pub fn release_newer(a: &str, b: &str, first_seen: &dyn Fn(&str) -> Option<i64>) -> bool {
    if a == b {
        return false;
    }
    if let (Some(va), Some(vb)) = (parse_version(a), parse_version(b))
        && va.package == vb.package
    {
        return compare_versions(&va, &vb) == Ordering::Greater;
    }
    match (first_seen(a), first_seen(b)) {
        (Some(fa), Some(fb)) => fa > fb,
        _ => false,
    }
}

/// True when comparing `a` with `b` needs their first-seen times.
pub fn needs_first_seen(a: &str, b: &str) -> bool {
    match (parse_version(a), parse_version(b)) {
        (Some(va), Some(vb)) => va.package != vb.package,
        _ => true,
    }
}

/// Applies new events, in order, to a resolved or ignored cluster's state.
/// On `Regressed` or `Reopened` the state is set to unresolved (with the
/// regression mark for a regression); on `Stays` an ignore's counters move.
pub fn evaluate(
    state: &mut ClusterState,
    events: &[SeenEvent<'_>],
    first_seen: &dyn Fn(&str) -> Option<i64>,
) -> Verdict {
    for e in events {
        let verdict = match &state.status {
            ClusterStatus::Unresolved => return Verdict::Stays,
            ClusterStatus::Resolved(r) => {
                let back = match r {
                    Resolution::Now => true,
                    Resolution::NextRelease { latest: None } => e.release.is_some(),
                    Resolution::NextRelease { latest: Some(x) } | Resolution::InRelease(x) => e
                        .release
                        .is_some_and(|rel| release_newer(rel, x, first_seen)),
                };
                back.then(|| Verdict::Regressed {
                    event_id: e.event_id.to_string(),
                    release: e.release.map(str::to_string),
                })
            }
            ClusterStatus::Ignored(until) => match *until {
                IgnoreUntil::Forever => None,
                IgnoreUntil::Events(limit) => {
                    state.seen_events = state.seen_events.saturating_add(e.weight.max(1));
                    (state.seen_events > limit).then(|| Verdict::Reopened {
                        event_id: e.event_id.to_string(),
                        why: format!("more than {limit} events since ignored"),
                    })
                }
                IgnoreUntil::Time(t) => (e.received_ms >= t).then(|| Verdict::Reopened {
                    event_id: e.event_id.to_string(),
                    why: "an event after the ignore ended".into(),
                }),
                IgnoreUntil::Pods(limit) => {
                    if let Some(pod) = e.pod
                        && !state.seen_pods.iter().any(|p| p == pod)
                    {
                        state.seen_pods.push(pod.to_string());
                    }
                    (state.seen_pods.len() as i64 > limit).then(|| Verdict::Reopened {
                        event_id: e.event_id.to_string(),
                        why: format!("more than {limit} distinct pods since ignored"),
                    })
                }
            },
        };
        if let Some(v) = verdict {
            if let Verdict::Regressed { event_id, release } = &v {
                state.regression = Some(RegressionMark {
                    at_ms: e.received_ms,
                    release: release.clone(),
                    event_id: event_id.clone(),
                });
            }
            state.status = ClusterStatus::Unresolved;
            state.seen_events = 0;
            state.seen_pods.clear();
            return v;
        }
    }
    Verdict::Stays
}

/// How readily a state reopens: lower reopens sooner. Merges keep the lowest.
fn reopen_rank(s: &ClusterState) -> (u8, i64) {
    match &s.status {
        ClusterStatus::Unresolved => (0, 0),
        ClusterStatus::Resolved(Resolution::Now) => (1, 0),
        ClusterStatus::Resolved(Resolution::NextRelease { .. }) => (2, 0),
        ClusterStatus::Resolved(Resolution::InRelease(_)) => (3, 0),
        ClusterStatus::Ignored(IgnoreUntil::Events(n)) => (4, n - s.seen_events),
        ClusterStatus::Ignored(IgnoreUntil::Pods(n)) => (5, n - s.seen_pods.len() as i64),
        ClusterStatus::Ignored(IgnoreUntil::Time(t)) => (6, *t),
        ClusterStatus::Ignored(IgnoreUntil::Forever) => (7, 0),
    }
}

/// The state of a cluster made of parts of previous clusters (`parts`, one
/// state per previous cluster). One part (a split, or a cluster that kept
/// its groups): it inherits that state. Several (a merge): unresolved if
/// any part is (keeping the newest regression mark), else the part's state
/// that reopens soonest: resolved before resolved in the next release
/// before resolved in a release (the oldest release of equals) before
/// ignored until N events, N pods, a time, and ignored forever (fewest
/// remaining, earliest end first). No parts: unresolved.
pub fn merge_states(
    parts: &[ClusterState],
    first_seen: &dyn Fn(&str) -> Option<i64>,
) -> ClusterState {
    let mut best: Option<&ClusterState> = None;
    for p in parts {
        best = Some(match best {
            None => p,
            Some(b) => {
                let (rp, rb) = (reopen_rank(p), reopen_rank(b));
                let sooner = match rp.cmp(&rb) {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => match (&p.status, &b.status) {
                        (
                            ClusterStatus::Resolved(Resolution::InRelease(x)),
                            ClusterStatus::Resolved(Resolution::InRelease(y)),
                        ) => release_newer(y, x, first_seen),
                        (
                            ClusterStatus::Resolved(Resolution::NextRelease { latest: x }),
                            ClusterStatus::Resolved(Resolution::NextRelease { latest: y }),
                        ) => match (x, y) {
                            (None, Some(_)) => true,
                            (Some(x), Some(y)) => release_newer(y, x, first_seen),
                            _ => false,
                        },
                        (ClusterStatus::Unresolved, ClusterStatus::Unresolved) => {
                            p.regression.as_ref().map(|r| r.at_ms)
                                > b.regression.as_ref().map(|r| r.at_ms)
                        }
                        _ => false,
                    },
                };
                if sooner { p } else { b }
            }
        });
    }
    best.cloned().unwrap_or_else(ClusterState::unresolved)
}

/// Columns of `cluster_states` read into a [`ClusterState`].
const STATE_COLUMNS: &str = "s.cluster_id, s.project_id, s.status, s.resolution, s.release, \
     s.ignore_kind, s.ignore_limit, s.seen_events, s.seen_pods, s.regressed_at, \
     s.regressed_release, s.regressed_event, s.changed_at, s.changed_by";

fn state_from_row(r: &sqlx::any::AnyRow) -> Result<ClusterState> {
    let status: String = r.try_get("status")?;
    let resolution: Option<String> = r.try_get("resolution")?;
    let release: Option<String> = r.try_get("release")?;
    let ignore_kind: Option<String> = r.try_get("ignore_kind")?;
    let limit: Option<i64> = r.try_get("ignore_limit")?;
    let limit = limit.unwrap_or(0);
    let status = match status.as_str() {
        "resolved" => ClusterStatus::Resolved(match (resolution.as_deref(), release) {
            (Some("next_release"), latest) => Resolution::NextRelease { latest },
            (Some("in_release"), Some(x)) => Resolution::InRelease(x),
            _ => Resolution::Now,
        }),
        "ignored" => ClusterStatus::Ignored(match ignore_kind.as_deref() {
            Some("events") => IgnoreUntil::Events(limit),
            Some("time") => IgnoreUntil::Time(limit),
            Some("pods") => IgnoreUntil::Pods(limit),
            _ => IgnoreUntil::Forever,
        }),
        _ => ClusterStatus::Unresolved,
    };
    let pods: String = r.try_get("seen_pods")?;
    let regressed_at: Option<i64> = r.try_get("regressed_at")?;
    let regressed_event: Option<String> = r.try_get("regressed_event")?;
    Ok(ClusterState {
        status,
        seen_events: r.try_get("seen_events")?,
        seen_pods: serde_json::from_str(&pods).unwrap_or_default(),
        regression: match (regressed_at, regressed_event) {
            (Some(at_ms), Some(event_id)) => Some(RegressionMark {
                at_ms,
                release: r.try_get("regressed_release")?,
                event_id,
            }),
            _ => None,
        },
        changed_at_ms: r.try_get("changed_at")?,
        changed_by: r.try_get("changed_by")?,
    })
}

/// The state as the history's `detail` keeps it.
pub fn state_detail(s: &ClusterState) -> serde_json::Value {
    let mut v = serde_json::json!({"status": s.status.name()});
    match &s.status {
        ClusterStatus::Unresolved => {}
        ClusterStatus::Resolved(r) => {
            let (how, release) = match r {
                Resolution::Now => ("now", None),
                Resolution::NextRelease { latest } => ("next_release", latest.as_deref()),
                Resolution::InRelease(x) => ("in_release", Some(x.as_str())),
            };
            v["resolution"] = how.into();
            v["release"] = release.into();
        }
        ClusterStatus::Ignored(u) => match u {
            IgnoreUntil::Forever => v["ignore"] = "forever".into(),
            IgnoreUntil::Events(n) => v["until_events"] = (*n).into(),
            IgnoreUntil::Time(t) => v["until_ms"] = (*t).into(),
            IgnoreUntil::Pods(n) => v["until_pods"] = (*n).into(),
        },
    }
    v
}

async fn write_state(
    conn: &mut AnyConnection,
    cluster_id: &str,
    project_id: i64,
    s: &ClusterState,
) -> Result<()> {
    let (resolution, release, ignore_kind, limit) = match &s.status {
        ClusterStatus::Unresolved => (None, None, None, None),
        ClusterStatus::Resolved(Resolution::Now) => (Some("now"), None, None, None),
        ClusterStatus::Resolved(Resolution::NextRelease { latest }) => {
            (Some("next_release"), latest.clone(), None, None)
        }
        ClusterStatus::Resolved(Resolution::InRelease(x)) => {
            (Some("in_release"), Some(x.clone()), None, None)
        }
        ClusterStatus::Ignored(u) => match u {
            IgnoreUntil::Forever => (None, None, Some("forever"), None),
            IgnoreUntil::Events(n) => (None, None, Some("events"), Some(*n)),
            IgnoreUntil::Time(t) => (None, None, Some("time"), Some(*t)),
            IgnoreUntil::Pods(n) => (None, None, Some("pods"), Some(*n)),
        },
    };
    sqlx::query(
        "INSERT INTO cluster_states (cluster_id, project_id, status, resolution, release, ignore_kind, \
         ignore_limit, seen_events, seen_pods, regressed_at, regressed_release, regressed_event, changed_at, changed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (cluster_id) DO UPDATE SET project_id = excluded.project_id, status = excluded.status, \
         resolution = excluded.resolution, release = excluded.release, ignore_kind = excluded.ignore_kind, \
         ignore_limit = excluded.ignore_limit, seen_events = excluded.seen_events, seen_pods = excluded.seen_pods, \
         regressed_at = excluded.regressed_at, regressed_release = excluded.regressed_release, \
         regressed_event = excluded.regressed_event, changed_at = excluded.changed_at, changed_by = excluded.changed_by",
    )
    .bind(cluster_id)
    .bind(project_id)
    .bind(s.status.name())
    .bind(resolution)
    .bind(release)
    .bind(ignore_kind)
    .bind(limit)
    .bind(s.seen_events)
    .bind(serde_json::to_string(&s.seen_pods).unwrap_or_else(|_| "[]".into()))
    .bind(s.regression.as_ref().map(|r| r.at_ms))
    .bind(s.regression.as_ref().and_then(|r| r.release.clone()))
    .bind(s.regression.as_ref().map(|r| r.event_id.clone()))
    .bind(s.changed_at_ms)
    .bind(&s.changed_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One history entry beside the merges and splits.
pub(crate) async fn record_change(
    conn: &mut AnyConnection,
    project_id: i64,
    cluster_id: &str,
    kind: &str,
    actor: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_changes (at, project_id, kind, cluster_id, others, actor, detail) \
         VALUES ($1, $2, $3, $4, '[]', $5, $6)",
    )
    .bind(now_ms())
    .bind(project_id)
    .bind(kind)
    .bind(cluster_id)
    .bind(actor)
    .bind(detail.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// First-seen times (epoch ms) of releases in a project, from the stored events.
async fn first_seen_times(
    conn: &mut AnyConnection,
    project_id: i64,
    releases: &BTreeSet<String>,
) -> Result<HashMap<String, i64>> {
    if releases.is_empty() {
        return Ok(HashMap::new());
    }
    let mut f = Filter::default();
    f.push("project_id = ?", Bind::Int(project_id));
    let list: Vec<String> = releases.iter().cloned().collect();
    push_in(&mut f, "release", &list);
    let sql = format!(
        "SELECT release, MIN(ts) AS fs FROM events{} GROUP BY release",
        f.where_sql()
    );
    let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("release")?, r.try_get("fs")?)))
        .collect()
}

/// Applies new events to the resolved or ignored clusters they fell in:
/// regressions and reopens are written with their history entries and
/// `Regression` triggers, ignore counters move. `by_cluster` holds each
/// cluster's state (already locked by the caller) and its new events.
pub(crate) async fn apply_events(
    conn: &mut AnyConnection,
    project_id: i64,
    by_cluster: Vec<(String, ClusterState, Vec<SeenEvent<'_>>)>,
    event_ts: &HashMap<&str, i64>,
) -> Result<()> {
    for (cluster_id, mut state, events) in by_cluster {
        // Releases to compare by first-seen time: only when semver cannot tell.
        let reference = match &state.status {
            ClusterStatus::Resolved(Resolution::InRelease(x))
            | ClusterStatus::Resolved(Resolution::NextRelease { latest: Some(x) }) => {
                Some(x.clone())
            }
            _ => None,
        };
        let mut seen: HashMap<String, i64> = HashMap::new();
        if let Some(x) = &reference {
            let wanted: BTreeSet<String> = events
                .iter()
                .filter_map(|e| e.release)
                .filter(|r| needs_first_seen(r, x))
                .map(str::to_string)
                .collect();
            if !wanted.is_empty() {
                let mut all = wanted.clone();
                all.insert(x.clone());
                seen = first_seen_times(conn, project_id, &all).await?;
                // A release first seen in this batch (or only in sampled events).
                for e in &events {
                    if let (Some(r), Some(ts)) = (e.release, event_ts.get(e.event_id))
                        && wanted.contains(r)
                    {
                        let t = seen.entry(r.to_string()).or_insert(*ts);
                        *t = (*t).min(*ts);
                    }
                }
            }
        }
        let before = state.clone();
        let verdict = evaluate(&mut state, &events, &|r| seen.get(r).copied());
        match verdict {
            Verdict::Stays => {
                if state != before {
                    write_state(conn, &cluster_id, project_id, &state).await?;
                }
            }
            Verdict::Regressed { event_id, release } => {
                state.changed_at_ms = now_ms();
                state.changed_by = "regression".into();
                write_state(conn, &cluster_id, project_id, &state).await?;
                let detail = serde_json::json!({
                    "status": "unresolved",
                    "release": release,
                    "event_id": event_id,
                    "was": state_detail(&before),
                });
                record_change(
                    conn,
                    project_id,
                    &cluster_id,
                    "regression",
                    "ingest",
                    &detail,
                )
                .await?;
                triggers::record(
                    conn,
                    project_id,
                    &Trigger::Regression {
                        cluster_id: &cluster_id,
                        release: release.as_deref(),
                        event_id: &event_id,
                    },
                )
                .await?;
            }
            Verdict::Reopened { event_id, why } => {
                state.changed_at_ms = now_ms();
                state.changed_by = "ignore ended".into();
                write_state(conn, &cluster_id, project_id, &state).await?;
                let detail = serde_json::json!({
                    "status": "unresolved",
                    "why": why,
                    "event_id": event_id,
                    "was": state_detail(&before),
                });
                record_change(conn, project_id, &cluster_id, "reopened", "ingest", &detail).await?;
            }
        }
    }
    Ok(())
}

/// Reads (and on PostgreSQL locks, in cluster id order) the states of the
/// clusters the given groups are in that are resolved or ignored: one
/// indexed read per batch; clusters without a row or unresolved cost nothing more.
pub(crate) async fn held_states_of_groups(
    conn: &mut AnyConnection,
    backend: Backend,
    group_ids: &[String],
) -> Result<Vec<(String, String, ClusterState)>> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut f = Filter::default();
    push_in(&mut f, "g.id", group_ids);
    // Nothing reopens an ignore forever: its clusters need no lock either.
    f.clauses.push(
        "s.status <> 'unresolved' AND NOT (s.status = 'ignored' AND s.ignore_kind = 'forever')"
            .into(),
    );
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE OF s",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT g.id AS group_id, {STATE_COLUMNS} FROM event_groups g \
         JOIN cluster_states s ON s.cluster_id = g.cluster_id{} ORDER BY s.cluster_id{lock}",
        f.where_sql()
    );
    let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("group_id")?,
                r.try_get("cluster_id")?,
                state_from_row(r)?,
            ))
        })
        .collect()
}

/// The states of the given clusters (locked on PostgreSQL); absent ones are unresolved.
async fn states_of(
    conn: &mut AnyConnection,
    backend: Backend,
    cluster_ids: &[String],
) -> Result<HashMap<String, ClusterState>> {
    if cluster_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut f = Filter::default();
    push_in(&mut f, "s.cluster_id", cluster_ids);
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT {STATE_COLUMNS} FROM cluster_states s{} ORDER BY s.cluster_id{lock}",
        f.where_sql()
    );
    let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("cluster_id")?, state_from_row(r)?)))
        .collect()
}

/// The newest release of a project: the greatest by [`release_newer`].
async fn latest_release(conn: &mut AnyConnection, project_id: i64) -> Result<Option<String>> {
    let rows = sqlx::query(
        "SELECT release, MIN(ts) AS fs FROM events WHERE project_id = $1 AND release IS NOT NULL \
         GROUP BY release",
    )
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?;
    let seen: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| Ok((r.try_get("release")?, r.try_get("fs")?)))
        .collect::<Result<_>>()?;
    let first_seen = |r: &str| seen.get(r).copied();
    // In name order, so incomparable pairs give the same answer every time.
    let mut best: Option<&String> = None;
    for r in seen.keys() {
        if best.is_none_or(|b| release_newer(r, b, &first_seen)) {
            best = Some(r);
        }
    }
    Ok(best.cloned())
}

/// A cluster to change: its id and project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    pub cluster_id: String,
    pub project_id: i64,
}

impl Store {
    /// The stored states of every cluster of the given projects (`None`: all).
    /// A cluster without one is unresolved.
    pub async fn cluster_states(
        &self,
        project_ids: Option<&[i64]>,
    ) -> Result<HashMap<String, ClusterState>> {
        let mut f = Filter::default();
        if let Some(ids) = project_ids {
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            push_in_ids(&mut f, "s.project_id", ids);
        }
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM cluster_states s{}",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("cluster_id")?, state_from_row(r)?)))
            .collect()
    }

    /// The project of each of the given clusters that has groups.
    pub async fn cluster_projects(&self, cluster_ids: &[String]) -> Result<HashMap<String, i64>> {
        if cluster_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut f = Filter::default();
        push_in(&mut f, "cluster_id", cluster_ids);
        let sql = format!(
            "SELECT DISTINCT cluster_id, project_id FROM event_groups{}",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("cluster_id")?, r.try_get("project_id")?)))
            .collect()
    }

    /// One cluster's state (unresolved when none was set).
    pub async fn cluster_state(&self, cluster_id: &str) -> Result<ClusterState> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STATE_COLUMNS} FROM cluster_states s WHERE s.cluster_id = $1"
        )))
        .bind(cluster_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| state_from_row(&r))
            .transpose()
            .map(|s| s.unwrap_or_else(ClusterState::unresolved))
    }

    /// Sets the state of each cluster in one transaction, with a history
    /// entry each naming `actor`. A manual change clears the regression mark
    /// and an ignore's counters. Returns the new states in the given order.
    pub async fn set_cluster_states(
        &self,
        clusters: &[ClusterRef],
        change: &StateChange,
        actor: &str,
    ) -> Result<Vec<ClusterState>> {
        let mut tx = self.begin_write().await?;
        let mut ids: Vec<String> = clusters.iter().map(|c| c.cluster_id.clone()).collect();
        ids.sort();
        ids.dedup();
        // Lock the rows in id order; a cluster without one has nothing to race.
        states_of(&mut tx, self.backend, &ids).await?;
        let mut latest: BTreeMap<i64, Option<String>> = BTreeMap::new();
        let mut out = Vec::with_capacity(clusters.len());
        let at = now_ms();
        for c in clusters {
            let status = match change {
                StateChange::Unresolve => ClusterStatus::Unresolved,
                StateChange::Resolve => ClusterStatus::Resolved(Resolution::Now),
                StateChange::ResolveInRelease(x) => {
                    ClusterStatus::Resolved(Resolution::InRelease(x.clone()))
                }
                StateChange::ResolveInNextRelease => {
                    let latest = match latest.get(&c.project_id) {
                        Some(l) => l.clone(),
                        None => {
                            let l = latest_release(&mut tx, c.project_id).await?;
                            latest.insert(c.project_id, l.clone());
                            l
                        }
                    };
                    ClusterStatus::Resolved(Resolution::NextRelease { latest })
                }
                StateChange::Ignore(u) => ClusterStatus::Ignored(u.clone()),
            };
            let state = ClusterState {
                status,
                seen_events: 0,
                seen_pods: Vec::new(),
                regression: None,
                changed_at_ms: at,
                changed_by: actor.to_string(),
            };
            write_state(&mut tx, &c.cluster_id, c.project_id, &state).await?;
            record_change(
                &mut tx,
                c.project_id,
                &c.cluster_id,
                "state",
                actor,
                &state_detail(&state),
            )
            .await?;
            out.push(state);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Applies the states of previous clusters to this run's clusters, on the
    /// run's transaction: `sources` maps a cluster to the previous clusters
    /// its groups were in ([`merge_states`]).
    pub(crate) async fn inherit_states(
        &self,
        conn: &mut AnyConnection,
        project_id: i64,
        sources: &[(String, Vec<String>)],
    ) -> Result<()> {
        let moved: Vec<&(String, Vec<String>)> = sources
            .iter()
            .filter(|(id, olds)| match olds.as_slice() {
                [] => false,
                [only] => only != id,
                _ => true,
            })
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for (id, olds) in &moved {
            ids.insert(id.clone());
            ids.extend(olds.iter().cloned());
        }
        let ids: Vec<String> = ids.into_iter().collect();
        // Every previous state read before any is written: a fresh split part
        // inherits what its old cluster had, not what a merge made of it.
        let old = states_of(conn, self.backend, &ids).await?;
        let unresolved = ClusterState::unresolved();
        let mut releases: BTreeSet<String> = BTreeSet::new();
        for s in old.values() {
            if let ClusterStatus::Resolved(
                Resolution::InRelease(x) | Resolution::NextRelease { latest: Some(x) },
            ) = &s.status
            {
                releases.insert(x.clone());
            }
        }
        let seen = first_seen_times(conn, project_id, &releases).await?;
        for (id, olds) in moved {
            let parts: Vec<ClusterState> = olds
                .iter()
                .map(|o| old.get(o).unwrap_or(&unresolved).clone())
                .collect();
            let merged = merge_states(&parts, &|r| seen.get(r).copied());
            let current = old.get(id).unwrap_or(&unresolved);
            if merged.status == current.status && merged.regression == current.regression {
                continue;
            }
            write_state(conn, id, project_id, &merged).await?;
            let how = if olds.len() > 1 { "merge" } else { "split" };
            let mut detail = state_detail(&merged);
            detail["because"] = format!("{how} of {}", olds.join(", ")).into();
            record_change(conn, project_id, id, "state", "clustering", &detail).await?;
        }
        Ok(())
    }

    /// After an attach put `group_id` in `cluster_id`: the group's events
    /// received since the cluster was resolved or ignored are new events of
    /// it, so they may reopen it (on the attach's transaction).
    pub(crate) async fn apply_attach(
        &self,
        conn: &mut AnyConnection,
        group_id: &str,
        cluster_id: &str,
    ) -> Result<()> {
        let ids = [cluster_id.to_string()];
        let Some(state) = states_of(conn, self.backend, &ids)
            .await?
            .remove(cluster_id)
        else {
            return Ok(());
        };
        if state.status == ClusterStatus::Unresolved {
            return Ok(());
        }
        let project_id: i64 = sqlx::query("SELECT project_id FROM event_groups WHERE id = $1")
            .bind(group_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(
            "SELECT event_id, ts, release, pod, weight, received_at FROM events \
             WHERE group_id = $1 AND received_at >= $2 ORDER BY received_at, ts, event_id LIMIT 10000",
        )
        .bind(group_id)
        .bind(state.changed_at_ms)
        .fetch_all(&mut *conn)
        .await?;
        struct Owned {
            event_id: String,
            ts: i64,
            release: Option<String>,
            pod: Option<String>,
            weight: i64,
            received: i64,
        }
        let owned: Vec<Owned> = rows
            .iter()
            .map(|r| {
                Ok(Owned {
                    event_id: r.try_get("event_id")?,
                    ts: r.try_get("ts")?,
                    release: r.try_get("release")?,
                    pod: r.try_get("pod")?,
                    weight: r.try_get("weight")?,
                    received: r.try_get("received_at")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        if owned.is_empty() {
            return Ok(());
        }
        let events: Vec<SeenEvent<'_>> = owned
            .iter()
            .map(|o| SeenEvent {
                event_id: &o.event_id,
                release: o.release.as_deref(),
                pod: o.pod.as_deref(),
                weight: o.weight,
                received_ms: o.received,
            })
            .collect();
        let ts: HashMap<&str, i64> = owned.iter().map(|o| (o.event_id.as_str(), o.ts)).collect();
        apply_events(
            conn,
            project_id,
            vec![(cluster_id.to_string(), state, events)],
            &ts,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<i64> {
        None
    }

    fn ev<'a>(id: &'a str, release: Option<&'a str>, pod: Option<&'a str>) -> SeenEvent<'a> {
        SeenEvent {
            event_id: id,
            release,
            pod,
            weight: 1,
            received_ms: 1_000,
        }
    }

    fn with(status: ClusterStatus) -> ClusterState {
        ClusterState {
            status,
            ..ClusterState::unresolved()
        }
    }

    #[test]
    fn releases_order_by_semver_else_first_seen() {
        assert!(release_newer("1.10.0", "1.9.3", &none));
        assert!(!release_newer("1.9.3", "1.10.0", &none));
        assert!(release_newer("shop@1.1", "shop@1.0.9", &none));
        assert!(release_newer("v2", "1.99.99", &none));
        assert!(release_newer("1.0.0", "1.0.0-rc.1", &none));
        assert!(!release_newer("1.0.0", "1.0.0", &none));
        assert!(!release_newer("1.0", "1.0.0", &none));
        // Not semver (or other packages): the release seen first is older.
        let seen = |r: &str| match r {
            "blue" => Some(10),
            "green" => Some(20),
            "a@2.0" => Some(30),
            "b@1.0" => Some(40),
            _ => None,
        };
        assert!(release_newer("green", "blue", &seen));
        assert!(!release_newer("blue", "green", &seen));
        assert!(release_newer("b@1.0", "a@2.0", &seen));
        // Never seen: not comparable, never newer.
        assert!(!release_newer("green", "purple", &seen));
    }

    #[test]
    fn resolved_regresses_on_any_event() {
        let mut s = with(ClusterStatus::Resolved(Resolution::Now));
        let v = evaluate(&mut s, &[ev("e1", None, None), ev("e2", None, None)], &none);
        assert_eq!(
            v,
            Verdict::Regressed {
                event_id: "e1".into(),
                release: None
            }
        );
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression.unwrap().event_id, "e1");
    }

    #[test]
    fn resolved_in_release_regresses_only_on_newer() {
        let mut s = with(ClusterStatus::Resolved(Resolution::InRelease(
            "1.2.0".into(),
        )));
        let v = evaluate(
            &mut s,
            &[
                ev("a", Some("1.1.0"), None),
                ev("b", Some("1.2.0"), None),
                ev("c", None, None),
            ],
            &none,
        );
        assert_eq!(v, Verdict::Stays);
        let v = evaluate(&mut s, &[ev("d", Some("1.2.1"), None)], &none);
        assert_eq!(
            v,
            Verdict::Regressed {
                event_id: "d".into(),
                release: Some("1.2.1".into())
            }
        );
    }

    #[test]
    fn resolved_in_next_release_compares_with_the_latest_at_resolve_time() {
        let mut s = with(ClusterStatus::Resolved(Resolution::NextRelease {
            latest: Some("blue".into()),
        }));
        let seen = |r: &str| match r {
            "blue" => Some(10),
            "green" => Some(20),
            "old" => Some(5),
            _ => None,
        };
        assert_eq!(
            evaluate(
                &mut s,
                &[ev("a", Some("blue"), None), ev("b", Some("old"), None)],
                &seen
            ),
            Verdict::Stays
        );
        assert!(matches!(
            evaluate(&mut s, &[ev("c", Some("green"), None)], &seen),
            Verdict::Regressed { .. }
        ));
        // No release at resolve time: the first event with a release.
        let mut s = with(ClusterStatus::Resolved(Resolution::NextRelease {
            latest: None,
        }));
        assert_eq!(
            evaluate(&mut s, &[ev("a", None, None)], &none),
            Verdict::Stays
        );
        assert!(matches!(
            evaluate(&mut s, &[ev("b", Some("1.0"), None)], &none),
            Verdict::Regressed { .. }
        ));
    }

    #[test]
    fn ignore_until_ten_events_reopens_at_the_eleventh() {
        let mut s = with(ClusterStatus::Ignored(IgnoreUntil::Events(10)));
        let ids: Vec<String> = (1..=11).map(|i| format!("e{i}")).collect();
        let ten: Vec<SeenEvent<'_>> = ids[..10].iter().map(|i| ev(i, None, None)).collect();
        assert_eq!(evaluate(&mut s, &ten, &none), Verdict::Stays);
        assert_eq!(s.seen_events, 10);
        let v = evaluate(&mut s, &[ev(&ids[10], None, None)], &none);
        assert!(
            matches!(v, Verdict::Reopened { ref event_id, .. } if event_id == "e11"),
            "{v:?}"
        );
        assert_eq!(s.status, ClusterStatus::Unresolved);
        assert_eq!(s.regression, None);
    }

    #[test]
    fn ignore_until_pods_and_time() {
        let mut s = with(ClusterStatus::Ignored(IgnoreUntil::Pods(2)));
        let v = evaluate(
            &mut s,
            &[
                ev("a", None, Some("p1")),
                ev("b", None, Some("p1")),
                ev("c", None, Some("p2")),
                ev("d", None, None),
            ],
            &none,
        );
        assert_eq!(v, Verdict::Stays);
        assert!(matches!(
            evaluate(&mut s, &[ev("e", None, Some("p3"))], &none),
            Verdict::Reopened { .. }
        ));
        let mut s = with(ClusterStatus::Ignored(IgnoreUntil::Time(2_000)));
        assert_eq!(
            evaluate(&mut s, &[ev("a", None, None)], &none),
            Verdict::Stays
        );
        let late = SeenEvent {
            received_ms: 2_000,
            ..ev("b", None, None)
        };
        assert!(matches!(
            evaluate(&mut s, &[late], &none),
            Verdict::Reopened { .. }
        ));
        let mut s = with(ClusterStatus::Ignored(IgnoreUntil::Forever));
        assert_eq!(
            evaluate(&mut s, &[ev("a", Some("9.9"), Some("p9"))], &none),
            Verdict::Stays
        );
        assert!(
            ClusterState {
                status: ClusterStatus::Ignored(IgnoreUntil::Time(5)),
                ..ClusterState::unresolved()
            }
            .effective(5)
                == "unresolved"
        );
    }

    #[test]
    fn merges_keep_the_state_that_reopens_soonest() {
        let resolved = with(ClusterStatus::Resolved(Resolution::Now));
        let in_12 = with(ClusterStatus::Resolved(Resolution::InRelease("1.2".into())));
        let in_13 = with(ClusterStatus::Resolved(Resolution::InRelease("1.3".into())));
        let forever = with(ClusterStatus::Ignored(IgnoreUntil::Forever));
        let unresolved = ClusterState::unresolved();
        assert_eq!(
            merge_states(&[resolved.clone(), unresolved.clone()], &none).status,
            ClusterStatus::Unresolved
        );
        assert_eq!(
            merge_states(&[forever.clone(), in_13.clone(), resolved.clone()], &none),
            resolved
        );
        assert_eq!(merge_states(&[in_13.clone(), in_12.clone()], &none), in_12);
        assert_eq!(
            merge_states(&[forever.clone(), in_13.clone()], &none),
            in_13
        );
        let mut ten = with(ClusterStatus::Ignored(IgnoreUntil::Events(10)));
        ten.seen_events = 8;
        let five = with(ClusterStatus::Ignored(IgnoreUntil::Events(5)));
        assert_eq!(merge_states(&[five.clone(), ten.clone()], &none), ten);
        // A split (one part) inherits; nothing known is unresolved.
        assert_eq!(merge_states(std::slice::from_ref(&forever), &none), forever);
        assert_eq!(merge_states(&[], &none), unresolved);
    }
}
