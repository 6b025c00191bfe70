//! The executable's debug info: loaded once on a background thread (with
//! the symbol table's name index), walked unit by unit so no first lookup
//! falls on a panic, and asked for the inline chain at one address.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::classify::finish;
use super::demangle::clean_symbol;
use super::names::NameIndex;
use super::qualify::qualify_inlined;
use super::{CACHE, RawFrame, bare, capture_addresses, capture_raw, resolve_uncached_batch};
use crate::modules::{self, Module};

/// Functions looked up per hold of the loader lock during the warm-up.
pub(super) const WARM_CHUNK: usize = 256;

/// Bound of the warm-up's work on a huge executable.
pub(super) const MAX_WARM_FUNCTIONS: usize = 500_000;

/// The executable's debug info, its symbol names by last path segment, and
/// where it is mapped.
pub(super) struct Symbolizer {
    pub(super) loader: Mutex<addr2line::Loader>,
    pub(super) module: &'static Module,
}

/// Built after the loader (it demangles every symbol): until it is ready,
/// inlined names are qualified from their source file alone.
pub(super) static NAMES: OnceLock<NameIndex> = OnceLock::new();
pub(super) static EMPTY_NAMES: LazyLock<NameIndex> = LazyLock::new(NameIndex::default);

pub(super) fn names() -> &'static NameIndex {
    NAMES.get().unwrap_or(&EMPTY_NAMES)
}

pub(super) static SYMBOLIZER: OnceLock<Option<Symbolizer>> = OnceLock::new();

pub(super) static WARM_STARTED: AtomicBool = AtomicBool::new(false);

pub(super) static WARM_DONE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set on the thread that loads the debug info: a panic there must not
    /// wait for itself.
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Loads with this thread marked, so a panic inside the loading (caught by
/// the hook on this thread) does not wait for the load it interrupted.
pub(super) fn load() -> Option<Symbolizer> {
    LOADING.with(|l| l.set(true));
    let loaded = load_unmarked();
    LOADING.with(|l| l.set(false));
    loaded
}

pub(super) fn load_unmarked() -> Option<Symbolizer> {
    let module = modules::main_module()?;
    let loader = addr2line::Loader::new(&module.path).ok()?;
    Some(Symbolizer {
        loader: Mutex::new(loader),
        module,
    })
}

/// Loads the debug info on a background thread and resolves a first stack,
/// so the first panic costs what a later one does. Called by `init`.
pub fn warm_up() {
    if WARM_STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = modules::modules();
    let _ = LazyLock::force(&CACHE);
    // The caller's stack (usually `main` and the runtime's start under it)
    // sits under every later panic of this thread: resolved in advance.
    let caller = capture_addresses();
    let spawned = std::thread::Builder::new()
        .name("panicle-warm-up".into())
        .spawn(move || {
            if SYMBOLIZER.get_or_init(load).is_some() {
                if let Some(main) = modules::main_module() {
                    let _ = NAMES.get_or_init(|| NameIndex::read(&main.path));
                }
                let _ = resolve_uncached_batch(&caller);
                warm_units();
            }
            WARM_DONE.store(true, Ordering::SeqCst);
        });
    if spawned.is_err() {
        WARM_STARTED.store(false, Ordering::SeqCst);
    }
}

/// Resolves this thread's stack, then one address of every function of the
/// executable: addr2line parses a unit's line table and inline tree on its
/// first lookup, and that first lookup must not fall on a panic. The loader
/// is taken per chunk so a panic meanwhile waits one chunk at most.
pub(super) fn warm_units() {
    // This thread's stack: the frames every spawned thread starts from.
    let _ = capture_raw();
    let Some(Some(s)) = SYMBOLIZER.get() else {
        return;
    };
    for chunk in names().functions.chunks(WARM_CHUNK) {
        let Ok(loader) = s.loader.lock() else { return };
        for &probe in chunk {
            if let Ok(mut frames) = loader.find_frames(probe) {
                // Reading the names touches their string pages now, not at a panic.
                while let Ok(Some(f)) = frames.next() {
                    std::hint::black_box(
                        f.function.as_ref().map(|n| n.raw_name().map(|n| n.len())),
                    );
                }
            }
        }
        drop(loader);
        std::thread::yield_now();
    }
}

/// True once the warm-up has finished (debug info loaded, names indexed,
/// every unit parsed).
pub fn is_warm() -> bool {
    WARM_DONE.load(Ordering::SeqCst)
}

/// Symbolizes with debug info loaded just now and no cache: what the first
/// panic of a process would cost without the warm-up.
pub fn resolve_cold(addresses: &[usize]) -> Vec<RawFrame> {
    let Some(s) = load() else {
        return addresses.iter().map(|a| bare(*a)).collect();
    };
    let index = NameIndex::read(&s.module.path);
    std::hint::black_box(&index);
    let Ok(loader) = s.loader.lock() else {
        return Vec::new();
    };
    addresses
        .iter()
        .flat_map(|a| resolve_one(&s, &loader, *a))
        .collect()
}

/// The symbolizer, waiting a bounded time while the warm-up thread loads it;
/// loads it here when nobody started a warm-up (e.g. in a benchmark).
pub(super) fn symbolizer(deadline: Instant) -> Option<&'static Symbolizer> {
    if let Some(s) = SYMBOLIZER.get() {
        return s.as_ref();
    }
    if LOADING.with(|l| l.get()) {
        return None;
    }
    if !WARM_STARTED.swap(true, Ordering::SeqCst) {
        let loaded = SYMBOLIZER.get_or_init(load).as_ref();
        if let Some(s) = loaded {
            let _ = NAMES.get_or_init(|| NameIndex::read(&s.module.path));
        }
        return loaded;
    }
    while Instant::now() < deadline {
        if let Some(s) = SYMBOLIZER.get() {
            return s.as_ref();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The inline chain at one return address, innermost first.
pub(super) fn resolve_one(
    s: &Symbolizer,
    loader: &addr2line::Loader,
    addr: usize,
) -> Vec<RawFrame> {
    if addr == 0 || addr < s.module.start || addr >= s.module.end {
        return vec![bare(addr)];
    }
    // A return address points after the call: look up the call itself.
    let probe = s.module.relative(addr).saturating_sub(1) as u64;
    // Demangled once at warm-up: demangling long generic names is most of
    // the cost of a first lookup.
    let symbol =
        loader
            .find_symbol_info(probe)
            .map(|sym| match names().by_address.get(&sym.address()) {
                Some(name) => name.clone(),
                None => clean_symbol(sym.name()),
            });
    let mut frames: Vec<RawFrame> = Vec::new();
    if let Ok(mut iter) = loader.find_frames(probe) {
        while let Ok(Some(f)) = iter.next() {
            let function = f
                .function
                .as_ref()
                .and_then(|n| n.raw_name().ok())
                .map(|n| clean_symbol(&n));
            let (file, line, column) = match f.location {
                Some(l) => (
                    l.file.map(str::to_string),
                    l.line,
                    l.column.filter(|c| *c > 0),
                ),
                None => (None, None, None),
            };
            frames.push(RawFrame {
                function,
                file,
                line,
                column,
                instruction_addr: addr,
                finished: None,
            });
        }
    }
    match frames.last_mut() {
        // The outermost frame is the real function: the symbol table has its
        // full path where line-tables-only DWARF has a bare name.
        Some(outer) => {
            if symbol.is_some() {
                outer.function = symbol;
            }
        }
        None => frames.push(RawFrame {
            function: symbol,
            ..bare(addr)
        }),
    }
    qualify_inlined(&mut frames, names());
    for frame in &mut frames {
        frame.finished = Some(Arc::new(finish(frame)));
    }
    frames
}
