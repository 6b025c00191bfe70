//! The storm ledger: folded panics' counts kept in a file the process maps
//! into memory, so a `kill -9` (or an OOM kill) right after a storm does not
//! take them along. The hook's counting stays two atomic stores (to shared
//! memory the kernel writes back on its own: the page cache outlives the
//! process); the sender records which counts an aggregate in the spool
//! holds; the next start (or `panicle spool send`) turns what a dead process
//! counted but never wrote out into aggregates.
//!
//! One file per process, `storms-<pid>-<nanos>.ledger` in the spool, held
//! under an exclusive `flock` while the process lives: a file whose lock can
//! be taken belongs to a dead process. Beside it, `<stem>.slot<N>.json` is
//! the template event (frames, resource) of slot N's aggregates, written by
//! the sender when the slot starts folding.
//!
//! Layout (native-endian u64s): magic, version, the storm id seed (two
//! words), then per slot: key, folded, reported.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: u64 = u64::from_le_bytes(*b"PNCLSTRM");
const VERSION: u64 = 1;
const HEADER_WORDS: usize = 4;
const SLOT_WORDS: usize = 3;
pub(crate) const PREFIX: &str = "storms-";
pub(crate) const SUFFIX: &str = ".ledger";

/// One slot's counts as the ledger holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    pub key: u64,
    pub folded: u64,
    pub reported: u64,
}

/// This process's ledger, mapped.
pub(crate) struct Ledger {
    path: PathBuf,
    /// Holds the lock (and the mapping's file) for the life of the process.
    _file: File,
    words: *mut AtomicU64,
    len_words: usize,
    slots: usize,
}

// SAFETY: the mapping is only ever accessed through atomics, and lives as
// long as the ledger (it is never unmapped while a reference exists).
unsafe impl Send for Ledger {}
unsafe impl Sync for Ledger {}

impl Ledger {
    /// Creates and maps this process's ledger in `dir` for `slots` slots.
    pub(crate) fn create(dir: &Path, slots: usize, seed: (u64, u64)) -> io::Result<Ledger> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("{PREFIX}{}-{nanos}{SUFFIX}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // SAFETY: our own descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let len_words = HEADER_WORDS + slots * SLOT_WORDS;
        let bytes = len_words * 8;
        if let Err(e) = file.set_len(bytes as u64) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        // SAFETY: a shared mapping of a file we own, sized above; the
        // pointer is page-aligned, so every u64 in it is aligned.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let ledger = Ledger {
            path,
            _file: file,
            words: map.cast::<AtomicU64>(),
            len_words,
            slots,
        };
        ledger.word(2).store(seed.0, Ordering::Relaxed);
        ledger.word(3).store(seed.1, Ordering::Relaxed);
        ledger.word(1).store(VERSION, Ordering::Relaxed);
        ledger.word(0).store(MAGIC, Ordering::Release);
        Ok(ledger)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        let i = i.min(self.len_words - 1);
        // SAFETY: in bounds of the mapping (clamped), aligned, and only
        // accessed atomically.
        unsafe { &*self.words.add(i) }
    }

    fn slot_word(&self, slot: usize, field: usize) -> Option<&AtomicU64> {
        (slot < self.slots).then(|| self.word(HEADER_WORDS + slot * SLOT_WORDS + field))
    }

    /// The hook: slot `slot` holds `key`.
    pub(crate) fn set_key(&self, slot: usize, key: u64) {
        if let Some(w) = self.slot_word(slot, 0) {
            w.store(key, Ordering::Release);
        }
    }

    /// The hook: slot `slot` has numbered `folded` folded panics.
    pub(crate) fn folded(&self, slot: usize, folded: u64) {
        if let Some(w) = self.slot_word(slot, 1) {
            w.fetch_max(folded, Ordering::AcqRel);
        }
    }

    /// The sender: slot `slot`'s folded panics below `reported` are in
    /// aggregates in the spool.
    pub(crate) fn reported(&self, slot: usize, reported: u64) {
        if let Some(w) = self.slot_word(slot, 2) {
            w.fetch_max(reported, Ordering::AcqRel);
        }
    }

    /// Where slot `slot`'s template event is kept.
    pub(crate) fn template_path(&self, slot: usize) -> PathBuf {
        template_path(&self.path, slot)
    }

    /// Removes the ledger's files: the process reported everything and is
    /// on its way out.
    pub(crate) fn remove(&self) {
        for slot in 0..self.slots {
            let _ = fs::remove_file(self.template_path(slot));
        }
        let _ = fs::remove_file(&self.path);
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, no reference outlives self.
        unsafe { libc::munmap(self.words.cast(), self.len_words * 8) };
    }
}

fn template_path(ledger: &Path, slot: usize) -> PathBuf {
    let stem = ledger
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(SUFFIX))
        .unwrap_or("storms");
    ledger.with_file_name(format!("{stem}.slot{slot}.json"))
}

/// What a dead process's ledger holds.
#[derive(Debug)]
pub(crate) struct DeadLedger {
    pub path: PathBuf,
    pub seed: (u64, u64),
    /// Slots with folded panics not yet in an aggregate, with their index.
    pub unreported: Vec<(usize, SlotCounts)>,
    /// Kept locked until the ledger is removed: two recoveries at once
    /// (two processes starting on one spool) never both read it.
    _lock: File,
}

impl DeadLedger {
    /// The template event slot `slot` was written with, if any.
    pub(crate) fn template(&self, slot: usize) -> Option<Vec<u8>> {
        fs::read(template_path(&self.path, slot)).ok()
    }

    /// Removes the ledger and its templates (after its counts are spooled).
    pub(crate) fn remove(self) {
        if let Ok(read) = fs::read_dir(self.path.parent().unwrap_or(Path::new("."))) {
            let stem = self
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(SUFFIX))
                .map(|s| format!("{s}.slot"));
            for item in read.flatten() {
                let name = item.file_name();
                if let (Some(name), Some(stem)) = (name.to_str(), &stem)
                    && name.starts_with(stem.as_str())
                {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// The ledgers in `dir` whose process is gone (their lock is free), read.
/// A file that is not a ledger of this version is left alone.
pub(crate) fn dead_ledgers(dir: &Path) -> Vec<DeadLedger> {
    let mut out = Vec::new();
    for (path, file) in crate::spool::dead_process_files(dir, PREFIX, SUFFIX) {
        let Ok(bytes) = fs::read(&path) else { continue };
        if let Some((seed, unreported)) = parse(&bytes) {
            out.push(DeadLedger {
                path,
                seed,
                unreported,
                _lock: file,
            });
        } else if bytes.is_empty() {
            // Created but never sized: the process died in `create`.
            let _ = fs::remove_file(&path);
        }
    }
    out
}

/// The storm id seed and the slots (index, counts) with unreported folded
/// panics.
type Parsed = ((u64, u64), Vec<(usize, SlotCounts)>);

/// What a ledger file holds, or None for a file that is not a ledger of
/// this version.
fn parse(bytes: &[u8]) -> Option<Parsed> {
    let word = |i: usize| -> Option<u64> {
        let b = bytes.get(i * 8..i * 8 + 8)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    };
    if word(0)? != MAGIC || word(1)? != VERSION {
        return None;
    }
    let seed = (word(2)?, word(3)?);
    let slots = (bytes.len() / 8).saturating_sub(HEADER_WORDS) / SLOT_WORDS;
    let mut unreported = Vec::new();
    for slot in 0..slots {
        let base = HEADER_WORDS + slot * SLOT_WORDS;
        let counts = SlotCounts {
            key: word(base)?,
            folded: word(base + 1)?,
            reported: word(base + 2)?,
        };
        if counts.key != 0 && counts.folded > counts.reported {
            unreported.push((slot, counts));
        }
    }
    Some((seed, unreported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_ledger_reads_back_what_was_counted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = Ledger::create(dir.path(), 8, (7, 9)).unwrap();
            l.set_key(3, 42);
            l.folded(3, 190);
            l.reported(3, 40);
            l.set_key(5, 43);
            l.folded(5, 10);
            l.reported(5, 10);
            // Alive: its lock is held.
            assert!(dead_ledgers(dir.path()).is_empty());
        }
        let dead = dead_ledgers(dir.path());
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].seed, (7, 9));
        assert_eq!(
            dead[0].unreported,
            vec![(
                3,
                SlotCounts {
                    key: 42,
                    folded: 190,
                    reported: 40
                }
            )]
        );
    }

    #[test]
    fn garbage_is_not_a_ledger() {
        assert!(parse(b"").is_none());
        assert!(parse(&[0xff; 100]).is_none());
        let mut b = MAGIC.to_ne_bytes().to_vec();
        b.extend_from_slice(&VERSION.to_ne_bytes());
        assert!(parse(&b).is_none(), "cut header");
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(&b).map(|(_, u)| u.len()), Some(0));
    }
}
