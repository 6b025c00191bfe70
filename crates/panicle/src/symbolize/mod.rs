//! From a captured stack to schema frames: the panic machinery cut, names
//! demangled without hashes and qualified, paths made readable, in-app marked,
//! every frame with its address, module build-id and module offset.
//!
//! Symbolization runs once per address: addr2line over the executable's DWARF
//! (loaded at init on a background thread) plus the ELF symbol table, behind a
//! process-wide cache. The hook never waits on a lock: it reads the cache with
//! `try_read` and takes the loader with `try_lock`, giving up after a bounded
//! time and keeping the bare addresses (a server can symbolize them later).

mod classify;
mod debug_file;
mod foreign;
mod loader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use std::time::{Duration, Instant};

pub use classify::to_frames;
pub use foreign::{ForeignAddress, foreign_frames};
pub use loader::{is_warm, resolve_cold, warm_up};
pub use panicle_debuginfo::{MAX_FRAMES, RawFrame, clean_path};

use loader::{SYMBOLIZER, machinery_frames, resolve_one, symbolizer};

/// Where addresses get their names: `Symbolize` as a number, set by
/// `init` before the warm-up starts. `Auto` turns into `Server` when the
/// warm-up finds no debug info to load.
static MODE: AtomicU8 = AtomicU8::new(AUTO);
const AUTO: u8 = 0;
const LOCAL: u8 = 1;
const SERVER: u8 = 2;

/// Sets where addresses get their names (before `warm_up`).
pub fn set_mode(mode: crate::options::Symbolize) {
    use crate::options::Symbolize;
    let m = match mode {
        Symbolize::Auto => AUTO,
        Symbolize::Local => LOCAL,
        Symbolize::Server => SERVER,
    };
    MODE.store(m, Ordering::SeqCst);
}

/// True when the server names addresses: nothing is loaded or looked up here.
pub(crate) fn leaves_names_to_server() -> bool {
    MODE.load(Ordering::Relaxed) == SERVER
}

/// `Auto` found no debug info: the server names addresses from now on.
fn no_local_debug_info() {
    let _ = MODE.compare_exchange(AUTO, SERVER, Ordering::SeqCst, Ordering::SeqCst);
}

/// Most return addresses walked: the machinery and a deep stack fit.
const MAX_ADDRESSES: usize = 256;

/// Addresses the cache keeps before it starts over (bounds memory in a storm
/// of ever-new stacks, e.g. from a JIT or recursion at varying depth).
const CACHE_LIMIT: usize = 65_536;

/// How long a panic waits for the symbolizer (warm-up or another panicking
/// thread) before it ships bare addresses.
const WAIT_LIMIT: Duration = Duration::from_secs(3);

/// The return addresses of the current stack, innermost first. Unresolved:
/// a few microseconds.
#[inline(never)]
pub fn capture_addresses() -> Vec<usize> {
    let mut ips = Vec::with_capacity(64);
    let mut push = |f: &backtrace::Frame| {
        ips.push(f.ip() as usize);
        ips.len() < MAX_ADDRESSES
    };
    // SAFETY: on Linux and macOS the unwinder is thread-safe; the synchronized
    // variant takes the backtrace crate's global lock, which user code on
    // another thread may hold, and a hook must not wait on user locks.
    #[cfg(unix)]
    unsafe {
        backtrace::trace_unsynchronized(&mut push)
    };
    #[cfg(not(unix))]
    backtrace::trace(&mut push);
    ips
}

/// Captures the current stack, symbolized, inlined frames expanded, innermost first.
/// Never inlined, so its frames are the hook's own and named from the
/// machinery table like the rest of the hook.
#[inline(never)]
pub fn capture_raw() -> Vec<RawFrame> {
    resolve(&capture_addresses())
}

static CACHE: LazyLock<RwLock<HashMap<usize, Arc<[RawFrame]>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Forgets every cached address (benchmarks: a stack never seen before).
pub fn clear_cache() {
    if let Ok(mut cache) = CACHE.write() {
        cache.clear();
    }
}

/// Waits until `deadline` for the debug info and the name index the
/// warm-up loads: for work off the panic path (a crash record of an
/// earlier run) that can wait longer than a panic does. True when ready.
pub fn wait_ready(deadline: Instant) -> bool {
    leaves_names_to_server() || (symbolizer(deadline).is_some() && loader::names_ready())
}

/// Symbolizes addresses through the cache; misses are resolved and cached.
/// The panic machinery on top is named from the symbol table alone.
pub fn resolve(addresses: &[usize]) -> Vec<RawFrame> {
    if leaves_names_to_server() {
        return addresses.iter().map(|a| bare(*a)).collect();
    }
    // The machinery table comes with the name index: a panic during the
    // warm-up waits for it (bounded) rather than resolve those frames apart.
    if !loader::names_ready() {
        let _ = symbolizer(Instant::now() + WAIT_LIMIT);
    }
    let machinery = machinery_frames(addresses);
    let mut missing: Vec<usize> = Vec::new();
    let cached: Vec<Option<Arc<[RawFrame]>>> = match CACHE.try_read() {
        Ok(cache) => addresses
            .iter()
            .zip(&machinery)
            .map(|(a, m)| m.is_none().then(|| cache.get(a).cloned()).flatten())
            .collect(),
        Err(_) => vec![None; addresses.len()],
    };
    for ((a, c), m) in addresses.iter().zip(&cached).zip(&machinery) {
        if c.is_none() && m.is_none() {
            missing.push(*a);
        }
    }
    let resolved: HashMap<usize, Arc<[RawFrame]>> = if missing.is_empty() {
        HashMap::new()
    } else {
        resolve_uncached_batch(&missing)
    };
    let mut out = Vec::with_capacity(addresses.len() + 16);
    for ((a, c), m) in addresses.iter().zip(cached).zip(machinery) {
        if let Some(frame) = m {
            out.push(frame);
            continue;
        }
        match c.or_else(|| resolved.get(a).cloned()) {
            Some(frames) => out.extend(frames.iter().cloned()),
            None => out.push(bare(*a)),
        }
    }
    out
}

/// Resolves addresses with the loader and stores them in the cache; an
/// address it could not reach in time is left out (shipped bare, not cached).
fn resolve_uncached_batch(addresses: &[usize]) -> HashMap<usize, Arc<[RawFrame]>> {
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut out: HashMap<usize, Arc<[RawFrame]>> = HashMap::with_capacity(addresses.len());
    let symbolizer = symbolizer(deadline);
    let mut complete = true;
    if let Some(s) = symbolizer {
        let loader = loop {
            match s.loader.try_lock() {
                Ok(l) => break Some(l),
                Err(std::sync::TryLockError::Poisoned(p)) => break Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                Err(std::sync::TryLockError::WouldBlock) => break None,
            }
        };
        match loader {
            Some(loader) => {
                for &a in addresses {
                    out.entry(a)
                        .or_insert_with(|| resolve_one(s, &loader, a).into());
                }
            }
            None => complete = false,
        }
    } else {
        complete = SYMBOLIZER.get().is_some();
        for &a in addresses {
            out.entry(a).or_insert_with(|| vec![bare(a)].into());
        }
    }
    // Names resolved before the name index was built lack their crates:
    // shipped, not cached.
    let complete = complete && loader::names_ready();
    if complete && let Ok(mut cache) = CACHE.try_write() {
        if cache.len() + out.len() > CACHE_LIMIT {
            cache.clear();
        }
        for (a, f) in &out {
            cache.insert(*a, f.clone());
        }
    }
    out
}

fn bare(addr: usize) -> RawFrame {
    RawFrame::bare(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use classify::classify;
    use loader::{NAMES, names};
    use panicle_debuginfo::NameIndex;

    #[test]
    fn panic_machinery_on_top_is_named_without_dwarf() {
        use std::sync::Mutex;
        static CAPTURED: Mutex<Vec<RawFrame>> = Mutex::new(Vec::new());
        // Loads the symbolizer, then the name index (waiting for another
        // test's load in progress).
        let _ = capture_raw();
        if let Some(Some(s)) = loader::SYMBOLIZER.get() {
            let _ = NAMES.get_or_init(|| NameIndex::read(&s.debug_file));
        }
        assert!(names().knows_machinery());
        #[inline(never)]
        fn panicking_frame() {
            let none: Option<u32> = std::hint::black_box(None);
            none.unwrap();
        }
        // Other tests may panic meanwhile, on their own threads: theirs go
        // to the previous hook.
        let previous = Arc::new(std::panic::take_hook());
        let this_test = std::thread::current().id();
        let others = previous.clone();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != this_test {
                others(info);
            } else if let Ok(mut c) = CAPTURED.lock() {
                *c = capture_raw();
            }
        }));
        let _ = std::panic::catch_unwind(panicking_frame);
        drop(std::panic::take_hook());
        match Arc::try_unwrap(previous) {
            Ok(previous) => std::panic::set_hook(previous),
            Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
        }
        let raw = CAPTURED.lock().unwrap().clone();
        // Above the panicking frame, around this test's own hook closure.
        let from_table: Vec<&str> = raw
            .iter()
            .filter(|f| f.file.is_none())
            .filter_map(|f| f.function.as_deref())
            .take_while(|f| !f.ends_with("panicking_frame"))
            .collect();
        for expected in [
            "backtrace::",
            "std::panicking::",
            "core::panicking::panic_fmt",
            "core::option::unwrap_failed",
        ] {
            assert!(
                from_table.iter().any(|f| f.starts_with(expected)),
                "{expected} not named from the symbol table: {from_table:#?}"
            );
        }
        // The panicking frame itself still comes from DWARF, with its line.
        let user = raw
            .iter()
            .find(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|n| n.ends_with("panicking_frame"))
            })
            .expect("the panicking frame");
        assert!(
            user.file
                .as_deref()
                .is_some_and(|f| f.ends_with("symbolize/mod.rs"))
        );
        assert!(user.line.is_some());
    }

    #[test]
    fn this_binary_symbolizes_with_qualified_names() {
        #[inline(never)]
        fn probe_frame() -> Vec<RawFrame> {
            capture_raw()
        }
        let frames = probe_frame();
        let names: Vec<String> = frames.iter().filter_map(|f| f.function.clone()).collect();
        assert!(
            names
                .iter()
                .any(|n| n.ends_with("this_binary_symbolizes_with_qualified_names::probe_frame")),
            "{names:#?}"
        );
        assert!(
            names
                .iter()
                .all(|n| !n.contains("::h") || !n.ends_with(|c: char| c.is_ascii_hexdigit()))
        );
        let again = probe_frame();
        assert_eq!(
            frames.len(),
            again.len(),
            "the cache returns the same frames"
        );
        // The frame finished at resolution is the one made from scratch,
        // the options' overrides applied to both.
        assert!(frames.iter().any(|f| f.finished.is_some()));
        let options = Options {
            in_app_include: vec!["core::".into()],
            in_app_exclude: vec!["panicle::symbolize::tests".into()],
            ..Options::default()
        };
        let from_scratch: Vec<RawFrame> = frames
            .iter()
            .map(|f| RawFrame {
                finished: None,
                ..f.clone()
            })
            .collect();
        let cached = frames
            .into_iter()
            .map(|f| classify(f, &options))
            .collect::<Vec<_>>();
        let made = from_scratch
            .into_iter()
            .map(|f| classify(f, &options))
            .collect::<Vec<_>>();
        assert_eq!(cached, made);
        assert!(cached.iter().any(|f| f.in_app == Some(true)));
        assert!(cached.iter().any(|f| f.in_app == Some(false)));
    }
}
