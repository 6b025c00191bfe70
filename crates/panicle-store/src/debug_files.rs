//! Debug files (issue 18): the DWARF (or symbol table) of stripped binaries,
//! uploaded so the server can name the addresses their events carry.
//!
//! Each file lives on disk at `<dir>/<build_id[0..2]>/<build_id[2..]>.debug`
//! (the symbolicator opens that path directly, without the database) and is
//! described by a row of `debug_files`. A file is written to a temporary
//! name in `<dir>`, synced, checked with `panicle_debuginfo::inspect_path`
//! and only then renamed into place, so a refused, cut or failed upload
//! leaves neither a file nor a row behind: readers of the final path never
//! see a partial file.
//!
//! Several replicas may share one directory (a network volume): the
//! database decides which upload wins, and a rename is atomic on one
//! filesystem.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use panicle_debuginfo::{DebugFileInfo, InspectError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use crate::{Store, StoreError, now_ms};

pub use panicle_debuginfo::MAX_DEBUG_FILE_BYTES;

/// Prefix of the temporary files an upload is written to in `<dir>`.
const TEMP_PREFIX: &str = "tmp-";

/// Longest stored file name: a name is for people reading a list.
const MAX_NAME_CHARS: usize = 255;

/// What is stored for one build-id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugFileRow {
    /// GNU build-id, lowercase hex.
    pub build_id: String,
    /// The uploaded file's name (no directories).
    pub name: String,
    /// `executable` (code and debug info) or `debug` (`--only-keep-debug`).
    pub kind: String,
    pub arch: String,
    pub has_dwarf: bool,
    pub has_symbols: bool,
    pub size_bytes: i64,
    /// Epoch milliseconds.
    pub uploaded_at: i64,
}

/// What became of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A build-id not stored before.
    New(DebugFileRow),
    /// It brings DWARF where the stored file had only symbols: it took its
    /// place. (A row whose file went missing from the directory is stored
    /// again whatever it held, and answered `New`.)
    Replaced(DebugFileRow),
    /// The build-id is already stored with at least as much debug info:
    /// the stored row, kept; the upload was dropped.
    Exists(DebugFileRow),
}

impl Stored {
    pub fn row(&self) -> &DebugFileRow {
        match self {
            Stored::New(r) | Stored::Replaced(r) | Stored::Exists(r) => r,
        }
    }

    /// True when the upload's file is now the stored one.
    pub fn is_stored(&self) -> bool {
        !matches!(self, Stored::Exists(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DebugFileError {
    /// The file is not a usable debug file (not ELF, no build-id, no debug
    /// info, truncated).
    #[error(transparent)]
    Invalid(#[from] InspectError),
    #[error(
        "the debug file is larger than the limit of {limit} bytes: upload the `objcopy --only-keep-debug` file, or compress its DWARF (`objcopy --compress-debug-sections`)"
    )]
    TooLarge { limit: u64 },
    #[error("`{0}` is not a build-id: give the hex build-id `panicle debug-files list` shows")]
    BadBuildId(String),
    #[error("debug-file storage failed ({action} {path}): {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DebugFileError {
    fn from(e: sqlx::Error) -> Self {
        DebugFileError::Store(StoreError::Db(e))
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DebugFileError {
    let path = path.display().to_string();
    move |source| DebugFileError::Io {
        action,
        path,
        source,
    }
}

/// Where the file of `build_id` lives under `dir`: the layout the
/// symbolicator reads. The id must be hex (it becomes a path).
pub fn debug_file_path(dir: &Path, build_id: &str) -> Result<PathBuf, DebugFileError> {
    let id = normalize_build_id(build_id)?;
    Ok(dir.join(&id[..2]).join(format!("{}.debug", &id[2..])))
}

/// Lowercase hex of 2 to 64 bytes (GNU build-ids are 8 to 20): a shorter
/// one would leave the file no name after its directory.
fn normalize_build_id(build_id: &str) -> Result<String, DebugFileError> {
    let id = build_id.trim().to_ascii_lowercase();
    let hex = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || id.len() < 4 || id.len() > 128 || !id.len().is_multiple_of(2) {
        return Err(DebugFileError::BadBuildId(
            build_id.chars().take(140).collect(),
        ));
    }
    Ok(id)
}

/// The last path component of `name`, without control characters, at most
/// [`MAX_NAME_CHARS`]; empty names become the build-id.
fn clean_name(name: &str, build_id: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        format!("{build_id}.debug")
    } else {
        cleaned.to_string()
    }
}

fn row_from(row: &sqlx::any::AnyRow) -> Result<DebugFileRow, sqlx::Error> {
    Ok(DebugFileRow {
        build_id: row.try_get("build_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        arch: row.try_get("arch")?,
        has_dwarf: row.try_get::<i64, _>("has_dwarf")? != 0,
        has_symbols: row.try_get::<i64, _>("has_symbols")? != 0,
        size_bytes: row.try_get("size_bytes")?,
        uploaded_at: row.try_get("uploaded_at")?,
    })
}

const COLUMNS: &str = "build_id, name, kind, arch, has_dwarf, has_symbols, size_bytes, uploaded_at";

/// The debug-file directory and the table that describes it.
#[derive(Clone)]
pub struct DebugFiles {
    store: Store,
    dir: PathBuf,
    max_bytes: u64,
}

impl DebugFiles {
    /// Files under `dir` (created at the first upload), at most
    /// [`MAX_DEBUG_FILE_BYTES`] each.
    pub fn new(store: Store, dir: impl Into<PathBuf>) -> DebugFiles {
        DebugFiles {
            store,
            dir: dir.into(),
            max_bytes: MAX_DEBUG_FILE_BYTES,
        }
    }

    /// A lower size limit (never above [`MAX_DEBUG_FILE_BYTES`]).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> DebugFiles {
        self.max_bytes = max_bytes.min(MAX_DEBUG_FILE_BYTES);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Starts an upload: a temporary file in the directory, removed unless
    /// [`DebugUpload::finish`] stores it.
    pub async fn begin(&self, name: &str) -> Result<DebugUpload, DebugFileError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io_error("creating", &self.dir))?;
        let mut suffix = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut suffix);
        let path = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", hex::encode(suffix)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_error("creating", &path))?;
        Ok(DebugUpload {
            files: self.clone(),
            temp: TempFile(Some(path)),
            out: BufWriter::with_capacity(1 << 20, file),
            written: 0,
            name: name.to_string(),
        })
    }

    /// Stores the local file at `path` (as `panicle debug-files upload`
    /// does without a server), under its file name.
    pub async fn store_path(&self, path: &Path) -> Result<Stored, DebugFileError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut input = tokio::fs::File::open(path)
            .await
            .map_err(io_error("opening", path))?;
        let mut upload = self.begin(&name).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(io_error("reading", path))?;
            if n == 0 {
                break;
            }
            upload.write(&buf[..n]).await?;
        }
        upload.finish().await
    }

    /// Every stored file, newest first.
    pub async fn list(&self) -> Result<Vec<DebugFileRow>, DebugFileError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM debug_files ORDER BY uploaded_at DESC, build_id"
        )))
        .fetch_all(&self.store.pool)
        .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, build_id: &str) -> Result<Option<DebugFileRow>, DebugFileError> {
        let id = normalize_build_id(build_id)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM debug_files WHERE build_id = $1"
        )))
        .bind(&id)
        .fetch_optional(&self.store.pool)
        .await?;
        Ok(row.as_ref().map(row_from).transpose()?)
    }

    /// Removes the row and the file; false when neither was there.
    pub async fn remove(&self, build_id: &str) -> Result<bool, DebugFileError> {
        let id = normalize_build_id(build_id)?;
        let path = debug_file_path(&self.dir, &id)?;
        let mut tx = self.store.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM debug_files WHERE build_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // The file goes before the row is committed: a failure keeps both.
        let removed = match tokio::fs::remove_file(&path).await {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("removing", &path)(e)),
        };
        if removed && let Some(parent) = path.parent() {
            sync_dir(parent).await?;
        }
        tx.commit().await?;
        Ok(deleted > 0 || removed)
    }

    /// Removes temporary files older than `age`: what a crashed server left
    /// mid-upload. Younger ones may be another replica's upload in progress.
    pub async fn sweep_temp_files(&self, age: Duration) -> Result<usize, DebugFileError> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("listing", &self.dir)(e)),
        };
        let mut removed = 0;
        let now = SystemTime::now();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io_error("listing", &self.dir))?
        {
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let old = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|a| a >= age);
            if old && tokio::fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A path removed on drop unless taken: the temporary file of an upload
/// that failed, was refused or whose request was dropped mid-body.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One upload in progress: bytes go to a temporary file in the directory.
pub struct DebugUpload {
    files: DebugFiles,
    temp: TempFile,
    out: BufWriter<tokio::fs::File>,
    written: u64,
    name: String,
}

impl DebugUpload {
    /// Appends `chunk`; past the size limit the upload is refused (and its
    /// temporary file removed when the upload is dropped).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), DebugFileError> {
        self.written += chunk.len() as u64;
        if self.written > self.files.max_bytes {
            return Err(DebugFileError::TooLarge {
                limit: self.files.max_bytes,
            });
        }
        self.out
            .write_all(chunk)
            .await
            .map_err(io_error("writing", self.temp.path()))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Syncs the file, checks it, and stores it under its build-id unless
    /// that build-id is already stored with as much debug info.
    pub async fn finish(mut self) -> Result<Stored, DebugFileError> {
        let temp = self.temp.path().to_path_buf();
        self.out.flush().await.map_err(io_error("writing", &temp))?;
        self.out
            .get_ref()
            .sync_all()
            .await
            .map_err(io_error("syncing", &temp))?;
        let inspected = temp.clone();
        let info = tokio::task::spawn_blocking(move || panicle_debuginfo::inspect_path(&inspected))
            .await
            .map_err(|e| DebugFileError::Io {
                action: "inspecting",
                path: temp.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })??;
        self.place(info).await
    }

    async fn place(mut self, info: DebugFileInfo) -> Result<Stored, DebugFileError> {
        let files = self.files.clone();
        let temp = self.temp.path().to_path_buf();
        let id = normalize_build_id(&info.build_id)?;
        let path = debug_file_path(&files.dir, &id)?;
        let row = DebugFileRow {
            name: clean_name(&self.name, &id),
            build_id: id,
            kind: info.kind.to_string(),
            arch: info.arch,
            has_dwarf: info.has_dwarf,
            has_symbols: info.has_symbols,
            size_bytes: i64::try_from(self.written).unwrap_or(i64::MAX),
            uploaded_at: now_ms(),
        };
        let mut tx = files.store.begin_write().await?;
        // The condition decides the dedup in the database, so two replicas
        // storing the same build-id at once agree on the winner: the first
        // insert holds the key until it commits, and a conflicting row
        // stays locked (SQLite: the whole write) until this transaction ends.
        let upsert = |condition: &str| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO debug_files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (build_id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
                 arch = excluded.arch, has_dwarf = excluded.has_dwarf, \
                 has_symbols = excluded.has_symbols, size_bytes = excluded.size_bytes, \
                 uploaded_at = excluded.uploaded_at{condition}"
            )))
            .bind(row.build_id.clone())
            .bind(row.name.clone())
            .bind(row.kind.clone())
            .bind(row.arch.clone())
            .bind(i64::from(row.has_dwarf))
            .bind(i64::from(row.has_symbols))
            .bind(row.size_bytes)
            .bind(row.uploaded_at)
        };
        let written = upsert(" WHERE debug_files.has_dwarf = 0 AND excluded.has_dwarf = 1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Looked at under the lock: no other upload of this id moves it now.
        let file_there = tokio::fs::try_exists(&path).await.unwrap_or(false);
        if written == 0 {
            if file_there {
                let kept = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM debug_files WHERE build_id = $1"
                )))
                .bind(&row.build_id)
                .fetch_one(&mut *tx)
                .await?;
                let kept = row_from(&kept)?;
                tx.rollback().await?;
                return Ok(Stored::Exists(kept));
            }
            // The row outlived its file (removed by hand, another volume):
            // this upload takes its place whatever either holds.
            upsert("").execute(&mut *tx).await?;
        }
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| files.dir.clone());
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(io_error("creating", &parent))?;
        tokio::fs::rename(&temp, &path)
            .await
            .map_err(io_error("renaming into", &path))?;
        // From here the temporary name is gone; on failure the placed file
        // goes too, unless it replaced one (then it is the better file).
        self.temp.0 = None;
        let placed = PlacedFile(if file_there { None } else { Some(path) });
        sync_dir(&parent).await?;
        sync_dir(&files.dir).await?;
        tx.commit().await?;
        placed.keep();
        Ok(if file_there {
            Stored::Replaced(row)
        } else {
            Stored::New(row)
        })
    }
}

/// A file renamed into place, removed on drop unless kept: the transaction
/// that records it failed.
struct PlacedFile(Option<PathBuf>);

impl PlacedFile {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for PlacedFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Makes a directory's entries (a rename, a removal) durable.
async fn sync_dir(dir: &Path) -> Result<(), DebugFileError> {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&owned)?.sync_all())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(io_error("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_the_symbolicators_layout() {
        let dir = Path::new("/d");
        assert_eq!(
            debug_file_path(dir, "ABCDEF0123").unwrap(),
            Path::new("/d/ab/cdef0123.debug")
        );
        for bad in ["", "a", "ab", "abc", "../x", "ab/cd", "zz00", "abc def"] {
            assert!(debug_file_path(dir, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_lose_directories_and_control_characters() {
        assert_eq!(clean_name("/tmp/x/app.debug", "ab"), "app.debug");
        assert_eq!(clean_name("C:\\b\\app\n", "ab"), "app");
        assert_eq!(clean_name("", "abcd"), "abcd.debug");
        assert_eq!(clean_name(&"x".repeat(400), "ab").len(), MAX_NAME_CHARS);
    }
}
