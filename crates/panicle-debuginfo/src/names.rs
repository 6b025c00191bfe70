//! What the ELF symbol table tells without DWARF: full paths by their last
//! segment (to qualify bare inlined names), readable names by address, and
//! the panic machinery's functions, named at a panic without a DWARF lookup.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::demangle::{clean_symbol, split_path, strip_generics, symbol_root};

/// Bound of the functions indexed (the SDK's warm-up probes each) in a
/// huge executable.
pub const MAX_FUNCTIONS: usize = 500_000;

/// std's panic entry points (prefixes of readable names): every panic
/// passes them between the panicking frame and the hook, and they never have
/// the service's code inlined into them.
pub(crate) const PANIC_ENTRY_FUNCTIONS: &[&str] = &[
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
pub(crate) const HOOK_FUNCTIONS: &[&str] = &[
    "backtrace::",
    "panicle::symbolize::capture",
    "panicle::capture::",
    "panicle::hook",
    "panicle::init::{closure}",
];

pub fn is_panic_entry(function: &str) -> bool {
    PANIC_ENTRY_FUNCTIONS
        .iter()
        .any(|p| function.starts_with(p))
}

/// A function of the panic machinery: module-relative range and name.
pub(crate) struct MachineryFunction {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) name: String,
    /// One of [`PANIC_ENTRY_FUNCTIONS`] (else of [`HOOK_FUNCTIONS`]).
    pub(crate) entry: bool,
}

/// Full symbol paths by their last segment, from the ELF symbol table, to
/// recover the module path of functions line-tables-only DWARF names bare.
#[derive(Default)]
pub struct NameIndex {
    pub(crate) by_last: HashMap<String, Vec<String>>,
    /// The panic machinery's functions, sorted by address.
    pub(crate) machinery: Vec<MachineryFunction>,
    /// Module-relative start and end of every function, sorted: the
    /// warm-up's probes, and the range scanned for an async fn's constructor.
    pub(crate) functions: Vec<(u64, u64)>,
    /// Demangled, readable name of each function by its address.
    pub(crate) by_address: HashMap<u64, String>,
    /// Address of each closure symbol (`shop::load::{closure}`): its DWARF
    /// name tells whether it is an async fn's body, an async block or a closure.
    pub(crate) closures: HashMap<String, u64>,
    /// Root path segments of the Rust symbols: the crates linked in.
    pub(crate) roots: HashSet<String>,
    /// The crate of `main`: the executable's own.
    pub(crate) main_crate: Option<String>,
}

impl NameIndex {
    /// Reads the symbol table of the ELF at `path`; empty when it has none.
    pub fn read(path: &Path) -> NameIndex {
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
            if index.functions.len() < MAX_FUNCTIONS {
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
    pub(crate) fn function_range(&self, probe: u64) -> Option<(u64, u64)> {
        let at = self.functions.partition_point(|f| f.0 <= probe);
        let (start, end) = *self.functions.get(at.checked_sub(1)?)?;
        (probe < end).then_some((start, end))
    }
}

impl NameIndex {
    /// Module-relative start and end of every function, sorted.
    pub fn functions(&self) -> &[(u64, u64)] {
        &self.functions
    }

    /// True when the symbol table named any of the panic machinery.
    pub fn knows_machinery(&self) -> bool {
        !self.machinery.is_empty()
    }

    /// Names for the panic machinery on top of a stack (the unwinder, the
    /// hook, std's panic entry points), from the symbol table alone, aligned
    /// with `probes` (module-relative lookup addresses; `None` outside the
    /// module). Those frames are cut anyway, and a DWARF lookup of an address
    /// never seen is the dearest part of a first panic. Covers the leading
    /// run of machinery addresses and, when a panic entry is on the stack,
    /// every machinery address down to the first run of entries (a hook
    /// installed around ours sits between).
    pub fn machinery_names(&self, probes: &[Option<u64>]) -> Vec<Option<String>> {
        let table = &self.machinery;
        let found: Vec<Option<&MachineryFunction>> = probes
            .iter()
            .map(|probe| {
                let probe = (*probe)?;
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
            .enumerate()
            .map(|(i, f)| f.filter(|_| i < end).map(|f| f.name.clone()))
            .collect()
    }
}
