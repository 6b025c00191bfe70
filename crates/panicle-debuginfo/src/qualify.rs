//! Qualification: line-tables-only DWARF names inlined functions bare
//! (`unwrap<u32>`, `{async fn}`); their module path comes from the symbol
//! table, the source file and the frames around them.

use super::RawFrame;
use super::classify::{DEPENDENCY_ROOTS, clean_path, sdk_source_dir};
use super::demangle::{has_path, strip_generics, symbol_root};
use super::names::NameIndex;

/// Finds, for an async fn's body inlined under a bare `{async fn}`, the
/// name of the function whose future it is (see `loader::constructor_of`).
pub(crate) type ConstructorLookup<'a> = dyn FnMut(&RawFrame, &RawFrame) -> Option<String> + 'a;

/// Gives every bare inlined name of one inline chain (innermost first) its
/// path, outermost first, so each name can lean on the frames around it.
///
/// - A named function (`compact`, `unwrap<u32>`) is looked up in the symbol
///   table within the crate and module its source file implies.
/// - An async fn's body (`{async fn}`) takes the function whose constructor
///   was called where the body is polled (`load(id).await`), else the path a
///   framework frame just outside it names in its generic arguments
///   (`Handler::call<fn(..) -> shop::order::show::{async fn}>`).
/// - A closure or async block takes its lexical parent (the nearest outer
///   frame in its own file), else the path a framework frame names.
/// - Otherwise the crate and module of the file, with the marker:
///   `shop::order::{async fn}`, never another function's name.
///
/// `dwarf_names` are DWARF's own names of the frames, generic arguments and
/// all (the outermost one before the symbol table's name replaced it): what
/// framework frames mention of the bodies inside them.
pub(crate) fn qualify_inlined(
    frames: &mut [RawFrame],
    dwarf_names: &[Option<String>],
    names: &NameIndex,
    constructor: &mut ConstructorLookup<'_>,
) {
    let mut workspace_crate: Option<String> = None;
    for i in (0..frames.len()).rev() {
        // Only a real name (the symbol table's, or found there) tells the
        // crate: a path guessed from a file alone could spread inward.
        let mut real_name = true;
        if let Some(name) = frames[i].function.clone()
            && !has_path(&name)
            && i + 1 < frames.len()
        {
            let file = frames[i].file.clone();
            let krate = file
                .as_deref()
                .and_then(|f| crate_of_file(f, names, workspace_crate.as_deref()))
                .or_else(|| workspace_crate.clone());
            let qualified = match anonymous_marker(&name) {
                Some(marker) => name_anonymous(
                    frames,
                    dwarf_names,
                    i,
                    marker,
                    krate.as_deref(),
                    names,
                    constructor,
                ),
                None => {
                    let (q, found) = names.qualify(&name, file.as_deref(), krate.as_deref());
                    real_name = found;
                    q
                }
            };
            frames[i].function = Some(qualified);
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

const ASYNC_FN: &str = "{async fn}";
const ASYNC_BLOCK: &str = "{async block}";
const CLOSURE: &str = "{closure}";

/// `{async fn}`, `{async block}` or `{closure}` for a bare DWARF name of
/// an anonymous body (generic arguments ignored).
pub(crate) fn anonymous_marker(name: &str) -> Option<&'static str> {
    match strip_generics(name) {
        ASYNC_FN => Some(ASYNC_FN),
        ASYNC_BLOCK => Some(ASYNC_BLOCK),
        CLOSURE => Some(CLOSURE),
        _ => None,
    }
}

/// The full name of anonymous body `frames[i]` (see [`qualify_inlined`]).
fn name_anonymous(
    frames: &[RawFrame],
    dwarf_names: &[Option<String>],
    i: usize,
    marker: &str,
    krate: Option<&str>,
    names: &NameIndex,
    constructor: &mut ConstructorLookup<'_>,
) -> String {
    let file = frames[i].file.as_deref();
    let (_, modules) = file.map(|f| module_of_file(f, krate)).unwrap_or_default();
    if marker == ASYNC_FN {
        if let Some(caller) = frames.get(i + 1)
            && let Some(function) = constructor(&frames[i], caller)
        {
            let (q, _) = names.qualify(&function, file, krate);
            return format!("{q}::{marker}");
        }
    } else if let Some(parent) = frames[i + 1..]
        .iter()
        .find(|f| file.is_some() && f.file.as_deref() == file)
        .and_then(|f| f.function.as_deref())
    {
        return format!("{parent}::{marker}");
    }
    let krate = krate.or(names.main_crate.as_deref());
    if let Some(krate) = krate
        && let Some(path) = named_by_framework(
            &frames[i + 1..],
            dwarf_names.get(i + 1..).unwrap_or_default(),
            marker,
            krate,
            &modules,
        )
    {
        return path;
    }
    let mut parts: Vec<&str> = krate.into_iter().collect();
    parts.extend(modules.iter().map(String::as_str));
    parts.push(marker);
    parts.join("::")
}

/// The path of an anonymous body as the framework frames just outside it
/// name it in their generic arguments (`poll<shop::jobs::reindex::{async fn}>`),
/// when that names exactly one body of the file's crate and module. The
/// search stops at the first frame of the service's own code: past it, a
/// mention would be of another body.
fn named_by_framework(
    outer: &[RawFrame],
    dwarf_names: &[Option<String>],
    marker: &str,
    krate: &str,
    modules: &[String],
) -> Option<String> {
    let mut prefix = krate.to_string();
    for m in modules {
        prefix.push_str("::");
        prefix.push_str(m);
    }
    prefix.push_str("::");
    for (frame, dwarf_name) in outer.iter().zip(dwarf_names) {
        if frame
            .file
            .as_deref()
            .is_some_and(|f| is_workspace_file(f) && !is_sdk_file(f))
        {
            return None;
        }
        let names = [dwarf_name.as_deref(), frame.function.as_deref()];
        let mut found: Vec<String> = Vec::new();
        for path in names.into_iter().flatten().flat_map(mentioned_paths) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            let Some((head, last)) = path.rsplit_once("::") else {
                continue;
            };
            // Legacy symbol names call every anonymous body `{closure}`.
            let fits = last == marker || last == CLOSURE;
            // An async fn's body belongs to a named function of the module.
            let named = marker != ASYNC_FN || !rest.trim_end_matches(last).contains("::{");
            if fits && named && !rest.starts_with('{') {
                let path = format!("{head}::{marker}");
                if !found.contains(&path) {
                    found.push(path);
                }
            }
        }
        match found.len() {
            0 => continue,
            1 => return found.pop(),
            _ => return None,
        }
    }
    None
}

/// The paths a name mentions, generic arguments included:
/// `poll<tracing::Instrumented<shop::jobs::reindex::{async fn}>>` →
/// `poll`, `tracing::Instrumented`, `shop::jobs::reindex::{async fn}`.
fn mentioned_paths(name: &str) -> Vec<String> {
    let joined = name
        .replace(ASYNC_FN, "{async_fn}")
        .replace(ASYNC_BLOCK, "{async_block}");
    joined
        .split(|c: char| {
            matches!(
                c,
                '<' | '>' | ',' | '(' | ')' | '&' | '*' | ' ' | ';' | '[' | ']' | '='
            )
        })
        .filter(|t| t.contains("::"))
        .map(|t| {
            t.replace("{async_fn}", ASYNC_FN)
                .replace("{async_block}", ASYNC_BLOCK)
        })
        .collect()
}

/// A file of this SDK, wherever it was built from (workspace, path,
/// registry or git dependency).
pub(crate) fn is_sdk_file(file: &str) -> bool {
    file.contains(sdk_source_dir())
}

/// The crate a source file belongs to: the SDK's, the standard library's,
/// a registry or git dependency's, else (the service's own code) the crate
/// named by the directory holding its `src` (when the symbol table knows
/// that crate), else the crate of the workspace frames around it. Unknown,
/// a name is looked up among the service's own crates and, not found there,
/// shown under the executable's crate (the crate of `main`).
pub(crate) fn crate_of_file(
    file: &str,
    names: &NameIndex,
    workspace_crate: Option<&str>,
) -> Option<String> {
    if is_sdk_file(file) {
        return Some("panicle".into());
    }
    let (clean, package) = clean_path(file);
    if let Some(lib) = clean.strip_prefix("library/") {
        return lib.split('/').next().map(str::to_string);
    }
    if let Some(p) = package {
        return Some(p.replace('-', "_"));
    }
    if let Some(dir) = crate_dir_name(file)
        && names.roots.contains(&dir)
    {
        return Some(dir);
    }
    workspace_crate.map(str::to_string)
}

/// The crate name a workspace path suggests: the directory holding `src`
/// (`shop/src/order.rs` → `shop`), or an example's, test's or bench's own
/// name (`examples/demo.rs` → `demo`).
fn crate_dir_name(file: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
    let name = if let Some(src) = parts.iter().rposition(|p| *p == "src") {
        parts.get(src.checked_sub(1)?)?.to_string()
    } else {
        let at = parts
            .iter()
            .rposition(|p| matches!(*p, "examples" | "tests" | "benches"))?;
        let next = parts.get(at + 1)?;
        next.strip_suffix(".rs").unwrap_or(next).to_string()
    };
    Some(name.replace('-', "_"))
}

/// A file of the service's own source tree: neither the standard library
/// nor a registry or git dependency.
pub(crate) fn is_workspace_file(file: &str) -> bool {
    let (clean, package) = clean_path(file);
    package.is_none() && !clean.starts_with("library/")
}

/// Crate and module path a source file implies: `library/core/src/option.rs`
/// → (`core`, [`option`]); `tokio-1.50.0/src/runtime/task/raw.rs` → (`tokio`,
/// [`runtime`, `task`, `raw`]); a workspace file gets `workspace_crate`.
pub(crate) fn module_of_file(
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
    /// The qualified name of a function line-tables-only DWARF names bare,
    /// looked up in the symbol table within `krate` and the module path its
    /// source file implies. True when the name was found there.
    pub(crate) fn qualify(
        &self,
        name: &str,
        file: Option<&str>,
        krate: Option<&str>,
    ) -> (String, bool) {
        let (krate, modules) = match file {
            Some(f) => module_of_file(f, krate),
            None => (krate.map(str::to_string), Vec::new()),
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
        let krate = krate.or_else(|| self.main_crate.clone());
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

    fn dwarf_names(frames: &[RawFrame]) -> Vec<Option<String>> {
        frames.iter().map(|f| f.function.clone()).collect()
    }

    fn raw(function: &str, file: &str) -> RawFrame {
        RawFrame::named(function, file)
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
            index.qualify("unwrap<u32>", Some(std_file), Some("demo")).0,
            "core::option::Option<T>::unwrap"
        );
        assert_eq!(
            index
                .qualify(
                    "reserve",
                    Some("/w/crates/panicle/examples/demo.rs"),
                    Some("demo")
                )
                .0,
            "demo::orders::reserve"
        );
        // Not in the symbol table: the path comes from the file.
        assert_eq!(
            index
                .qualify("total", Some("/w/shop/src/billing/mod.rs"), Some("shop"))
                .0,
            "shop::billing::total"
        );
        assert_eq!(
            index
                .qualify(
                    "poll<F>",
                    Some("/root/.cargo/registry/src/i/tokio-1.50.0/src/runtime/task/raw.rs"),
                    Some("shop")
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
        let dwarf = dwarf_names(&found);
        qualify_inlined(&mut found, &dwarf, &index, &mut |_, _| None);
        assert_eq!(found[1].function.as_deref(), Some("shop::orders::reserve"));
        assert_eq!(found[0].function.as_deref(), Some("shop::billing::total"));
        // `place` is not: the path guessed from its file does not become
        // the crate of the frames inlined into it.
        let mut guessed = vec![
            raw("total", "/w/shop/src/billing/mod.rs"),
            raw("place", "/w/shop/src/orders.rs"),
            raw(outer, std_file),
        ];
        let dwarf = dwarf_names(&guessed);
        qualify_inlined(&mut guessed, &dwarf, &index, &mut |_, _| None);
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
        let dwarf = dwarf_names(&chain);
        qualify_inlined(&mut chain, &dwarf, &index, &mut |_, _| None);
        let names: Vec<_> = chain.iter().map(|f| f.function.clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                "hook::report",
                "hook::child::{closure}",
                "core::iter::adapters::map::fold<I, F>::{closure}",
                "core::iter::adapters::map::fold<I, F>",
                "hook::child",
            ]
        );
    }

    const AXUM: &str =
        "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/handler/mod.rs";
    const ORDER: &str = "/srv/shop/src/order.rs";

    fn at(function: &str, file: &str, line: u32) -> RawFrame {
        RawFrame {
            line: Some(line),
            ..raw(function, file)
        }
    }

    fn shop_index() -> NameIndex {
        let mut index = index_of(&["shop::main"]);
        index.roots.insert("shop".into());
        index.main_crate = Some("shop".into());
        index
    }

    #[test]
    fn async_bodies_inlined_bare_take_their_function() {
        // Release, line-tables-only: `show` polls `load(id).await`, whose
        // body holds an `async move {}` block; all inlined into axum's
        // handler future, whose DWARF name mentions `show` in its generics.
        let mut chain = vec![
            at("unwrap<u32>", "/rustc/abc/library/core/src/option.rs", 1016),
            at("{async block}", ORDER, 15),
            at("{async fn}", ORDER, 17),
            at("{async fn}", ORDER, 6),
            at(
                "{async block}<fn(axum::extract::path::Path<u32>) -> shop::order::show::{async fn}, shop::order::show::{async fn}, ()>",
                AXUM,
                255,
            ),
        ];
        let dwarf = dwarf_names(&chain);
        // The outermost frame carries the symbol table's (legacy) name.
        chain[4].function = Some("<F as axum::handler::Handler<(M,T1),S>>::call::{closure}".into());
        let mut asked = Vec::new();
        qualify_inlined(&mut chain, &dwarf, &shop_index(), &mut |body, caller| {
            asked.push((body.line, caller.line));
            (body.line == Some(17)).then(|| "load".to_string())
        });
        let names: Vec<_> = chain.iter().map(|f| f.function.clone().unwrap()).collect();
        assert_eq!(
            names[..4],
            [
                "core::option::unwrap<u32>",
                "shop::order::load::{async fn}::{async block}",
                "shop::order::load::{async fn}",
                "shop::order::show::{async fn}",
            ]
        );
        assert_eq!(asked, [(Some(6), Some(255)), (Some(17), Some(6))]);
    }

    #[test]
    fn an_async_body_nobody_names_keeps_its_module_not_a_neighbours_name() {
        // `load` polled by `show` with neither constructor nor mention:
        // the framework's mention of `show` is past `show`'s own frame.
        let mut chain = vec![
            at("{async fn}", ORDER, 17),
            at("{async fn}", ORDER, 6),
            at(
                "{async block}<fn() -> shop::order::show::{async fn}>",
                AXUM,
                255,
            ),
        ];
        let dwarf = dwarf_names(&chain);
        qualify_inlined(&mut chain, &dwarf, &shop_index(), &mut |_, _| None);
        let names: Vec<_> = chain.iter().map(|f| f.function.clone().unwrap()).collect();
        assert_eq!(names[0], "shop::order::{async fn}");
        assert_eq!(names[1], "shop::order::show::{async fn}");
    }

    #[test]
    fn a_thread_closure_inlined_into_std_is_named_by_std_generics() {
        let std_file = "/rustc/abc/library/std/src/thread/lifecycle.rs";
        let mut chain = vec![
            at("{closure}", "/srv/shop/src/jobs.rs", 45),
            at(
                "{closure}<shop::jobs::reindex::{closure}, ()>",
                std_file,
                91,
            ),
        ];
        let dwarf = dwarf_names(&chain);
        qualify_inlined(&mut chain, &dwarf, &shop_index(), &mut |_, _| None);
        assert_eq!(
            chain[0].function.as_deref(),
            Some("shop::jobs::reindex::{closure}")
        );
    }

    #[test]
    fn crates_come_from_the_sdk_dir_the_registry_or_the_src_parent() {
        let index = shop_index();
        let sdk_file = format!("/elsewhere/{}/layer.rs", sdk_source_dir());
        assert_eq!(
            crate_of_file(&sdk_file, &index, Some("shop")).as_deref(),
            Some("panicle")
        );
        assert_eq!(crate_of_file(AXUM, &index, None).as_deref(), Some("axum"));
        assert_eq!(crate_of_file(ORDER, &index, None).as_deref(), Some("shop"));
        // A directory the symbol table knows no crate of: the frames
        // around it, else unknown (looked up, then the crate of `main`).
        assert_eq!(
            crate_of_file("/srv/app-v2/src/x.rs", &index, Some("billing")).as_deref(),
            Some("billing")
        );
        assert_eq!(crate_of_file("/srv/app-v2/src/x.rs", &index, None), None);
        assert_eq!(
            crate_dir_name("/w/crates/panicle-server/src/a.rs").as_deref(),
            Some("panicle_server")
        );
        assert_eq!(
            crate_dir_name("/w/crates/panicle/examples/demo.rs").as_deref(),
            Some("demo")
        );
    }
}
