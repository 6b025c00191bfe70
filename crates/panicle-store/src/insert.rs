//! The write path of ingest: the batches of one request, or of many requests
//! committed together (the server's group commit), in one transaction.
//!
//! Per transaction, whatever the number of events: one lookup of the ids
//! already stored, one of the groups' counters (when a cap applies), a
//! multi-row insert per table, one upsert per group and one per usage period.
//! Rows are locked in one global order (per project in id order: event ids,
//! then group ids, then usage), so concurrent transactions on PostgreSQL
//! cannot deadlock each other.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AssertSqlSafe, Row};

use crate::events::{GroupDelta, NewEvent, group_id, upsert_groups};
use crate::limits::{InsertLimits, QuotaPeriod, UsagePeriods, keep_sampled};
use crate::page::{Marks, ROWS_PER_STATEMENT};
use crate::{InsertOutcome, Result, Store, StoreError};

/// One request's events with the limits of its project.
#[derive(Debug, Clone, Copy)]
pub struct InsertJob<'a> {
    pub project_id: i64,
    pub events: &'a [NewEvent],
    pub limits: InsertLimits,
}

/// An event of the transaction that was not stored before it: which job it
/// is of, and whether it is kept in full or only counted (sampled).
struct Candidate<'a> {
    job: usize,
    event: &'a NewEvent,
    group: String,
    keep: bool,
}

impl Store {
    /// Stores a batch in one transaction. Resent ids are accepted and stored
    /// nothing twice. No quota, no per-group cap.
    pub async fn insert_events(
        &self,
        project_id: i64,
        events: &[NewEvent],
    ) -> Result<InsertOutcome> {
        self.insert_events_with(project_id, events, &InsertLimits::default())
            .await
    }

    /// [`Store::insert_events`] within quotas and a per-group cap.
    ///
    /// New events are counted in `project_usage` (UTC day and month) in the
    /// same transaction; when that takes a count over its quota the whole
    /// batch is rolled back and [`StoreError::QuotaExceeded`] returned, so a
    /// batch is stored whole or not at all and the counters survive restarts.
    ///
    /// A group holding `group_cap` events keeps only a sample of further
    /// ones ([`keep_sampled`]); the others go to `sampled_events` (id, time,
    /// weight), so resends stay idempotent and counts stay exact:
    /// `event_count = Σ events.weight + Σ sampled_events.weight` per group.
    pub async fn insert_events_with(
        &self,
        project_id: i64,
        events: &[NewEvent],
        limits: &InsertLimits,
    ) -> Result<InsertOutcome> {
        let job = InsertJob {
            project_id,
            events,
            limits: *limits,
        };
        let mut outcomes = self.insert_jobs(&[job]).await?;
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// Several requests' batches in one transaction (group commit): one
    /// outcome per job, in order. Any error rolls every job back; a quota
    /// crossed by the sum is [`StoreError::QuotaExceeded`] for all of them,
    /// so a caller that wants each job judged alone runs them again one by
    /// one ([`Store::insert_events_with`]).
    pub async fn insert_jobs(&self, jobs: &[InsertJob<'_>]) -> Result<Vec<InsertOutcome>> {
        let received_at = crate::now_ms();
        let _pass = self.wal_writer_pass().await;
        let mut tx = self.begin_write().await?;
        let mut outcomes: Vec<InsertOutcome> = jobs
            .iter()
            .map(|j| InsertOutcome {
                accepted: j.events.iter().map(|e| e.event_id.clone()).collect(),
                inserted: 0,
                sampled: 0,
                new_groups: 0,
            })
            .collect();
        let mut by_project: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, job) in jobs.iter().enumerate() {
            if !job.events.is_empty() {
                by_project.entry(job.project_id).or_default().push(i);
            }
        }
        for (project_id, of_project) in by_project {
            self.write_project(
                &mut tx,
                project_id,
                jobs,
                &of_project,
                received_at,
                &mut outcomes,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn write_project(
        &self,
        conn: &mut sqlx::AnyConnection,
        project_id: i64,
        jobs: &[InsertJob<'_>],
        of_project: &[usize],
        received_at: i64,
        outcomes: &mut [InsertOutcome],
    ) -> Result<()> {
        // Each id once, in id order, the first job that sent it owning it.
        let mut ordered: Vec<(usize, &NewEvent)> = of_project
            .iter()
            .flat_map(|&j| jobs[j].events.iter().map(move |e| (j, e)))
            .collect();
        ordered.sort_by(|a, b| a.1.event_id.cmp(&b.1.event_id).then(a.0.cmp(&b.0)));
        ordered.dedup_by(|later, first| later.1.event_id == first.1.event_id);
        let groups: Vec<String> = ordered
            .iter()
            .map(|(_, e)| group_id(project_id, &e.fingerprint))
            .collect();
        let capped = of_project.iter().any(|&j| jobs[j].limits.group_cap > 0);
        if capped && self.backend == crate::Backend::Postgres {
            lock_groups(conn, &groups).await?;
        }
        let ids: Vec<&str> = ordered.iter().map(|(_, e)| e.event_id.as_str()).collect();
        let stored = stored_ids(conn, project_id, &ids).await?;
        let fresh: Vec<(usize, &NewEvent, String)> = ordered
            .into_iter()
            .zip(groups)
            .filter(|((_, e), _)| !stored.contains(e.event_id.as_str()))
            .map(|((j, e), g)| (j, e, g))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let candidates = Self::decide_kept(conn, jobs, fresh, capped).await?;
        let inserted = insert_rows(conn, project_id, &candidates, received_at).await?;
        let mut deltas: BTreeMap<String, GroupDelta<'_>> = BTreeMap::new();
        let mut releases: BTreeMap<(String, &str), (&str, i64)> = BTreeMap::new();
        let mut new_events: Vec<(String, &NewEvent)> = Vec::new();
        let mut total = 0i64;
        for c in candidates
            .iter()
            .filter(|c| inserted.contains(c.event.event_id.as_str()))
        {
            let e = c.event;
            total += 1;
            outcomes[c.job].inserted += 1;
            if !c.keep {
                outcomes[c.job].sampled += 1;
            }
            if let Some(range) = &e.storm {
                sqlx::query(
                    "INSERT INTO storm_ranges (project_id, event_id, id_prefix, seq_start, seq_end) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, event_id) DO NOTHING",
                )
                .bind(project_id)
                .bind(&e.event_id)
                .bind(range.id_prefix.to_ascii_lowercase())
                .bind(i64::from(range.seq_start))
                .bind(i64::from(range.seq_end))
                .execute(&mut *conn)
                .await?;
            }
            if c.keep {
                for build_id in &e.missing_debug_files {
                    sqlx::query(
                        "INSERT INTO pending_symbols (build_id, project_id, event_id) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(build_id)
                    .bind(project_id)
                    .bind(&e.event_id)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            if let Some(release) = e.release.as_deref() {
                let first = releases
                    .entry((c.group.clone(), release))
                    .or_insert((&e.event_id, e.timestamp_ms));
                if e.timestamp_ms < first.1 {
                    *first = (&e.event_id, e.timestamp_ms);
                }
            }
            new_events.push((c.group.clone(), e));
            let weight = e.weight.max(1);
            let d = deltas.entry(c.group.clone()).or_insert(GroupDelta {
                first: e,
                count: 0,
                stored: 0,
                sampled: 0,
                first_seen: e.timestamp_ms,
                last_seen: e.timestamp_ms,
                first_release: e.release.as_deref(),
            });
            d.count = d.count.saturating_add(weight);
            if c.keep {
                d.stored += 1;
            } else {
                d.sampled += 1;
            }
            if e.timestamp_ms < d.first_seen {
                d.first_seen = e.timestamp_ms;
                d.first_release = e.release.as_deref();
            }
            d.last_seen = d.last_seen.max(e.timestamp_ms);
        }
        let groups: Vec<(&str, &GroupDelta<'_>)> =
            deltas.iter().map(|(g, d)| (g.as_str(), d)).collect();
        let created = upsert_groups(conn, project_id, &groups).await?;
        if created > 0 {
            for &j in of_project {
                outcomes[j].new_groups += created;
            }
        }
        self.apply_cluster_states(conn, project_id, &deltas, &new_events, received_at)
            .await?;
        let seen: Vec<(&str, &str, &str, i64)> = releases
            .iter()
            .map(|((gid, release), (event_id, ts))| (gid.as_str(), *release, *event_id, *ts))
            .collect();
        crate::triggers::record_releases(conn, project_id, &seen).await?;
        if total > 0 {
            count_usage(conn, project_id, jobs, of_project, total, received_at).await?;
        }
        Ok(())
    }

    /// Which new events are kept in full: all, until a group holds its cap
    /// (then a sample, [`keep_sampled`]); storm aggregates always, as they
    /// stand for many panics, their samples are their only trace links, and
    /// the ids folded into them resolve to them.
    async fn decide_kept<'a>(
        conn: &mut sqlx::AnyConnection,
        jobs: &[InsertJob<'_>],
        fresh: Vec<(usize, &'a NewEvent, String)>,
        capped: bool,
    ) -> Result<Vec<Candidate<'a>>> {
        // (stored, sampled) rows per group as the transaction goes.
        let mut counters: HashMap<String, (i64, i64)> = if capped {
            let groups: Vec<&str> = fresh.iter().map(|(_, _, g)| g.as_str()).collect();
            group_counters(conn, &groups).await?
        } else {
            HashMap::new()
        };
        Ok(fresh
            .into_iter()
            .map(|(job, event, group)| {
                let cap = jobs[job].limits.group_cap;
                let c = counters.entry(group.clone()).or_insert((0, 0));
                let keep = event.storm.is_some() || keep_sampled(c.0, c.0 + c.1, cap);
                if keep {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
                Candidate {
                    job,
                    event,
                    group,
                    keep,
                }
            })
            .collect())
    }

    /// Resolved or ignored clusters that new events fell in: one read (and
    /// lock) for the batch's groups; unresolved clusters cost nothing more.
    /// Events are taken in time order, so a regression names the first
    /// event that brought a cluster back.
    async fn apply_cluster_states(
        &self,
        conn: &mut sqlx::AnyConnection,
        project_id: i64,
        deltas: &BTreeMap<String, GroupDelta<'_>>,
        fresh: &[(String, &NewEvent)],
        received_at: i64,
    ) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let groups: Vec<String> = deltas.keys().cloned().collect();
        let held = crate::states::held_states_of_groups(conn, self.backend, &groups).await?;
        if held.is_empty() {
            return Ok(());
        }
        let mut cluster_of: BTreeMap<&str, &str> = BTreeMap::new();
        let mut states: BTreeMap<&str, crate::ClusterState> = BTreeMap::new();
        for (g, c, s) in &held {
            cluster_of.insert(g, c);
            states.insert(c, s.clone());
        }
        let mut events: BTreeMap<&str, Vec<&NewEvent>> = BTreeMap::new();
        for (g, e) in fresh {
            if let Some(c) = cluster_of.get(g.as_str()) {
                events.entry(c).or_default().push(e);
            }
        }
        let mut ts: HashMap<&str, i64> = HashMap::new();
        let mut by_cluster = Vec::new();
        for (c, mut evs) in events {
            evs.sort_by(|a, b| {
                a.timestamp_ms
                    .cmp(&b.timestamp_ms)
                    .then_with(|| a.event_id.cmp(&b.event_id))
            });
            let Some(state) = states.remove(c) else {
                continue;
            };
            let seen = evs
                .iter()
                .map(|e| {
                    ts.insert(e.event_id.as_str(), e.timestamp_ms);
                    crate::SeenEvent {
                        event_id: &e.event_id,
                        release: e.release.as_deref(),
                        pod: e.pod.as_deref(),
                        weight: e.weight,
                        received_ms: received_at,
                    }
                })
                .collect();
            by_cluster.push((c.to_string(), state, seen));
        }
        crate::states::apply_events(conn, project_id, by_cluster, &ts).await
    }
}

/// The ids among `ids` the project already holds, in full or sampled.
async fn stored_ids(
    conn: &mut sqlx::AnyConnection,
    project_id: i64,
    ids: &[&str],
) -> Result<HashSet<String>> {
    let mut stored = HashSet::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut m = Marks::for_conn(conn);
        let sql = format!(
            "SELECT event_id FROM events WHERE project_id = {} AND event_id IN ({}) \
             UNION ALL \
             SELECT event_id FROM sampled_events WHERE project_id = {} AND event_id IN ({})",
            m.next(),
            m.list(chunk.len()),
            m.next(),
            m.list(chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(project_id);
        for id in chunk {
            q = q.bind(*id);
        }
        q = q.bind(project_id);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            stored.insert(row.try_get::<String, _>("event_id")?);
        }
    }
    Ok(stored)
}

/// Where a cap applies, two transactions deciding the same id from counters
/// each read before the other committed could keep it in full in one and
/// sample it in the other: counted twice, as the two tables share no key.
/// So on PostgreSQL transactions that may sample take turns per group (a
/// transaction-scoped advisory lock per group, in key order, one statement),
/// and read the stored ids and counters once it is their turn. The group
/// rows' own locks come later (the upsert) and would come too late. SQLite
/// runs one writer at a time.
async fn lock_groups(conn: &mut sqlx::AnyConnection, groups: &[String]) -> Result<()> {
    // The group id is hex of a hash: its first 15 digits are a lock key.
    let mut keys: Vec<i64> = groups
        .iter()
        .filter_map(|g| i64::from_str_radix(g.get(1..16)?, 16).ok())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // A VALUES scan yields its rows in order, each joined to its lock:
        // the locks are taken in key order.
        let rows: Vec<String> = (1..=chunk.len())
            .map(|i| format!("(${i}::bigint)"))
            .collect();
        let sql = format!(
            "SELECT 1 FROM (VALUES {}) AS v(k) CROSS JOIN LATERAL pg_advisory_xact_lock(k) AS l",
            rows.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for k in chunk {
            q = q.bind(*k);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// (stored, sampled) rows of the groups that exist among `groups`.
async fn group_counters(
    conn: &mut sqlx::AnyConnection,
    groups: &[&str],
) -> Result<HashMap<String, (i64, i64)>> {
    let mut distinct: Vec<&str> = groups.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut counters = HashMap::new();
    for chunk in distinct.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, stored_events, sampled_events FROM event_groups WHERE id IN ({})",
            Marks::for_conn(conn).list(chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for g in chunk {
            q = q.bind(*g);
        }
        for row in q.fetch_all(&mut *conn).await? {
            counters.insert(
                row.try_get("id")?,
                (
                    row.try_get("stored_events")?,
                    row.try_get("sampled_events")?,
                ),
            );
        }
    }
    Ok(counters)
}

/// Inserts the candidates (kept ones into `events`, the others into
/// `sampled_events`) in id order; returns the ids that were new. An id a
/// concurrent transaction stored first is not among them: it counts as a
/// resend, so no count is taken twice.
async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    project_id: i64,
    candidates: &[Candidate<'_>],
    received_at: i64,
) -> Result<HashSet<String>> {
    let mut inserted = HashSet::new();
    let kept: Vec<&Candidate> = candidates.iter().filter(|c| c.keep).collect();
    for chunk in kept.chunks(ROWS_PER_STATEMENT) {
        let rows = Marks::for_conn(conn).rows(chunk.len(), 18);
        let sql = format!(
            "INSERT INTO events (project_id, event_id, group_id, ts, received_at, platform, \
             kind, message, service, environment, release, trace_id, pod, node, route, depth, \
             payload, weight) VALUES {rows} ON CONFLICT (project_id, event_id) DO NOTHING \
             RETURNING event_id"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in chunk {
            let e = c.event;
            q = q
                .bind(project_id)
                .bind(&e.event_id)
                .bind(&c.group)
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
                .bind(e.weight.max(1));
        }
        for row in q.fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>("event_id")?);
        }
    }
    let sampled: Vec<&Candidate> = candidates.iter().filter(|c| !c.keep).collect();
    for chunk in sampled.chunks(ROWS_PER_STATEMENT) {
        let rows = Marks::for_conn(conn).rows(chunk.len(), 5);
        let sql = format!(
            "INSERT INTO sampled_events (project_id, event_id, group_id, ts, weight) VALUES {rows} \
             ON CONFLICT (project_id, event_id) DO NOTHING RETURNING event_id"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in chunk {
            q = q
                .bind(project_id)
                .bind(&c.event.event_id)
                .bind(&c.group)
                .bind(c.event.timestamp_ms)
                .bind(c.event.weight.max(1));
        }
        for row in q.fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>("event_id")?);
        }
    }
    Ok(inserted)
}

/// Counts `n` new events in the project's day and month; over a quota of
/// any of the jobs, the transaction is refused (the caller rolls it back).
async fn count_usage(
    conn: &mut sqlx::AnyConnection,
    project_id: i64,
    jobs: &[InsertJob<'_>],
    of_project: &[usize],
    n: i64,
    received_at: i64,
) -> Result<()> {
    let periods = UsagePeriods::at(received_at);
    // The tightest quota of the jobs (they normally share the project's).
    let tightest = |quota: fn(&InsertLimits) -> i64| {
        of_project
            .iter()
            .map(|&j| quota(&jobs[j].limits))
            .filter(|&q| q > 0)
            .min()
            .unwrap_or(0)
    };
    // Both periods in one statement.
    let rows = sqlx::query(
        "INSERT INTO project_usage (project_id, period, count) VALUES ($1, $2, $4), ($1, $3, $4) \
         ON CONFLICT (project_id, period) DO UPDATE SET count = project_usage.count + excluded.count \
         RETURNING period, count",
    )
    .bind(project_id)
    .bind(&periods.day)
    .bind(&periods.month)
    .bind(n)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let key: String = row.try_get("period")?;
        let used: i64 = row.try_get("count")?;
        let (period, quota) = if key == periods.day {
            (QuotaPeriod::Daily, tightest(|l| l.daily_quota))
        } else {
            (QuotaPeriod::Monthly, tightest(|l| l.monthly_quota))
        };
        if quota > 0 && used > quota {
            return Err(StoreError::QuotaExceeded {
                period,
                limit: quota,
                used: used - n,
            });
        }
    }
    Ok(())
}
