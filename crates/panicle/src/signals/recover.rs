//! From crash records left in the spool to events: found at the next start
//! (or by `panicle spool send`), symbolized when this process runs the
//! executable that crashed, written to the spool, then deleted: a record
//! goes only once its event is stored.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use panicle_protocol::{Event, Kind, Platform, Sdk, Thread};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::record::Record;
use super::{RECORD_PREFIX, RECORD_SUFFIX, signal_description, signal_name};
use crate::context::Resource;
use crate::modules;
use crate::options::Options;
use crate::symbolize::{self, ForeignAddress};

/// Largest record read; a bigger file is not one of ours.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// How long recovery waits for this executable's debug info. Short: in a
/// crash loop the process may not live longer than this, and the record
/// must become an event before it dies again (unsymbolized frames carry
/// build-id and offset for the server).
const SYMBOLIZE_WAIT: Duration = Duration::from_secs(2);

/// `SYMBOLIZE_WAIT`, or `PANICLE_RECOVER_SYMBOLIZE_WAIT_MS` where a slow
/// start (a large debug build on a loaded machine) needs longer for names.
fn symbolize_wait() -> Duration {
    std::env::var("PANICLE_RECOVER_SYMBOLIZE_WAIT_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(SYMBOLIZE_WAIT, Duration::from_millis)
}

/// A record cut short (no `end`) whose writer is alive and that is younger
/// than this may still be being written: left for a later recovery.
const WRITING_GRACE: Duration = Duration::from_secs(30);

/// Prefix of a record whose head the handler is writing (renamed to its
/// final name before the stack walk). One left behind (the process died
/// between the two) is recovered like a record.
const TMP_PREFIX: &str = ".signal-";
const TMP_SUFFIX: &str = ".tmp";

/// True for the name of a record that a handler did not get to rename.
pub fn is_tmp_record(name: &str) -> bool {
    name.starts_with(TMP_PREFIX) && name.ends_with(TMP_SUFFIX)
}

/// The records in `dir`, oldest first (regular files only: a FIFO under a
/// record's name would block the read).
pub fn pending(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let record = (name.starts_with(RECORD_PREFIX) && name.ends_with(RECORD_SUFFIX))
                || is_tmp_record(&name);
            record && e.metadata().is_ok_and(|m| m.is_file())
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// True when process `pid` exists (and is not this one).
fn alive(pid: i32) -> bool {
    if pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A record cut short by a writer that is still running and wrote it a
/// moment ago: its handler is likely still at it.
fn being_written(record: &Record, modified: Option<SystemTime>) -> bool {
    !record.complete
        && alive(record.pid)
        && modified
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age < WRITING_GRACE)
}

fn read_record(path: &Path) -> std::io::Result<(Vec<u8>, Option<SystemTime>)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(MAX_RECORD_BYTES).read_to_end(&mut bytes)?;
    Ok((bytes, meta.modified().ok()))
}

/// Turns every record in `dir` into an event handed to `store`, which
/// returns true once the event is stored (written to the spool). A record
/// is deleted only then; one `store` refused stays for the next recovery.
/// A record cut short is shipped as far as it goes; a file that is not a
/// record is deleted with a word on stderr. Returns how many events were
/// stored.
pub fn recover_dir(
    dir: &Path,
    options: &Options,
    resource: &Resource,
    mut store: impl FnMut(Event) -> bool,
) -> usize {
    let mut made = 0;
    for mut path in pending(dir) {
        let Ok((bytes, modified)) = read_record(&path) else {
            continue;
        };
        match Record::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(record) if being_written(&record, modified) => continue,
            Ok(record) => {
                let retried = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(RETRY_SUFFIX));
                // Marked before any wait for debug info: if this process
                // dies during it (a crash loop), the next one does not wait.
                if !retried && let Some(tried) = mark_tried(&path) {
                    path = tried;
                }
                let wait = if retried {
                    Duration::ZERO
                } else {
                    symbolize_wait()
                };
                if !store(to_event(&record, options, resource, wait)) {
                    continue;
                }
                made += 1;
            }
            Err(e) => {
                // A handler's head not written yet: not junk.
                if alive_writer_of_tmp(&path, modified) {
                    continue;
                }
                eprintln!("panicle: {} dropped: {e}", path.display());
            }
        }
        let _ = fs::remove_file(&path);
    }
    made
}

/// A record's name once a recovery started on it (it may die waiting for
/// debug info): `signal-…-<tid>.retry.crash`.
const RETRY_SUFFIX: &str = ".retry.crash";

/// Renames a record to its tried name; the new path, or None when it could
/// not be renamed (then the old one stands).
fn mark_tried(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let stem = name
        .strip_suffix(RECORD_SUFFIX)
        .or_else(|| name.strip_suffix(TMP_SUFFIX))?;
    let stem = stem.strip_prefix('.').unwrap_or(stem);
    let to = path.with_file_name(format!("{stem}{RETRY_SUFFIX}"));
    fs::rename(path, &to).ok()?;
    Some(to)
}

/// An unparsable `.signal-<pid>-<tid>.tmp` of a live process written a
/// moment ago: its handler is writing the head.
fn alive_writer_of_tmp(path: &Path, modified: Option<SystemTime>) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    let Some(pid) = name
        .strip_prefix(TMP_PREFIX)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    alive(pid)
        && modified
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age < WRITING_GRACE)
}

/// The event id of a record: derived from the crashed thread and the
/// moment, so two processes recovering one record (sharing a spool) make
/// one event, which the server stores once.
fn event_id(record: &Record) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&record.time_ns.to_be_bytes());
    bytes[8..12].copy_from_slice(&record.pid.to_be_bytes());
    bytes[12..].copy_from_slice(&record.tid.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn timestamp(time_ns: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(crate::capture::now_rfc3339)
}

/// The record's stack as addresses of this process where the module that
/// holds them is loaded here with the same build-id.
fn addresses(record: &Record) -> Vec<ForeignAddress> {
    let local_modules = modules::modules();
    record
        .crash_frames()
        .into_iter()
        .enumerate()
        .map(|(i, addr)| {
            let module = record.module_of(addr);
            let local = module.and_then(|m| {
                let here = local_modules
                    .iter()
                    .find(|l| l.build_id.is_some() && l.build_id == m.build_id)?;
                Some(here.bias.wrapping_add(addr.wrapping_sub(m.bias)))
            });
            ForeignAddress {
                addr,
                local,
                exact: i == 0,
                build_id: module.and_then(|m| m.build_id.clone()),
                module_offset: module.map(|m| addr.wrapping_sub(m.bias)),
            }
        })
        .collect()
}

/// The event of a record: kind `signal`, the signal's name as
/// `process.signal_name` (as `panicle run` names a signal death), a stack
/// overflow said so (`death: stack_overflow`, std's wording), the faulting
/// address and the crashed process's resource and release.
/// Waits at most `wait` for this executable's debug info; past it the
/// frames ship unsymbolized (with build-id and offset).
pub fn to_event(record: &Record, options: &Options, resource: &Resource, wait: Duration) -> Event {
    let name = signal_name(record.signal);
    // Rust's main thread is the process's first: the kernel names it after
    // the executable, std calls it `main`.
    let thread = if record.tid != 0 && record.tid == record.pid {
        Some("main".to_string())
    } else {
        record.thread.clone()
    };
    let overflow = record.is_stack_overflow();
    let message = if overflow {
        format!(
            "thread '{}' has overflowed its stack",
            thread.as_deref().unwrap_or("<unknown>")
        )
    } else {
        format!("killed by {name} ({})", signal_description(record.signal))
    };
    let mut event = Event::new(event_id(record), timestamp(record.time_ns), message);
    event.platform = Some(Platform::Rust);
    event.kind = Some(Kind::Signal);
    event.thread = Some(Thread {
        name: thread,
        id: (record.tid != 0).then(|| record.tid.to_string()),
    });
    let mut addresses = addresses(record);
    let main_here = addresses.iter().any(|a| {
        a.local
            .is_some_and(|l| modules::main_module().is_some_and(|m| l >= m.start && l < m.end))
    });
    if main_here {
        symbolize::warm_up();
        if !symbolize::wait_ready(Instant::now() + wait) {
            // Not ready in time: resolving would wait again. Bare frames.
            for a in &mut addresses {
                a.local = None;
            }
        }
    }
    event.frames = symbolize::foreign_frames(&addresses, options);
    event.resource = if record.resource.is_empty() {
        resource.attributes.clone()
    } else {
        record
            .resource
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    event.release = record.release.clone().or_else(|| options.release.clone());
    event
        .tags
        .insert("process.signal_name".into(), name.to_string());
    event
        .tags
        .insert("process.signal".into(), record.signal.to_string());
    if overflow {
        event
            .tags
            .insert("death".into(), "stack_overflow".to_string());
    }
    event.extra.insert(
        "signal".into(),
        json!({
            "number": record.signal,
            "code": record.code,
            "fault_address": format!("{:#x}", record.fault_address),
            "pid": record.pid,
            "record_complete": record.complete,
        }),
    );
    if let Some(exe) = &record.exe {
        event
            .extra
            .insert("executable".into(), Value::String(exe.clone()));
    }
    event.sdk = Some(Sdk {
        name: "panicle".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    });
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::record::{self, Dynamic, RecordModule};

    /// A record's head as the handler writes it before the stack walk.
    fn head(pid: i32, signal: i32) -> Vec<u8> {
        let mut out = Vec::new();
        record::write_head(
            &mut out,
            &Dynamic {
                signal,
                code: 1,
                fault_address: 0x10,
                pc: 0x5555_0000_1234,
                sp: 0x7ffc_0000_1000,
                pid,
                tid: pid,
                thread: b"svc",
                time_ns: 1_767_225_600_000_000_000,
            },
        );
        out
    }

    fn complete(pid: i32) -> Vec<u8> {
        let mut out = head(pid, libc::SIGBUS);
        record::write_frames(&mut out, &[0x5555_0000_1234, 0x5555_0000_2000]);
        out.extend_from_slice(record::END);
        out
    }

    /// A pid no process has: a child that ran and was reaped.
    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id() as i32
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    fn recover(dir: &Path, stored: bool) -> Vec<Event> {
        let mut events = Vec::new();
        recover_dir(dir, &Options::default(), &Resource::default(), |e| {
            events.push(e);
            stored
        });
        events
    }

    #[test]
    fn a_record_cut_after_its_head_or_left_as_tmp_is_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dead_pid();
        fs::write(
            dir.path().join("signal-1-2-3.crash"),
            head(pid, libc::SIGSEGV),
        )
        .unwrap();
        // The handler died between writing the head and renaming it.
        let tmp = format!(".signal-{pid}-{pid}.tmp");
        fs::write(dir.path().join(&tmp), head(pid, libc::SIGILL)).unwrap();
        let events = recover(dir.path(), true);
        let mut signals: Vec<_> = events
            .iter()
            .map(|e| e.tags["process.signal_name"].clone())
            .collect();
        signals.sort();
        assert_eq!(signals, ["SIGILL", "SIGSEGV"]);
        for e in &events {
            assert_eq!(e.extra["signal"]["record_complete"], false);
            assert_eq!(e.frames.len(), 1);
            assert_eq!(
                e.frames[0].instruction_addr.as_deref(),
                Some("0x555500001234")
            );
        }
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn a_record_whose_event_was_not_stored_stays() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("signal-1-2-3.crash"), complete(dead_pid())).unwrap();
        assert_eq!(recover(dir.path(), false).len(), 1);
        // Kept, marked as tried: the next recovery does not wait for debug
        // info again (a crash loop ships it).
        assert_eq!(names(dir.path()), ["signal-1-2-3.retry.crash"]);
        let again = recover(dir.path(), true);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].tags["process.signal_name"], "SIGBUS");
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_cut_record_of_a_live_process_written_just_now_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let parent = std::os::unix::process::parent_id() as i32;
        fs::write(dir.path().join("signal-1-2-3.crash"), head(parent, 11)).unwrap();
        let tmp = format!(".signal-{parent}-{parent}.tmp");
        fs::write(dir.path().join(&tmp), b"panicle-sig").unwrap();
        fs::write(dir.path().join("signal-4-5-6.crash"), complete(parent)).unwrap();
        let events = recover(dir.path(), true);
        assert_eq!(events.len(), 1, "only the complete one");
        assert_eq!(events[0].tags["process.signal_name"], "SIGBUS");
        assert_eq!(names(dir.path()), [tmp.as_str(), "signal-1-2-3.crash"]);
    }

    #[test]
    fn a_fifo_under_a_record_name_does_not_block_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("signal-0-0-0.crash");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        fs::write(dir.path().join("signal-1-2-3.crash"), complete(dead_pid())).unwrap();
        assert_eq!(recover(dir.path(), true).len(), 1);
        assert_eq!(names(dir.path()), ["signal-0-0-0.crash"]);
    }

    #[test]
    fn a_record_of_another_build_ships_bare_addresses_with_offsets() {
        let record = Record {
            signal: libc::SIGSEGV,
            code: 1,
            fault_address: 0x10,
            pc: 0x5000_1010,
            sp: 0x7ff0_0000,
            pid: 40,
            tid: 41,
            thread: Some("worker-1".into()),
            time_ns: 1_767_225_600_000_000_000,
            frames: vec![0x9000, 0x5000_1010, 0x5000_2222, 0x7000_0000],
            modules: vec![RecordModule {
                start: 0x5000_0000,
                end: 0x5001_0000,
                bias: 0x4fff_0000,
                build_id: Some("00ff".into()),
                path: "/srv/other".into(),
            }],
            resource: [("service.name".to_string(), Value::from("other"))]
                .into_iter()
                .collect(),
            release: Some("other@1.0.0".into()),
            complete: true,
            ..Record::default()
        };
        let event = to_event(
            &record,
            &Options::default(),
            &Resource::default(),
            SYMBOLIZE_WAIT,
        );
        assert_eq!(event.kind, Some(Kind::Signal));
        assert_eq!(event.platform, Some(Platform::Rust));
        assert_eq!(
            event.message,
            "killed by SIGSEGV (segmentation fault: an invalid memory access)"
        );
        assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
        assert!(!event.tags.contains_key("death"));
        let thread = event.thread.clone().unwrap();
        assert_eq!(thread.name.as_deref(), Some("worker-1"));
        assert_eq!(thread.id.as_deref(), Some("41"));
        assert_eq!(event.timestamp, "2026-01-01T00:00:00Z");
        assert_eq!(event.release.as_deref(), Some("other@1.0.0"));
        assert_eq!(event.resource_str("service.name"), Some("other"));
        assert_eq!(event.extra["signal"]["fault_address"], "0x10");
        // Cut at pc; unknown to this process: bare, with build-id and offset
        // where the record knows the module.
        let addrs: Vec<_> = event
            .frames
            .iter()
            .map(|f| f.instruction_addr.clone().unwrap())
            .collect();
        assert_eq!(addrs, ["0x50001010", "0x50002222", "0x70000000"]);
        assert!(event.frames.iter().all(|f| f.function.is_none()));
        assert_eq!(event.frames[0].build_id.as_deref(), Some("00ff"));
        assert_eq!(event.frames[0].module_offset.as_deref(), Some("0x11010"));
        assert_eq!(event.frames[2].build_id, None);
        // The id is the record's: recovering it twice makes one event.
        assert_eq!(
            event.event_id,
            to_event(
                &record,
                &Options::default(),
                &Resource::default(),
                SYMBOLIZE_WAIT
            )
            .event_id
        );
    }

    #[test]
    fn the_main_thread_overflowing_its_stack_says_so() {
        let record = Record {
            signal: libc::SIGSEGV,
            code: 2,
            fault_address: 0x7ff0_0000 - 0x40,
            sp: 0x7ff0_0000,
            pid: 7,
            tid: 7,
            thread: Some("my-service".into()),
            ..Record::default()
        };
        let event = to_event(
            &record,
            &Options::default(),
            &Resource::default(),
            SYMBOLIZE_WAIT,
        );
        assert_eq!(event.message, "thread 'main' has overflowed its stack");
        assert_eq!(event.tags["death"], "stack_overflow");
        assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
    }
}
