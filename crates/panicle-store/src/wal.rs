//! Keeps SQLite's write-ahead log bounded.
//!
//! SQLite checkpoints by itself (PASSIVE, every 1,000 pages), but a passive
//! checkpoint cannot copy frames a reader still needs, and the log only
//! restarts from its start once it was copied completely while no reader
//! used it. Under steady writes with overlapping reads that never happens,
//! so the log grows without bound (3.5 GB beside a 260 MB database in a
//! flood). The checkpointer watches the file and, once it passes a size or
//! when writes have paused, runs `wal_checkpoint(TRUNCATE)`: that waits
//! (at most `busy_timeout`, holding new writers back) for the readers of old
//! snapshots, copies everything and truncates the file to zero. Every pooled
//! connection also sets `journal_size_limit`, so a log that restarts on its
//! own is cut back too. PostgreSQL has no such file: nothing runs there.
//!
//! SQLite's busy handler is no queue: four busy writers took the write lock
//! before the checkpoint for a whole second while the log grew by 45 MB. So
//! batch inserts pass a gate that the checkpointer closes (a fair tokio
//! `RwLock`): new inserts wait, the running ones finish, the checkpoint only
//! waits for readers, then the inserts go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{RwLock, RwLockReadGuard};

use crate::Store;

/// `journal_size_limit` of every pooled SQLite connection, and the default
/// size past which the checkpointer truncates the log.
pub const WAL_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

/// When the checkpointer acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalPolicy {
    /// How often the log's size is looked at.
    pub interval: Duration,
    /// Size past which the log is checkpointed and truncated.
    pub truncate_above: u64,
    /// How long a TRUNCATE checkpoint waits for readers (and holds writers back).
    pub busy_timeout: Duration,
}

impl Default for WalPolicy {
    fn default() -> Self {
        WalPolicy {
            interval: Duration::from_millis(250),
            truncate_above: WAL_SIZE_LIMIT,
            busy_timeout: Duration::from_secs(1),
        }
    }
}

/// The log file as one look sees it: its length and last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalLook {
    pub len: u64,
    pub modified: Option<SystemTime>,
}

/// Whether a tick truncates the log: when it has reached the size limit, or
/// when nothing has written to it since the previous look (writes paused:
/// give the space back; the checkpoint is then nearly free).
pub fn should_truncate(now: WalLook, previous: WalLook, policy: &WalPolicy) -> bool {
    now.len >= policy.truncate_above || (now.len > 0 && now == previous)
}

/// What one `wal_checkpoint` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// A reader or writer kept it from finishing (it copied what it could).
    pub busy: bool,
    /// Frames in the log before it ran.
    pub log_frames: i64,
    /// Frames copied into the database.
    pub checkpointed_frames: i64,
}

/// The running checkpointer; dropping it stops it.
pub struct WalCheckpointer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A SQLite database file, its log, and the gate of its batch writers.
pub(crate) struct WalFile {
    pub(crate) db: PathBuf,
    wal: PathBuf,
    writers: RwLock<()>,
}

impl WalFile {
    /// For a normalized `sqlite://PATH?QUERY` URL; None for PostgreSQL.
    pub(crate) fn of_url(url: &str) -> Option<Arc<WalFile>> {
        let rest = url.strip_prefix("sqlite://")?;
        let db = PathBuf::from(rest.split_once('?').map_or(rest, |(path, _)| path));
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Some(Arc::new(WalFile {
            db,
            wal: PathBuf::from(wal),
            writers: RwLock::new(()),
        }))
    }
}

impl Store {
    /// The SQLite write-ahead log file (None on PostgreSQL).
    pub fn wal_path(&self) -> Option<PathBuf> {
        Some(self.wal.as_ref()?.wal.clone())
    }

    /// Held by a batch insert; waits while a checkpoint truncates the log.
    pub(crate) async fn wal_writer_pass(&self) -> Option<RwLockReadGuard<'_, ()>> {
        match &self.wal {
            Some(file) => Some(file.writers.read().await),
            None => None,
        }
    }

    /// Bytes in the SQLite write-ahead log now: 0 without one, None on
    /// PostgreSQL. A `stat`, cheap enough for every /metrics scrape.
    pub fn wal_bytes(&self) -> Option<u64> {
        self.wal_path().map(|path| file_size(&path))
    }

    /// Starts the checkpointer on SQLite (None on PostgreSQL). It runs on
    /// a connection of its own, so its busy timeout is its own too.
    pub fn spawn_wal_checkpointer(&self, policy: WalPolicy) -> Option<WalCheckpointer> {
        let file = self.wal.clone()?;
        let task = tokio::spawn(checkpoint_loop(file, policy));
        Some(WalCheckpointer { task })
    }
}

async fn checkpoint_loop(file: Arc<WalFile>, policy: WalPolicy) {
    let mut tick = tokio::time::interval(policy.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<SqliteConnection> = None;
    let mut previous = WalLook::default();
    let mut backoff = Backoff::default();
    loop {
        tick.tick().await;
        let now = look(&file.wal);
        if !should_truncate(now, previous, &policy) || !backoff.ready(Instant::now()) {
            previous = now;
            continue;
        }
        if conn.is_none() {
            let options = SqliteConnectOptions::new()
                .filename(&file.db)
                .busy_timeout(policy.busy_timeout);
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the WAL checkpointer cannot connect; retrying");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match checkpoint(c, &file.writers, policy.busy_timeout).await {
            Ok((done, held)) => {
                tracing::debug!(
                    wal_bytes = now.len,
                    frames = done.log_frames,
                    busy = done.busy,
                    writers_held_ms = held.as_millis() as u64,
                    "WAL checkpoint"
                );
                if done.busy {
                    let wait = backoff.failed(Instant::now());
                    tracing::info!(
                        wal_bytes = now.len,
                        retry_in_ms = wait.as_millis() as u64,
                        "a reader held an old snapshot past the WAL checkpoint's busy timeout"
                    );
                } else {
                    backoff = Backoff::default();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; reconnecting");
                conn = None;
            }
        }
        previous = look(&file.wal);
    }
}

/// After a checkpoint that a long reader kept from finishing, writers were
/// held for the whole busy timeout: wait 1 s, 2 s, … up to 16 s before
/// holding them again, so a long read costs ingest little.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now >= until)
    }

    fn failed(&mut self, now: Instant) -> Duration {
        let wait = Duration::from_secs(1 << self.failures.min(4));
        self.failures += 1;
        self.until = Some(now + wait);
        wait
    }
}

/// A PASSIVE checkpoint alongside the writers copies most of the log; then,
/// with the writers held at the gate, TRUNCATE copies the rest once the
/// readers of older snapshots are done, and empties the file. Returns how
/// long the writers were held (from closing the gate, in-flight inserts
/// finishing included).
///
/// Closing the gate waits for in-flight inserts, which may sit in SQLite's
/// busy handler behind writers that do not pass the gate; new inserts queue
/// behind a waiting close. So the close is bounded by `gate_wait`: past it
/// the round counts as busy (and backs off) rather than holding ingest.
async fn checkpoint(
    conn: &mut SqliteConnection,
    writers: &RwLock<()>,
    gate_wait: Duration,
) -> Result<(Checkpoint, Duration), sqlx::Error> {
    let passive = run_checkpoint(conn, "PRAGMA wal_checkpoint(PASSIVE)").await?;
    let started = Instant::now();
    let Ok(_held) = tokio::time::timeout(gate_wait, writers.write()).await else {
        let busy = Checkpoint {
            busy: true,
            ..passive
        };
        return Ok((busy, started.elapsed()));
    };
    let done = run_checkpoint(conn, "PRAGMA wal_checkpoint(TRUNCATE)").await?;
    Ok((done, started.elapsed()))
}

async fn run_checkpoint(
    conn: &mut SqliteConnection,
    sql: &'static str,
) -> Result<Checkpoint, sqlx::Error> {
    let (busy, log_frames, checkpointed_frames): (i64, i64, i64) =
        sqlx::query_as(sql).fetch_one(conn).await?;
    Ok(Checkpoint {
        busy: busy != 0,
        log_frames,
        checkpointed_frames,
    })
}

fn look(path: &Path) -> WalLook {
    match std::fs::metadata(path) {
        Ok(m) => WalLook {
            len: m.len(),
            modified: m.modified().ok(),
        },
        Err(_) => WalLook::default(),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_when_large_or_idle() {
        let policy = WalPolicy {
            truncate_above: 100,
            ..WalPolicy::default()
        };
        let at = |len, secs| WalLook {
            len,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        };
        assert!(should_truncate(at(100, 2), at(10, 1), &policy));
        assert!(
            should_truncate(at(40, 1), at(40, 1), &policy),
            "idle: give the space back"
        );
        assert!(
            !should_truncate(at(40, 2), at(10, 1), &policy),
            "growing below the limit"
        );
        assert!(
            !should_truncate(at(40, 2), at(40, 1), &policy),
            "written again after a restart"
        );
        assert!(
            !should_truncate(WalLook::default(), WalLook::default(), &policy),
            "no log"
        );
    }

    #[test]
    fn backs_off_after_busy_checkpoints() {
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        assert!(backoff.ready(t0));
        assert_eq!(backoff.failed(t0), Duration::from_secs(1));
        assert!(!backoff.ready(t0 + Duration::from_millis(999)));
        assert!(backoff.ready(t0 + Duration::from_secs(1)));
        let waits: Vec<u64> = (0..5).map(|_| backoff.failed(t0).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 16]);
    }

    #[test]
    fn finds_the_database_and_log_files() {
        let file = WalFile::of_url("sqlite://./data/p.db?mode=rwc").unwrap();
        assert_eq!(file.db, PathBuf::from("./data/p.db"));
        assert_eq!(file.wal, PathBuf::from("./data/p.db-wal"));
        assert!(WalFile::of_url("postgres://u@h/db").is_none());
    }
}
