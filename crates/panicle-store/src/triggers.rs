//! What just happened to a cluster, as alert rules see it (issue 14). A
//! trigger is recorded inside the transaction that caused it (the event's
//! ingest, an attach, a clustering run, a state change), so the
//! notification it leads to is written with it (transactional outbox) or
//! not at all.
//!
//! The cluster-state code fires `Regression`; the alerting code owns what a
//! trigger becomes (rule matching, cooldowns, outbox rows) and fires the rest.

use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::Result;
use crate::alerts::{AlertRule, RuleKind, level_passes, rule_from_row};

/// One thing that happened to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// A cluster seen for the first time (a new group that joined no cluster).
    NewCluster {
        cluster_id: &'a str,
        release: Option<&'a str>,
        /// The group that started it: rules filter on its newest event.
        group_id: &'a str,
    },
    /// A new event in a resolved cluster reopened it.
    Regression {
        cluster_id: &'a str,
        release: Option<&'a str>,
        event_id: &'a str,
    },
    /// A cluster first seen in a release it had not been seen in.
    NewRelease {
        cluster_id: &'a str,
        release: &'a str,
        /// The event that brought the release: rules filter on it.
        event_id: &'a str,
    },
    /// A spike rule's check found the cluster over its threshold (the
    /// check applied the rule's filters).
    Spike {
        rule_id: i64,
        cluster_id: &'a str,
        /// Events in the window.
        count: i64,
        window_ms: i64,
        /// The usual count for such a window (with a factor), else None.
        usual: Option<i64>,
        /// When the check ran: the cooldown counts from it.
        at_ms: i64,
    },
    /// A confined rule's check found the cluster's events all on one host.
    Confined {
        rule_id: i64,
        cluster_id: &'a str,
        /// `pod` or `node`.
        host_kind: &'a str,
        host: &'a str,
        count: i64,
        at_ms: i64,
    },
}

impl Trigger<'_> {
    pub fn kind(&self) -> RuleKind {
        match self {
            Trigger::NewCluster { .. } => RuleKind::NewCluster,
            Trigger::Regression { .. } => RuleKind::Regression,
            Trigger::NewRelease { .. } => RuleKind::NewRelease,
            Trigger::Spike { .. } => RuleKind::Spike,
            Trigger::Confined { .. } => RuleKind::Confined,
        }
    }

    pub fn cluster_id(&self) -> &str {
        match self {
            Trigger::NewCluster { cluster_id, .. }
            | Trigger::Regression { cluster_id, .. }
            | Trigger::NewRelease { cluster_id, .. }
            | Trigger::Spike { cluster_id, .. }
            | Trigger::Confined { cluster_id, .. } => cluster_id,
        }
    }

    /// The one rule a periodic check's trigger is for.
    fn rule_id(&self) -> Option<i64> {
        match self {
            Trigger::Spike { rule_id, .. } | Trigger::Confined { rule_id, .. } => Some(*rule_id),
            _ => None,
        }
    }

    /// What makes a notification unique for its rule and cluster: a new
    /// cluster is told once, a regression once per reopening event, a new
    /// release once per release; checks once per firing (the cooldown
    /// spaces them).
    fn occurrence(&self) -> String {
        match self {
            Trigger::NewCluster { .. } => "new_cluster".into(),
            Trigger::Regression { event_id, .. } => format!("regression:{event_id}"),
            Trigger::NewRelease { release, .. } => format!("release:{release}"),
            Trigger::Spike { at_ms, .. } => format!("spike:{at_ms}"),
            Trigger::Confined {
                host_kind,
                host,
                at_ms,
                ..
            } => format!("confined:{host_kind}:{host}:{at_ms}"),
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            Trigger::NewCluster {
                release, group_id, ..
            } => json!({"release": release, "group_id": group_id}),
            Trigger::Regression {
                release, event_id, ..
            } => json!({"release": release, "event_id": event_id}),
            Trigger::NewRelease {
                release, event_id, ..
            } => json!({"release": release, "event_id": event_id}),
            Trigger::Spike {
                count,
                window_ms,
                usual,
                ..
            } => json!({"count": count, "window_ms": window_ms, "usual": usual}),
            Trigger::Confined {
                host_kind,
                host,
                count,
                ..
            } => json!({"host_kind": host_kind, "host": host, "count": count}),
        }
    }

    fn at_ms(&self) -> i64 {
        match self {
            Trigger::Spike { at_ms, .. } | Trigger::Confined { at_ms, .. } => *at_ms,
            _ => crate::now_ms(),
        }
    }
}

/// The event a trigger's rules filter on.
struct Origin {
    service: Option<String>,
    environment: Option<String>,
    kind: String,
}

fn has_filter(rule: &AlertRule) -> bool {
    rule.service.is_some() || rule.environment.is_some() || rule.min_level.is_some()
}

fn passes(rule: &AlertRule, origin: Option<&Origin>) -> bool {
    if !has_filter(rule) {
        return true;
    }
    let Some(o) = origin else { return false };
    rule.service
        .as_ref()
        .is_none_or(|s| o.service.as_ref() == Some(s))
        && rule
            .environment
            .as_ref()
            .is_none_or(|s| o.environment.as_ref() == Some(s))
        && level_passes(&o.kind, rule.min_level.as_deref())
}

fn origin_of(row: Option<sqlx::any::AnyRow>) -> Result<Option<Origin>> {
    row.map(|r| {
        Ok(Origin {
            service: r.try_get("service")?,
            environment: r.try_get("environment")?,
            kind: r.try_get("kind")?,
        })
    })
    .transpose()
}

async fn resolve_origin(
    conn: &mut AnyConnection,
    project_id: i64,
    trigger: &Trigger<'_>,
) -> Result<Option<Origin>> {
    let row = match trigger {
        Trigger::Regression { event_id, .. } | Trigger::NewRelease { event_id, .. } => {
            sqlx::query(
                "SELECT service, environment, kind FROM events WHERE project_id = $1 AND event_id = $2",
            )
            .bind(project_id)
            .bind(*event_id)
            .fetch_optional(&mut *conn)
            .await?
        }
        Trigger::NewCluster { group_id, .. } => {
            sqlx::query(
                "SELECT service, environment, kind FROM events WHERE group_id = $1 ORDER BY ts DESC LIMIT 1",
            )
            .bind(*group_id)
            .fetch_optional(&mut *conn)
            .await?
        }
        _ => None,
    };
    if row.is_some() {
        return origin_of(row);
    }
    // A sampled event is not kept in full: the cluster's newest stands for it.
    let row = sqlx::query(
        "SELECT e.service, e.environment, e.kind FROM events e JOIN event_groups g ON g.id = e.group_id \
         WHERE g.cluster_id = $1 AND e.project_id = $2 ORDER BY e.ts DESC LIMIT 1",
    )
    .bind(trigger.cluster_id())
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    origin_of(row)
}

/// Records `trigger` for `project_id` on the caller's transaction.
pub(crate) async fn record(
    conn: &mut AnyConnection,
    project_id: i64,
    trigger: &Trigger<'_>,
) -> Result<()> {
    record_counted(conn, project_id, trigger).await.map(|_| ())
}

/// [`record`], returning how many notifications were queued: one outbox
/// row per rule that matches, whose cooldown for the cluster has passed,
/// and that has not been told this occurrence yet. Without rules of the
/// trigger's kind this is one indexed read.
pub(crate) async fn record_counted(
    conn: &mut AnyConnection,
    project_id: i64,
    trigger: &Trigger<'_>,
) -> Result<usize> {
    const COLUMNS: &str = "id, project_id, name, kind, service, environment, min_level, cooldown_ms, \
         destination, url, threshold, window_ms, factor, created_at";
    let rows = match trigger.rule_id() {
        Some(id) => {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM alert_rules WHERE id = $1 AND project_id = $2"
            )))
            .bind(id)
            .bind(project_id)
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM alert_rules WHERE project_id = $1 AND kind = $2"
            )))
            .bind(project_id)
            .bind(trigger.kind().as_str())
            .fetch_all(&mut *conn)
            .await?
        }
    };
    if rows.is_empty() {
        return Ok(0);
    }
    let rules = rows.iter().map(rule_from_row).collect::<Result<Vec<_>>>()?;
    // A periodic check already counted within its rule's filters.
    let checked = trigger.rule_id().is_some();
    let origin = if !checked && rules.iter().any(has_filter) {
        resolve_origin(conn, project_id, trigger).await?
    } else {
        None
    };
    let at = trigger.at_ms();
    let cluster_id = trigger.cluster_id();
    let occurrence = trigger.occurrence();
    let details = trigger.details().to_string();
    let mut queued = 0;
    for rule in rules {
        if !checked && !passes(&rule, origin.as_ref()) {
            continue;
        }
        // The cooldown gate: one row per rule and cluster, moved forward
        // only once the cooldown has passed. Concurrent transactions queue
        // on its row, so two replicas cannot both pass it.
        let gate = sqlx::query(
            "INSERT INTO alert_cooldowns (rule_id, cluster_id, fired_at) VALUES ($1, $2, $3) \
             ON CONFLICT (rule_id, cluster_id) DO UPDATE SET fired_at = excluded.fired_at \
             WHERE alert_cooldowns.fired_at <= $4",
        )
        .bind(rule.id)
        .bind(cluster_id)
        .bind(at)
        .bind(at.saturating_sub(rule.cooldown_ms))
        .execute(&mut *conn)
        .await?;
        if gate.rows_affected() == 0 {
            continue;
        }
        let done = sqlx::query(
            "INSERT INTO alert_outbox (rule_id, project_id, cluster_id, trigger_kind, occurrence, details, \
             created_at, status, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $7) \
             ON CONFLICT (rule_id, cluster_id, occurrence) DO NOTHING",
        )
        .bind(rule.id)
        .bind(project_id)
        .bind(cluster_id)
        .bind(trigger.kind().as_str())
        .bind(&occurrence)
        .bind(&details)
        .bind(crate::now_ms())
        .execute(&mut *conn)
        .await?;
        queued += done.rows_affected() as usize;
    }
    Ok(queued)
}

/// After a batch's groups are written: each (group, release) of the batch
/// not seen before is remembered, and when no other group of the group's
/// cluster was seen in that release either, the cluster fires `NewRelease`.
/// One indexed insert per group and release of the batch; the cluster
/// lookups only for a release new to the group.
pub(crate) async fn record_releases(
    conn: &mut AnyConnection,
    project_id: i64,
    seen: &[(&str, &str, &str, i64)],
) -> Result<()> {
    let mut fired: Vec<(String, &str, &str)> = Vec::new();
    // One statement per chunk of pairs; the pairs new to their group come back.
    let mut fresh: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    for chunk in seen.chunks(crate::page::ROWS_PER_STATEMENT) {
        let rows = crate::page::Marks::for_conn(conn).rows(chunk.len(), 3);
        let sql = format!(
            "INSERT INTO group_releases (group_id, release, first_seen) VALUES {rows} \
             ON CONFLICT (group_id, release) DO NOTHING RETURNING group_id, release"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &(group_id, release, _, ts) in chunk {
            q = q.bind(group_id).bind(release).bind(ts);
        }
        for row in q.fetch_all(&mut *conn).await? {
            fresh.insert((row.try_get("group_id")?, row.try_get("release")?));
        }
    }
    for &(group_id, release, event_id, _) in seen {
        if !fresh.contains(&(group_id.to_string(), release.to_string())) {
            continue;
        }
        let cluster: Option<String> =
            sqlx::query("SELECT cluster_id FROM event_groups WHERE id = $1")
                .bind(group_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get("cluster_id"))
                .transpose()?
                .flatten();
        // A group without a cluster yet starts one: that is a new cluster.
        let Some(cluster_id) = cluster else { continue };
        // Other groups of the cluster seen in this release before: none, or
        // only ones new to it in this same call (several groups of a
        // cluster first seeing a release together fire it once, below).
        let elsewhere = sqlx::query(
            "SELECT r.group_id FROM group_releases r JOIN event_groups g ON g.id = r.group_id \
             WHERE g.cluster_id = $1 AND r.release = $2 AND r.group_id <> $3",
        )
        .bind(&cluster_id)
        .bind(release)
        .bind(group_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut before = false;
        for row in &elsewhere {
            let other: String = row.try_get("group_id")?;
            before |= !fresh.contains(&(other, release.to_string()));
        }
        if !before {
            fired.push((cluster_id, release, event_id));
        }
    }
    // Cooldown rows are locked in cluster order, as every batch does: two
    // batches firing for the same clusters cannot deadlock on them.
    fired.sort();
    fired.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    for (cluster_id, release, event_id) in &fired {
        record(
            conn,
            project_id,
            &Trigger::NewRelease {
                cluster_id,
                release,
                event_id,
            },
        )
        .await?;
    }
    Ok(())
}
