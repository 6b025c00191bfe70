//! Events: batched, idempotent inserts and keyset-paged reads.

use std::collections::BTreeMap;

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
}

/// What a batch insert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Every id of the batch: new or already stored, all are safe with us.
    pub accepted: Vec<String>,
    /// How many were new (the rest were resends).
    pub inserted: usize,
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
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

const SUMMARY_COLUMNS: &str = "event_id, project_id, group_id, ts, received_at, platform, kind, \
     message, service, environment, release, trace_id, pod, node, route, depth";

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
        depth: row.try_get("depth")?,
    })
}

/// The group id is derived, not allocated, so concurrent writers agree on it
/// without a round trip.
pub fn group_id(project_id: i64, fingerprint: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{project_id}:{fingerprint}").as_bytes());
    format!("g{}", hex::encode(&digest[..10]))
}

struct GroupDelta<'a> {
    first: &'a NewEvent,
    count: i64,
    first_seen: i64,
    last_seen: i64,
    first_release: Option<&'a str>,
}

impl Store {
    /// Stores a batch in one transaction (group commit). Resent ids are
    /// accepted and stored nothing twice.
    pub async fn insert_events(
        &self,
        project_id: i64,
        events: &[NewEvent],
    ) -> Result<InsertOutcome> {
        let received_at = crate::now_ms();
        let _pass = self.wal_writer_pass().await;
        let mut tx = self.pool.begin().await?;
        // Rows are locked in one global order (event ids, then group ids), so
        // two concurrent batches on PostgreSQL cannot deadlock each other.
        let mut ordered: Vec<&NewEvent> = events.iter().collect();
        ordered.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        let mut deltas: BTreeMap<String, GroupDelta<'_>> = BTreeMap::new();
        let mut outcome = InsertOutcome {
            accepted: events.iter().map(|e| e.event_id.clone()).collect(),
            inserted: 0,
        };
        for e in ordered {
            let gid = group_id(project_id, &e.fingerprint);
            let done = sqlx::query(
                "INSERT INTO events (project_id, event_id, group_id, ts, received_at, platform, \
                 kind, message, service, environment, release, trace_id, pod, node, route, depth, payload, weight) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                 ON CONFLICT (project_id, event_id) DO NOTHING",
            )
            .bind(project_id)
            .bind(&e.event_id)
            .bind(&gid)
            .bind(e.timestamp_ms)
            .bind(received_at)
            .bind(&e.platform)
            .bind(&e.kind)
            .bind(&e.message)
            .bind(e.service.as_deref())
            .bind(e.environment.as_deref())
            .bind(e.release.as_deref())
            .bind(e.trace_id.as_deref())
            .bind(e.pod.as_deref())
            .bind(e.node.as_deref())
            .bind(e.route.as_deref())
            .bind(e.depth)
            .bind(&e.payload)
            .bind(e.weight.max(1))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            outcome.inserted += 1;
            let d = deltas.entry(gid).or_insert(GroupDelta {
                first: e,
                count: 0,
                first_seen: e.timestamp_ms,
                last_seen: e.timestamp_ms,
                first_release: e.release.as_deref(),
            });
            d.count = d.count.saturating_add(e.weight.max(1));
            if e.timestamp_ms < d.first_seen {
                d.first_seen = e.timestamp_ms;
                d.first_release = e.release.as_deref();
            }
            d.last_seen = d.last_seen.max(e.timestamp_ms);
        }
        for (gid, d) in &deltas {
            let frames = serde_json::to_string(&d.first.signature).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO event_groups (id, project_id, fingerprint, platform, kind, template, \
                 culprit, frames, event_count, first_seen, last_seen, first_release, sample_message) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (id) DO UPDATE SET \
                 event_count = event_groups.event_count + excluded.event_count, \
                 first_release = CASE WHEN excluded.first_seen < event_groups.first_seen \
                     THEN excluded.first_release ELSE event_groups.first_release END, \
                 first_seen = CASE WHEN excluded.first_seen < event_groups.first_seen \
                     THEN excluded.first_seen ELSE event_groups.first_seen END, \
                 last_seen = CASE WHEN excluded.last_seen > event_groups.last_seen \
                     THEN excluded.last_seen ELSE event_groups.last_seen END",
            )
            .bind(gid)
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
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn list_events(&self, q: &EventQuery) -> Result<Page<EventSummary>> {
        let mut f = EventFilter {
            project_id: q.project_id,
            service: q.service.clone(),
            environment: q.environment.clone(),
            release: q.release.clone(),
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            group_id: None,
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
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM events e{} ORDER BY e.ts DESC, e.event_id DESC LIMIT {}",
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
                    "SELECT {SUMMARY_COLUMNS}, payload FROM events WHERE event_id = $1 AND project_id = $2"
                )))
                .bind(event_id)
                .bind(p)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {SUMMARY_COLUMNS}, payload FROM events WHERE event_id = $1 \
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
