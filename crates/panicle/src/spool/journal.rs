//! The hook's journal: where a panicking thread puts its event, so that the
//! hook copies it into memory it already has instead of creating and
//! renaming a file in the spool directory. Those directory operations (and
//! even a `pwrite`, which updates the file's mtime) wait for the file
//! system's journal commits, which the sender's own creates and deletes
//! cause: that made the hook's slowest panics take milliseconds.
//!
//! One file per process, `hook-<pid>-<nanos>.journal` in the spool, of
//! [`JOURNAL_BYTES`], mapped shared and written through once at creation (so
//! the hook's stores meet pages that are already allocated and dirty), held
//! under an exclusive `flock` while the process lives, like the storm ledger.
//! The hook reserves room for a record with one compare-and-swap, copies the
//! record in and hands the event to the sender, which sends it from memory
//! and zeroes the record once the server has it (or, when the journal fills
//! up, writes it out as an ordinary spool file first). When the last record
//! is gone, records start again at the beginning. A process that dies first
//! leaves its records in the file; the next start (or `panicle spool send`)
//! turns them into spool files.
//!
//! Guarantees are the spool file's: the page cache outlives the process
//! (abort, `process::exit`, SIGKILL), not the node (`spool_fsync` adds an
//! `msync` of the record to the hook's write). A record torn by a kill in
//! the middle of its copy fails its checksum and is dropped, as a
//! half-written `.tmp` file is. A process killed after the sender wrote the
//! file but before it zeroed the record leaves both: recovery skips a record
//! whose file is still there, and one already shipped is shipped again and
//! deduplicated by the server (by event id).
//!
//! Record layout, at a multiple of [`ALIGN`] (little-endian u32s): magic,
//! record length, CRC-32 of the rest, name length; then the spool file name,
//! then the event JSON. The magic holds control bytes that serialized JSON
//! never contains, so no event's text can pass for a record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Spool, event_id_of};

const MAGIC: [u8; 4] = [0x01, b'P', b'J', 0x01];
const HEADER: usize = 16;
/// Records start at multiples of this, so recovery finds each one.
const ALIGN: usize = 256;
/// Room for about 500 typical events (6–8 KB) in flight at once; past it the
/// hook writes spool files itself.
pub(crate) const JOURNAL_BYTES: usize = 4 * 1024 * 1024;
const PREFIX: &str = "hook-";
const SUFFIX: &str = ".journal";

/// Where a record lies in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    offset: usize,
    len: usize,
}

/// This process's journal, mapped.
pub(crate) struct Journal {
    path: PathBuf,
    /// Holds the lock (and the mapping's file) for the life of the process.
    _file: File,
    map: *mut u8,
    /// A forked child shares the mapping (and the lock) but not `state`:
    /// it writes spool files instead.
    pid: u32,
    /// Where the next record goes (low 32 bits) and how many records are
    /// in (high 32 bits): one word, so that the return to the beginning when
    /// the last record goes cannot race a reservation.
    state: AtomicU64,
    /// Set at exit when the journal is removed: later panics write files.
    closed: AtomicBool,
    fsync: bool,
}

// SAFETY: threads only ever write disjoint ranges of the mapping (each its
// own reservation), and the mapping lives as long as the journal.
unsafe impl Send for Journal {}
unsafe impl Sync for Journal {}

fn aligned(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

fn unpack(state: u64) -> (usize, u64) {
    ((state & 0xffff_ffff) as usize, state >> 32)
}

fn pack(head: usize, live: u64) -> u64 {
    (live << 32) | head as u64
}

impl Journal {
    /// Creates this process's journal in `dir`, written through once.
    pub(crate) fn create(dir: &Path, fsync: bool) -> io::Result<Journal> {
        let pid = std::process::id();
        let path = dir.join(format!("{PREFIX}{pid}-{}{SUFFIX}", super::unix_nanos()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let fail = |e: io::Error| {
            let _ = fs::remove_file(&path);
            e
        };
        // SAFETY: our own descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        // Allocated now, not at the first panic.
        file.write_all(&vec![0; JOURNAL_BYTES]).map_err(fail)?;
        // SAFETY: a shared mapping of a file we own, sized above.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                JOURNAL_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(fail(io::Error::last_os_error()));
        }
        let journal = Journal {
            path,
            _file: file,
            map: map.cast(),
            pid,
            state: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            fsync,
        };
        // Touch every page through the mapping: the hook's first store to
        // a page then neither faults nor waits for the file system.
        for page in (0..JOURNAL_BYTES).step_by(4096) {
            journal.copy_in(page, &[0]);
        }
        Ok(journal)
    }

    /// Copies `bytes` into the mapping at `offset`.
    fn copy_in(&self, offset: usize, bytes: &[u8]) {
        if offset.saturating_add(bytes.len()) > JOURNAL_BYTES {
            return;
        }
        // SAFETY: in bounds (checked above); the range is this caller's
        // reservation, which no other thread writes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.add(offset), bytes.len()) };
    }

    /// Puts one event's record (`name` is its spool file name) into the
    /// journal. None when it does not fit in what is free, this is a forked
    /// child, or the journal is closed: the caller writes the spool file.
    pub(crate) fn append(&self, name: &str, json: &[u8]) -> Option<Record> {
        if std::process::id() != self.pid {
            return None;
        }
        let used = HEADER + name.len() + json.len();
        let len = aligned(used);
        let mut state = self.state.load(Ordering::SeqCst);
        let offset = loop {
            let (head, live) = unpack(state);
            if head + len > JOURNAL_BYTES {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                pack(head + len, live + 1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break head,
                Err(now) => state = now,
            }
        };
        let record = Record { offset, len };
        // Paired with `close_if_empty`: either it sees this record, or
        // this sees the journal closed.
        if self.closed.load(Ordering::SeqCst) {
            self.release(record);
            return None;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(name.as_bytes());
        crc.update(json);
        let mut head = [0u8; HEADER];
        head[4..8].copy_from_slice(&(used as u32).to_le_bytes());
        head[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
        head[12..16].copy_from_slice(&(name.len() as u32).to_le_bytes());
        self.copy_in(offset + HEADER, name.as_bytes());
        self.copy_in(offset + HEADER + name.len(), json);
        self.copy_in(offset, &head);
        self.copy_in(offset, &MAGIC);
        if self.fsync {
            let page = offset / 4096 * 4096;
            // SAFETY: a page-aligned range inside the mapping.
            unsafe {
                libc::msync(
                    self.map.add(page).cast(),
                    (offset + len - page).min(JOURNAL_BYTES - page),
                    libc::MS_SYNC,
                )
            };
        }
        Some(record)
    }

    /// The record's event is a spool file now (or the server has it): the
    /// record is zeroed, and when it was the last one, records start at the
    /// beginning again.
    pub(crate) fn release(&self, record: Record) {
        if record.offset.saturating_add(record.len) > JOURNAL_BYTES {
            return;
        }
        // SAFETY: in bounds (checked above); the record is ours to clear.
        unsafe { std::ptr::write_bytes(self.map.add(record.offset), 0, record.len) };
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
                let (head, live) = unpack(state);
                let live = live.saturating_sub(1);
                Some(pack(if live == 0 { 0 } else { head }, live))
            });
    }

    /// Bytes from the beginning to the end of the newest record.
    pub(crate) fn used(&self) -> usize {
        unpack(self.state.load(Ordering::SeqCst)).0
    }

    /// At exit: removes the journal when it holds no record (every event
    /// is a spool file), and closes it to later panics either way.
    pub(crate) fn close_if_empty(&self) {
        if std::process::id() != self.pid {
            return;
        }
        self.closed.store(true, Ordering::SeqCst);
        if unpack(self.state.load(Ordering::SeqCst)).1 == 0 {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`; nothing outlives self.
        unsafe { libc::munmap(self.map.cast(), JOURNAL_BYTES) };
    }
}

/// Turns the records that dead processes left in their journals into
/// spool files (skipping any whose file is there already), then removes
/// those journals. A journal whose lock is held belongs to a live process
/// (or to another process recovering it) and is left alone. Returns how
/// many events were written.
pub(crate) fn recover(spool: &Spool) -> usize {
    let mut written = 0;
    for (path, file) in super::dead_process_files(spool.dir(), PREFIX, SUFFIX) {
        let mut complete = true;
        for (name, json) in records(&file) {
            if spool.dir().join(&name).exists() {
                continue;
            }
            match spool.write_named(&name, &json) {
                Ok(_) => written += 1,
                Err(e) => {
                    eprintln!(
                        "panicle: a dead process's journal `{}` stays: {e}",
                        path.display()
                    );
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            let _ = fs::remove_file(&path);
        }
    }
    written
}

/// Every record in the journals in `dir`, live processes' included.
pub(crate) fn journaled_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        .filter_map(|e| File::open(e.path()).ok())
        .flat_map(|f| records(&f))
        .collect()
}

/// The valid records of a journal file: (spool file name, event JSON).
fn records(file: &File) -> Vec<(String, Vec<u8>)> {
    let mut bytes = Vec::new();
    if io::Read::read_to_end(&mut &*file, &mut bytes).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + HEADER <= bytes.len() {
        match record_at(&bytes[offset..]) {
            Some((name, json, len)) => {
                out.push((name, json));
                offset += aligned(len);
            }
            None => offset += ALIGN,
        }
    }
    out
}

/// The record at the start of `bytes`: name, JSON and length.
fn record_at(bytes: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let word = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    if bytes.get(..4)? != MAGIC {
        return None;
    }
    let (len, crc, name_len) = (word(4)?, word(8)?, word(12)?);
    let body = bytes.get(HEADER..len)?;
    if name_len > body.len() || crc32fast::hash(body) as usize != crc {
        return None;
    }
    let (name, json) = body.split_at(name_len);
    let name = std::str::from_utf8(name).ok()?;
    // Only a spool file name: never a path out of the spool.
    (event_id_of(name).is_some() && !name.contains('/'))
        .then(|| (name.to_string(), json.to_vec(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &Path) -> Spool {
        Spool::open(dir, false, 1 << 30, 100_000).unwrap()
    }

    fn names(spool: &Spool) -> Vec<String> {
        spool
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    const A: &str = "00000000000000000001-a.json";
    const B: &str = "00000000000000000002-b.json";
    const C: &str = "00000000000000000003-c.json";

    #[test]
    fn a_dead_processs_records_become_spool_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let journal = Journal::create(dir.path(), false).unwrap();
        journal.append(A, b"{\"a\":1}").unwrap();
        let b = journal.append(B, b"{\"b\":2}").unwrap();
        journal.append(C, b"{\"c\":3}").unwrap();
        // b became a file and left the journal; c became a file, and the
        // process died before its record was cleared.
        spool.write_named(B, b"{\"b\":2}").unwrap();
        journal.release(b);
        spool.write_named(C, b"{\"c\":3}").unwrap();
        // Alive: its lock is held, nothing is recovered.
        assert_eq!(recover(&spool), 0);
        drop(journal);
        assert_eq!(recover(&spool), 1);
        assert_eq!(names(&spool), [A, B, C]);
        assert_eq!(fs::read(dir.path().join(A)).unwrap(), b"{\"a\":1}");
        // The journal is gone: a second recovery finds nothing.
        assert_eq!(recover(&spool), 0);
        assert!(
            fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(SUFFIX))
        );
    }

    #[test]
    fn torn_released_and_foreign_records_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let journal = Journal::create(dir.path(), false).unwrap();
        let torn = journal.append(A, b"{\"torn\":true}").unwrap();
        journal
            .append("../00000000000000000002-e.json", b"{}")
            .unwrap();
        let released = journal.append(C, b"{}").unwrap();
        journal.release(released);
        // A kill in the middle of the copy: the tail never landed.
        journal.copy_in(torn.offset + HEADER + A.len() + 3, b"XX");
        drop(journal);
        assert_eq!(recover(&spool), 0);
        assert!(names(&spool).is_empty());
    }

    #[test]
    fn a_full_or_closed_journal_leaves_the_file_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), false).unwrap();
        let json = vec![b' '; 6000];
        let mut records = Vec::new();
        while let Some(r) = journal.append(A, &json) {
            records.push(r);
        }
        assert_eq!(
            records.len(),
            JOURNAL_BYTES / aligned(HEADER + A.len() + 6000)
        );
        // Space comes back once every record is out.
        for r in &records[1..] {
            journal.release(*r);
        }
        assert_eq!(journal.append(A, &json), None);
        journal.release(records[0]);
        assert_eq!(journal.append(A, &json).map(|r| r.offset), Some(0));
        // A record left: closing keeps the file for recovery.
        journal.close_if_empty();
        assert!(journal.path.exists());
        assert_eq!(journal.append(A, b"{}"), None);
        journal.release(Record {
            offset: 0,
            len: aligned(HEADER + A.len() + 6000),
        });
        journal.close_if_empty();
        assert!(!journal.path.exists());
    }
}
