//! Who may read what: API tokens with a scope, and the dashboard's sessions.
//!
//! A token is stored as its SHA-256 digest; its public id (what `token list`
//! shows and `token revoke` takes) is the first 16 hex digits of that digest,
//! which says nothing about the token itself. A session is a random id kept
//! in the browser's cookie and stored hashed too; it reads with the scope of
//! the token it was opened with and ends when that token is revoked.

use std::collections::BTreeSet;

use rand::RngCore;
use serde::Serialize;
use sqlx::Row;

use crate::projects::hash_token;
use crate::{Result, Store, StoreError};

/// Length of a token's public id: a prefix of its hash.
const TOKEN_ID_LEN: usize = 16;
/// `last_used_at` and a session's `last_seen_at` are written at most this
/// often, so that reading does not turn every request into a write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Longest a request waits to record a last use: a read is not held up
/// behind a busy database over a timestamp.
const TOUCH_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs a last-use update for at most [`TOUCH_WAIT`]; a failure or a
/// timeout is logged, never returned (the next request tries again).
async fn record_last_use<T>(
    what: &str,
    update: impl std::future::Future<Output = std::result::Result<T, impl std::fmt::Display>>,
) {
    match tokio::time::timeout(TOUCH_WAIT, update).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not record the {what}'s last use"),
        Err(_) => tracing::debug!("recording the {what}'s last use timed out; next time"),
    }
}

/// What a token may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Every project, ingest keys included, and changes.
    Admin,
    /// Read-only access to these projects (by id).
    Projects(BTreeSet<i64>),
}

impl TokenScope {
    pub fn is_admin(&self) -> bool {
        matches!(self, TokenScope::Admin)
    }

    pub fn allows(&self, project_id: i64) -> bool {
        match self {
            TokenScope::Admin => true,
            TokenScope::Projects(ids) => ids.contains(&project_id),
        }
    }

    /// The projects a list may show: `None` for all of them.
    pub fn project_ids(&self) -> Option<Vec<i64>> {
        match self {
            TokenScope::Admin => None,
            TokenScope::Projects(ids) => Some(ids.iter().copied().collect()),
        }
    }
}

/// What a presented credential (token or session) grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The public id of the token behind it.
    pub token_id: String,
    pub scope: TokenScope,
}

/// A token as `token list` shows it; never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub label: String,
    pub scope: TokenScope,
    pub created_at: i64,
    /// Within a minute; `None` when never used.
    pub last_used_at: Option<i64>,
}

/// A token just created: its id and the secret, shown once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub token: String,
}

/// How long a dashboard session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without a request (default 12 hours).
    pub idle_ms: i64,
    /// Ends this long after sign-in, however active (default 7 days).
    pub absolute_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_ms: 12 * 3_600_000,
            absolute_ms: 7 * 24 * 3_600_000,
        }
    }
}

impl SessionPolicy {
    fn expired(&self, now_ms: i64, created_at: i64, last_seen_at: i64) -> bool {
        now_ms - last_seen_at > self.idle_ms || now_ms - created_at > self.absolute_ms
    }
}

fn token_id(token_hash: &str) -> String {
    token_hash.chars().take(TOKEN_ID_LEN).collect()
}

fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

impl Store {
    /// Creates a token with a scope. A project scope must name at least one
    /// project (an empty one would read nothing).
    pub async fn create_token_with_scope(
        &self,
        label: &str,
        scope: &TokenScope,
    ) -> Result<NewToken> {
        if matches!(scope, TokenScope::Projects(ids) if ids.is_empty()) {
            return Err(StoreError::InvalidScope(
                "a project token needs at least one project".into(),
            ));
        }
        let token = format!("pnk_{}", random_secret(24));
        let hash = hash_token(&token);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, label, created_at, is_admin) VALUES ($1, $2, $3, $4)",
        )
        .bind(&hash)
        .bind(label)
        .bind(crate::now_ms())
        .bind(i64::from(scope.is_admin()))
        .execute(&mut *tx)
        .await?;
        if let TokenScope::Projects(ids) = scope {
            for id in ids {
                sqlx::query(
                    "INSERT INTO api_token_projects (token_hash, project_id) VALUES ($1, $2)",
                )
                .bind(&hash)
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                        StoreError::InvalidScope(format!("no project with id {id}"))
                    }
                    _ => StoreError::Db(e),
                })?;
            }
        }
        tx.commit().await?;
        Ok(NewToken {
            id: token_id(&hash),
            token,
        })
    }

    async fn scope_of(&self, token_hash: &str, is_admin: i64) -> Result<TokenScope> {
        if is_admin != 0 {
            return Ok(TokenScope::Admin);
        }
        let rows = sqlx::query("SELECT project_id FROM api_token_projects WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_all(&self.pool)
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("project_id"))
            .collect::<std::result::Result<BTreeSet<_>, _>>()?;
        Ok(TokenScope::Projects(ids))
    }

    /// What a token grants, or `None` for an unknown (or revoked) token.
    pub async fn token_access(&self, token: &str) -> Result<Option<Access>> {
        let hash = hash_token(token);
        let Some(row) =
            sqlx::query("SELECT is_admin, last_used_at FROM api_tokens WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let is_admin: i64 = row.try_get("is_admin")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        // Best effort and brief: a busy database (SQLite's busy handler waits
        // up to 10 s) must neither refuse nor hold a read over a timestamp.
        record_last_use("token", self.touch_token(&hash, last_used)).await;
        Ok(Some(Access {
            token_id: token_id(&hash),
            scope: self.scope_of(&hash, is_admin).await?,
        }))
    }

    async fn touch_token(&self, token_hash: &str, last_used: Option<i64>) -> Result<()> {
        let now = crate::now_ms();
        if last_used.is_some_and(|t| now - t < TOUCH_EVERY_MS) {
            return Ok(());
        }
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT token_hash, label, created_at, is_admin, last_used_at FROM api_tokens \
             ORDER BY created_at, token_hash",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let hash: String = row.try_get("token_hash")?;
            out.push(TokenInfo {
                id: token_id(&hash),
                label: row.try_get("label")?,
                scope: self.scope_of(&hash, row.try_get("is_admin")?).await?,
                created_at: row.try_get("created_at")?,
                last_used_at: row.try_get("last_used_at")?,
            });
        }
        Ok(out)
    }

    /// Deletes a token by its id, with its sessions. False when no token has
    /// that id.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let id = id.trim();
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let found =
            sqlx::query("SELECT token_hash FROM api_tokens WHERE substr(token_hash, 1, 16) = $1")
                .bind(id.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = found else {
            return Ok(false);
        };
        let hash: String = row.try_get("token_hash")?;
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM sessions WHERE token_hash = $1",
            "DELETE FROM api_token_projects WHERE token_hash = $1",
            "DELETE FROM api_tokens WHERE token_hash = $1",
        ] {
            sqlx::query(sql).bind(&hash).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Signs in: checks the token and opens a session with its scope.
    /// Returns the session id for the cookie (kept here only hashed), or
    /// `None` for an unknown token. Expired sessions are swept on the way.
    pub async fn open_session(
        &self,
        token: &str,
        policy: SessionPolicy,
        now_ms: i64,
    ) -> Result<Option<(String, Access)>> {
        let Some(access) = self.token_access(token).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
            .bind(now_ms - policy.idle_ms)
            .bind(now_ms - policy.absolute_ms)
            .execute(&self.pool)
            .await?;
        let session = random_secret(32);
        sqlx::query(
            "INSERT INTO sessions (id_hash, token_hash, created_at, last_seen_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(hash_token(&session))
        .bind(hash_token(token))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(Some((session, access)))
    }

    /// What a session grants, or `None` when it is unknown, ended or
    /// expired (an expired one is deleted).
    pub async fn session_access(
        &self,
        session: &str,
        policy: SessionPolicy,
        now_ms: i64,
    ) -> Result<Option<Access>> {
        let id_hash = hash_token(session);
        let Some(row) = sqlx::query(
            "SELECT s.token_hash, s.created_at, s.last_seen_at, t.is_admin FROM sessions s \
             JOIN api_tokens t ON t.token_hash = s.token_hash WHERE s.id_hash = $1",
        )
        .bind(&id_hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let token_hash: String = row.try_get("token_hash")?;
        let created_at: i64 = row.try_get("created_at")?;
        let last_seen_at: i64 = row.try_get("last_seen_at")?;
        if policy.expired(now_ms, created_at, last_seen_at) {
            self.end_session(session).await?;
            return Ok(None);
        }
        if now_ms - last_seen_at >= TOUCH_EVERY_MS {
            // Best effort, like a token's last use: the next request tries again.
            let touch = sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now_ms)
                .bind(&id_hash)
                .execute(&self.pool);
            record_last_use("session", touch).await;
        }
        Ok(Some(Access {
            token_id: token_id(&token_hash),
            scope: self.scope_of(&token_hash, row.try_get("is_admin")?).await?,
        }))
    }

    /// Signs out: the session id stops working at once. False when unknown.
    pub async fn end_session(&self, session: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash_token(session))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let p = SessionPolicy {
            idle_ms: 10,
            absolute_ms: 100,
        };
        assert!(!p.expired(50, 0, 45));
        assert!(p.expired(50, 0, 39), "idle");
        assert!(p.expired(101, 0, 100), "absolute");
        assert!(!p.expired(100, 0, 95));
    }

    #[test]
    fn scope_allows_its_projects_only() {
        let s = TokenScope::Projects([2, 5].into());
        assert!(s.allows(2) && s.allows(5) && !s.allows(1));
        assert!(!s.is_admin());
        assert_eq!(s.project_ids(), Some(vec![2, 5]));
        assert!(TokenScope::Admin.allows(1));
        assert_eq!(TokenScope::Admin.project_ids(), None);
    }
}
