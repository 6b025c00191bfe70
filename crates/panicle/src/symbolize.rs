//! From a captured stack to schema frames: the panic machinery cut, names
//! demangled without hashes and qualified, paths made readable, in-app marked,
//! every frame with its address, module build-id and module offset.
//!
//! Symbolization runs once per address: addr2line over the executable's DWARF
//! (loaded at init on a background thread) plus the ELF symbol table, behind a
//! process-wide cache. The hook never waits on a lock: it reads the cache with
//! `try_read` and takes the loader with `try_lock`, giving up after a bounded
//! time and keeping the bare addresses (a server can symbolize them later).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use panicle_protocol::Frame;

use crate::modules::{self, Module};
use crate::options::Options;

/// Roots whose frames are the panic machinery on top of every panic stack.
const MACHINERY_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "backtrace",
    "panicle",
    "panic_unwind",
    "__rustc",
];

/// Crates that are never the service's own code.
const DEPENDENCY_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "backtrace",
    "panicle",
    "panic_unwind",
    "tokio",
    "futures",
    "futures_util",
    "futures_core",
    "futures_executor",
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "http_body",
    "http_body_util",
    "tower",
    "tower_http",
    "tower_service",
    "tower_layer",
    "axum",
    "axum_core",
    "tracing",
    "tracing_core",
    "tracing_subscriber",
    "tracing_opentelemetry",
    "opentelemetry",
    "opentelemetry_sdk",
    "serde",
    "serde_json",
    "sqlx",
    "sqlx_core",
    "reqwest",
    "ureq",
    "rayon",
    "rayon_core",
    "async_trait",
    "__rustc",
    "test",
    "libc",
    "criterion",
    "addr2line",
    "gimli",
];

/// Most frames a stored event keeps; deeper stacks are cut at the outer end.
pub const MAX_FRAMES: usize = 128;
/// Most return addresses walked: the machinery and a deep stack fit.
const MAX_ADDRESSES: usize = 256;
/// Addresses the cache keeps before it starts over (bounds memory in a storm
/// of ever-new stacks, e.g. from a JIT or recursion at varying depth).
const CACHE_LIMIT: usize = 65_536;
/// How long a panic waits for the symbolizer (warm-up or another panicking
/// thread) before it ships bare addresses.
const WAIT_LIMIT: Duration = Duration::from_secs(3);
/// Functions looked up per hold of the loader lock during the warm-up.
const WARM_CHUNK: usize = 256;
/// Bound of the warm-up's work on a huge executable.
const MAX_WARM_FUNCTIONS: usize = 500_000;

/// The root path segment of a symbol: `shop` of `<shop::Cart as Drop>::drop`.
pub fn symbol_root(function: &str) -> &str {
    let f = function.trim_start_matches(['<', '&', '*']);
    let f = f.strip_prefix("mut ").unwrap_or(f);
    let f = f.strip_prefix("dyn ").unwrap_or(f);
    let end = f
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(f.len());
    &f[..end]
}

/// This crate's source directory as the compiler saw it, so frames of the
/// hook itself are recognised even when inlined under a bare name.
fn sdk_source_dir() -> &'static str {
    let this = file!();
    this.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(this)
}

fn is_machinery(frame: &RawFrame) -> bool {
    let by_name = match frame.function.as_deref() {
        None => true,
        Some(f) => {
            f.starts_with("rust_begin_unwind")
                || f.starts_with("__rust")
                || MACHINERY_ROOTS.contains(&symbol_root(f))
        }
    };
    // Line-tables-only DWARF names inlined functions without their path
    // (`unwrap<u32>`): their file tells where they come from.
    let by_file = frame.file.as_deref().is_some_and(|file| {
        file.starts_with("/rustc/")
            || file.contains(sdk_source_dir())
            || file.contains("/backtrace-0.")
            || file.contains("/panic_unwind/")
    });
    by_name || by_file
}

/// A frame before classification: what the symbolizer knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub instruction_addr: usize,
    /// The schema frame, made once when the address is first resolved and
    /// cached with it: a later panic through this address only copies it.
    pub finished: Option<Arc<Frame>>,
}

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

/// The executable's debug info, its symbol names by last path segment, and
/// where it is mapped.
struct Symbolizer {
    loader: Mutex<addr2line::Loader>,
    module: &'static Module,
}

/// Built after the loader (it demangles every symbol): until it is ready,
/// inlined names are qualified from their source file alone.
static NAMES: OnceLock<NameIndex> = OnceLock::new();
static EMPTY_NAMES: LazyLock<NameIndex> = LazyLock::new(NameIndex::default);

fn names() -> &'static NameIndex {
    NAMES.get().unwrap_or(&EMPTY_NAMES)
}

static SYMBOLIZER: OnceLock<Option<Symbolizer>> = OnceLock::new();
static WARM_STARTED: AtomicBool = AtomicBool::new(false);
static WARM_DONE: AtomicBool = AtomicBool::new(false);
static CACHE: LazyLock<RwLock<HashMap<usize, Arc<[RawFrame]>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

thread_local! {
    /// Set on the thread that loads the debug info: a panic there must not
    /// wait for itself.
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Loads with this thread marked, so a panic inside the loading (caught by
/// the hook on this thread) does not wait for the load it interrupted.
fn load() -> Option<Symbolizer> {
    LOADING.with(|l| l.set(true));
    let loaded = load_unmarked();
    LOADING.with(|l| l.set(false));
    loaded
}

fn load_unmarked() -> Option<Symbolizer> {
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
    crate::capture::prewarm();
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
fn warm_units() {
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

/// Forgets every cached address (benchmarks: a stack never seen before).
pub fn clear_cache() {
    if let Ok(mut cache) = CACHE.write() {
        cache.clear();
    }
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
fn symbolizer(deadline: Instant) -> Option<&'static Symbolizer> {
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

/// Symbolizes addresses through the cache; misses are resolved and cached.
/// The panic machinery on top is named from the symbol table alone.
pub fn resolve(addresses: &[usize]) -> Vec<RawFrame> {
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

/// Frames for the panic machinery on top of a stack (the unwinder, the hook,
/// std's panic entry points), named from the symbol table alone, aligned
/// with `addresses`. Those frames are cut anyway, and a DWARF lookup of an
/// address never seen is the dearest part of a first panic. Covers the
/// leading run of machinery addresses and, when a panic entry is on the
/// stack, every machinery address down to the first run of entries (a hook
/// installed around ours sits between).
fn machinery_frames(addresses: &[usize]) -> Vec<Option<RawFrame>> {
    let table = &names().machinery;
    let Some(main) = modules::main_module().filter(|_| !table.is_empty()) else {
        return vec![None; addresses.len()];
    };
    let found: Vec<Option<&MachineryFunction>> = addresses
        .iter()
        .map(|&addr| {
            if addr < main.start || addr >= main.end {
                return None;
            }
            let probe = main.relative(addr).saturating_sub(1) as u64;
            let at = table.partition_point(|f| f.start <= probe);
            at.checked_sub(1)
                .map(|i| &table[i])
                .filter(|f| probe < f.end)
        })
        .collect();
    let leading = found.iter().take_while(|f| f.is_some()).count();
    let through_entries = found
        .iter()
        .position(|f| f.is_some_and(|f| f.entry))
        .map(|first| {
            first
                + found[first..]
                    .iter()
                    .take_while(|f| f.is_some_and(|f| f.entry))
                    .count()
        })
        .unwrap_or(0);
    let end = leading.max(through_entries);
    found
        .into_iter()
        .zip(addresses)
        .enumerate()
        .map(|(i, (f, &addr))| {
            let f = f.filter(|_| i < end)?;
            Some(RawFrame {
                function: Some(f.name.clone()),
                ..bare(addr)
            })
        })
        .collect()
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
    RawFrame {
        instruction_addr: addr,
        ..RawFrame::default()
    }
}

/// The inline chain at one return address, innermost first.
fn resolve_one(s: &Symbolizer, loader: &addr2line::Loader, addr: usize) -> Vec<RawFrame> {
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

/// Gives every bare inlined name of one inline chain (innermost first) its
/// path, outermost first, so each name can lean on the frames around it:
/// a closure takes the path of the nearest outer frame in its own source
/// file (its lexical parent, usually), and a workspace file's crate is the
/// one of the nearest outer frame from the workspace, never that of a std
/// or registry function the code was inlined into.
fn qualify_inlined(frames: &mut [RawFrame], names: &NameIndex) {
    let mut workspace_crate: Option<String> = None;
    for i in (0..frames.len()).rev() {
        // Only a real name (the symbol table's, or found there) tells the
        // crate: a path guessed from a file alone could spread inward.
        let mut real_name = true;
        if let Some(name) = frames[i].function.as_deref()
            && !has_path(name)
            && i + 1 < frames.len()
        {
            let file = frames[i].file.as_deref();
            let parent = frames[i + 1..]
                .iter()
                .find(|f| file.is_some() && f.file.as_deref() == file)
                .and_then(|f| f.function.as_deref());
            let (qualified, found) = names.qualify(name, file, workspace_crate.as_deref(), parent);
            frames[i].function = Some(qualified);
            real_name = found;
        }
        let frame = &frames[i];
        if real_name
            && frame.file.as_deref().is_none_or(is_workspace_file)
            && let Some(function) = frame.function.as_deref()
            && has_path(function)
        {
            let root = symbol_root(function);
            if !DEPENDENCY_ROOTS.contains(&root) {
                workspace_crate = Some(root.to_string());
            }
        }
    }
}

/// A file of the service's own source tree: neither the standard library
/// nor a registry or git dependency.
fn is_workspace_file(file: &str) -> bool {
    let (clean, package) = clean_path(file);
    package.is_none() && !clean.starts_with("library/")
}

/// Demangles without the `::h…` hash and names closures and async bodies readably.
pub fn clean_symbol(raw: &str) -> String {
    let name = match rustc_demangle::try_demangle(raw) {
        Ok(d) => format!("{d:#}"),
        Err(_) => raw.to_string(),
    };
    readable_name(&name)
}

/// `{{closure}}`/`{closure#0}` → `{closure}`, `{async_fn#0}` → `{async fn}`,
/// `{async_block#0}` → `{async block}`.
pub fn readable_name(name: &str) -> String {
    if !name.contains('{') {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (token, len) = if tail.starts_with("{{closure}}") {
            ("{closure}", "{{closure}}".len())
        } else if let Some(end) = tail.find('}') {
            let inner = &tail[1..end];
            let kind = inner.split('#').next().unwrap_or(inner);
            let token = match kind {
                "closure" | "closure_env" => "{closure}",
                "async_fn" | "async_fn_env" => "{async fn}",
                "async_block" | "async_block_env" | "async_gen_block" => "{async block}",
                _ => "",
            };
            if token.is_empty() {
                (&tail[..=end], end + 1)
            } else {
                (token, end + 1)
            }
        } else {
            (tail, tail.len())
        };
        out.push_str(token);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// True when a name already carries a module path (outside generic arguments).
fn has_path(name: &str) -> bool {
    split_path(name).len() > 1
}

/// Splits `a::B<c::D>::e` into `["a", "B<c::D>", "e"]`: `::` inside `<>` stays.
fn split_path(name: &str) -> Vec<&str> {
    let bytes = name.as_bytes();
    let (mut depth, mut start, mut i) = (0i32, 0usize, 0usize);
    let mut parts = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' if i == 0 || bytes[i - 1] != b'-' => depth -= 1,
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                parts.push(&name[start..i]);
                i += 2;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&name[start..]);
    parts
}

/// `unwrap<u32>` → `unwrap`.
fn strip_generics(segment: &str) -> &str {
    segment.split('<').next().unwrap_or(segment)
}

/// Crate and module path a source file implies: `library/core/src/option.rs`
/// → (`core`, [`option`]); `tokio-1.50.0/src/runtime/task/raw.rs` → (`tokio`,
/// [`runtime`, `task`, `raw`]); a workspace file gets `workspace_crate`.
fn module_of_file(file: &str, workspace_crate: Option<&str>) -> (Option<String>, Vec<String>) {
    let (clean, package) = clean_path(file);
    let parts: Vec<&str> = clean.split('/').collect();
    let krate = if let Some(lib) = clean.strip_prefix("library/") {
        lib.split('/').next().map(str::to_string)
    } else if let Some(p) = package {
        Some(p.replace('-', "_"))
    } else {
        workspace_crate.map(str::to_string)
    };
    let mut modules = Vec::new();
    if let Some(src) = parts.iter().position(|p| *p == "src") {
        for (i, p) in parts[src + 1..].iter().enumerate() {
            let last = i + src + 2 == parts.len();
            let m = if last {
                p.strip_suffix(".rs").unwrap_or(p)
            } else {
                p
            };
            if !(last && matches!(m, "lib" | "main" | "mod")) {
                modules.push(m.to_string());
            }
        }
    }
    (krate, modules)
}

/// std's panic entry points (prefixes of readable names): every panic
/// passes them between the panicking frame and the hook, and they never have
/// the service's code inlined into them.
const PANIC_ENTRY_FUNCTIONS: &[&str] = &[
    // `panic_handler` and `panic_with_hook` were `begin_panic_handler` and
    // `rust_panic_with_hook` in earlier Rust releases.
    "std::panicking::begin_panic",
    "std::panicking::panic_handler",
    "std::panicking::panic_with_hook",
    "std::panicking::rust_panic_with_hook",
    "std::sys::backtrace::__rust_end_short_backtrace",
    "rust_begin_unwind",
    "__rustc::rust_begin_unwind",
    "core::panicking::",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::result::unwrap_failed",
    "core::cell::panic_already_",
    "core::slice::index::slice_",
    "core::str::slice_error_fail",
];

/// The unwinder and the hook itself, on top of every captured stack
/// (`panicle::hook` also covers `panicle::hook_bench`, the bench's stand-in).
const HOOK_FUNCTIONS: &[&str] = &[
    "backtrace::",
    "panicle::symbolize::capture",
    "panicle::capture::",
    "panicle::hook",
    "panicle::init::{closure}",
];

fn is_panic_entry(function: &str) -> bool {
    PANIC_ENTRY_FUNCTIONS
        .iter()
        .any(|p| function.starts_with(p))
}

/// A function of the panic machinery: module-relative range and name.
struct MachineryFunction {
    start: u64,
    end: u64,
    name: String,
    /// One of [`PANIC_ENTRY_FUNCTIONS`] (else of [`HOOK_FUNCTIONS`]).
    entry: bool,
}

/// Full symbol paths by their last segment, from the ELF symbol table, to
/// recover the module path of functions line-tables-only DWARF names bare.
#[derive(Default)]
struct NameIndex {
    by_last: HashMap<String, Vec<String>>,
    /// The panic machinery's functions, sorted by address.
    machinery: Vec<MachineryFunction>,
    /// Module-relative address of every function, for the warm-up.
    functions: Vec<u64>,
    /// Demangled, readable name of each function by its address.
    by_address: HashMap<u64, String>,
}

impl NameIndex {
    fn read(path: &Path) -> NameIndex {
        use object::{Object, ObjectSymbol, SymbolKind};
        let mut index = NameIndex::default();
        let Ok(file) = std::fs::File::open(path) else {
            return index;
        };
        let cache = object::ReadCache::new(file);
        let Ok(obj) = object::File::parse(&cache) else {
            return index;
        };
        for sym in obj.symbols() {
            if sym.kind() != SymbolKind::Text {
                continue;
            }
            let Ok(raw) = sym.name() else { continue };
            if index.functions.len() < MAX_WARM_FUNCTIONS {
                index.functions.push(sym.address());
            }
            let mangled = raw.starts_with("_ZN") || raw.starts_with("_R");
            let name = if mangled {
                clean_symbol(raw)
            } else {
                raw.to_string()
            };
            let entry = is_panic_entry(&name);
            if sym.size() > 0 && (entry || HOOK_FUNCTIONS.iter().any(|p| name.starts_with(p))) {
                index.machinery.push(MachineryFunction {
                    start: sym.address(),
                    end: sym.address().saturating_add(sym.size()),
                    name: name.clone(),
                    entry,
                });
            }
            if !mangled {
                continue;
            }
            index.by_address.insert(sym.address(), name.clone());
            let parts = split_path(&name);
            let Some(last) = parts.last() else { continue };
            // Closures are named after the frame around them, not looked up.
            if last.starts_with('{') {
                continue;
            }
            let key = strip_generics(last).to_string();
            let list = index.by_last.entry(key).or_default();
            if list.len() < 64 && !list.contains(&name) {
                list.push(name);
            }
        }
        index.functions.sort_unstable();
        index.functions.dedup();
        index.machinery.sort_unstable_by_key(|f| f.start);
        index
    }

    /// The qualified name of an inlined function named bare by DWARF, from
    /// its source file, the crate of the workspace frames around it, and
    /// (for a closure) the nearest outer frame in the same file, usually its
    /// lexical parent. True when the name was found in the symbol table.
    fn qualify(
        &self,
        name: &str,
        file: Option<&str>,
        workspace_crate: Option<&str>,
        parent_in_file: Option<&str>,
    ) -> (String, bool) {
        if name.starts_with('{')
            && let Some(parent) = parent_in_file
        {
            return (format!("{parent}::{name}"), false);
        }
        let (krate, modules) = match file {
            Some(f) => module_of_file(f, workspace_crate),
            None => (workspace_crate.map(str::to_string), Vec::new()),
        };
        let key = strip_generics(name);
        if let Some(candidates) = self.by_last.get(key) {
            let mut needle = String::new();
            for m in &modules {
                needle.push_str("::");
                needle.push_str(m);
            }
            needle.push_str("::");
            let in_module = |c: &&String| modules.is_empty() || c.contains(needle.as_str());
            let best = match &krate {
                Some(krate) => {
                    let in_crate = candidates
                        .iter()
                        .filter(|c| symbol_root(c) == krate.as_str());
                    in_crate
                        .clone()
                        .filter(in_module)
                        .min_by_key(|c| c.len())
                        .or_else(|| {
                            if modules.is_empty() {
                                in_crate.min_by_key(|c| c.len())
                            } else {
                                None
                            }
                        })
                }
                // No crate known (no workspace frame around it): the
                // service's own crates that have this function in this
                // module, if they are one.
                None => {
                    let mut own = candidates
                        .iter()
                        .filter(|c| !DEPENDENCY_ROOTS.contains(&symbol_root(c)))
                        .filter(in_module);
                    let first = own.clone().next().map(|c| symbol_root(c));
                    if own.all(|c| Some(symbol_root(c)) == first) {
                        candidates
                            .iter()
                            .filter(|c| first == Some(symbol_root(c)))
                            .filter(in_module)
                            .min_by_key(|c| c.len())
                    } else {
                        None
                    }
                }
            };
            if let Some(best) = best {
                return (best.clone(), true);
            }
        }
        let mut parts: Vec<String> = krate.into_iter().collect();
        parts.extend(modules);
        parts.push(name.to_string());
        (parts.join("::"), false)
    }
}

/// Drops the machinery above the panicking frame and classifies the rest.
pub fn to_frames(raw: Vec<RawFrame>, options: &Options) -> Vec<Frame> {
    // A stripped binary names no frame: the machinery cannot be told apart,
    // so every address is kept for the server to symbolize. Otherwise the
    // search starts at std's panic entry when it is on the stack: a hook
    // installed around ours (user code, not machinery by name) sits above it.
    let start = if raw.iter().all(|f| f.function.is_none()) {
        0
    } else {
        let entry = raw
            .iter()
            .position(|f| f.function.as_deref().is_some_and(is_panic_entry))
            .unwrap_or(0);
        // An unnamed frame past that point was not symbolized (the loader
        // was busy): kept, with its address, for the server.
        raw.iter()
            .skip(entry)
            .position(|f| f.function.is_none() || !is_machinery(f))
            .map_or(raw.len(), |i| entry + i)
    };
    raw.into_iter()
        .skip(start)
        .take(MAX_FRAMES)
        .map(|f| classify(f, options))
        .collect()
}

/// The schema frame, with `in_app` as the options' include/exclude
/// prefixes override it.
fn classify(raw: RawFrame, options: &Options) -> Frame {
    let mut frame = match raw.finished {
        Some(done) => Frame::clone(&done),
        None => finish(&raw),
    };
    let matches = |prefixes: &[String]| {
        frame.function.as_deref().is_some_and(|f| {
            prefixes
                .iter()
                .any(|p| f.trim_start_matches('<').starts_with(p.as_str()))
        })
    };
    if matches(&options.in_app_include) {
        frame.in_app = Some(true);
    } else if matches(&options.in_app_exclude) {
        frame.in_app = Some(false);
    }
    frame
}

/// The schema frame of a symbolized one: readable path, package, `in_app`
/// by default (the service's own crates), address, build-id and offset.
fn finish(raw: &RawFrame) -> Frame {
    let (file, package_from_path) = match raw.file.as_deref() {
        Some(path) => {
            let (file, pkg) = clean_path(path);
            (Some(file), pkg)
        }
        None => (None, None),
    };
    let from_dependency_path =
        package_from_path.is_some() || file.as_deref().is_some_and(|f| f.starts_with("library/"));
    let function = raw.function.clone();
    let root = function.as_deref().map(symbol_root).unwrap_or("");
    // A name without a module path is a C symbol (`main`, `_start`, `__rust_try`).
    let rust_path = function.as_deref().is_some_and(has_path);
    let in_app = rust_path && !from_dependency_path && !DEPENDENCY_ROOTS.contains(&root);
    let package = package_from_path.or_else(|| (!root.is_empty()).then(|| root.to_string()));
    let module = modules::find(raw.instruction_addr);
    Frame {
        function,
        raw_function: None,
        file,
        line: raw.line,
        column: raw.column,
        in_app: Some(in_app),
        package,
        instruction_addr: Some(format!("{:#x}", raw.instruction_addr)),
        build_id: module.and_then(|m| m.build_id.clone()),
        module_offset: module.map(|m| format!("{:#x}", m.relative(raw.instruction_addr))),
    }
}

/// Makes a build path readable and says which package it belongs to:
/// registry sources become `crate-x.y.z/src/…` (package `crate@x.y.z`'s name),
/// the standard library `library/…`, workspace files relative to their crate
/// root (`src/orders.rs`). An absolute build path is never returned as is.
pub fn clean_path(path: &str) -> (String, Option<String>) {
    let path = path.replace('\\', "/");
    if let Some(rest) = path.strip_prefix("/rustc/")
        && let Some((_, lib)) = rest.split_once('/')
    {
        return (lib.to_string(), None);
    }
    if let Some(i) = path.find("/library/")
        && [
            "/library/std/",
            "/library/core/",
            "/library/alloc/",
            "/library/panic_unwind/",
        ]
        .iter()
        .any(|l| path[i..].starts_with(l))
    {
        return (path[i + 1..].to_string(), None);
    }
    // `$CARGO_HOME/registry/src/index.crates.io-<hash>/<crate>-<version>/src/…`,
    // whatever CARGO_HOME is (`~/.cargo`, `/usr/local/cargo` in Docker images).
    if let Some(rest) = after_cargo_home(&path, "/registry/src/")
        && let Some((_index, crate_path)) = rest.split_once('/')
    {
        let crate_dir = crate_path.split('/').next().unwrap_or("");
        return (crate_path.to_string(), Some(crate_name(crate_dir)));
    }
    if let Some(rest) = after_cargo_home(&path, "/git/checkouts/") {
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        if let [repo, _rev, inner] = parts[..] {
            let name = repo.rsplit_once('-').map(|(n, _)| n).unwrap_or(repo);
            return (format!("{name}/{inner}"), Some(name.to_string()));
        }
    }
    // Relative to the crate root: from its last `src`, `examples`, `tests`,
    // `benches` or `build.rs` on.
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if let Some(at) = parts
        .iter()
        .rposition(|p| matches!(*p, "src" | "examples" | "tests" | "benches"))
    {
        return (parts[at..].join("/"), None);
    }
    if !path.starts_with('/') {
        return (parts.join("/"), None);
    }
    (parts.last().copied().unwrap_or("").to_string(), None)
}

/// What follows `$CARGO_HOME` + `marker` in a build path: under `~/.cargo`
/// anything, elsewhere only cargo's `<name>-<16 hex>` directory, so a
/// workspace that happens to have a `registry/src` folder stays a workspace.
fn after_cargo_home<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
    let at = path.find(marker)?;
    let rest = &path[at + marker.len()..];
    let under_dot_cargo = path[..at].ends_with("/.cargo");
    let hashed = rest.split('/').next().is_some_and(|dir| {
        dir.rsplit_once('-')
            .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    (under_dot_cargo || hashed).then_some(rest)
}

/// `tokio-1.50.0` → `tokio`.
fn crate_name(dir: &str) -> String {
    match dir.rfind('-') {
        Some(i) if dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => dir[..i].to_string(),
        _ => dir.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name index of these full names, as `NameIndex::read` files them.
    fn index_of(names: &[&str]) -> NameIndex {
        let mut index = NameIndex::default();
        for n in names {
            let last = strip_generics(split_path(n).last().unwrap()).to_string();
            index.by_last.entry(last).or_default().push(n.to_string());
        }
        index
    }

    fn raw(function: &str, file: &str) -> RawFrame {
        RawFrame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(1),
            column: None,
            instruction_addr: 0x1000,
            finished: None,
        }
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(
            clean_path(
                "/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/option.rs"
            ),
            ("library/core/src/option.rs".into(), None)
        );
        assert_eq!(
            clean_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.50.0/src/runtime/task/mod.rs"
            ),
            (
                "tokio-1.50.0/src/runtime/task/mod.rs".into(),
                Some("tokio".into())
            )
        );
        assert_eq!(
            clean_path(
                "/usr/local/cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hyper-1.5.0/src/proto/mod.rs"
            ),
            ("hyper-1.5.0/src/proto/mod.rs".into(), Some("hyper".into()))
        );
        assert_eq!(
            clean_path(
                "/usr/local/cargo/git/checkouts/sqlx-0a1b2c3d4e5f6a7b/8c9d0e1/sqlx-core/src/pool.rs"
            ),
            ("sqlx/sqlx-core/src/pool.rs".into(), Some("sqlx".into()))
        );
        assert_eq!(
            clean_path("/builds/registry/src/orders/src/lib.rs"),
            ("src/lib.rs".into(), None)
        );
        assert_eq!(clean_path("src/orders.rs"), ("src/orders.rs".into(), None));
        assert_eq!(
            clean_path("/builds/ci/x9/shop/src/orders.rs"),
            ("src/orders.rs".into(), None)
        );
        assert_eq!(
            clean_path("/work/main/crates/panicle/examples/demo.rs"),
            ("examples/demo.rs".into(), None)
        );
        assert_eq!(
            clean_path("/home/me/generated.rs"),
            ("generated.rs".into(), None)
        );
        assert_eq!(
            clean_path("/opt/rust/lib/rustlib/src/rust/library/std/src/panicking.rs"),
            ("library/std/src/panicking.rs".into(), None)
        );
    }

    #[test]
    fn machinery_is_cut_and_in_app_marked() {
        let frames = vec![
            raw(
                "backtrace::backtrace::trace",
                "/root/.cargo/registry/src/i/backtrace-0.3.7/src/lib.rs",
            ),
            raw("panicle::hook", "crates/panicle/src/lib.rs"),
            raw(
                "std::panicking::panic_with_hook",
                "/rustc/abc/library/std/src/panicking.rs",
            ),
            raw(
                "core::panicking::panic_fmt",
                "/rustc/abc/library/core/src/panicking.rs",
            ),
            raw(
                "core::option::unwrap_failed",
                "/rustc/abc/library/core/src/option.rs",
            ),
            raw("shop::orders::reserve", "src/orders.rs"),
            raw(
                "serde_json::de::from_str",
                "/root/.cargo/registry/src/i/serde_json-1.0.1/src/de.rs",
            ),
            raw(
                "tokio::runtime::task::raw::poll",
                "/root/.cargo/registry/src/i/tokio-1.50.0/src/runtime/task/raw.rs",
            ),
            raw("shop::main", "src/main.rs"),
        ];
        let out = to_frames(frames, &Options::default());
        let names: Vec<_> = out.iter().map(|f| f.function.clone().unwrap()).collect();
        assert_eq!(names[0], "shop::orders::reserve");
        let in_app: Vec<_> = out.iter().map(|f| f.in_app.unwrap()).collect();
        assert_eq!(in_app, vec![true, false, false, true]);
        assert_eq!(out[1].package.as_deref(), Some("serde_json"));
        assert_eq!(out[1].file.as_deref(), Some("serde_json-1.0.1/src/de.rs"));
    }

    #[test]
    fn a_hook_installed_around_ours_is_cut_too() {
        let frames = vec![
            raw("panicle::hook", "crates/panicle/src/lib.rs"),
            raw("shop::main::{closure}", "src/main.rs"),
            raw(
                "std::panicking::panic_with_hook",
                "/rustc/abc/library/std/src/panicking.rs",
            ),
            raw(
                "core::panicking::panic_fmt",
                "/rustc/abc/library/core/src/panicking.rs",
            ),
            raw(
                "core::option::Option<T>::unwrap",
                "/rustc/abc/library/core/src/option.rs",
            ),
            raw("shop::orders::reserve", "src/orders.rs"),
            raw("shop::main", "src/main.rs"),
        ];
        let out = to_frames(frames, &Options::default());
        let names: Vec<_> = out.iter().map(|f| f.function.clone().unwrap()).collect();
        assert_eq!(names, ["shop::orders::reserve", "shop::main"]);
    }

    #[test]
    fn frames_the_loader_could_not_name_are_kept() {
        let frames = vec![
            RawFrame {
                function: Some("panicle::hook".into()),
                ..bare(0x10)
            },
            RawFrame {
                function: Some("core::panicking::panic_fmt".into()),
                ..bare(0x20)
            },
            bare(0x30),
            bare(0x40),
        ];
        let out = to_frames(frames, &Options::default());
        let addrs: Vec<_> = out.iter().map(|f| f.instruction_addr.clone()).collect();
        assert_eq!(addrs, [Some("0x30".into()), Some("0x40".into())]);
    }

    #[test]
    fn include_and_exclude_override() {
        let options = Options {
            in_app_include: vec!["serde_json::".into()],
            in_app_exclude: vec!["shop::vendored".into()],
            ..Options::default()
        };
        let out = to_frames(
            vec![
                raw("shop::vendored::thing", "src/vendored.rs"),
                raw(
                    "serde_json::de::from_str",
                    "/root/.cargo/registry/src/i/serde_json-1.0.1/src/de.rs",
                ),
            ],
            &options,
        );
        assert_eq!(out[0].in_app, Some(false));
        assert_eq!(out[1].in_app, Some(true));
    }

    #[test]
    fn names_lose_hashes_and_closures_read_well() {
        assert_eq!(
            clean_symbol(
                "_ZN4shop6orders7reserve28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE"
            ),
            "shop::orders::reserve::{closure}"
        );
        assert_eq!(
            readable_name("shop::handler::{async_fn#0}"),
            "shop::handler::{async fn}"
        );
        assert_eq!(
            readable_name("a::{async_block#3}::{closure#1}"),
            "a::{async block}::{closure}"
        );
        assert_eq!(readable_name("a::{shim:vtable#0}"), "a::{shim:vtable#0}");
        assert_eq!(
            split_path("<a::B<c::D> as e::F>::g"),
            vec!["<a::B<c::D> as e::F>", "g"]
        );
    }

    #[test]
    fn bare_inlined_names_get_their_module_path() {
        let index = index_of(&[
            "core::option::Option<T>::unwrap",
            "core::result::Result<T,E>::unwrap",
            "demo::orders::reserve",
        ]);
        let std_file = "/rustc/abc/library/core/src/option.rs";
        assert_eq!(
            index
                .qualify("unwrap<u32>", Some(std_file), Some("demo"), None)
                .0,
            "core::option::Option<T>::unwrap"
        );
        assert_eq!(
            index
                .qualify(
                    "reserve",
                    Some("/w/crates/panicle/examples/demo.rs"),
                    Some("demo"),
                    None
                )
                .0,
            "demo::orders::reserve"
        );
        // Not in the symbol table: the path comes from the file.
        assert_eq!(
            index
                .qualify(
                    "total",
                    Some("/w/shop/src/billing/mod.rs"),
                    Some("shop"),
                    None
                )
                .0,
            "shop::billing::total"
        );
        assert_eq!(
            index
                .qualify(
                    "poll<F>",
                    Some("/root/.cargo/registry/src/i/tokio-1.50.0/src/runtime/task/raw.rs"),
                    Some("shop"),
                    None
                )
                .0,
            "tokio::runtime::task::raw::poll<F>"
        );
    }

    #[test]
    fn without_a_workspace_frame_around_the_symbol_table_tells_the_crate() {
        let index = index_of(&["shop::orders::reserve", "tokio::orders::reserve"]);
        // A spawned thread's body inlined into std: no workspace frame
        // outside. `reserve` is found in the symbol table and tells the crate.
        let std_file = "/rustc/abc/library/std/src/sys/backtrace.rs";
        let outer = "std::sys::backtrace::__rust_begin_short_backtrace";
        let mut found = vec![
            raw("total", "/w/shop/src/billing/mod.rs"),
            raw("reserve", "/w/shop/src/orders.rs"),
            raw(outer, std_file),
        ];
        qualify_inlined(&mut found, &index);
        assert_eq!(found[1].function.as_deref(), Some("shop::orders::reserve"));
        assert_eq!(found[0].function.as_deref(), Some("shop::billing::total"));
        // `place` is not: the path guessed from its file does not become
        // the crate of the frames inlined into it.
        let mut guessed = vec![
            raw("total", "/w/shop/src/billing/mod.rs"),
            raw("place", "/w/shop/src/orders.rs"),
            raw(outer, std_file),
        ];
        qualify_inlined(&mut guessed, &index);
        assert_eq!(guessed[1].function.as_deref(), Some("orders::place"));
        assert_eq!(guessed[0].function.as_deref(), Some("billing::total"));
    }

    #[test]
    fn user_code_inlined_into_std_keeps_its_own_crate() {
        // `time(|| report())` in `hook::child`, the closure run by
        // `Iterator::map`: line-tables-only DWARF names the inlined user
        // frames bare, under std frames.
        let index = index_of(&["hook::report", "core::str::pattern::report"]);
        let bench = "/w/benches/hook.rs";
        let map = "/rustc/abc/library/core/src/iter/adapters/map.rs";
        let mut chain = vec![
            raw("report", bench),
            raw("{closure}", bench),
            raw("{closure}<i32, u128>", map),
            raw("fold<I, F>", map),
            raw("hook::child", bench),
        ];
        qualify_inlined(&mut chain, &index);
        let names: Vec<_> = chain.iter().map(|f| f.function.clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                "hook::report",
                "hook::child::{closure}",
                "core::iter::adapters::map::fold<I, F>::{closure}<i32, u128>",
                "core::iter::adapters::map::fold<I, F>",
                "hook::child",
            ]
        );
    }

    #[test]
    fn panic_machinery_on_top_is_named_without_dwarf() {
        use std::sync::Mutex;
        static CAPTURED: Mutex<Vec<RawFrame>> = Mutex::new(Vec::new());
        // Loads the symbolizer, then the name index (waiting for another
        // test's load in progress).
        let _ = capture_raw();
        if let Some(main) = modules::main_module() {
            let _ = NAMES.get_or_init(|| NameIndex::read(&main.path));
        }
        assert!(!names().machinery.is_empty());
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
                .is_some_and(|f| f.ends_with("symbolize.rs"))
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
