//! Cluster membership of groups, the id counter, the change log, and the
//! aggregates the cluster views read.

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AssertSqlSafe, Row};

use crate::counted::COUNTED;
use crate::page::{Bind, Filter, bind_all, push_in};
use crate::{Backend, Result, Store, now_ms};

/// One group's place after a clustering run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAssignment {
    pub group_id: String,
    pub cluster_id: String,
    /// A DBSCAN core point: new groups attach to clusters through these.
    pub core: bool,
}

/// A cluster a run or attach created for groups never clustered before
/// (not a split's new part): it fires `NewCluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCluster {
    pub cluster_id: String,
    /// Its heaviest group: rules filter on its newest event.
    pub group_id: String,
    pub release: Option<String>,
}

/// A merge or split, kept so a cluster's history can be told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterChange {
    /// `merge`, `split`, `state` (set by someone, or inherited in a run),
    /// `regression` or `reopened` (an ignore ended).
    pub kind: String,
    pub cluster_id: String,
    pub others: Vec<String>,
    /// Who: `token <id>`, `clustering`, `ingest`; None for merges and splits.
    pub actor: Option<String>,
    /// What: the state set (or the release and event that reopened it).
    pub detail: Option<serde_json::Value>,
}

/// Counts of one group over the events that pass a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAggregate {
    pub group_id: String,
    pub count: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// An event of a cluster with what attribution reads.
#[derive(Debug, Clone)]
pub struct ClusterEvent {
    pub event_id: String,
    pub group_id: String,
    pub cluster_id: String,
    pub timestamp_ms: i64,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub trace_id: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
    pub route: Option<String>,
    pub depth: i64,
    /// Panics the event stands for (a storm aggregate's count, else 1).
    pub weight: i64,
    pub payload: String,
}

/// Weighted counts per value of the columns a cluster's "where" shows;
/// `None` is "not recorded" (absent, or a sampled event's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distributions {
    pub services: Vec<(Option<String>, i64)>,
    pub releases: Vec<(Option<String>, i64)>,
    pub environments: Vec<(Option<String>, i64)>,
    pub pods: Vec<(Option<String>, i64)>,
    pub nodes: Vec<(Option<String>, i64)>,
    pub routes: Vec<(Option<String>, i64)>,
}

/// Where a process ran, for confinement checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostColumn {
    Pod,
    Node,
}

/// Event filters the cluster views share.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub project_id: Option<i64>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// One group only (attribution of a group rather than its cluster).
    pub group_id: Option<String>,
    pub pod: Option<String>,
    pub node: Option<String>,
    pub route: Option<String>,
    pub trace_id: Option<String>,
    /// The panic kind (`panic`, `signal`, …).
    pub kind: Option<String>,
    pub platform: Option<String>,
}

impl EventFilter {
    pub(crate) fn to_filter(&self) -> Filter {
        let mut f = Filter::default();
        if let Some(p) = self.project_id {
            f.push("e.project_id = ?", Bind::Int(p));
        }
        if let Some(g) = &self.group_id {
            f.push("e.group_id = ?", Bind::Text(g.clone()));
        }
        if let Some(s) = &self.service {
            f.push("e.service = ?", Bind::Text(s.clone()));
        }
        if let Some(s) = &self.environment {
            f.push("e.environment = ?", Bind::Text(s.clone()));
        }
        if let Some(s) = &self.release {
            f.push("e.release = ?", Bind::Text(s.clone()));
        }
        for (column, value) in [
            ("e.pod", &self.pod),
            ("e.node", &self.node),
            ("e.route", &self.route),
            ("e.trace_id", &self.trace_id),
            ("e.kind", &self.kind),
            ("e.platform", &self.platform),
        ] {
            if let Some(v) = value {
                f.push(&format!("{column} = ?"), Bind::Text(v.clone()));
            }
        }
        if let Some(t) = self.since_ms {
            f.push("e.ts >= ?", Bind::Int(t));
        }
        if let Some(t) = self.until_ms {
            f.push("e.ts < ?", Bind::Int(t));
        }
        f
    }

    /// True when only the project narrows: group counters answer then.
    pub fn is_unfiltered(&self) -> bool {
        self.service.is_none()
            && self.environment.is_none()
            && self.release.is_none()
            && self.since_ms.is_none()
            && self.until_ms.is_none()
            && self.group_id.is_none()
            && self.pod.is_none()
            && self.node.is_none()
            && self.route.is_none()
            && self.trace_id.is_none()
            && self.kind.is_none()
            && self.platform.is_none()
    }
}

/// Holds the job lock until dropped or released.
pub struct JobLock {
    conn: Option<PoolConnection<Any>>,
}

const JOB_LOCK_KEY: i64 = 0x7061_6e69_636c; // "panicl"

impl JobLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = sqlx::query("SELECT CASE WHEN pg_advisory_unlock($1) THEN 1 ELSE 0 END")
                .bind(JOB_LOCK_KEY)
                .fetch_one(&mut *conn)
                .await;
        }
    }
}

impl Store {
    /// Takes the cluster job's lock: a PostgreSQL advisory lock, so one
    /// replica of many runs the job; `None` when another holds it. SQLite is
    /// one process: the server's own mutex covers it.
    pub async fn try_job_lock(&self) -> Result<Option<JobLock>> {
        match self.backend {
            Backend::Sqlite => Ok(Some(JobLock { conn: None })),
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?;
                // The advisory lock belongs to the session: a guard dropped
                // without `release` must end the session, not pool it.
                conn.close_on_drop();
                let got: i32 =
                    sqlx::query("SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END")
                        .bind(JOB_LOCK_KEY)
                        .fetch_one(&mut *conn)
                        .await?
                        .try_get(0)?;
                Ok((got == 1).then_some(JobLock { conn: Some(conn) }))
            }
        }
    }

    /// Reserves `n` fresh cluster ids; returns the first.
    pub async fn reserve_cluster_ids(&self, n: u64) -> Result<u64> {
        let end: i64 = sqlx::query(
            "UPDATE cluster_state SET next_cluster = next_cluster + $1 WHERE id = 1 RETURNING next_cluster",
        )
        .bind(n as i64)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok((end as u64).saturating_sub(n))
    }

    /// Writes a run's outcome in one transaction: memberships, the id
    /// counter and the merges and splits.
    pub async fn save_clustering(
        &self,
        project_id: i64,
        assignments: &[GroupAssignment],
        next_cluster: u64,
        changes: &[ClusterChange],
        sources: &[(String, Vec<String>)],
        new_clusters: &[NewCluster],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // Groups in no cluster until now: their events are new to the
        // cluster they join, as at an attach. On PostgreSQL the project's
        // groups are locked first, in id order (ingest's order): an attach
        // on another replica that placed a group after this run read it
        // has committed by now and the group is not loose, or it waits and
        // then finds the group placed (`start_cluster` announces nothing).
        let lock = match self.backend {
            Backend::Postgres => " ORDER BY id FOR UPDATE",
            Backend::Sqlite => "",
        };
        let loose: std::collections::HashSet<String> = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, cluster_id FROM event_groups WHERE project_id = $1{lock}"
        )))
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .filter_map(|r| match r.try_get::<Option<String>, _>("cluster_id") {
            Ok(Some(_)) => None,
            Ok(None) => Some(r.try_get::<String, _>("id")),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
        for a in assignments {
            sqlx::query("UPDATE event_groups SET cluster_id = $1, core = $2 WHERE id = $3 AND project_id = $4")
                .bind(&a.cluster_id)
                .bind(i64::from(a.core))
                .bind(&a.group_id)
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE cluster_state SET next_cluster = CASE WHEN next_cluster > $1 THEN next_cluster ELSE $1 END, \
             last_run_at = $2 WHERE id = 1",
        )
        .bind(next_cluster as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let at = now_ms();
        for c in changes {
            sqlx::query(
                "INSERT INTO cluster_changes (at, project_id, kind, cluster_id, others) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(at)
            .bind(project_id)
            .bind(&c.kind)
            .bind(&c.cluster_id)
            .bind(serde_json::to_string(&c.others).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        }
        self.inherit_states(&mut tx, project_id, sources).await?;
        // A cluster no group is in any more (merged away, or its events
        // purged) keeps no state: its history stays in cluster_changes.
        sqlx::query(
            "DELETE FROM cluster_states WHERE project_id = $1 AND cluster_id NOT IN \
             (SELECT cluster_id FROM event_groups WHERE project_id = $1 AND cluster_id IS NOT NULL)",
        )
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        for a in assignments.iter().filter(|a| loose.contains(&a.group_id)) {
            self.apply_attach(&mut tx, &a.group_id, &a.cluster_id)
                .await?;
        }
        // A cluster is new only when all its groups are still in none: one
        // that another replica's attach placed meanwhile was announced there.
        let mut all_loose: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for a in assignments {
            *all_loose.entry(a.cluster_id.as_str()).or_insert(true) &= loose.contains(&a.group_id);
        }
        let new_clusters = new_clusters
            .iter()
            .filter(|c| all_loose.get(c.cluster_id.as_str()) == Some(&true));
        for c in new_clusters {
            crate::triggers::record(
                &mut tx,
                project_id,
                &crate::triggers::Trigger::NewCluster {
                    cluster_id: &c.cluster_id,
                    release: c.release.as_deref(),
                    group_id: &c.group_id,
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Puts one group still without a cluster in a cluster of its own (an
    /// attach that found no neighbour), firing `NewCluster` in the same
    /// transaction; false when a run placed it meanwhile.
    pub async fn start_cluster(&self, project_id: i64, group: &NewCluster) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE event_groups SET cluster_id = $1 WHERE id = $2 AND cluster_id IS NULL",
        )
        .bind(&group.cluster_id)
        .bind(&group.group_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        crate::triggers::record(
            &mut tx,
            project_id,
            &crate::triggers::Trigger::NewCluster {
                cluster_id: &group.cluster_id,
                release: group.release.as_deref(),
                group_id: &group.group_id,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Puts one group in a cluster (attach between runs).
    pub async fn set_group_cluster(&self, group_id: &str, cluster_id: &str) -> Result<bool> {
        // Only a group still without a cluster: a full run saved meanwhile
        // (on any replica) wins over an attach computed before it.
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE event_groups SET cluster_id = $1 WHERE id = $2 AND cluster_id IS NULL",
        )
        .bind(cluster_id)
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
        let joined = done.rows_affected() == 1;
        if joined {
            // A group joining a resolved cluster brings its events into it.
            self.apply_attach(&mut tx, group_id, cluster_id).await?;
        }
        tx.commit().await?;
        Ok(joined)
    }

    /// How many distinct pods (or nodes) the given services ran events on:
    /// a cluster seen on one of several is an environment suspect.
    pub async fn distinct_hosts(
        &self,
        project_id: i64,
        column: HostColumn,
        services: &[String],
    ) -> Result<i64> {
        let mut f = Filter::default();
        f.push("project_id = ?", Bind::Int(project_id));
        if !services.is_empty() {
            push_in(&mut f, "service", services);
        }
        let col = match column {
            HostColumn::Pod => "pod",
            HostColumn::Node => "node",
        };
        let sql = format!("SELECT COUNT(DISTINCT {col}) FROM events{}", f.where_sql());
        let n: i64 = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(n)
    }

    /// A cluster's history, newest first: merges, splits, state changes,
    /// regressions and reopens.
    pub async fn cluster_changes(&self, cluster_id: &str) -> Result<Vec<(i64, ClusterChange)>> {
        let rows = sqlx::query(
            "SELECT at, kind, cluster_id, others, actor, detail FROM cluster_changes WHERE cluster_id = $1 \
             ORDER BY at DESC LIMIT 50",
        )
        .bind(cluster_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let others: String = r.try_get("others")?;
                let detail: Option<String> = r.try_get("detail")?;
                Ok((
                    r.try_get("at")?,
                    ClusterChange {
                        kind: r.try_get("kind")?,
                        cluster_id: r.try_get("cluster_id")?,
                        others: serde_json::from_str(&others).unwrap_or_default(),
                        actor: r.try_get("actor")?,
                        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    },
                ))
            })
            .collect()
    }

    /// Per-group counts and first/last times over the events that pass the
    /// filter. Grouped by `group_id` on `events` alone, so the
    /// `(group_id, ts)` index answers it without a join; the caller folds
    /// groups into clusters.
    pub async fn group_aggregates(&self, filter: &EventFilter) -> Result<Vec<GroupAggregate>> {
        self.aggregates_where(filter.to_filter()).await
    }

    /// [`Store::group_aggregates`] of the given groups only: a cluster's
    /// members, read through the `(group_id, ts)` index.
    pub async fn aggregates_of_groups(
        &self,
        filter: &EventFilter,
        group_ids: &[String],
    ) -> Result<Vec<GroupAggregate>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut f = filter.to_filter();
        push_in(&mut f, "e.group_id", group_ids);
        self.aggregates_where(f).await
    }

    /// Count, first and last time per group of the counted events `f` keeps.
    async fn aggregates_where(&self, f: Filter) -> Result<Vec<GroupAggregate>> {
        let sql = format!(
            "SELECT e.group_id AS group_id, CAST(SUM(e.weight) AS BIGINT) AS n, MIN(e.ts) AS fs, MAX(e.ts) AS ls \
             FROM {COUNTED} e{} GROUP BY e.group_id",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(GroupAggregate {
                    group_id: r.try_get("group_id")?,
                    count: r.try_get("n")?,
                    first_seen_ms: r.try_get("fs")?,
                    last_seen_ms: r.try_get("ls")?,
                })
            })
            .collect()
    }

    /// Per group, events before and from `mid_ms` (within the filter): the
    /// two numbers growth is computed from.
    pub async fn group_halves(
        &self,
        filter: &EventFilter,
        mid_ms: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        let f = filter.to_filter();
        let sql = format!(
            "SELECT e.group_id AS group_id, \
             CAST(SUM(CASE WHEN e.ts < {mid_ms} THEN e.weight ELSE 0 END) AS BIGINT) AS older, \
             CAST(SUM(CASE WHEN e.ts >= {mid_ms} THEN e.weight ELSE 0 END) AS BIGINT) AS newer \
             FROM {COUNTED} e{} GROUP BY e.group_id",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("group_id")?,
                    r.try_get("older")?,
                    r.try_get("newer")?,
                ))
            })
            .collect()
    }

    /// Event counts per (group, bucket) of the given groups, for
    /// sparklines: bucket `b` is `origin_ms + b·bucket_ms ..` (the filter
    /// should start at `origin_ms`).
    pub async fn group_trends(
        &self,
        filter: &EventFilter,
        origin_ms: i64,
        bucket_ms: i64,
        group_ids: &[String],
    ) -> Result<Vec<(String, i64, i64)>> {
        let bucket_ms = bucket_ms.max(1);
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut f = filter.to_filter();
        push_in(&mut f, "e.group_id", group_ids);
        let sql = format!(
            "SELECT e.group_id AS group_id, (e.ts - {origin_ms}) / {bucket_ms} AS b, \
             CAST(SUM(e.weight) AS BIGINT) AS n \
             FROM {COUNTED} e{} GROUP BY e.group_id, (e.ts - {origin_ms}) / {bucket_ms}",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("group_id")?, r.try_get("b")?, r.try_get("n")?)))
            .collect()
    }

    /// Services of the given groups over the events that pass the filter.
    pub async fn group_services(
        &self,
        filter: &EventFilter,
        group_ids: &[String],
    ) -> Result<Vec<(String, String, i64)>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut f = filter.to_filter();
        push_in(&mut f, "e.group_id", group_ids);
        f.clauses.push("e.service IS NOT NULL".into());
        let sql = format!(
            "SELECT e.group_id AS group_id, e.service AS service, CAST(SUM(e.weight) AS BIGINT) AS n \
             FROM events e{} GROUP BY e.group_id, e.service",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("group_id")?,
                    r.try_get("service")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// The newest events of a cluster (or of every cluster of a project when
    /// `cluster_id` is None), with payloads, for attribution.
    pub async fn cluster_events(
        &self,
        cluster_id: Option<&str>,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<ClusterEvent>> {
        let mut f = filter.to_filter();
        match cluster_id {
            Some(c) => f.push("g.cluster_id = ?", Bind::Text(c.to_string())),
            None => f.clauses.push("g.cluster_id IS NOT NULL".into()),
        }
        let sql = format!(
            "SELECT e.event_id, e.group_id, g.cluster_id, e.ts, e.service, e.environment, e.release, \
             e.trace_id, e.pod, e.node, e.route, e.depth, e.weight, e.payload \
             FROM events e JOIN event_groups g ON g.id = e.group_id{} ORDER BY e.ts DESC, e.event_id DESC LIMIT {}",
            f.where_sql(),
            limit.max(1)
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ClusterEvent {
                    event_id: r.try_get("event_id")?,
                    group_id: r.try_get("group_id")?,
                    cluster_id: r.try_get("cluster_id")?,
                    timestamp_ms: r.try_get("ts")?,
                    service: r.try_get("service")?,
                    environment: r.try_get("environment")?,
                    release: r.try_get("release")?,
                    trace_id: r.try_get("trace_id")?,
                    pod: r.try_get("pod")?,
                    node: r.try_get("node")?,
                    route: r.try_get("route")?,
                    depth: r.try_get("depth")?,
                    weight: r.try_get("weight")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }
    /// Events per (call depth, time bucket of `width_ms`), weighted by their
    /// storm counts: the heatmap, aggregated where the rows are. A sampled
    /// event's depth was not kept: `None`.
    pub async fn depth_buckets(
        &self,
        filter: &EventFilter,
        cluster_id: Option<&str>,
        width_ms: i64,
    ) -> Result<Vec<(Option<i64>, i64, i64)>> {
        let width_ms = width_ms.max(1);
        let mut f = filter.to_filter();
        let join = match cluster_id {
            Some(c) => {
                f.push("g.cluster_id = ?", Bind::Text(c.to_string()));
                " JOIN event_groups g ON g.id = e.group_id"
            }
            None => "",
        };
        let sql = format!(
            "SELECT e.depth AS d, (e.ts / {width_ms}) * {width_ms} AS b, CAST(SUM(e.weight) AS BIGINT) AS n \
             FROM {COUNTED} e{join}{} GROUP BY e.depth, e.ts / {width_ms}",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("d")?, r.try_get("b")?, r.try_get("n")?)))
            .collect()
    }

    /// Where the given groups' events ran: per column, each value (None:
    /// not recorded, sampled events included) with the panics seen there,
    /// busiest first. Every column's counts add up to the same total.
    pub async fn distributions(
        &self,
        filter: &EventFilter,
        group_ids: &[String],
    ) -> Result<Distributions> {
        let mut out = Distributions::default();
        if group_ids.is_empty() {
            return Ok(out);
        }
        for (column, slot) in [
            ("service", &mut out.services),
            ("release", &mut out.releases),
            ("environment", &mut out.environments),
            ("pod", &mut out.pods),
            ("node", &mut out.nodes),
            ("route", &mut out.routes),
        ] {
            let mut f = filter.to_filter();
            push_in(&mut f, "e.group_id", group_ids);
            let sql = format!(
                "SELECT e.{column} AS v, CAST(SUM(e.weight) AS BIGINT) AS n \
                 FROM {COUNTED} e{} GROUP BY e.{column}",
                f.where_sql()
            );
            let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
                .fetch_all(&self.pool)
                .await?;
            let mut values = rows
                .iter()
                .map(|r| Ok((r.try_get("v")?, r.try_get("n")?)))
                .collect::<Result<Vec<(Option<String>, i64)>>>()?;
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            *slot = values;
        }
        Ok(out)
    }

    /// Clusters whose events share a trace id with the given ones.
    pub async fn clusters_sharing_traces(
        &self,
        project_id: i64,
        trace_ids: &[String],
        except_cluster: &str,
    ) -> Result<Vec<(String, i64)>> {
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut f = Filter::default();
        f.push("e.project_id = ?", Bind::Int(project_id));
        push_in(&mut f, "e.trace_id", trace_ids);
        f.push("g.cluster_id <> ?", Bind::Text(except_cluster.to_string()));
        let sql = format!(
            "SELECT g.cluster_id AS cluster_id, COUNT(DISTINCT e.trace_id) AS n FROM events e \
             JOIN event_groups g ON g.id = e.group_id{} GROUP BY g.cluster_id ORDER BY n DESC LIMIT 20",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("cluster_id")?, r.try_get("n")?)))
            .collect()
    }
}
