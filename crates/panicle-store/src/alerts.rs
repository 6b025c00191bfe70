//! Alert rules, the outbox of notifications (also the delivery log), and the
//! counts the spike and confinement checks read. What a trigger becomes is
//! in `triggers.rs`; sending is the server's.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::page::{Bind, Filter, bind_all};
use crate::{Backend, Result, Store, now_ms};

/// What a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    NewCluster,
    Regression,
    /// More than `threshold` events in `window_ms` (and, with `factor`, more
    /// than `factor` × the cluster's usual rate for such a window).
    Spike,
    /// A cluster's first event in a release it had not been seen in.
    NewRelease,
    /// At least `threshold` events within `window_ms`, all on one pod (or node).
    Confined,
}

impl RuleKind {
    pub const ALL: [RuleKind; 5] = [
        RuleKind::NewCluster,
        RuleKind::Regression,
        RuleKind::Spike,
        RuleKind::NewRelease,
        RuleKind::Confined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::NewCluster => "new_cluster",
            RuleKind::Regression => "regression",
            RuleKind::Spike => "spike",
            RuleKind::NewRelease => "new_release",
            RuleKind::Confined => "confined",
        }
    }

    pub fn parse(s: &str) -> Option<RuleKind> {
        RuleKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.replace('-', "_"))
    }
}

/// Where a rule's notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// A POST of the documented JSON payload.
    Webhook,
    /// A Slack-compatible incoming webhook (`text` and `blocks`).
    Slack,
}

impl Destination {
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Webhook => "webhook",
            Destination::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<Destination> {
        match s {
            "webhook" => Some(Destination::Webhook),
            "slack" => Some(Destination::Slack),
            _ => None,
        }
    }
}

/// Severity an event counts as. Events carry no level: a panic is `error`,
/// a Go `fatal error` or a signal (the process died) is `fatal`.
pub const LEVELS: [&str; 4] = ["info", "warning", "error", "fatal"];

/// The level of an event of `kind` (see [`LEVELS`]).
pub fn level_of_kind(kind: &str) -> &'static str {
    match kind {
        "fatal" | "signal" => "fatal",
        _ => "error",
    }
}

fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// True when an event of `kind` is at or above `min_level`.
pub fn level_passes(kind: &str, min_level: Option<&str>) -> bool {
    match min_level.and_then(level_rank) {
        None => true,
        Some(min) => level_rank(level_of_kind(kind)).is_some_and(|l| l >= min),
    }
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub kind: RuleKind,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub min_level: Option<String>,
    /// At most one notification per cluster within this.
    pub cooldown_ms: i64,
    pub destination: Destination,
    pub url: String,
    /// Spike: more than this many events; confined: at least this many.
    pub threshold: Option<i64>,
    /// Spike and confined: the window counted.
    pub window_ms: Option<i64>,
    /// Spike: also more than this × the cluster's usual rate.
    pub factor: Option<f64>,
    pub created_at_ms: i64,
}

/// A rule to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertRule {
    pub project_id: i64,
    pub name: String,
    pub kind: RuleKind,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub min_level: Option<String>,
    pub cooldown_ms: i64,
    pub destination: Destination,
    pub url: String,
    pub threshold: Option<i64>,
    pub window_ms: Option<i64>,
    pub factor: Option<f64>,
}

impl NewAlertRule {
    /// A rule of `kind` with the defaults (no filters, 1 h cooldown, a
    /// spike of 10 in 5 min, confined at 3 in 24 h).
    pub fn new(
        project_id: i64,
        name: &str,
        kind: RuleKind,
        destination: Destination,
        url: &str,
    ) -> NewAlertRule {
        let (threshold, window_ms) = match kind {
            RuleKind::Spike => (Some(10), Some(5 * 60_000)),
            RuleKind::Confined => (Some(3), Some(24 * 3_600_000)),
            _ => (None, None),
        };
        NewAlertRule {
            project_id,
            name: name.to_string(),
            kind,
            service: None,
            environment: None,
            min_level: None,
            cooldown_ms: 3_600_000,
            destination,
            url: url.to_string(),
            threshold,
            window_ms,
            factor: None,
        }
    }

    /// What is wrong with the rule, for a 400.
    pub fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() {
            return Some("`name` must not be empty".into());
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Some("`url` must be an http:// or https:// URL".into());
        }
        if let Some(l) = &self.min_level
            && level_rank(l).is_none()
        {
            return Some(format!("`min_level` must be one of {}", LEVELS.join(", ")));
        }
        if self.cooldown_ms < 0 {
            return Some("`cooldown` must not be negative".into());
        }
        if matches!(self.kind, RuleKind::Spike | RuleKind::Confined) {
            if self.threshold.is_none_or(|t| t < 1) {
                return Some("`threshold` must be at least 1 for spike and confined rules".into());
            }
            if self.window_ms.is_none_or(|w| w < 1_000) {
                return Some("`window` must be at least 1 s for spike and confined rules".into());
            }
        }
        if let Some(f) = self.factor
            && !(f.is_finite() && f > 0.0)
        {
            return Some("`factor` must be a positive number".into());
        }
        None
    }
}

/// One notification: what fired, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub rule_id: i64,
    pub project_id: i64,
    pub cluster_id: String,
    pub trigger: String,
    /// What makes this notification unique for its rule and cluster.
    pub occurrence: String,
    /// The trigger's facts (release, counts, host), as JSON.
    pub details: serde_json::Value,
    pub created_at_ms: i64,
    /// `pending`, `sending`, `delivered` or `failed` (gave up).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// A cluster's counts over a spike rule's window and the week before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCount {
    pub cluster_id: String,
    pub recent: i64,
    /// Events in the 7 days before the window (0 without a factor).
    pub before: i64,
}

/// A cluster whose events in a window all ran on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinedCluster {
    pub cluster_id: String,
    /// `pod` or `node`.
    pub host_kind: &'static str,
    pub host: String,
    pub count: i64,
}

/// The week a spike's usual rate is measured over.
pub const SPIKE_BASELINE_MS: i64 = 7 * 24 * 3_600_000;

const RULE_COLUMNS: &str = "id, project_id, name, kind, service, environment, min_level, cooldown_ms, \
     destination, url, threshold, window_ms, factor, created_at";

const DELIVERY_COLUMNS: &str = "id, rule_id, project_id, cluster_id, trigger_kind, occurrence, details, \
     created_at, status, attempts, next_attempt_at, last_error, delivered_at";

pub(crate) fn rule_from_row(r: &sqlx::any::AnyRow) -> Result<AlertRule> {
    let kind: String = r.try_get("kind")?;
    let destination: String = r.try_get("destination")?;
    Ok(AlertRule {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        name: r.try_get("name")?,
        kind: RuleKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown rule kind `{kind}`").into()))?,
        service: r.try_get("service")?,
        environment: r.try_get("environment")?,
        min_level: r.try_get("min_level")?,
        cooldown_ms: r.try_get("cooldown_ms")?,
        destination: Destination::parse(&destination).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown destination `{destination}`").into())
        })?,
        url: r.try_get("url")?,
        threshold: r.try_get("threshold")?,
        window_ms: r.try_get("window_ms")?,
        factor: r.try_get("factor")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

fn delivery_from_row(r: &sqlx::any::AnyRow) -> Result<Delivery> {
    let details: String = r.try_get("details")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        rule_id: r.try_get("rule_id")?,
        project_id: r.try_get("project_id")?,
        cluster_id: r.try_get("cluster_id")?,
        trigger: r.try_get("trigger_kind")?,
        occurrence: r.try_get("occurrence")?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        created_at_ms: r.try_get("created_at")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at_ms: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        delivered_at_ms: r.try_get("delivered_at")?,
    })
}

/// Restricts events (`e`) to a rule's service, environment and level.
fn rule_filter(rule: &AlertRule, f: &mut Filter) {
    if let Some(s) = &rule.service {
        f.push("e.service = ?", Bind::Text(s.clone()));
    }
    if let Some(s) = &rule.environment {
        f.push("e.environment = ?", Bind::Text(s.clone()));
    }
    if rule.min_level.as_deref().and_then(level_rank) > level_rank("error") {
        f.clauses.push("e.kind IN ('fatal', 'signal')".into());
    }
}

impl Store {
    pub async fn create_alert_rule(&self, rule: &NewAlertRule) -> Result<AlertRule> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO alert_rules (project_id, name, kind, service, environment, min_level, cooldown_ms, \
             destination, url, threshold, window_ms, factor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {RULE_COLUMNS}"
        )))
        .bind(rule.project_id)
        .bind(&rule.name)
        .bind(rule.kind.as_str())
        .bind(rule.service.as_deref())
        .bind(rule.environment.as_deref())
        .bind(rule.min_level.as_deref())
        .bind(rule.cooldown_ms)
        .bind(rule.destination.as_str())
        .bind(&rule.url)
        .bind(rule.threshold)
        .bind(rule.window_ms)
        .bind(rule.factor)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        rule_from_row(&row)
    }

    /// Replaces rule `id`'s settings (its project stays); None when there is
    /// no such rule. Its cooldowns and delivery log stay.
    pub async fn update_alert_rule(
        &self,
        id: i64,
        rule: &NewAlertRule,
    ) -> Result<Option<AlertRule>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE alert_rules SET name = $1, kind = $2, service = $3, environment = $4, min_level = $5, \
             cooldown_ms = $6, destination = $7, url = $8, threshold = $9, window_ms = $10, factor = $11 \
             WHERE id = $12 AND project_id = $13 RETURNING {RULE_COLUMNS}"
        )))
        .bind(&rule.name)
        .bind(rule.kind.as_str())
        .bind(rule.service.as_deref())
        .bind(rule.environment.as_deref())
        .bind(rule.min_level.as_deref())
        .bind(rule.cooldown_ms)
        .bind(rule.destination.as_str())
        .bind(&rule.url)
        .bind(rule.threshold)
        .bind(rule.window_ms)
        .bind(rule.factor)
        .bind(id)
        .bind(rule.project_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rule_from_row).transpose()
    }

    /// A project's rules (every project's with `None`), oldest first.
    pub async fn alert_rules(&self, project_id: Option<i64>) -> Result<Vec<AlertRule>> {
        let rows = match project_id {
            Some(p) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {RULE_COLUMNS} FROM alert_rules WHERE project_id = $1 ORDER BY id"
                )))
                .bind(p)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(rule_from_row).collect()
    }

    pub async fn alert_rule(&self, id: i64) -> Result<Option<AlertRule>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rule_from_row).transpose()
    }

    /// Deletes a rule with its cooldowns and delivery log; false when none.
    pub async fn delete_alert_rule(&self, id: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // Explicit, not only by cascade: SQLite enforces foreign keys per
        // connection, and the log must not outlive its rule.
        for table in ["alert_outbox", "alert_cooldowns"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE rule_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM alert_rules WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records `trigger` in a transaction of its own: for the periodic
    /// checks and tests; ingest and clustering record on their own
    /// transaction. Returns how many notifications it queued.
    pub async fn fire(
        &self,
        project_id: i64,
        trigger: &crate::triggers::Trigger<'_>,
    ) -> Result<usize> {
        self.fire_all(project_id, std::slice::from_ref(trigger))
            .await
    }

    /// [`Store::fire`] for several triggers in one transaction (one commit
    /// for a check's findings, not one each). Give them in cluster order:
    /// the cooldown rows are locked in that order.
    pub async fn fire_all(
        &self,
        project_id: i64,
        triggers: &[crate::triggers::Trigger<'_>],
    ) -> Result<usize> {
        if triggers.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut n = 0;
        for trigger in triggers {
            n += crate::triggers::record_counted(&mut tx, project_id, trigger).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Claims up to `limit` notifications that are due (or whose previous
    /// claim's lease ran out) for `lease_ms`: each is handed to one worker
    /// of all replicas. PostgreSQL skips rows another worker is claiming;
    /// SQLite's single writer serializes the statement.
    pub async fn claim_deliveries(
        &self,
        claim_token: &str,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let now = now_ms();
        // A read first: an idle poll takes no write lock (SQLite has one
        // writer, and ingest is it).
        let due = sqlx::query(
            "SELECT 1 FROM alert_outbox WHERE (status = 'pending' AND next_attempt_at <= $1) \
             OR (status = 'sending' AND claimed_until < $1) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE alert_outbox SET status = 'sending', claimed_until = $1, claim_token = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM alert_outbox WHERE \
             (status = 'pending' AND next_attempt_at <= $3) OR (status = 'sending' AND claimed_until < $3) \
             ORDER BY next_attempt_at, id LIMIT {}{lock}) \
             RETURNING {DELIVERY_COLUMNS}",
            limit.max(1)
        )))
        .bind(now + lease_ms)
        .bind(claim_token)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Records a claimed notification's outcome: delivered, or the error
    /// with the next attempt's time (`None`: give up, `failed`). A claim
    /// whose lease was taken over records nothing (false).
    pub async fn finish_delivery(
        &self,
        id: i64,
        claim_token: &str,
        outcome: std::result::Result<(), (&str, Option<i64>)>,
    ) -> Result<bool> {
        let done = match outcome {
            Ok(()) => {
                sqlx::query(
                    "UPDATE alert_outbox SET status = 'delivered', delivered_at = $1, claimed_until = NULL, \
                     last_error = NULL WHERE id = $2 AND claim_token = $3 AND status = 'sending'",
                )
                .bind(now_ms())
                .bind(id)
                .bind(claim_token)
                .execute(&self.pool)
                .await?
            }
            Err((error, next)) => {
                sqlx::query(
                    "UPDATE alert_outbox SET status = $1, next_attempt_at = $2, claimed_until = NULL, \
                     last_error = $3 WHERE id = $4 AND claim_token = $5 AND status = 'sending'",
                )
                .bind(if next.is_some() { "pending" } else { "failed" })
                .bind(next.unwrap_or_else(now_ms))
                .bind(error)
                .bind(id)
                .bind(claim_token)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Deletes finished notifications (delivered or failed) created before
    /// `before_ms`: the delivery log keeps a window, not everything ever
    /// sent. The cooldowns stay. Returns how many went.
    pub async fn prune_deliveries(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM alert_outbox WHERE status IN ('delivered', 'failed') AND created_at < $1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The delivery log of a project (one rule's with `rule_id`), newest first.
    pub async fn deliveries(
        &self,
        project_id: i64,
        rule_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let mut f = Filter::default();
        f.push("project_id = ?", Bind::Int(project_id));
        if let Some(r) = rule_id {
            f.push("rule_id = ?", Bind::Int(r));
        }
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_outbox{} ORDER BY id DESC LIMIT {}",
            f.where_sql(),
            limit.clamp(1, 1000)
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Per cluster, a spike rule's events in the window ending at `now_ms`
    /// (and, when the rule has a factor, in the week before it), within the
    /// rule's filters. Only clusters with events in the window.
    pub async fn spike_counts(&self, rule: &AlertRule, now_ms: i64) -> Result<Vec<WindowCount>> {
        let window = rule.window_ms.unwrap_or(5 * 60_000).max(1);
        let since = now_ms - window;
        let from = if rule.factor.is_some() {
            since - SPIKE_BASELINE_MS
        } else {
            since
        };
        let mut f = Filter::default();
        f.push("e.project_id = ?", Bind::Int(rule.project_id));
        f.push("e.ts >= ?", Bind::Int(from));
        f.push("e.ts <= ?", Bind::Int(now_ms));
        f.clauses.push("g.cluster_id IS NOT NULL".into());
        rule_filter(rule, &mut f);
        let sql = format!(
            "SELECT g.cluster_id AS cluster_id, \
             CAST(SUM(CASE WHEN e.ts >= {since} THEN e.weight ELSE 0 END) AS BIGINT) AS recent, \
             CAST(SUM(CASE WHEN e.ts < {since} THEN e.weight ELSE 0 END) AS BIGINT) AS before \
             FROM events e JOIN event_groups g ON g.id = e.group_id{} GROUP BY g.cluster_id",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let recent: i64 = r.try_get("recent")?;
            if recent > 0 {
                out.push(WindowCount {
                    cluster_id: r.try_get("cluster_id")?,
                    recent,
                    before: r.try_get("before")?,
                });
            }
        }
        Ok(out)
    }

    /// Clusters with at least the rule's threshold of events in its window
    /// ending at `now_ms`, every one of them on the same pod (else node).
    pub async fn confined_clusters(
        &self,
        rule: &AlertRule,
        now_ms: i64,
    ) -> Result<Vec<ConfinedCluster>> {
        let window = rule.window_ms.unwrap_or(24 * 3_600_000).max(1);
        let mut f = Filter::default();
        f.push("e.project_id = ?", Bind::Int(rule.project_id));
        f.push("e.ts >= ?", Bind::Int(now_ms - window));
        f.push("e.ts <= ?", Bind::Int(now_ms));
        f.clauses.push("g.cluster_id IS NOT NULL".into());
        rule_filter(rule, &mut f);
        let min = rule.threshold.unwrap_or(3).max(1);
        let sql = format!(
            "SELECT g.cluster_id AS cluster_id, CAST(SUM(e.weight) AS BIGINT) AS n, COUNT(*) AS rows_n, \
             COUNT(e.pod) AS pods_n, MIN(e.pod) AS pod_min, MAX(e.pod) AS pod_max, \
             COUNT(e.node) AS nodes_n, MIN(e.node) AS node_min, MAX(e.node) AS node_max \
             FROM events e JOIN event_groups g ON g.id = e.group_id{} GROUP BY g.cluster_id \
             HAVING SUM(e.weight) >= {min}",
            f.where_sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let rows_n: i64 = r.try_get("rows_n")?;
            let one = |count: &str, lo: &str, hi: &str| -> Result<Option<String>> {
                let n: i64 = r.try_get(count)?;
                let lo: Option<String> = r.try_get(lo)?;
                let hi: Option<String> = r.try_get(hi)?;
                Ok((n == rows_n && lo.is_some() && lo == hi)
                    .then_some(lo)
                    .flatten())
            };
            let found = match one("pods_n", "pod_min", "pod_max")? {
                Some(pod) => Some(("pod", pod)),
                None => one("nodes_n", "node_min", "node_max")?.map(|n| ("node", n)),
            };
            if let Some((host_kind, host)) = found {
                out.push(ConfinedCluster {
                    cluster_id: r.try_get("cluster_id")?,
                    host_kind,
                    host,
                    count: r.try_get("n")?,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_and_a_crash_is_fatal() {
        assert_eq!(level_of_kind("panic"), "error");
        assert_eq!(level_of_kind("fatal"), "fatal");
        assert_eq!(level_of_kind("signal"), "fatal");
        assert!(level_passes("panic", None));
        assert!(level_passes("panic", Some("warning")));
        assert!(level_passes("panic", Some("error")));
        assert!(!level_passes("panic", Some("fatal")));
        assert!(level_passes("signal", Some("fatal")));
    }

    #[test]
    fn rule_problems_name_the_field() {
        let ok = NewAlertRule::new(1, "r", RuleKind::Spike, Destination::Webhook, "http://h/x");
        assert_eq!(ok.problem(), None);
        let with = |f: fn(&mut NewAlertRule)| {
            let mut r = ok.clone();
            f(&mut r);
            r.problem().unwrap_or_default()
        };
        assert!(with(|r| r.name = " ".into()).contains("`name`"));
        assert!(with(|r| r.url = "ftp://h".into()).contains("`url`"));
        assert!(with(|r| r.min_level = Some("loud".into())).contains("`min_level`"));
        assert!(with(|r| r.cooldown_ms = -1).contains("`cooldown`"));
        assert!(with(|r| r.threshold = None).contains("`threshold`"));
        assert!(with(|r| r.window_ms = Some(10)).contains("`window`"));
        assert!(with(|r| r.factor = Some(f64::NAN)).contains("`factor`"));
        assert_eq!(RuleKind::parse("new-release"), Some(RuleKind::NewRelease));
        assert_eq!(RuleKind::parse("often"), None);
    }
}
