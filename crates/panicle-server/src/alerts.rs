//! Alerts (issue 14): the outbox worker that sends notifications, the
//! periodic spike and confinement checks, the payloads (webhook JSON and
//! Slack), and the API over rules and the delivery log.
//!
//! Ingest only ever writes an outbox row in its own transaction
//! (`panicle_store::triggers`); everything here runs off the ingest path, so
//! a receiver that is down or slow delays nothing but its own notifications.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use panicle_rules::RuleSet;
use panicle_store::triggers::Trigger;
use panicle_store::{
    AlertRule, Delivery, Destination, GroupRow, NewAlertRule, Project, RuleKind, SPIKE_BASELINE_MS,
    Store,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Reader};
use crate::error::ApiQuery;
use crate::webhook::{TrustRoots, WebhookClient};
use crate::{ApiError, AppState};

/// How long finished notifications stay in the delivery log.
pub const DELIVERY_LOG_KEPT_MS: i64 = 30 * 24 * 3_600_000;

/// How notifications are sent and retried.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// The first retry's delay; each further one doubles, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts before a notification is marked `failed`.
    pub max_attempts: i64,
    /// A receiver must answer within this.
    pub send_timeout: Duration,
    /// How often the worker looks for due notifications.
    pub poll_interval: Duration,
    /// How often spike and confinement rules are checked.
    pub check_interval: Duration,
    /// Trust only these for `https://` receivers (a private CA); `None`
    /// trusts Mozilla's root program.
    pub trust_roots: Option<TrustRoots>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            max_attempts: 12,
            send_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            check_interval: Duration::from_secs(60),
            trust_roots: None,
        }
    }
}

impl AlertConfig {
    /// Delay before the attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let shift = attempts.clamp(1, 30) as u32 - 1;
        self.backoff_base
            .saturating_mul(1u32 << shift)
            .min(self.backoff_max)
    }

    /// A claim outlives any send: another replica takes a notification over
    /// only when the worker that claimed it died.
    fn lease_ms(&self) -> i64 {
        (self.send_timeout.as_millis() as i64).saturating_mul(2) + 30_000
    }
}

/// The worker and checks of one server process.
pub struct Alerts {
    store: Store,
    rules: Arc<RuleSet>,
    config: AlertConfig,
    client: WebhookClient,
    public_url: String,
    /// Names this process's claims.
    claim_token: String,
}

/// What a notification says, before it is shaped for its destination.
struct Notice<'a> {
    rule: &'a AlertRule,
    project: &'a Project,
    trigger: &'a str,
    cluster_id: &'a str,
    details: &'a Value,
    delivery_id: Option<i64>,
    attempt: i64,
    test: bool,
}

impl Alerts {
    pub fn new(
        store: Store,
        rules: Arc<RuleSet>,
        config: AlertConfig,
        public_url: &str,
    ) -> Arc<Alerts> {
        let client = WebhookClient::new(config.send_timeout, config.trust_roots.as_ref());
        Arc::new(Alerts {
            store,
            rules,
            config,
            client,
            public_url: public_url.trim_end_matches('/').to_string(),
            claim_token: uuid::Uuid::new_v4().to_string(),
        })
    }

    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// Starts the delivery worker and the periodic checks.
    pub fn spawn(self: &Arc<Self>) {
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match worker.deliver_due().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "alert delivery round failed"),
                }
                tokio::time::sleep(worker.config.poll_interval).await;
            }
        });
        let checks = Arc::clone(self);
        crate::jobs::spawn_every(self.config.check_interval, "alert checks", move || {
            let checks = Arc::clone(&checks);
            async move {
                let now = crate::now_ms();
                checks.check(now).await?;
                checks
                    .store
                    .prune_deliveries(now - DELIVERY_LOG_KEPT_MS)
                    .await
                    .map(|_| ())
            }
        });
    }

    /// Claims the due notifications and sends them, concurrently; returns
    /// how many were claimed.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<usize, panicle_store::StoreError> {
        let claimed = self
            .store
            .claim_deliveries(&self.claim_token, self.config.lease_ms(), 16)
            .await?;
        let n = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for d in claimed {
            let me = Arc::clone(self);
            tasks.spawn(async move { me.deliver(d).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "recording an alert delivery failed");
            }
        }
        Ok(n)
    }

    async fn deliver(&self, d: Delivery) -> Result<(), panicle_store::StoreError> {
        let outcome = match self.render(&d).await? {
            Some((url, body)) => self.client.post_json(&url, body).await,
            None => Err("its rule or project no longer exists".to_string()),
        };
        let result = match &outcome {
            Ok(_) => Ok(()),
            Err(e) => {
                let next = (d.attempts < self.config.max_attempts)
                    .then(|| crate::now_ms() + self.config.backoff(d.attempts).as_millis() as i64);
                Err((e.as_str(), next))
            }
        };
        if let Err(e) = &outcome {
            tracing::info!(delivery = d.id, attempt = d.attempts, error = %e, "alert not delivered");
        }
        self.store
            .finish_delivery(d.id, &self.claim_token, result)
            .await?;
        Ok(())
    }

    /// The destination URL and body of a claimed notification.
    async fn render(
        &self,
        d: &Delivery,
    ) -> Result<Option<(String, Vec<u8>)>, panicle_store::StoreError> {
        let Some(rule) = self.store.alert_rule(d.rule_id).await? else {
            return Ok(None);
        };
        let Some(project) = self.project(rule.project_id).await? else {
            return Ok(None);
        };
        let notice = Notice {
            rule: &rule,
            project: &project,
            trigger: &d.trigger,
            cluster_id: &d.cluster_id,
            details: &d.details,
            delivery_id: Some(d.id),
            attempt: d.attempts,
            test: false,
        };
        let body = self.payload(&notice).await?;
        Ok(Some((rule.url.clone(), body)))
    }

    async fn project(&self, id: i64) -> Result<Option<Project>, panicle_store::StoreError> {
        Ok(self
            .store
            .projects()
            .await?
            .into_iter()
            .find(|p| p.id == id))
    }

    /// The body for the notice's destination.
    async fn payload(&self, n: &Notice<'_>) -> Result<Vec<u8>, panicle_store::StoreError> {
        let groups = self.store.cluster_groups(n.cluster_id).await?;
        let body = webhook_payload(n, &groups, &self.rules, &self.public_url);
        let body = match n.rule.destination {
            Destination::Webhook => body,
            Destination::Slack => slack_payload(&body),
        };
        Ok(body.to_string().into_bytes())
    }

    /// Sends a sample notification for `rule` now, outside the outbox: its
    /// newest cluster if the project has one, else a made-up cluster id.
    pub async fn send_test(&self, rule: &AlertRule) -> Result<Result<u16, String>, ApiError> {
        let Some(project) = self.project(rule.project_id).await? else {
            return Err(ApiError::NotFound("project"));
        };
        let newest = self
            .store
            .all_groups(Some(rule.project_id))
            .await?
            .into_iter()
            .filter(|g| g.cluster_id.is_some())
            .max_by_key(|g| g.last_seen_ms);
        let cluster_id = newest
            .and_then(|g| g.cluster_id)
            .unwrap_or_else(|| "0".to_string());
        let details = json!({"release": null, "sample": true});
        let notice = Notice {
            rule,
            project: &project,
            trigger: rule.kind.as_str(),
            cluster_id: &cluster_id,
            details: &details,
            delivery_id: None,
            attempt: 1,
            test: true,
        };
        let body = self.payload(&notice).await?;
        Ok(self.client.post_json(&rule.url, body).await)
    }

    /// Runs the spike and confinement rules of every project at `now_ms`;
    /// returns how many notifications they queued. Each firing goes through
    /// the cooldown gate, so replicas checking at once still fire once.
    pub async fn check(&self, now_ms: i64) -> Result<usize, panicle_store::StoreError> {
        let mut queued = 0;
        for rule in self.store.alert_rules(None).await? {
            match rule.kind {
                RuleKind::Spike => {
                    let window_ms = rule.window_ms.unwrap_or(5 * 60_000).max(1);
                    let threshold = rule.threshold.unwrap_or(10);
                    let mut over = self.store.spike_counts(&rule, now_ms).await?;
                    over.sort_by(|a, b| a.cluster_id.cmp(&b.cluster_id));
                    let triggers: Vec<Trigger<'_>> = over
                        .iter()
                        .filter_map(|c| {
                            let usual = rule.factor.map(|_| {
                                (c.before as f64 * window_ms as f64 / SPIKE_BASELINE_MS as f64)
                                    .round() as i64
                            });
                            let over_usual = match (rule.factor, usual) {
                                (Some(f), Some(u)) => c.recent as f64 > f * u as f64,
                                _ => true,
                            };
                            (c.recent > threshold && over_usual).then_some(Trigger::Spike {
                                rule_id: rule.id,
                                cluster_id: &c.cluster_id,
                                count: c.recent,
                                window_ms,
                                usual,
                                at_ms: now_ms,
                            })
                        })
                        .collect();
                    queued += self.store.fire_all(rule.project_id, &triggers).await?;
                }
                RuleKind::Confined => {
                    let mut found = self.store.confined_clusters(&rule, now_ms).await?;
                    found.sort_by(|a, b| a.cluster_id.cmp(&b.cluster_id));
                    let triggers: Vec<Trigger<'_>> = found
                        .iter()
                        .map(|c| Trigger::Confined {
                            rule_id: rule.id,
                            cluster_id: &c.cluster_id,
                            host_kind: c.host_kind,
                            host: &c.host,
                            count: c.count,
                            at_ms: now_ms,
                        })
                        .collect();
                    queued += self.store.fire_all(rule.project_id, &triggers).await?;
                }
                _ => {}
            }
        }
        Ok(queued)
    }
}

/// What a trigger is called in a message.
fn trigger_label(trigger: &str) -> &'static str {
    match RuleKind::parse(trigger) {
        Some(RuleKind::NewCluster) => "New cluster",
        Some(RuleKind::Regression) => "Regression",
        Some(RuleKind::Spike) => "Spike",
        Some(RuleKind::NewRelease) => "Seen in a new release",
        Some(RuleKind::Confined) => "Confined to one host",
        None => "Alert",
    }
}

/// The generic webhook's JSON (documented in the README): the cluster as
/// the list shows it, what fired, and links to the dashboard.
fn webhook_payload(n: &Notice<'_>, groups: &[GroupRow], rules: &RuleSet, base: &str) -> Value {
    let refs: Vec<&GroupRow> = groups.iter().collect();
    let rep = crate::clusters::representative(&refs);
    let suggestion = rep.and_then(|g| crate::clusters::suggestion_title(rules, g));
    let count: i64 = groups.iter().map(|g| g.count).sum();
    let first_seen = groups.iter().map(|g| g.first_seen_ms).min();
    let last_seen = groups.iter().map(|g| g.last_seen_ms).max();
    let first_release = groups
        .iter()
        .min_by_key(|g| g.first_seen_ms)
        .and_then(|g| g.first_release.clone());
    let title = suggestion
        .clone()
        .or_else(|| rep.map(|g| g.template.clone()))
        .unwrap_or_else(|| format!("cluster {}", n.cluster_id));
    json!({
        "version": 1,
        "test": n.test,
        "project": {"id": n.project.id, "name": n.project.name},
        "rule": {"id": n.rule.id, "name": n.rule.name, "kind": n.rule.kind},
        "trigger": n.trigger,
        "summary": format!("{}: {title}", trigger_label(n.trigger)),
        "cluster": {
            "id": n.cluster_id,
            "title": title,
            "message": rep.map(|g| g.template.clone()),
            "kind": rep.map(|g| g.kind.clone()),
            "culprit": rep.and_then(|g| g.culprit.clone()),
            "suggestion": suggestion,
            "event_count": count,
            "group_count": groups.len(),
            "first_seen_ms": first_seen,
            "last_seen_ms": last_seen,
            "first_release": first_release,
        },
        "release": n.details.get("release").cloned().unwrap_or(Value::Null),
        "details": n.details,
        "links": {
            "cluster": format!("{base}/clusters/{}", n.cluster_id),
            "alerts": format!("{base}/alerts?project={}", n.project.id),
        },
        "delivery": {"id": n.delivery_id, "attempt": n.attempt},
    })
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack-compatible incoming-webhook message made from the webhook body:
/// `text` (the notification fallback) and `blocks` (header, facts, link).
fn slack_payload(p: &Value) -> Value {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let summary = s(&p["summary"]).unwrap_or_default();
    let cluster = &p["cluster"];
    let link = s(&p["links"]["cluster"]).unwrap_or_default();
    let mut facts = vec![format!(
        "*Project* {} · *Rule* {}",
        slack_escape(&s(&p["project"]["name"]).unwrap_or_default()),
        slack_escape(&s(&p["rule"]["name"]).unwrap_or_default())
    )];
    if let Some(c) = s(&cluster["culprit"]) {
        facts.push(format!("*Culprit* `{}`", slack_escape(&c)));
    }
    if let Some(m) = s(&cluster["message"]) {
        facts.push(format!("*Message* {}", slack_escape(&m)));
    }
    let mut counts = format!("*Events* {}", cluster["event_count"]);
    if let Some(r) = s(&p["release"]) {
        counts.push_str(&format!(" · *Release* {}", slack_escape(&r)));
    }
    if let Some(n) = p["details"]["count"].as_i64() {
        counts.push_str(&format!(" · *In window* {n}"));
    }
    if let Some(h) = s(&p["details"]["host"]) {
        counts.push_str(&format!(" · *Host* {}", slack_escape(&h)));
    }
    facts.push(counts);
    if let Some(t) = s(&cluster["suggestion"]) {
        facts.push(format!("*Suggestion* {}", slack_escape(&t)));
    }
    let test = if p["test"].as_bool() == Some(true) {
        "[test] "
    } else {
        ""
    };
    let header: String = format!("{test}{summary}").chars().take(150).collect();
    json!({
        "text": format!("{test}{} <{link}|open in Panicle>", slack_escape(&summary)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {"type": "section", "text": {"type": "mrkdwn", "text": facts.join("\n")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{link}|Open cluster {} in Panicle>", cluster["id"].as_str().unwrap_or(""))}]},
        ],
    })
}

// ---- API ----

/// A rule as the API takes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub name: String,
    /// `new_cluster`, `regression`, `spike`, `new_release` or `confined`.
    pub kind: String,
    /// `webhook` (the documented JSON) or `slack` (an incoming webhook).
    pub destination: String,
    pub url: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// `info`, `warning`, `error` or `fatal` (a panic is `error`; a Go fatal error or a signal `fatal`).
    pub min_level: Option<String>,
    /// At most one notification per cluster within this many seconds (default 3600).
    pub cooldown_seconds: Option<i64>,
    /// Spike: more than this many events; confined: at least this many (defaults 10 and 3).
    pub threshold: Option<i64>,
    /// Spike and confined: the window in seconds (defaults 300 and 86400).
    pub window_seconds: Option<i64>,
    /// Spike: also more than this × the cluster's usual rate for such a window (its last 7 days).
    pub factor: Option<f64>,
}

impl RuleBody {
    pub fn into_rule(self, project_id: i64) -> Result<NewAlertRule, String> {
        let kind = RuleKind::parse(&self.kind).ok_or_else(|| {
            format!(
                "`kind` must be one of new_cluster, regression, spike, new_release, confined (got `{}`)",
                self.kind
            )
        })?;
        let destination = Destination::parse(&self.destination).ok_or_else(|| {
            format!(
                "`destination` must be webhook or slack (got `{}`)",
                self.destination
            )
        })?;
        let mut rule = NewAlertRule::new(project_id, &self.name, kind, destination, &self.url);
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        rule.service = nonempty(self.service);
        rule.environment = nonempty(self.environment);
        rule.min_level = nonempty(self.min_level);
        if let Some(c) = self.cooldown_seconds {
            rule.cooldown_ms = c.saturating_mul(1000);
        }
        if self.threshold.is_some() {
            rule.threshold = self.threshold;
        }
        if let Some(w) = self.window_seconds {
            rule.window_ms = Some(w.saturating_mul(1000));
        }
        rule.factor = self.factor;
        match rule.problem() {
            Some(p) => Err(p),
            None => Ok(rule),
        }
    }
}

fn rule_json(r: &AlertRule) -> Value {
    json!({
        "id": r.id,
        "project_id": r.project_id,
        "name": r.name,
        "kind": r.kind,
        "destination": r.destination,
        "url": r.url,
        "service": r.service,
        "environment": r.environment,
        "min_level": r.min_level,
        "cooldown_seconds": r.cooldown_ms / 1000,
        "threshold": r.threshold,
        "window_seconds": r.window_ms.map(|w| w / 1000),
        "factor": r.factor,
        "created_at": crate::read::format_ms(r.created_at_ms),
    })
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "rule_id": d.rule_id,
        "cluster_id": d.cluster_id,
        "trigger": d.trigger,
        "occurrence": d.occurrence,
        "details": d.details,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": crate::read::format_ms(d.created_at_ms),
        "next_attempt_at": (d.status == "pending").then(|| crate::read::format_ms(d.next_attempt_at_ms)),
        "delivered_at": d.delivered_at_ms.map(crate::read::format_ms),
    })
}

async fn rule_of_project(state: &AppState, project: i64, id: i64) -> Result<AlertRule, ApiError> {
    state
        .store
        .alert_rule(id)
        .await?
        .filter(|r| r.project_id == project)
        .ok_or(ApiError::NotFound("alert rule"))
}

/// A numeric path segment: 400 with the `{"error"}` body, not axum's text.
fn id_param(name: &'static str, s: &str) -> Result<i64, ApiError> {
    s.parse().map_err(|_| ApiError::BadParam {
        name,
        message: format!("`{s}` is not a number"),
    })
}

async fn known_project(state: &AppState, project: i64) -> Result<(), ApiError> {
    if state
        .store
        .projects()
        .await?
        .iter()
        .any(|p| p.id == project)
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("project"))
    }
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/alerts/rules", tag = "alerts",
    params(("project" = i64, Path, description = "Project id")),
    responses((status = 200, description = "`{items: [rule]}`: id, name, kind, destination, url, service, environment, min_level, cooldown_seconds, threshold, window_seconds, factor, created_at", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such project in the token's scope", body = crate::openapi::ErrorBody)))]
pub async fn list_rules(
    State(state): State<AppState>,
    reader: Reader,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = id_param("project", &project)?;
    reader.check_project(project, "project")?;
    known_project(&state, project).await?;
    let items: Vec<Value> = state
        .store
        .alert_rules(Some(project))
        .await?
        .iter()
        .map(rule_json)
        .collect();
    Ok(Json(json!({"items": items})))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/alerts/rules", tag = "alerts",
    params(("project" = i64, Path, description = "Project id")),
    request_body(content = RuleBody, description = "The rule; filters, cooldown and counts are optional"),
    responses((status = 201, description = "The rule created", body = Object),
              (status = 400, description = "Invalid JSON or field (named in the message)", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Not an admin token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such project", body = crate::openapi::ErrorBody)))]
pub async fn create_rule(
    State(state): State<AppState>,
    _: Admin,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = id_param("project", &project)?;
    known_project(&state, project).await?;
    let body: RuleBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("alert rule: {e}")))?;
    let rule = body.into_rule(project).map_err(ApiError::BadRequest)?;
    let rule = state.store.create_alert_rule(&rule).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&rule))))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/alerts/rules/{id}", tag = "alerts",
    params(("project" = i64, Path, description = "Project id"), ("id" = i64, Path, description = "Rule id")),
    responses((status = 200, description = "`{deleted: true}`; its delivery log goes with it", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Not an admin token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such rule in the project", body = crate::openapi::ErrorBody)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    _: Admin,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (project, id) = (id_param("project", &project)?, id_param("id", &id)?);
    rule_of_project(&state, project, id).await?;
    state.store.delete_alert_rule(id).await?;
    Ok(Json(json!({"deleted": true})))
}

#[utoipa::path(put, path = "/api/v1/projects/{project}/alerts/rules/{id}", tag = "alerts",
    params(("project" = i64, Path, description = "Project id"), ("id" = i64, Path, description = "Rule id")),
    request_body(content = RuleBody, description = "The rule's new settings, whole (as for create)"),
    responses((status = 200, description = "The rule as changed; its cooldowns and delivery log stay", body = Object),
              (status = 400, description = "Invalid JSON or field (named in the message)", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Not an admin token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such rule in the project", body = crate::openapi::ErrorBody)))]
pub async fn update_rule(
    State(state): State<AppState>,
    _: Admin,
    Path((project, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (project, id) = (id_param("project", &project)?, id_param("id", &id)?);
    rule_of_project(&state, project, id).await?;
    let body: RuleBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("alert rule: {e}")))?;
    let rule = body.into_rule(project).map_err(ApiError::BadRequest)?;
    let rule = state
        .store
        .update_alert_rule(id, &rule)
        .await?
        .ok_or(ApiError::NotFound("alert rule"))?;
    Ok(Json(rule_json(&rule)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/alerts/rules/{id}", tag = "alerts",
    params(("project" = i64, Path, description = "Project id"), ("id" = i64, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such rule in the project", body = crate::openapi::ErrorBody)))]
pub async fn get_rule(
    State(state): State<AppState>,
    reader: Reader,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (project, id) = (id_param("project", &project)?, id_param("id", &id)?);
    reader.check_project(project, "alert rule")?;
    Ok(Json(rule_json(
        &rule_of_project(&state, project, id).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/alerts/rules/{id}/test", tag = "alerts",
    params(("project" = i64, Path, description = "Project id"), ("id" = i64, Path, description = "Rule id")),
    responses((status = 200, description = "`{delivered, status, error}`: a sample notification (`test: true`, the project's newest cluster) was sent now, outside the outbox", body = Object),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 403, description = "Not an admin token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such rule in the project", body = crate::openapi::ErrorBody)))]
pub async fn test_rule(
    State(state): State<AppState>,
    _: Admin,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (project, id) = (id_param("project", &project)?, id_param("id", &id)?);
    let rule = rule_of_project(&state, project, id).await?;
    Ok(Json(match state.alerts.send_test(&rule).await? {
        Ok(status) => json!({"delivered": true, "status": status, "error": null}),
        Err(e) => json!({"delivered": false, "status": null, "error": e}),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    rule: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/alerts/deliveries", tag = "alerts",
    params(("project" = i64, Path, description = "Project id"),
           ("rule" = Option<i64>, Query, description = "One rule's notifications"),
           ("limit" = Option<u32>, Query, description = "At most this many, newest first (default 100, max 1000)")),
    responses((status = 200, description = "The delivery log: `{items: [{id, rule_id, cluster_id, trigger, occurrence, details, status (pending, sending, delivered, failed), attempts, last_error, created_at, next_attempt_at, delivered_at}]}`", body = Object),
              (status = 400, description = "Invalid query parameter", body = crate::openapi::ErrorBody),
              (status = 401, description = "No valid token", body = crate::openapi::ErrorBody),
              (status = 404, description = "No such project in the token's scope", body = crate::openapi::ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    reader: Reader,
    Path(project): Path<String>,
    ApiQuery(p): ApiQuery<DeliveryParams>,
) -> Result<Json<Value>, ApiError> {
    let project = id_param("project", &project)?;
    reader.check_project(project, "project")?;
    known_project(&state, project).await?;
    let items: Vec<Value> = state
        .store
        .deliveries(project, p.rule, p.limit.unwrap_or(100))
        .await?
        .iter()
        .map(delivery_json)
        .collect();
    Ok(Json(json!({"items": items})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = AlertConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..AlertConfig::default()
        };
        assert_eq!(c.backoff(1), Duration::from_millis(100));
        assert_eq!(c.backoff(2), Duration::from_millis(200));
        assert_eq!(c.backoff(3), Duration::from_millis(400));
        assert_eq!(c.backoff(4), Duration::from_millis(500));
        assert_eq!(c.backoff(60), Duration::from_millis(500));
    }

    #[test]
    fn slack_text_is_escaped() {
        let p = json!({
            "summary": "New cluster: a <b> & c",
            "test": false,
            "project": {"name": "shop"}, "rule": {"name": "r"},
            "cluster": {"id": "7", "culprit": "shop::pay", "message": "x", "event_count": 3, "suggestion": null},
            "release": "1.2", "details": {}, "links": {"cluster": "http://h/clusters/7"},
        });
        let s = slack_payload(&p);
        assert_eq!(
            s["text"],
            "New cluster: a &lt;b&gt; &amp; c <http://h/clusters/7|open in Panicle>"
        );
        assert_eq!(s["blocks"][0]["type"], "header");
        let facts = s["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(facts.contains("*Culprit* `shop::pay`"), "{facts}");
        assert!(facts.contains("*Release* 1.2"), "{facts}");
    }
}
