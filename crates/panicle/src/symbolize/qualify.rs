//! Qualification: line-tables-only DWARF names inlined functions bare
//! (`unwrap<u32>`, `{async fn}`); their module path comes from the symbol
//! table, the source file and the frames around them.

use super::RawFrame;
use super::classify::{DEPENDENCY_ROOTS, clean_path};
use super::demangle::{has_path, strip_generics, symbol_root};
use super::names::NameIndex;

/// Gives every bare inlined name of one inline chain (innermost first) its
/// path, outermost first, so each name can lean on the frames around it:
/// a closure takes the path of the nearest outer frame in its own source
/// file (its lexical parent, usually), and a workspace file's crate is the
/// one of the nearest outer frame from the workspace, never that of a std
/// or registry function the code was inlined into.
pub(super) fn qualify_inlined(frames: &mut [RawFrame], names: &NameIndex) {
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
pub(super) fn is_workspace_file(file: &str) -> bool {
    let (clean, package) = clean_path(file);
    package.is_none() && !clean.starts_with("library/")
}

/// Crate and module path a source file implies: `library/core/src/option.rs`
/// → (`core`, [`option`]); `tokio-1.50.0/src/runtime/task/raw.rs` → (`tokio`,
/// [`runtime`, `task`, `raw`]); a workspace file gets `workspace_crate`.
pub(super) fn module_of_file(
    file: &str,
    workspace_crate: Option<&str>,
) -> (Option<String>, Vec<String>) {
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

impl NameIndex {
    /// The qualified name of an inlined function named bare by DWARF, from
    /// its source file, the crate of the workspace frames around it, and
    /// (for a closure) the nearest outer frame in the same file, usually its
    /// lexical parent. True when the name was found in the symbol table.
    pub(super) fn qualify(
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

#[cfg(test)]
mod tests {
    use super::super::demangle::split_path;
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
}
