//! Events that arrived before their debug file: found by build-id when it is
//! uploaded, and moved, symbolized, to the group their names give.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::events::{GroupDelta, NewEvent, group_id, leave_group, upsert_group};
use crate::{Result, Store};

/// A stored event with frames bare in the module of a build-id.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub project_id: i64,
    pub event_id: String,
    /// The stored (already validated) event time.
    pub timestamp_ms: i64,
    pub payload: String,
}

/// An event symbolized again: its new columns and payload.
#[derive(Debug, Clone)]
pub struct Resymbolized {
    pub project_id: i64,
    pub event: NewEvent,
}

/// What moving a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegroupReport {
    /// Events rewritten with names.
    pub events: u64,
    /// Of those, events that changed group.
    pub moved: u64,
    /// Groups left empty and removed.
    pub groups_removed: u64,
}

/// Groups an event leaves: its weight and one stored row each.
#[derive(Default)]
struct Left {
    weight: i64,
    events: i64,
}

impl Store {
    /// Build-ids some stored events wait for (at most `limit`).
    pub async fn pending_build_ids(&self, limit: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT DISTINCT build_id FROM pending_symbols ORDER BY build_id LIMIT $1")
                .bind(limit.max(1))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get("build_id")?)).collect()
    }

    /// How many stored events wait for a debug file.
    pub async fn pending_symbol_events(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(DISTINCT event_id) AS n FROM pending_symbols")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Up to `limit` stored events waiting for `build_id`'s debug file, in
    /// a stable order. Pending marks of events purged meanwhile are dropped.
    pub async fn events_missing_debug_file(
        &self,
        build_id: &str,
        limit: i64,
    ) -> Result<Vec<PendingEvent>> {
        let rows = sqlx::query(
            "SELECT p.project_id, p.event_id, e.ts, e.payload FROM pending_symbols p \
             JOIN events e ON e.project_id = p.project_id AND e.event_id = p.event_id \
             WHERE p.build_id = $1 ORDER BY p.project_id, p.event_id LIMIT $2",
        )
        .bind(build_id)
        .bind(limit.max(1))
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            sqlx::query(
                "DELETE FROM pending_symbols WHERE build_id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM events e WHERE e.project_id = pending_symbols.project_id \
                 AND e.event_id = pending_symbols.event_id)",
            )
            .bind(build_id)
            .execute(&self.pool)
            .await?;
        }
        rows.iter()
            .map(|r| {
                Ok(PendingEvent {
                    project_id: r.try_get("project_id")?,
                    event_id: r.try_get("event_id")?,
                    timestamp_ms: r.try_get("ts")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }

    /// Rewrites events symbolized with `build_id`'s debug file in one
    /// transaction: payload and depth replaced, each moved to the group of
    /// its new fingerprint (counts, first and last seen, releases follow),
    /// groups left empty removed, their pending marks for `build_id` cleared
    /// (marks for other build-ids stay). Locks rows in ingest's order:
    /// events by id, then groups by id.
    pub async fn regroup_events(
        &self,
        build_id: &str,
        batch: &[Resymbolized],
    ) -> Result<RegroupReport> {
        let mut report = RegroupReport::default();
        if batch.is_empty() {
            return Ok(report);
        }
        let _pass = self.wal_writer_pass().await;
        let mut tx = self.begin_write().await?;
        let mut ordered: Vec<&Resymbolized> = batch.iter().collect();
        ordered.sort_by(|a, b| {
            (a.project_id, &a.event.event_id).cmp(&(b.project_id, &b.event.event_id))
        });
        let mut left: BTreeMap<String, Left> = BTreeMap::new();
        // The project of each group events leave (an event moves within its project).
        let mut project_of: BTreeMap<String, i64> = BTreeMap::new();
        // Group id (derived from the project) → the project and what joins it.
        let mut joined: BTreeMap<String, (i64, GroupDelta<'_>)> = BTreeMap::new();
        let mut releases: Vec<(String, &str, i64)> = Vec::new();
        for r in ordered {
            let e = &r.event;
            sqlx::query(
                "DELETE FROM pending_symbols WHERE build_id = $1 AND project_id = $2 AND event_id = $3",
            )
            .bind(build_id)
            .bind(r.project_id)
            .bind(&e.event_id)
            .execute(&mut *tx)
            .await?;
            // Locked: two replicas moving the same event must not both
            // take it out of its old group.
            let lock = match self.backend {
                crate::Backend::Postgres => " FOR UPDATE",
                crate::Backend::Sqlite => "",
            };
            let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT group_id, weight, ts FROM events WHERE project_id = $1 AND event_id = $2{lock}"
            )))
            .bind(r.project_id)
            .bind(&e.event_id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                continue;
            };
            let old_gid: String = row.try_get("group_id")?;
            let weight: i64 = row.try_get("weight")?;
            let ts: i64 = row.try_get("ts")?;
            let gid = group_id(r.project_id, &e.fingerprint);
            sqlx::query(
                "UPDATE events SET group_id = $1, payload = $2, depth = $3 \
                 WHERE project_id = $4 AND event_id = $5",
            )
            .bind(&gid)
            .bind(&e.payload)
            .bind(e.depth)
            .bind(r.project_id)
            .bind(&e.event_id)
            .execute(&mut *tx)
            .await?;
            report.events += 1;
            if gid == old_gid {
                continue;
            }
            report.moved += 1;
            project_of.insert(old_gid.clone(), r.project_id);
            let l = left.entry(old_gid).or_default();
            l.weight = l.weight.saturating_add(weight);
            l.events += 1;
            let (_, d) = joined.entry(gid.clone()).or_insert((
                r.project_id,
                GroupDelta {
                    first: e,
                    count: 0,
                    stored: 0,
                    sampled: 0,
                    first_seen: ts,
                    last_seen: ts,
                    first_release: e.release.as_deref(),
                },
            ));
            d.count = d.count.saturating_add(weight);
            d.stored += 1;
            if ts < d.first_seen {
                d.first_seen = ts;
                d.first_release = e.release.as_deref();
            }
            d.last_seen = d.last_seen.max(ts);
            if let Some(release) = e.release.as_deref() {
                releases.push((gid, release, ts));
            }
        }
        // Groups in (project, id) order, as ingest locks them (a shared
        // ingest transaction takes one project's groups after another's).
        let mut gids: Vec<(i64, &str)> = left
            .keys()
            .map(|g| (project_of.get(g).copied().unwrap_or_default(), g.as_str()))
            .chain(joined.iter().map(|(g, (p, _))| (*p, g.as_str())))
            .collect();
        gids.sort_unstable();
        gids.dedup();
        for (_, gid) in gids {
            if let Some((project_id, d)) = joined.get(gid) {
                upsert_group(&mut tx, *project_id, gid, d).await?;
            }
            if let Some(l) = left.get(gid)
                && leave_group(&mut tx, gid, l.weight, l.events, 0).await?
            {
                report.groups_removed += 1;
            }
        }
        // A release the new group had not been seen in: recorded, without
        // the new-release alert (these panics are not new).
        for (gid, release, ts) in &releases {
            sqlx::query(
                "INSERT INTO group_releases (group_id, release, first_seen) VALUES ($1, $2, $3) \
                 ON CONFLICT (group_id, release) DO UPDATE SET first_seen = \
                 CASE WHEN excluded.first_seen < group_releases.first_seen \
                 THEN excluded.first_seen ELSE group_releases.first_seen END",
            )
            .bind(gid)
            .bind(*release)
            .bind(*ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(report)
    }
}
