//! Retention: deleting old events in small batches while group counts stay
//! true.
//!
//! Invariant (kept by ingest and by every purge batch, in one transaction
//! each): for every group,
//! `event_count = Σ weight of its rows in events + Σ weight of its rows in
//! sampled_events`, `stored_events` = its rows in `events` and
//! `sampled_events` = its rows in `sampled_events`. A group left with no
//! rows in either is deleted, which takes it out of its cluster (clusters
//! are read from their groups; nothing else stores a cluster's counts).
//! A group's `first_seen` / `last_seen` / `first_release` are its history
//! and stay as they were. A storm aggregate's range of folded ids
//! (`storm_ranges`) is deleted with it by its foreign key's cascade.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::limits::UsagePeriods;
use crate::{Result, Store};

/// What one purge batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Rows deleted from `events`.
    pub events: u64,
    /// Rows deleted from `sampled_events`.
    pub sampled: u64,
    /// Panics those rows stood for (their weights).
    pub weight: i64,
    /// Groups deleted because nothing of them was left.
    pub groups: u64,
}

impl PurgeReport {
    pub fn rows(&self) -> u64 {
        self.events + self.sampled
    }

    pub fn add(&mut self, other: &PurgeReport) {
        self.events += other.events;
        self.sampled += other.sampled;
        self.weight += other.weight;
        self.groups += other.groups;
    }
}

#[derive(Default)]
struct Removed {
    weight: i64,
    events: i64,
    sampled: i64,
}

impl Store {
    /// Deletes up to `batch` of the project's oldest events (and up to
    /// `batch` sampled ones) dated before `cutoff_ms`, in one short
    /// transaction, adjusting their groups. Call again while it deletes
    /// something.
    pub async fn purge_batch(
        &self,
        project_id: i64,
        cutoff_ms: i64,
        batch: i64,
    ) -> Result<PurgeReport> {
        let batch = batch.max(1);
        let mut report = PurgeReport::default();
        let mut removed: BTreeMap<String, Removed> = BTreeMap::new();
        let mut tx = self.begin_write().await?;
        for (table, sampled) in [("events", false), ("sampled_events", true)] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE project_id = $1 AND event_id IN \
                 (SELECT event_id FROM {table} WHERE project_id = $1 AND ts < $2 ORDER BY ts LIMIT {batch}) \
                 RETURNING group_id, weight, event_id"
            )))
            .bind(project_id)
            .bind(cutoff_ms)
            .fetch_all(&mut *tx)
            .await?;
            if !sampled && !rows.is_empty() {
                // Marks of events still waiting for a debug file go with them.
                let ids: Vec<String> = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>("event_id"))
                    .collect::<std::result::Result<_, _>>()?;
                for chunk in ids.chunks(500) {
                    let marks: Vec<String> =
                        (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM pending_symbols WHERE project_id = $1 AND event_id IN ({})",
                        marks.join(", ")
                    )))
                    .bind(project_id);
                    for id in chunk {
                        q = q.bind(id.clone());
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            for r in rows {
                let gid: String = r.try_get("group_id")?;
                let weight: i64 = r.try_get("weight")?;
                let g = removed.entry(gid).or_default();
                g.weight = g.weight.saturating_add(weight);
                report.weight = report.weight.saturating_add(weight);
                if sampled {
                    g.sampled += 1;
                    report.sampled += 1;
                } else {
                    g.events += 1;
                    report.events += 1;
                }
            }
        }
        // Groups in id order, as ingest locks them.
        for (gid, r) in &removed {
            if crate::events::leave_group(&mut tx, gid, r.weight, r.events, r.sampled).await? {
                report.groups += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Forgets daily usage counters older than `keep_days` days (monthly
    /// ones are few and kept).
    pub async fn prune_usage(&self, now_ms: i64, keep_days: i64) -> Result<u64> {
        let oldest = UsagePeriods::day_key_before(now_ms, keep_days);
        let done = sqlx::query("DELETE FROM project_usage WHERE period LIKE 'd%' AND period < $1")
            .bind(oldest)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Checks the invariant above for every group of a project; returns the
    /// groups that break it (id, event_count, Σ weights, stored_events,
    /// rows). For tests and operators after a crash.
    pub async fn count_mismatches(
        &self,
        project_id: i64,
    ) -> Result<Vec<(String, i64, i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT g.id AS id, g.event_count AS event_count, g.stored_events AS stored_events, \
             g.sampled_events AS sampled_events, \
             CAST(COALESCE((SELECT SUM(e.weight) FROM events e WHERE e.group_id = g.id), 0) AS BIGINT) AS ew, \
             CAST(COALESCE((SELECT COUNT(*) FROM events e WHERE e.group_id = g.id), 0) AS BIGINT) AS en, \
             CAST(COALESCE((SELECT SUM(s.weight) FROM sampled_events s WHERE s.group_id = g.id), 0) AS BIGINT) AS sw, \
             CAST(COALESCE((SELECT COUNT(*) FROM sampled_events s WHERE s.group_id = g.id), 0) AS BIGINT) AS sn \
             FROM event_groups g WHERE g.project_id = $1 ORDER BY g.id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        let mut bad = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            let count: i64 = r.try_get("event_count")?;
            let stored: i64 = r.try_get("stored_events")?;
            let sampled: i64 = r.try_get("sampled_events")?;
            let ew: i64 = r.try_get("ew")?;
            let en: i64 = r.try_get("en")?;
            let sw: i64 = r.try_get("sw")?;
            let sn: i64 = r.try_get("sn")?;
            if count != ew + sw || stored != en || sampled != sn || en + sn == 0 {
                bad.push((id, count, ew + sw, stored, en + sn));
            }
        }
        Ok(bad)
    }
}
