//! Events: what is stored of one, its group's bookkeeping, and keyset-paged
//! reads (the insert path is `insert.rs`).

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::clusters::EventFilter;
use crate::page::{bind_all, page_of, push_in, push_in_ids};
use crate::{Cursor, Page, Result, Store};

/// An event ready to store: the wire event plus what ingest derived from it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub timestamp_ms: i64,
    pub platform: String,
    pub kind: String,
    pub message: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub trace_id: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
    pub route: Option<String>,
    /// Stack depth at the panic (number of frames), for the heatmap.
    pub depth: i64,
    /// Panics this event stands for (storm control sends one with a count).
    pub weight: i64,
    /// The whole event as received, unknown fields included.
    pub payload: String,
    /// Exact grouping key from `panicle_protocol::fingerprint`.
    pub fingerprint: String,
    pub template: String,
    pub culprit: Option<String>,
    /// Normalized signature frames, innermost first.
    pub signature: Vec<String>,
    /// Set on a storm aggregate: the ids of the panics folded into it.
    pub storm: Option<StormRange>,
    /// Build-ids of modules some frames are bare addresses in, with no debug
    /// file stored yet: the event is symbolized again when one arrives.
    pub missing_debug_files: Vec<String>,
}

/// The folded panics a storm aggregate stands for: ids `id_prefix` followed
/// by `seq` as 8 hex digits, for `seq` in `seq_start..seq_end`
/// (`panicle_protocol::storm`). Stored as one row beside the aggregate, so
/// each id resolves to it without a row per panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormRange {
    /// The first 28 characters of a UUID, lowercase.
    pub id_prefix: String,
    pub seq_start: u32,
    pub seq_end: u32,
}

/// What a batch insert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Every id of the batch: new or already stored, all are safe with us.
    pub accepted: Vec<String>,
    /// How many were new (the rest were resends).
    pub inserted: usize,
    /// Of the new ones, how many were counted but not kept in full (their
    /// group was over its cap).
    pub sampled: usize,
    /// Groups the transaction created in the batch's project (its own or
    /// another request's of the same group commit): they await a cluster.
    pub new_groups: usize,
}

/// The columns a list shows; `payload` has the rest.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub event_id: String,
    pub project_id: i64,
    pub group_id: String,
    pub timestamp_ms: i64,
    pub received_at_ms: i64,
    pub platform: String,
    pub kind: String,
    pub message: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub trace_id: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
    pub route: Option<String>,
    pub depth: i64,
    /// Panics this event stands for (a storm aggregate's count, else 1).
    pub weight: i64,
    /// Counted, but only its id, time and weight were kept (its group was
    /// over its cap): the other columns are its group's or empty.
    pub sampled: bool,
}

/// A stored event with its raw payload.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub payload: String,
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub project_id: Option<i64>,
    /// Only these projects (a project-scoped token's); `None` for all.
    pub project_ids: Option<Vec<i64>>,
    pub group_ids: Option<Vec<String>>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
    pub route: Option<String>,
    pub trace_id: Option<String>,
    pub kind: Option<String>,
    pub platform: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
    /// List the events a group over its cap kept only the id, time and
    /// weight of too, so the list's counts add up to the groups' (the read
    /// API); `false` lists stored events only.
    pub include_sampled: bool,
}

const SUMMARY_COLUMNS: &str = "event_id, project_id, group_id, ts, received_at, platform, kind, \
     message, service, environment, release, trace_id, pod, node, route, depth, weight, sampled";

fn summary_from_row(row: &sqlx::any::AnyRow) -> Result<EventSummary> {
    Ok(EventSummary {
        event_id: row.try_get("event_id")?,
        project_id: row.try_get("project_id")?,
        group_id: row.try_get("group_id")?,
        timestamp_ms: row.try_get("ts")?,
        received_at_ms: row.try_get("received_at")?,
        platform: row.try_get("platform")?,
        kind: row.try_get("kind")?,
        message: row.try_get("message")?,
        service: row.try_get("service")?,
        environment: row.try_get("environment")?,
        release: row.try_get("release")?,
        trace_id: row.try_get("trace_id")?,
        pod: row.try_get("pod")?,
        node: row.try_get("node")?,
        route: row.try_get("route")?,
        depth: row.try_get::<Option<i64>, _>("depth")?.unwrap_or(0),
        weight: row.try_get("weight")?,
        sampled: row.try_get::<i64, _>("sampled")? != 0,
    })
}

/// The group id is derived, not allocated, so concurrent writers agree on it
/// without a round trip.
pub fn group_id(project_id: i64, fingerprint: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{project_id}:{fingerprint}").as_bytes());
    format!("g{}", hex::encode(&digest[..10]))
}

pub(crate) struct GroupDelta<'a> {
    pub(crate) first: &'a NewEvent,
    pub(crate) count: i64,
    /// New rows in `events` and in `sampled_events`.
    pub(crate) stored: i64,
    pub(crate) sampled: i64,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) first_release: Option<&'a str>,
}

/// Adds a batch's events to their group, creating it with the first
/// event's template, culprit and signature when it is new: true then.
pub(crate) async fn upsert_group(
    conn: &mut sqlx::AnyConnection,
    project_id: i64,
    gid: &str,
    d: &GroupDelta<'_>,
) -> Result<bool> {
    Ok(upsert_groups(conn, project_id, &[(gid, d)]).await? > 0)
}

/// [`upsert_group`] for many groups of one project, one statement per 200
/// (`groups` in id order, each once); returns how many were created.
pub(crate) async fn upsert_groups(
    conn: &mut sqlx::AnyConnection,
    project_id: i64,
    groups: &[(&str, &GroupDelta<'_>)],
) -> Result<usize> {
    let mut created = 0;
    for chunk in groups.chunks(crate::page::ROWS_PER_STATEMENT) {
        let rows = crate::page::Marks::for_conn(conn).rows(chunk.len(), 15);
        let sql = format!(
            "INSERT INTO event_groups (id, project_id, fingerprint, platform, kind, template, \
             culprit, frames, event_count, first_seen, last_seen, first_release, sample_message, \
             stored_events, sampled_events) \
             VALUES {rows} \
             ON CONFLICT (id) DO UPDATE SET \
             event_count = event_groups.event_count + excluded.event_count, \
             stored_events = event_groups.stored_events + excluded.stored_events, \
             sampled_events = event_groups.sampled_events + excluded.sampled_events, \
             first_release = CASE WHEN excluded.first_seen < event_groups.first_seen \
                 THEN excluded.first_release ELSE event_groups.first_release END, \
             first_seen = CASE WHEN excluded.first_seen < event_groups.first_seen \
                 THEN excluded.first_seen ELSE event_groups.first_seen END, \
             last_seen = CASE WHEN excluded.last_seen > event_groups.last_seen \
                 THEN excluded.last_seen ELSE event_groups.last_seen END \
             RETURNING id, stored_events + sampled_events AS rows_now"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (gid, d) in chunk {
            let frames = serde_json::to_string(&d.first.signature).unwrap_or_else(|_| "[]".into());
            q = q
                .bind(*gid)
                .bind(project_id)
                .bind(&d.first.fingerprint)
                .bind(&d.first.platform)
                .bind(&d.first.kind)
                .bind(&d.first.template)
                .bind(d.first.culprit.as_deref())
                .bind(frames)
                .bind(d.count)
                .bind(d.first_seen)
                .bind(d.last_seen)
                .bind(d.first_release)
                .bind(&d.first.message)
                .bind(d.stored)
                .bind(d.sampled);
        }
        let added: std::collections::HashMap<&str, i64> = chunk
            .iter()
            .map(|(g, d)| (*g, d.stored + d.sampled))
            .collect();
        for row in q.fetch_all(&mut *conn).await? {
            let id: String = row.try_get("id")?;
            let rows_now: i64 = row.try_get("rows_now")?;
            // A group that existed held rows already (one left with none is removed).
            if added.get(id.as_str()) == Some(&rows_now) {
                created += 1;
            }
        }
    }
    Ok(created)
}

/// Takes events out of a group (retention, or a move to the group their
/// names give): `weight` panics in `stored` rows of `events` and `sampled`
/// of `sampled_events`. A group left with neither is removed: true then.
pub(crate) async fn leave_group(
    conn: &mut sqlx::AnyConnection,
    gid: &str,
    weight: i64,
    stored: i64,
    sampled: i64,
) -> Result<bool> {
    sqlx::query(
        "UPDATE event_groups SET event_count = event_count - $1, \
         stored_events = stored_events - $2, sampled_events = sampled_events - $3 WHERE id = $4",
    )
    .bind(weight)
    .bind(stored)
    .bind(sampled)
    .bind(gid)
    .execute(&mut *conn)
    .await?;
    let gone = sqlx::query(
        "DELETE FROM event_groups WHERE id = $1 AND stored_events <= 0 AND sampled_events <= 0",
    )
    .bind(gid)
    .execute(&mut *conn)
    .await?;
    Ok(gone.rows_affected() > 0)
}

impl Store {
    pub async fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>> {
        let mut f = EventFilter {
            project_id: q.project_id,
            service: q.service.clone(),
            environment: q.environment.clone(),
            release: q.release.clone(),
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            group_id: None,
            pod: q.pod.clone(),
            node: q.node.clone(),
            route: q.route.clone(),
            trace_id: q.trace_id.clone(),
            kind: q.kind.clone(),
            platform: q.platform.clone(),
        }
        .to_filter();
        let nothing = || {
            page_of(Vec::new(), 1, |e: &EventSummary| Cursor {
                ts: e.timestamp_ms,
                id: e.event_id.clone(),
            })
        };
        if let Some(ids) = &q.group_ids {
            if ids.is_empty() {
                return Ok(nothing());
            }
            push_in(&mut f, "e.group_id", ids);
        }
        if let Some(ids) = &q.project_ids {
            if ids.is_empty() {
                return Ok(nothing());
            }
            push_in_ids(&mut f, "e.project_id", ids);
        }
        if let Some(c) = &q.cursor {
            f.after("e.ts", "e.event_id", c);
        }
        let limit = q.limit.clamp(1, 1000);
        let source = if q.include_sampled {
            crate::counted::COUNTED.to_string()
        } else {
            "(SELECT events.*, CAST(0 AS BIGINT) AS sampled FROM events)".to_string()
        };
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM {source} e{} ORDER BY e.ts DESC, e.event_id DESC LIMIT {}",
            f.where_sql(),
            limit + 1
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, limit, |e| Cursor {
            ts: e.timestamp_ms,
            id: e.event_id.clone(),
        }))
    }

    /// The projects holding an event with this id (event ids are the
    /// client's, so two projects may hold the same one), lowest first.
    pub async fn event_projects(&self, event_id: &str) -> Result<Vec<i64>> {
        let rows =
            sqlx::query("SELECT project_id FROM events WHERE event_id = $1 ORDER BY project_id")
                .bind(event_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("project_id").map_err(Into::into))
            .collect()
    }

    /// The storm aggregates holding the folded panic with this id: (project,
    /// aggregate event id), one per project (the newest range when a client
    /// sent overlapping ones), lowest project first. Empty for an id that is
    /// no storm's.
    pub async fn storm_holders(&self, event_id: &str) -> Result<Vec<(i64, String)>> {
        let Some((prefix, seq)) = panicle_protocol::storm::split_folded_id(event_id) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT project_id, event_id FROM storm_ranges \
             WHERE id_prefix = $1 AND seq_start <= $2 AND seq_end > $2 \
             ORDER BY project_id, seq_start DESC",
        )
        .bind(prefix.to_ascii_lowercase())
        .bind(i64::from(seq))
        .fetch_all(&self.pool)
        .await?;
        let mut holders: Vec<(i64, String)> = Vec::new();
        for r in rows {
            let project: i64 = r.try_get("project_id")?;
            if holders.last().is_none_or(|(p, _)| *p != project) {
                holders.push((project, r.try_get("event_id")?));
            }
        }
        Ok(holders)
    }

    /// The events with this id a group over its cap kept only the id, time
    /// and weight of (one per project holding it, lowest first), with their
    /// group's kind, platform and message template.
    pub async fn sampled_events_by_id(&self, event_id: &str) -> Result<Vec<EventSummary>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM {} e WHERE e.sampled = 1 AND e.event_id = $1 \
             ORDER BY e.project_id",
            crate::counted::COUNTED
        )))
        .bind(event_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(summary_from_row).collect()
    }

    /// One event by id; `project_id` narrows it when ids collide across
    /// projects (without it, the copy in the lowest project).
    pub async fn get_event(
        &self,
        event_id: &str,
        project_id: Option<i64>,
    ) -> Result<Option<EventRow>> {
        let row = match project_id {
            Some(p) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {SUMMARY_COLUMNS}, payload FROM (SELECT events.*, CAST(0 AS BIGINT) AS sampled FROM events) e \
                     WHERE event_id = $1 AND project_id = $2"
                )))
                .bind(event_id)
                .bind(p)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {SUMMARY_COLUMNS}, payload FROM (SELECT events.*, CAST(0 AS BIGINT) AS sampled FROM events) e \
                     WHERE event_id = $1 \
                     ORDER BY project_id LIMIT 1"
                )))
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|row| {
            Ok(EventRow {
                summary: summary_from_row(&row)?,
                payload: row.try_get("payload")?,
            })
        })
        .transpose()
    }
}
