//! Projects (an ingest key each) and API tokens (stored hashed).

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, StoreError, now_ms};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// Goes into the DSN; lets a client write events, nothing else.
    pub ingest_key: String,
    pub created_at: i64,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Tokens are kept as SHA-256 digests so a leaked database leaks no token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn project_from_row(row: &sqlx::any::AnyRow) -> Result<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        ingest_key: row.try_get("ingest_key")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn create_project(&self, name: &str) -> Result<Project> {
        if self.project_by_name(name).await?.is_some() {
            return Err(StoreError::ProjectExists(name.to_string()));
        }
        let key = random_hex(16);
        let row = sqlx::query(
            "INSERT INTO projects (name, ingest_key, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, ingest_key, created_at",
        )
        .bind(name)
        .bind(&key)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::ProjectExists(name.to_string())
            }
            _ => StoreError::Db(e),
        })?;
        project_from_row(&row)
    }

    pub async fn project_by_key(&self, ingest_key: &str) -> Result<Option<Project>> {
        let row = sqlx::query(
            "SELECT id, name, ingest_key, created_at FROM projects WHERE ingest_key = $1",
        )
        .bind(ingest_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    pub async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let row =
            sqlx::query("SELECT id, name, ingest_key, created_at FROM projects WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query("SELECT id, name, ingest_key, created_at FROM projects ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// Creates an admin API token (every project; the schema's default
    /// scope) and returns it; only its hash is kept. Scoped tokens:
    /// `create_token_with_scope`.
    pub async fn create_token(&self, label: &str) -> Result<String> {
        let token = format!("pnk_{}", random_hex(24));
        sqlx::query("INSERT INTO api_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)")
            .bind(hash_token(&token))
            .bind(label)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    pub async fn token_valid(&self, token: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM api_tokens WHERE token_hash = $1")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
