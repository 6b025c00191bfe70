//! Deaths a panic hook never sees: SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT
//! and a stack overflow (std's SIGSEGV on the guard page). On Linux `init`
//! installs handlers that write a small crash record into the spool and let
//! the process die by its signal; the next start (or `panicle spool send`)
//! turns the record into an event of kind `signal`.
//!
//! - `record`: the record's format, written without allocating, parsed back.
//! - `handler`: the handler itself (async-signal-safe, Linux only).
//! - `recover`: records to events, symbolized against this executable when
//!   the build-id matches.

#[cfg(target_os = "linux")]
mod handler;
mod record;
mod recover;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use panicle_protocol::Event;

use crate::context::Resource;
use crate::modules;
use crate::options::Options;

pub use recover::{is_tmp_record, recover_dir};

/// Records are `signal-<unix nanos>-<pid>-<tid>.crash` in the spool
/// directory: the sender ignores them (not `.json`), recovery finds them.
/// (`.signal-<pid>-<tid>.tmp` while the handler writes the head: the spool
/// never deletes those as stale, recovery takes them too.)
pub const RECORD_PREFIX: &str = "signal-";
pub const RECORD_SUFFIX: &str = ".crash";

/// The signal's name, as `panicle run` tags a signal death.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// What the signal means, in a few words.
pub fn signal_description(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "segmentation fault: an invalid memory access",
        libc::SIGBUS => "bus error: a misaligned or unmapped memory access",
        libc::SIGILL => "illegal instruction",
        libc::SIGFPE => "arithmetic fault",
        libc::SIGABRT => "aborted",
        _ => "killed",
    }
}

/// The record's lines known at init: the executable, the release, the
/// resource of this process, and where every module is loaded.
fn static_part(options: &Options, resource: &Resource) -> Vec<u8> {
    let exe = modules::main_module().map(|m| m.path.to_string_lossy().into_owned());
    let release = options.release.clone().or_else(|| {
        let service = resource.get("service.name")?;
        let version = resource.get("service.version")?;
        Some(format!("{service}@{version}"))
    });
    let map: serde_json::Map<String, serde_json::Value> = resource
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mods: Vec<record::RecordModule> = modules::modules()
        .iter()
        .map(|m| record::RecordModule {
            start: m.start,
            end: m.end,
            bias: m.bias,
            build_id: m.build_id.clone(),
            path: m.path.to_string_lossy().into_owned(),
        })
        .collect();
    record::static_part(exe.as_deref(), release.as_deref(), &map, &mods)
}

/// Installs the handlers, records going to `dir`. Linux only; elsewhere
/// (and when the directory cannot be opened) nothing is installed.
pub(crate) fn install(dir: &Path, options: &Options, resource: &Resource) {
    #[cfg(target_os = "linux")]
    if let Err(e) = handler::install(dir, static_part(options, resource)) {
        eprintln!(
            "panicle: signal handlers not installed (spool {}): {e}",
            dir.display()
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (dir, options, resource);
}

/// Recoveries in progress (a background thread each): `flush` waits for them.
static RECOVERING: AtomicUsize = AtomicUsize::new(0);

/// Turns the records an earlier process left in `dir` into events handed to
/// `store` (true: stored, the record may go), on a background thread
/// (symbolizing waits, briefly, for debug info).
pub(crate) fn recover_in_background(
    dir: &Path,
    options: &Options,
    resource: &Resource,
    store: impl Fn(Event) -> bool + Send + 'static,
) {
    if recover::pending(dir).is_empty() {
        return;
    }
    let (dir, options, resource) = (dir.to_path_buf(), options.clone(), resource.clone());
    RECOVERING.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("panicle-recover".into())
        .spawn(move || {
            struct Done;
            impl Drop for Done {
                fn drop(&mut self) {
                    RECOVERING.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done;
            recover_dir(&dir, &options, &resource, store);
        });
    if spawned.is_err() {
        RECOVERING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// True when no recovery is in progress.
pub(crate) fn recovered() -> bool {
    RECOVERING.load(Ordering::SeqCst) == 0
}

/// Waits until recoveries in progress handed their events over, or
/// `deadline`; true when none is left.
pub(crate) fn wait_recovered(deadline: Instant) -> bool {
    while RECOVERING.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}
