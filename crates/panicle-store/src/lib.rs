//! Panicle's persistence: one API over PostgreSQL and SQLite.
//!
//! Both backends run the same query text through sqlx's Any driver (`$1`
//! placeholders, times as epoch milliseconds, ids as TEXT); only the DDL
//! differs, in `migrations/postgres` and `migrations/sqlite`.
//!
//! Architecture invariant: this crate knows SQL and nothing of HTTP.

mod access;
mod alerts;
mod clusters;
mod counted;
mod debug_files;
mod events;
mod groups;
mod insert;
mod limits;
mod page;
mod projects;
mod retention;
mod states;
mod symbols;
#[cfg(feature = "testing")]
pub mod testing;
pub mod triggers;
mod wal;
#[cfg(feature = "testing")]
pub mod wal_load;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

pub use access::{Access, NewToken, SessionPolicy, TokenInfo, TokenScope};
pub use alerts::{
    AlertRule, ConfinedCluster, Delivery, Destination, LEVELS, NewAlertRule, RuleKind,
    SPIKE_BASELINE_MS, WindowCount, level_of_kind, level_passes,
};
pub use clusters::{
    ClusterChange, ClusterEvent, Distributions, EventFilter, GroupAggregate, GroupAssignment,
    HostColumn, JobLock, NewCluster,
};
pub use debug_files::{
    DebugFileError, DebugFileRow, DebugFiles, DebugUpload, MAX_DEBUG_FILE_BYTES, Stored,
    debug_file_path,
};
pub use events::{EventQuery, EventRow, EventSummary, InsertOutcome, NewEvent, StormRange};
pub use groups::{GroupQuery, GroupRow};
pub use insert::InsertJob;
pub use limits::{
    InsertLimits, LimitsUpdate, ProjectLimits, QuotaPeriod, UsagePeriods, keep_sampled,
};
pub use page::{Cursor, Page};
pub use projects::{Project, hash_token};
pub use retention::PurgeReport;
pub use states::{
    ClusterRef, ClusterState, ClusterStatus, IgnoreUntil, RegressionMark, Resolution, SeenEvent,
    StateChange, Verdict, evaluate, merge_states, release_newer, state_detail,
};
pub use symbols::{PendingEvent, RegroupReport, Resymbolized};
pub use wal::{Checkpoint, WAL_SIZE_LIMIT, WalCheckpointer, WalLook, WalPolicy, should_truncate};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL `{0}`: use sqlite://path/to/file.db or postgres://user@host:port/db"
    )]
    UnsupportedUrl(String),
    #[error("cannot create the database directory `{path}`: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a project named `{0}` already exists")]
    ProjectExists(String),
    #[error("invalid token scope: {0}")]
    InvalidScope(String),
    #[error("invalid cursor: pass back the `next_cursor` of a previous page")]
    InvalidCursor,
    #[error("the {period} quota of {limit} events is used up ({used} stored)")]
    QuotaExceeded {
        period: QuotaPeriod,
        limit: i64,
        used: i64,
    },
    #[error("no project named `{0}`")]
    NoSuchProject(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// True when the database refused the statement for the data in it
    /// (a value out of range, an encoding it cannot store, an index entry too
    /// large): sending the same data again fails again. Unreachable, busy,
    /// locked or deadlocked databases are not refusals: those pass.
    pub fn is_refused_data(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let Some(code) = db.code() else { return false };
        let code = code.as_ref();
        if code.len() == 5 {
            // PostgreSQL SQLSTATE: 22 data exception, 23 integrity constraint
            // violation, 54 program limit exceeded (index row too large).
            return matches!(&code[..2], "22" | "23" | "54");
        }
        // SQLite result codes (primary code in the low byte): TOOBIG,
        // CONSTRAINT, MISMATCH, RANGE.
        code.parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    }

    /// True when the database could not be used at all (unreachable, pool
    /// exhausted, shutting down, out of disk, locked, a deadlock or
    /// serialization failure): the same request may succeed later, so the
    /// client should keep the events and retry. Other database errors are
    /// answers about the statement itself.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Db(e) = self else {
            return true;
        };
        let sqlx::Error::Database(db) = e else {
            // Io, Tls, PoolTimedOut, PoolClosed, Protocol, WorkerCrashed, …
            return true;
        };
        let Some(code) = db.code() else { return true };
        let code = code.as_ref();
        if code.len() == 5 {
            // PostgreSQL: 08 connection, 40 rollback (deadlock,
            // serialization), 53 resources, 55 lock not available,
            // 57 operator intervention (shutdown), 58 system error.
            return matches!(&code[..2], "08" | "40" | "53" | "55" | "57" | "58");
        }
        // SQLite: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN.
        code.parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14))
    }

    /// What a client may be told about a refused statement: the class of
    /// the refusal, not the database's own text (it names tables and indexes).
    pub fn refusal_reason(&self) -> String {
        match self {
            StoreError::Db(sqlx::Error::Database(db)) => format!(
                "the database refused a value of it (code {})",
                db.code().as_deref().unwrap_or("unknown")
            ),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long a request waits for a PostgreSQL connection before it is
/// answered 503 + Retry-After: an outage must fail fast (the client's spool
/// keeps the events), not hold every request and its memory for 30 s. A
/// reconnect is tried at each acquire, so the server recovers by itself.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLite is a file beside the server: waiting means another writer holds
/// the lock (its `busy_timeout` is 10 s), not an outage.
pub const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The database behind every Panicle server and CLI command.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// One connection of its own for `ping`: a readiness probe must not
    /// queue behind a busy pool and report a loaded server as down.
    health: AnyPool,
    backend: Backend,
    /// SQLite's database file and write-ahead log (`wal.rs`); None on PostgreSQL.
    wal: Option<std::sync::Arc<wal::WalFile>>,
}

impl Store {
    /// Connects, creating the SQLite file (and its directory) if needed, and
    /// applies the migrations of the backend.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalize_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                 PRAGMA journal_size_limit = 16777216;", // wal::WAL_SIZE_LIMIT
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect_with(options.clone())
                    .await?
            }
        };
        let health = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(options.clone());
        let wal = wal::WalFile::of_url(&url);
        let store = Store {
            pool,
            health,
            backend,
            wal,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        let files: &[(i64, &str, &'static str)] = match self.backend {
            Backend::Sqlite => &[
                (
                    1,
                    "init",
                    include_str!("../../../migrations/sqlite/0001_init.sql"),
                ),
                (
                    2,
                    "clusters",
                    include_str!("../../../migrations/sqlite/0002_clusters.sql"),
                ),
                (
                    3,
                    "filter_indexes",
                    include_str!("../../../migrations/sqlite/0003_filter_indexes.sql"),
                ),
                (
                    4,
                    "access",
                    include_str!("../../../migrations/sqlite/0004_access.sql"),
                ),
                (
                    5,
                    "limits",
                    include_str!("../../../migrations/sqlite/0005_limits.sql"),
                ),
                (
                    6,
                    "storms",
                    include_str!("../../../migrations/sqlite/0006_storms.sql"),
                ),
                (
                    7,
                    "cluster_states",
                    include_str!("../../../migrations/sqlite/0007_cluster_states.sql"),
                ),
                (
                    8,
                    "alerts",
                    include_str!("../../../migrations/sqlite/0008_alerts.sql"),
                ),
                (
                    9,
                    "groups one unique key",
                    include_str!("../../../migrations/sqlite/0009_groups_one_unique_key.sql"),
                ),
                (
                    10,
                    "debug files",
                    include_str!("../../../migrations/sqlite/0010_debug_files.sql"),
                ),
                (
                    11,
                    "pending symbols",
                    include_str!("../../../migrations/sqlite/0011_pending_symbols.sql"),
                ),
            ],
            Backend::Postgres => &[
                (
                    1,
                    "init",
                    include_str!("../../../migrations/postgres/0001_init.sql"),
                ),
                (
                    2,
                    "clusters",
                    include_str!("../../../migrations/postgres/0002_clusters.sql"),
                ),
                (
                    3,
                    "filter_indexes",
                    include_str!("../../../migrations/postgres/0003_filter_indexes.sql"),
                ),
                (
                    4,
                    "access",
                    include_str!("../../../migrations/postgres/0004_access.sql"),
                ),
                (
                    5,
                    "limits",
                    include_str!("../../../migrations/postgres/0005_limits.sql"),
                ),
                (
                    6,
                    "storms",
                    include_str!("../../../migrations/postgres/0006_storms.sql"),
                ),
                (
                    7,
                    "cluster_states",
                    include_str!("../../../migrations/postgres/0007_cluster_states.sql"),
                ),
                (
                    8,
                    "alerts",
                    include_str!("../../../migrations/postgres/0008_alerts.sql"),
                ),
                (
                    9,
                    "groups one unique key",
                    include_str!("../../../migrations/postgres/0009_groups_one_unique_key.sql"),
                ),
                (
                    10,
                    "debug files",
                    include_str!("../../../migrations/postgres/0010_debug_files.sql"),
                ),
                (
                    11,
                    "pending symbols",
                    include_str!("../../../migrations/postgres/0011_pending_symbols.sql"),
                ),
            ],
        };
        let migrations = files
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// A transaction that will write. On SQLite it takes the write lock at
    /// `BEGIN IMMEDIATE` (waiting up to the busy timeout): a transaction that
    /// reads first and writes later would fail at once with "database is
    /// locked" (SQLITE_BUSY_SNAPSHOT) when another writer committed between.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.health).await?;
        Ok(())
    }

    /// Refreshes the query planner's statistics (after a bulk load).
    pub async fn analyze(&self) -> Result<()> {
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns user-facing URLs into what sqlx wants: SQLite files are created
/// (with their directory) on first use.
fn normalize_url(url: &str) -> Result<(Backend, String)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    };
    let rest = rest.trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::UnsupportedUrl(format!(
            "{url} (in-memory SQLite loses data on restart; give a file path)"
        )));
    }
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let mut query = query.to_string();
    if !query.contains("mode=") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("mode=rwc");
    }
    Ok((Backend::Sqlite, format!("sqlite://{path}?{query}")))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("postgres://u@h/db").unwrap(),
            (Backend::Postgres, "postgres://u@h/db".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/p.db");
        let (backend, url) = normalize_url(&format!("sqlite://{}", file.display())).unwrap();
        assert_eq!(backend, Backend::Sqlite);
        assert!(url.ends_with("p.db?mode=rwc"), "{url}");
        assert!(file.parent().unwrap().is_dir());
        assert!(normalize_url("mysql://x").is_err());
        assert!(normalize_url("sqlite::memory:").is_err());
    }
}
