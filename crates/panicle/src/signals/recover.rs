//! From crash records left in the spool to events: found at the next start
//! (or by `panicle spool send`), symbolized when this process runs the
//! executable that crashed, handed over, then deleted.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// How long recovery waits for this executable's debug info (off the panic
/// path: a crash record is worth a longer wait than a panic).
const SYMBOLIZE_WAIT: Duration = Duration::from_secs(30);

/// The records in `dir`, oldest first.
pub fn pending(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(RECORD_PREFIX) && name.ends_with(RECORD_SUFFIX)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Turns every record in `dir` into an event handed to `submit`, deleting
/// each record once handed over (a record that is not one is deleted with a
/// word on stderr). Returns how many events were made.
pub fn recover_dir(
    dir: &Path,
    options: &Options,
    resource: &Resource,
    mut submit: impl FnMut(Event),
) -> usize {
    let mut made = 0;
    for path in pending(dir) {
        let parsed = fs::File::open(&path).and_then(|f| {
            use std::io::Read;
            let mut bytes = Vec::new();
            f.take(MAX_RECORD_BYTES).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let Ok(bytes) = parsed else { continue };
        match Record::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(record) => {
                submit(to_event(&record, options, resource));
                made += 1;
            }
            Err(e) => eprintln!("panicle: {} dropped: {e}", path.display()),
        }
        let _ = fs::remove_file(&path);
    }
    made
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
pub fn to_event(record: &Record, options: &Options, resource: &Resource) -> Event {
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
    let addresses = addresses(record);
    let main_here = addresses.iter().any(|a| {
        a.local
            .is_some_and(|l| modules::main_module().is_some_and(|m| l >= m.start && l < m.end))
    });
    if main_here {
        symbolize::warm_up();
        symbolize::wait_ready(Instant::now() + SYMBOLIZE_WAIT);
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
    use crate::signals::record::RecordModule;

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
        let event = to_event(&record, &Options::default(), &Resource::default());
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
            to_event(&record, &Options::default(), &Resource::default()).event_id
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
        let event = to_event(&record, &Options::default(), &Resource::default());
        assert_eq!(event.message, "thread 'main' has overflowed its stack");
        assert_eq!(event.tags["death"], "stack_overflow");
        assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
    }
}
