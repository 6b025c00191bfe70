//! Groups: events with the same exact fingerprint.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::page::{Bind, Filter, bind_all, page_of, push_in_ids};
use crate::{Cursor, Page, Result, Store};

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub id: String,
    pub project_id: i64,
    pub fingerprint: String,
    pub platform: String,
    pub kind: String,
    /// The message with its values replaced by placeholders.
    pub template: String,
    /// The innermost in-app frame.
    pub culprit: Option<String>,
    /// Normalized signature frames, innermost first.
    pub frames: Vec<String>,
    pub count: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub first_release: Option<String>,
    pub cluster_id: Option<String>,
    /// A DBSCAN core point of its cluster.
    pub core: bool,
    /// One real message of the group (rules match wording, not templates).
    pub sample_message: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupQuery {
    pub project_id: Option<i64>,
    /// Only these projects (a project-scoped token's); `None` for all.
    pub project_ids: Option<Vec<i64>>,
    pub cluster_id: Option<String>,
    pub since_ms: Option<i64>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

const GROUP_COLUMNS: &str = "id, project_id, fingerprint, platform, kind, template, culprit, frames, \
     event_count, first_seen, last_seen, first_release, cluster_id, core, sample_message";

fn group_from_row(row: &sqlx::any::AnyRow) -> Result<GroupRow> {
    let frames: String = row.try_get("frames")?;
    Ok(GroupRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        fingerprint: row.try_get("fingerprint")?,
        platform: row.try_get("platform")?,
        kind: row.try_get("kind")?,
        template: row.try_get("template")?,
        culprit: row.try_get("culprit")?,
        frames: serde_json::from_str(&frames).unwrap_or_default(),
        count: row.try_get("event_count")?,
        first_seen_ms: row.try_get("first_seen")?,
        last_seen_ms: row.try_get("last_seen")?,
        first_release: row.try_get("first_release")?,
        cluster_id: row.try_get("cluster_id")?,
        core: row.try_get::<i64, _>("core")? != 0,
        sample_message: row.try_get("sample_message")?,
    })
}

impl Store {
    /// Groups, most recently seen first.
    pub async fn list_groups(&self, q: &GroupQuery) -> Result<Page<GroupRow>> {
        let mut f = Filter::default();
        if let Some(p) = q.project_id {
            f.push("project_id = ?", Bind::Int(p));
        }
        if let Some(c) = &q.cluster_id {
            f.push("cluster_id = ?", Bind::Text(c.clone()));
        }
        if let Some(ids) = &q.project_ids {
            if ids.is_empty() {
                return Ok(page_of(Vec::new(), 1, |g: &GroupRow| Cursor {
                    ts: g.last_seen_ms,
                    id: g.id.clone(),
                }));
            }
            push_in_ids(&mut f, "project_id", ids);
        }
        if let Some(t) = q.since_ms {
            f.push("last_seen >= ?", Bind::Int(t));
        }
        if let Some(c) = &q.cursor {
            f.after("last_seen", "id", c);
        }
        let limit = q.limit.clamp(1, 1000);
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM event_groups{} ORDER BY last_seen DESC, id DESC LIMIT {}",
            f.where_sql(),
            limit + 1
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), f.binds)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(group_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, limit, |g| Cursor {
            ts: g.last_seen_ms,
            id: g.id.clone(),
        }))
    }

    pub async fn get_group(&self, id: &str) -> Result<Option<GroupRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM event_groups WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// Every group of a project, or of all projects (the clustering input
    /// and the cluster views' membership).
    pub async fn all_groups(&self, project_id: Option<i64>) -> Result<Vec<GroupRow>> {
        let rows = match project_id {
            Some(p) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {GROUP_COLUMNS} FROM event_groups WHERE project_id = $1 ORDER BY id"
                )))
                .bind(p)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {GROUP_COLUMNS} FROM event_groups ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(group_from_row).collect()
    }

    /// Groups not in any cluster yet (new since the last run or attach).
    pub async fn loose_groups(&self, project_id: i64) -> Result<Vec<GroupRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM event_groups WHERE cluster_id IS NULL AND project_id = $1 ORDER BY id"
        )))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Core groups of a project: new groups attach through these.
    pub async fn core_groups(&self, project_id: i64) -> Result<Vec<GroupRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM event_groups WHERE core = 1 AND cluster_id IS NOT NULL AND project_id = $1"
        )))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// The groups of one cluster, biggest first.
    pub async fn cluster_groups(&self, cluster_id: &str) -> Result<Vec<GroupRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM event_groups WHERE cluster_id = $1 ORDER BY event_count DESC, id"
        )))
        .bind(cluster_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }
}
