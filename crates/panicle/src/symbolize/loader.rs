//! The executable's debug info: loaded once on a background thread (with
//! the symbol table's name index), walked unit by unit so no first lookup
//! falls on a panic, and asked for the inline chain at one address.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use panicle_debuginfo::{ClosureKinds, Lookup, NameIndex};

use super::classify::finish;
use super::debug_file::debug_info_file;
use super::{CACHE, RawFrame, bare, capture_addresses, capture_raw, resolve_uncached_batch};
use crate::modules::{self, Module};

/// Functions looked up per hold of the loader lock during the warm-up.
pub(super) const WARM_CHUNK: usize = 256;

/// The executable's debug info, its symbol names by last path segment, and
/// where it is mapped.
pub(super) struct Symbolizer {
    /// What each closure symbol is (`{async fn}`, `{async block}`), asked
    /// of DWARF once; only touched with `loader` held.
    pub(super) closure_kinds: ClosureKinds,
    pub(super) loader: Mutex<addr2line::Loader>,
    pub(super) module: &'static Module,
    /// Where the DWARF and the symbol table were read: the executable, or
    /// its separate debug file (see `debug_file`).
    pub(super) debug_file: std::path::PathBuf,
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

/// The warm-up thread is building the name index: a panic may wait for it.
static NAMES_PENDING: AtomicBool = AtomicBool::new(false);
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
    if super::leaves_names_to_server() {
        return None;
    }
    let module = modules::main_module()?;
    let debug_file = debug_info_file(&module.path, module.build_id.as_deref());
    // Auto: a stripped executable with no debug file to follow has nothing
    // to load; its addresses are named on the server.
    if !panicle_debuginfo::has_debug_info(&debug_file) {
        super::no_local_debug_info();
        if super::leaves_names_to_server() {
            return None;
        }
    }
    let loader = addr2line::Loader::new(&debug_file).ok()?;
    Some(Symbolizer {
        closure_kinds: ClosureKinds::default(),
        loader: Mutex::new(loader),
        module,
        debug_file,
    })
}

/// Loads the debug info on a background thread and resolves a first stack,
/// so the first panic costs what a later one does. Called by `init`.
pub fn warm_up() {
    if WARM_STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = modules::modules();
    if super::leaves_names_to_server() {
        // Nothing to load: the module map (build-ids, offsets) is all a
        // bare frame needs. The unwinder's one-time setup and the code that
        // makes bare frames run now (a few hundred µs), not in the first panic.
        let raw = super::resolve(&capture_addresses());
        let frames = super::to_frames(raw, &crate::options::Options::default());
        std::hint::black_box(serde_json::to_vec(&frames).ok());
        WARM_DONE.store(true, Ordering::SeqCst);
        return;
    }
    let _ = LazyLock::force(&CACHE);
    // The caller's stack (usually `main` and the runtime's start under it)
    // sits under every later panic of this thread: resolved in advance.
    let caller = capture_addresses();
    NAMES_PENDING.store(true, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("panicle-warm-up".into())
        .spawn(move || {
            // However this thread ends, nobody waits for names any more.
            struct NoLongerPending;
            impl Drop for NoLongerPending {
                fn drop(&mut self) {
                    NAMES_PENDING.store(false, Ordering::SeqCst);
                }
            }
            let _pending = NoLongerPending;
            if let Some(s) = SYMBOLIZER.get_or_init(load) {
                // Marked like the load: a panic inside does not wait for itself.
                LOADING.with(|l| l.set(true));
                let _ = NAMES.get_or_init(|| NameIndex::read(&s.debug_file));
                LOADING.with(|l| l.set(false));
                NAMES_PENDING.store(false, Ordering::SeqCst);
                // What is left only makes later panics cheaper: it must not
                // take a core from a panicking thread (or from the sender
                // at exit) meanwhile.
                crate::threads::lower_priority();
                let _ = resolve_uncached_batch(&caller);
                warm_units();
            }
            WARM_DONE.store(true, Ordering::SeqCst);
        });
    if spawned.is_err() {
        NAMES_PENDING.store(false, Ordering::SeqCst);
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
    for chunk in names().functions().chunks(WARM_CHUNK) {
        let Ok(loader) = s.loader.lock() else { return };
        for &(probe, _) in chunk {
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
    let index = NameIndex::read(&s.debug_file);
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
        wait_for_names(deadline);
        return s.as_ref();
    }
    if LOADING.with(|l| l.get()) {
        return None;
    }
    if !WARM_STARTED.swap(true, Ordering::SeqCst) {
        let loaded = SYMBOLIZER.get_or_init(load).as_ref();
        if let Some(s) = loaded {
            let _ = NAMES.get_or_init(|| NameIndex::read(&s.debug_file));
        }
        return loaded;
    }
    while Instant::now() < deadline {
        if let Some(s) = SYMBOLIZER.get() {
            wait_for_names(deadline);
            return s.as_ref();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Waits, within the same bound, for the name index the warm-up builds
/// right after the debug info: without it inlined names lose their crate,
/// and what is resolved is cached for the life of the process.
fn wait_for_names(deadline: Instant) {
    while NAMES.get().is_none()
        && NAMES_PENDING.load(Ordering::SeqCst)
        && !LOADING.with(|l| l.get())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// True once the name index is built: only then is a resolution cached.
pub(super) fn names_ready() -> bool {
    NAMES.get().is_some()
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
    let lookup = Lookup {
        loader,
        names: names(),
        closure_kinds: &s.closure_kinds,
    };
    let mut frames = lookup.frames_at(probe, addr);
    for frame in &mut frames {
        frame.finished = Some(Arc::new(finish(frame)));
    }
    frames
}

/// Frames for the panic machinery on top of a stack, named from the symbol
/// table alone (see `NameIndex::machinery_names`), aligned with `addresses`.
pub(super) fn machinery_frames(addresses: &[usize]) -> Vec<Option<RawFrame>> {
    let names = names();
    let Some(main) = modules::main_module().filter(|_| names.knows_machinery()) else {
        return vec![None; addresses.len()];
    };
    let probes: Vec<Option<u64>> = addresses
        .iter()
        .map(|&addr| {
            (addr >= main.start && addr < main.end)
                .then(|| main.relative(addr).saturating_sub(1) as u64)
        })
        .collect();
    names
        .machinery_names(&probes)
        .into_iter()
        .zip(addresses)
        .map(|(name, &addr)| {
            name.map(|name| RawFrame {
                function: Some(name),
                ..bare(addr)
            })
        })
        .collect()
}
