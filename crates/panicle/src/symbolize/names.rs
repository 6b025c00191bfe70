//! What the ELF symbol table tells without DWARF: full paths by their last
//! segment (to qualify bare inlined names), readable names by address, and
//! the panic machinery's functions, named at a panic without a DWARF lookup.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::RawFrame;
use super::bare;
use super::demangle::{clean_symbol, split_path, strip_generics, symbol_root};
use super::loader::{MAX_WARM_FUNCTIONS, names};
use crate::modules;

/// std's panic entry points (prefixes of readable names): every panic
/// passes them between the panicking frame and the hook, and they never have
/// the service's code inlined into them.
pub(super) const PANIC_ENTRY_FUNCTIONS: &[&str] = &[
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
pub(super) const HOOK_FUNCTIONS: &[&str] = &[
    "backtrace::",
    "panicle::symbolize::capture",
    "panicle::capture::",
    "panicle::hook",
    "panicle::init::{closure}",
];

pub(super) fn is_panic_entry(function: &str) -> bool {
    PANIC_ENTRY_FUNCTIONS
        .iter()
        .any(|p| function.starts_with(p))
}

/// A function of the panic machinery: module-relative range and name.
pub(super) struct MachineryFunction {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) name: String,
    /// One of [`PANIC_ENTRY_FUNCTIONS`] (else of [`HOOK_FUNCTIONS`]).
    pub(super) entry: bool,
}

/// Full symbol paths by their last segment, from the ELF symbol table, to
/// recover the module path of functions line-tables-only DWARF names bare.
#[derive(Default)]
pub(super) struct NameIndex {
    pub(super) by_last: HashMap<String, Vec<String>>,
    /// The panic machinery's functions, sorted by address.
    pub(super) machinery: Vec<MachineryFunction>,
    /// Module-relative start and end of every function, sorted: the
    /// warm-up's probes, and the range scanned for an async fn's constructor.
    pub(super) functions: Vec<(u64, u64)>,
    /// Demangled, readable name of each function by its address.
    pub(super) by_address: HashMap<u64, String>,
    /// Address of each closure symbol (`shop::load::{closure}`): its DWARF
    /// name tells whether it is an async fn's body, an async block or a closure.
    pub(super) closures: HashMap<String, u64>,
    /// Root path segments of the Rust symbols: the crates linked in.
    pub(super) roots: HashSet<String>,
    /// The crate of `main`: the executable's own.
    pub(super) main_crate: Option<String>,
}

impl NameIndex {
    pub(super) fn read(path: &Path) -> NameIndex {
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
                let end = sym.address().saturating_add(sym.size().max(1));
                index.functions.push((sym.address(), end));
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
            let root = symbol_root(&name);
            if !root.is_empty() && !index.roots.contains(root) {
                index.roots.insert(root.to_string());
            }
            if parts.len() == 2 && *last == "main" && index.main_crate.is_none() {
                index.main_crate = Some(root.to_string());
            }
            // Closures are named after the frame around them, not looked up.
            if last.starts_with('{') {
                if *last == "{closure}" {
                    index.closures.insert(name.clone(), sym.address());
                }
                continue;
            }
            let key = strip_generics(last).to_string();
            let list = index.by_last.entry(key).or_default();
            if list.len() < 64 && !list.contains(&name) {
                list.push(name);
            }
        }
        index.functions.sort_unstable();
        index.functions.dedup_by_key(|f| f.0);
        index.machinery.sort_unstable_by_key(|f| f.start);
        index
    }

    /// The module-relative range of the function holding `probe`.
    pub(super) fn function_range(&self, probe: u64) -> Option<(u64, u64)> {
        let at = self.functions.partition_point(|f| f.0 <= probe);
        let (start, end) = *self.functions.get(at.checked_sub(1)?)?;
        (probe < end).then_some((start, end))
    }
}

/// Frames for the panic machinery on top of a stack (the unwinder, the hook,
/// std's panic entry points), named from the symbol table alone, aligned
/// with `addresses`. Those frames are cut anyway, and a DWARF lookup of an
/// address never seen is the dearest part of a first panic. Covers the
/// leading run of machinery addresses and, when a panic entry is on the
/// stack, every machinery address down to the first run of entries (a hook
/// installed around ours sits between).
pub(super) fn machinery_frames(addresses: &[usize]) -> Vec<Option<RawFrame>> {
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
