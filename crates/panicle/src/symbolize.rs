//! From a captured backtrace to schema frames: the panic machinery cut,
//! names demangled without hashes, paths made readable, in-app marked.

use panicle_protocol::Frame;

use crate::Options;

/// Roots whose frames are the panic machinery on top of every panic stack.
const MACHINERY_ROOTS: &[&str] = &["std", "core", "alloc", "backtrace", "panicle", "panic_unwind", "__rustc"];

/// Crates that are never the service's own code.
const DEPENDENCY_ROOTS: &[&str] = &[
    "std", "core", "alloc", "backtrace", "panicle", "panic_unwind", "tokio", "futures", "futures_util",
    "futures_core", "futures_executor", "hyper", "hyper_util", "h2", "http", "http_body", "tower",
    "tower_http", "tower_service", "tower_layer", "axum", "axum_core", "tracing", "tracing_core",
    "tracing_subscriber", "tracing_opentelemetry", "opentelemetry", "opentelemetry_sdk", "serde",
    "serde_json", "sqlx", "sqlx_core", "reqwest", "ureq", "rayon", "rayon_core", "async_trait", "__rustc",
    "test", "libc",
];

/// Most frames a stored event keeps; deeper stacks are cut at the outer end.
pub const MAX_FRAMES: usize = 128;

/// The root path segment of a symbol: `shop` of `<shop::Cart as Drop>::drop`.
pub fn symbol_root(function: &str) -> &str {
    let f = function.trim_start_matches(['<', '&', '*']);
    let f = f.strip_prefix("mut ").unwrap_or(f);
    let f = f.strip_prefix("dyn ").unwrap_or(f);
    let end = f.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(f.len());
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
}

/// Captures the current stack, inlined frames expanded, innermost first.
pub fn capture_raw() -> Vec<RawFrame> {
    let bt = backtrace::Backtrace::new();
    let mut out = Vec::with_capacity(64);
    for frame in bt.frames() {
        let ip = frame.ip() as usize;
        let symbols = frame.symbols();
        if symbols.is_empty() {
            out.push(RawFrame {
                instruction_addr: ip,
                ..RawFrame::default()
            });
        }
        for sym in symbols {
            out.push(RawFrame {
                function: sym.name().map(|n| format!("{n:#}")),
                file: sym.filename().map(|p| p.to_string_lossy().into_owned()),
                line: sym.lineno(),
                column: sym.colno(),
                instruction_addr: ip,
            });
        }
    }
    out
}

/// Drops the machinery above the panicking frame and classifies the rest.
pub fn to_frames(raw: Vec<RawFrame>, options: &Options) -> Vec<Frame> {
    let start = raw
        .iter()
        .position(|f| !is_machinery(f))
        .unwrap_or(raw.len());
    raw.into_iter()
        .skip(start)
        .take(MAX_FRAMES)
        .map(|f| classify(f, options))
        .collect()
}

fn classify(raw: RawFrame, options: &Options) -> Frame {
    let (file, package_from_path) = match raw.file.as_deref() {
        Some(path) => {
            let (file, pkg) = clean_path(path);
            (Some(file), pkg)
        }
        None => (None, None),
    };
    let from_dependency_path = package_from_path.is_some() || file.as_deref().is_some_and(|f| f.starts_with("library/"));
    let function = raw.function;
    let root = function.as_deref().map(symbol_root).unwrap_or("");
    let included = function
        .as_deref()
        .is_some_and(|f| options.in_app_include.iter().any(|p| f.trim_start_matches('<').starts_with(p.as_str())));
    let excluded = function
        .as_deref()
        .is_some_and(|f| options.in_app_exclude.iter().any(|p| f.trim_start_matches('<').starts_with(p.as_str())));
    let in_app = included
        || (!excluded && function.is_some() && !from_dependency_path && !DEPENDENCY_ROOTS.contains(&root));
    let package = package_from_path.or_else(|| (!root.is_empty()).then(|| root.to_string()));
    Frame {
        function,
        file,
        line: raw.line,
        column: raw.column,
        in_app: Some(in_app),
        package,
        instruction_addr: Some(format!("{:#x}", raw.instruction_addr)),
        build_id: None,
        module_offset: None,
    }
}

/// Makes a build path readable and says which package it belongs to:
/// registry sources become `crate-x.y.z/src/…`, the standard library
/// `library/…`, anything else relative to the crate.
pub fn clean_path(path: &str) -> (String, Option<String>) {
    let path = path.replace('\\', "/");
    if let Some(rest) = path.strip_prefix("/rustc/")
        && let Some((_, lib)) = rest.split_once('/')
    {
        return (lib.to_string(), None);
    }
    if let Some(i) = path.find("/.cargo/registry/src/") {
        let rest = &path[i + "/.cargo/registry/src/".len()..];
        // index.crates.io-<hash>/<crate>-<version>/src/…
        if let Some((_, crate_path)) = rest.split_once('/') {
            let crate_dir = crate_path.split('/').next().unwrap_or("");
            return (crate_path.to_string(), Some(crate_name(crate_dir)));
        }
    }
    if let Some(i) = path.find("/.cargo/git/checkouts/") {
        let rest = &path[i + "/.cargo/git/checkouts/".len()..];
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        if let [repo, _rev, inner] = parts[..] {
            let name = repo.rsplit_once('-').map(|(n, _)| n).unwrap_or(repo);
            return (format!("{name}/{inner}"), Some(name.to_string()));
        }
    }
    if !path.starts_with('/') {
        return (path, None);
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(rel) = path.strip_prefix(&format!("{}/", cwd.display()))
    {
        return (rel.to_string(), None);
    }
    // `/home/ci/build/shop/src/orders.rs` → `shop/src/orders.rs`.
    let parts: Vec<&str> = path.split('/').collect();
    if let Some(src) = parts.iter().rposition(|p| *p == "src" || *p == "examples" || *p == "tests")
        && src > 0
    {
        return (parts[src - 1..].join("/"), None);
    }
    (parts[parts.len().saturating_sub(2)..].join("/"), None)
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

    fn raw(function: &str, file: &str) -> RawFrame {
        RawFrame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(1),
            column: None,
            instruction_addr: 0x1000,
        }
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(
            clean_path("/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/option.rs"),
            ("library/core/src/option.rs".into(), None)
        );
        assert_eq!(
            clean_path("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.50.0/src/runtime/task/mod.rs"),
            ("tokio-1.50.0/src/runtime/task/mod.rs".into(), Some("tokio".into()))
        );
        assert_eq!(clean_path("src/orders.rs"), ("src/orders.rs".into(), None));
        assert_eq!(
            clean_path("/builds/ci/x9/shop/src/orders.rs"),
            ("shop/src/orders.rs".into(), None)
        );
    }

    #[test]
    fn machinery_is_cut_and_in_app_marked() {
        let frames = vec![
            raw("backtrace::backtrace::trace", "/root/.cargo/registry/src/i/backtrace-0.3.7/src/lib.rs"),
            raw("panicle::hook", "crates/panicle/src/lib.rs"),
            raw("std::panicking::rust_panic_with_hook", "/rustc/abc/library/std/src/panicking.rs"),
            raw("core::panicking::panic_fmt", "/rustc/abc/library/core/src/panicking.rs"),
            raw("core::option::unwrap_failed", "/rustc/abc/library/core/src/option.rs"),
            raw("shop::orders::reserve", "src/orders.rs"),
            raw("serde_json::de::from_str", "/root/.cargo/registry/src/i/serde_json-1.0.1/src/de.rs"),
            raw("tokio::runtime::task::raw::poll", "/root/.cargo/registry/src/i/tokio-1.50.0/src/runtime/task/raw.rs"),
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
    fn include_and_exclude_override() {
        let options = Options {
            in_app_include: vec!["serde_json::".into()],
            in_app_exclude: vec!["shop::vendored".into()],
            ..Options::default()
        };
        let out = to_frames(
            vec![
                raw("shop::vendored::thing", "src/vendored.rs"),
                raw("serde_json::de::from_str", "/root/.cargo/registry/src/i/serde_json-1.0.1/src/de.rs"),
            ],
            &options,
        );
        assert_eq!(out[0].in_app, Some(false));
        assert_eq!(out[1].in_app, Some(true));
    }
}
