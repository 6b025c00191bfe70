//! The on-disk spool: one file per event, so an event outlives the process
//! that captured it (abort, `process::exit`, SIGKILL) and the next start of any
//! process with the same directory (or `panicle spool send DIR`) ships it.
//!
//! Invariants:
//! - A reader never sees half an event: files are written under a hidden
//!   temporary name (`.<id>.tmp`) and renamed to `<nanos>-<id>.json`.
//! - Names sort by capture time, so "oldest first" is a name sort.
//! - No fsync unless asked: the page cache survives the death of the process;
//!   fsync only buys durability across a node crash.
//! - Writing takes no lock and allocates little.
//!
//! The panic hook itself puts events in its [`journal`] (a record in a
//! mapped file, no file system call); an event becomes a file here when
//! it must wait for the server, or when the next start finds it in a dead
//! process's journal.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use panicle_protocol::Dsn;

pub(crate) mod journal;

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create the spool directory `{path}`: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the spool file `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the spool directory `{path}`: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool is full ({bytes} bytes in {files} files)")]
    Full { bytes: u64, files: u64 },
}

/// One spooled event file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub path: PathBuf,
    /// The event id, taken from the file name.
    pub event_id: String,
    pub size: u64,
}

/// A spool directory with approximate accounting of what this process put in
/// (and found at start). Other processes may share the directory; the sender's
/// rescans correct the numbers.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    fsync: bool,
    max_bytes: u64,
    max_files: u64,
    bytes: AtomicU64,
    files: AtomicU64,
}

/// Subdirectory for events the server refused for good (kept for inspection).
pub const REJECTED_DIR: &str = "rejected";

/// The files in `dir` named `<prefix>…<suffix>` whose exclusive `flock`
/// could be taken (their process is gone), opened read-write and kept
/// locked: a per-process file (hook journal, storm ledger) of a dead
/// process, which one recovery at a time may read.
pub(crate) fn dead_process_files(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Vec<(PathBuf, fs::File)> {
    use std::os::fd::AsRawFd;
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in read.flatten() {
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(prefix) && name.ends_with(suffix)) {
            continue;
        }
        let path = item.path();
        let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        // SAFETY: our own descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            out.push((path, file));
        }
    }
    out
}

/// How many events wait in a spool directory: its event files, and the
/// records in the hook journals of the processes using it (alive or dead),
/// which the next start or `panicle spool send` makes files of.
pub fn waiting_events(dir: &Path) -> usize {
    let files = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| event_id_of(n).is_some())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let mut names: std::collections::HashSet<String> = files.collect();
    names.extend(journal::journaled_in(dir).into_iter().map(|(name, _)| name));
    names.len()
}

/// `$XDG_CACHE_HOME/panicle/spool/<service>/<project>@<host>`, else the same
/// under `~/.cache`, else under the temp dir. `PANICLE_SPOOL_DIR` wins over
/// all of them. One directory per server and project: a process only ships
/// the spool it shares with earlier runs sending to the same place, never
/// another deployment's events to its own server.
pub fn default_spool_dir(service: Option<&str>, dsn: Option<&Dsn>) -> PathBuf {
    if let Some(dir) = std::env::var_os("PANICLE_SPOOL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    spool_dir_under(&cache, service, dsn)
}

/// `<cache>/panicle/spool/<service>/<project>@<host>`.
fn spool_dir_under(cache: &Path, service: Option<&str>, dsn: Option<&Dsn>) -> PathBuf {
    let service = sanitize(service.unwrap_or("default"));
    let target = match dsn {
        Some(dsn) => sanitize(&format!("{}@{}", dsn.project_id, dsn.host)),
        None => "no-dsn".to_string(),
    };
    cache
        .join("panicle")
        .join("spool")
        .join(service)
        .join(target)
}

/// Keeps a service name usable as one path component.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

pub(crate) fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The event id inside a spool file name `<nanos>-<id>.json`.
fn event_id_of(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".json")?;
    let (nanos, id) = stem.split_once('-')?;
    (!nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty()).then_some(id)
}

impl Spool {
    /// Opens (creating) the directory and counts what is already there.
    pub fn open(
        dir: impl Into<PathBuf>,
        fsync: bool,
        max_bytes: u64,
        max_files: u64,
    ) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| SpoolError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let spool = Spool {
            dir,
            fsync,
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
        };
        spool.list()?;
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one event. Refuses only when the spool is at twice its cap
    /// (the sender trims the oldest down to the cap; this is the backstop
    /// when it cannot keep up).
    pub fn write(&self, event_id: &str, json: &[u8]) -> Result<SpoolEntry, SpoolError> {
        let entry = self.entry(unix_nanos(), event_id, json.len())?;
        self.write_entry(&entry, json)
            .inspect_err(|_| self.forget(&entry))?;
        Ok(entry)
    }

    /// Names an event's file (capture time and id) and counts it in, without
    /// writing it: the hook puts the event in its journal and the sender
    /// writes the file (see [`journal`]). Refuses at twice the cap.
    pub(crate) fn entry(
        &self,
        nanos: u128,
        event_id: &str,
        size: usize,
    ) -> Result<SpoolEntry, SpoolError> {
        let (bytes, files) = (
            self.bytes.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
        );
        if bytes >= self.max_bytes.saturating_mul(2) || files >= self.max_files.saturating_mul(2) {
            return Err(SpoolError::Full { bytes, files });
        }
        let id = sanitize(event_id);
        let entry = SpoolEntry {
            path: self.dir.join(format!("{nanos:020}-{id}.json")),
            event_id: id,
            size: size as u64,
        };
        self.bytes.fetch_add(entry.size, Ordering::Relaxed);
        self.files.fetch_add(1, Ordering::Relaxed);
        Ok(entry)
    }

    /// Writes the file of an entry made by [`Spool::entry`]: under a hidden
    /// temporary name, renamed into place. The entry stays counted in.
    pub(crate) fn write_entry(&self, entry: &SpoolEntry, json: &[u8]) -> Result<(), SpoolError> {
        let tmp = self.dir.join(format!(".{}.tmp", entry.event_id));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(json)?;
            if self.fsync {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(&tmp, &entry.path)?;
            if self.fsync {
                fs::File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            SpoolError::Write {
                path: entry.path.clone(),
                source,
            }
        })
    }

    /// Writes an event under the file name it was given when captured
    /// (a journal's record): only a spool file name is taken.
    pub(crate) fn write_named(&self, name: &str, json: &[u8]) -> Result<SpoolEntry, SpoolError> {
        let path = self.dir.join(name);
        let invalid = || SpoolError::Write {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a spool file name (<nanos>-<id>.json)",
            ),
        };
        let (nanos, id) = name
            .strip_suffix(".json")
            .and_then(|stem| stem.split_once('-'))
            .filter(|_| event_id_of(name).is_some())
            .ok_or_else(invalid)?;
        let nanos: u128 = nanos.parse().map_err(|_| invalid())?;
        let entry = self.entry(nanos, id, json.len())?;
        if entry.path != path {
            self.forget(&entry);
            return Err(invalid());
        }
        self.write_entry(&entry, json)
            .inspect_err(|_| self.forget(&entry))?;
        Ok(entry)
    }

    /// Every complete event file, oldest first; resets the accounting to what
    /// is on disk. Leftover temporary files older than ten minutes are removed
    /// (a writer died between create and rename), except a signal handler's
    /// `.signal-*.tmp`: that one is a crash record, which recovery ships.
    pub fn list(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
        let read = fs::read_dir(&self.dir).map_err(|source| SpoolError::ReadDir {
            path: self.dir.clone(),
            source,
        })?;
        let mut entries = Vec::new();
        for item in read.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if crate::signals::is_tmp_record(name) {
                continue;
            }
            if name.starts_with('.') && name.ends_with(".tmp") {
                let stale = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(600));
                if stale {
                    let _ = fs::remove_file(item.path());
                }
                continue;
            }
            if let Some(id) = event_id_of(name) {
                entries.push(SpoolEntry {
                    path: item.path(),
                    event_id: id.to_string(),
                    size: meta.len(),
                });
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.bytes
            .store(entries.iter().map(|e| e.size).sum(), Ordering::Relaxed);
        self.files.store(entries.len() as u64, Ordering::Relaxed);
        Ok(entries)
    }

    /// Removes an acknowledged (or dropped) event; a file already gone is fine
    /// (another process sharing the spool sent it).
    pub fn remove(&self, entry: &SpoolEntry) {
        if fs::remove_file(&entry.path).is_ok() {
            self.forget(entry);
        }
    }

    /// Moves an event the server refused for good out of the way, with the
    /// server's reason beside it (`<name>.reason`), for someone to read. An
    /// event that never had its file (it was in the hook's journal) is
    /// written there from `json`.
    pub fn reject(&self, entry: &SpoolEntry, json: &[u8], reason: &str) {
        let dir = self.dir.join(REJECTED_DIR);
        let target = entry.path.file_name().map(|n| dir.join(n));
        let moved = target.filter(|target| {
            fs::create_dir_all(&dir).is_ok()
                && match fs::rename(&entry.path, target) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        fs::write(target, json).is_ok()
                    }
                    Err(_) => false,
                }
        });
        match moved {
            Some(target) => {
                let _ = fs::write(target.with_extension("reason"), format!("{reason}\n"));
                self.forget(entry);
            }
            None => self.remove(entry),
        }
    }

    /// Takes an event that left the spool out of the accounting.
    pub(crate) fn forget(&self, entry: &SpoolEntry) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(entry.size))
            });
        let _ = self
            .files
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_sub(1))
            });
    }

    /// True when the accounting says the cap is exceeded.
    pub fn over_cap(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.max_bytes
            || self.files.load(Ordering::Relaxed) > self.max_files
    }

    /// Drops the oldest events until the spool fits its cap; returns the
    /// dropped entries so the caller can count and forget them.
    pub fn trim(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
        let entries = self.list()?;
        let mut bytes: u64 = entries.iter().map(|e| e.size).sum();
        let mut files = entries.len() as u64;
        let mut dropped = Vec::new();
        for e in entries {
            if bytes <= self.max_bytes && files <= self.max_files {
                break;
            }
            bytes = bytes.saturating_sub(e.size);
            files = files.saturating_sub(1);
            self.remove(&e);
            dropped.push(e);
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_and_project_has_its_own_default_spool() {
        let dsn = |s: &str| s.parse::<Dsn>().unwrap();
        let staging = dsn("http://k@staging:8471/1");
        let prod = dsn("http://k@prod:8471/1");
        let other_project = dsn("http://k@prod:8471/2");
        let cache = Path::new("/home/me/.cache");
        let dirs = [&staging, &prod, &other_project]
            .map(|d| spool_dir_under(cache, Some("shop"), Some(d)));
        assert_ne!(dirs[0], dirs[1]);
        assert_ne!(dirs[1], dirs[2]);
        assert_eq!(
            dirs[1],
            Path::new("/home/me/.cache/panicle/spool/shop/1_prod_8471")
        );
    }

    #[test]
    fn names_sort_by_time_and_carry_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false, 1 << 20, 100).unwrap();
        let a = spool.write("aaaa-1", b"{}").unwrap();
        let b = spool.write("0000-2", b"{}").unwrap();
        let listed = spool.list().unwrap();
        assert_eq!(listed, vec![a, b]);
        assert_eq!(listed[0].event_id, "aaaa-1");
        assert!(!spool.over_cap());
    }

    #[test]
    fn trim_drops_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), true, 1 << 20, 3).unwrap();
        for i in 0..5 {
            spool.write(&format!("e{i}"), b"{}").unwrap();
        }
        assert!(spool.over_cap());
        let dropped = spool.trim().unwrap();
        let ids: Vec<_> = dropped.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["e0", "e1"]);
        let left: Vec<_> = spool
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(left, ["e2", "e3", "e4"]);
    }

    #[test]
    fn refuses_at_twice_the_cap_and_ignores_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".half.tmp"), b"{\"event_").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let spool = Spool::open(dir.path(), false, 1 << 20, 1).unwrap();
        assert!(spool.list().unwrap().is_empty());
        spool.write("a", b"{}").unwrap();
        spool.write("b", b"{}").unwrap();
        assert!(matches!(
            spool.write("c", b"{}"),
            Err(SpoolError::Full { .. })
        ));
    }

    #[test]
    fn a_signal_handlers_leftover_is_not_deleted_as_stale() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for name in [".half.tmp", ".signal-40-41.tmp"] {
            let f = std::fs::File::create(dir.path().join(name)).unwrap();
            f.set_modified(old).unwrap();
        }
        let spool = Spool::open(dir.path(), false, 1 << 20, 10).unwrap();
        assert!(spool.list().unwrap().is_empty());
        assert!(!dir.path().join(".half.tmp").exists());
        assert!(dir.path().join(".signal-40-41.tmp").exists());
    }

    #[test]
    fn service_names_stay_one_component() {
        assert_eq!(sanitize("../etc"), "_.._etc");
        assert_eq!(sanitize("check out/1"), "check_out_1");
        assert_eq!(sanitize(""), "_");
    }
}
