//! The cut and the classification: the panic machinery above the panicking
//! frame dropped, each remaining frame made a schema frame with a readable
//! path, its package and whether it is the service's own code.

use panicle_protocol::Frame;

use super::RawFrame;
use super::demangle::{has_path, symbol_root};
use super::names::is_panic_entry;
use super::qualify::is_sdk_file;
use panicle_protocol::short_function_name;

/// Roots whose frames are the panic machinery on top of every panic stack.
pub(crate) const MACHINERY_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "backtrace",
    "panicle",
    "panicle_debuginfo",
    "panic_unwind",
    "__rustc",
];

/// Crates that are never the service's own code.
pub(crate) const DEPENDENCY_ROOTS: &[&str] = &[
    // The language and this SDK.
    "std",
    "core",
    "alloc",
    "backtrace",
    "panicle",
    "panicle_protocol",
    "panicle_debuginfo",
    "panic_unwind",
    "__rustc",
    "test",
    "libc",
    "addr2line",
    "gimli",
    // Async runtimes and their plumbing.
    "tokio",
    "tokio_util",
    "tokio_stream",
    "tokio_rustls",
    "futures",
    "futures_util",
    "futures_core",
    "futures_executor",
    "futures_channel",
    "async_trait",
    "async_std",
    "smol",
    "mio",
    "pin_project",
    "pin_project_lite",
    "rayon",
    "rayon_core",
    "crossbeam",
    "crossbeam_channel",
    "crossbeam_utils",
    "crossbeam_epoch",
    "crossbeam_deque",
    "parking_lot",
    "parking_lot_core",
    // HTTP and RPC stacks.
    "hyper",
    "hyper_util",
    "hyper_rustls",
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
    "actix_web",
    "actix_http",
    "actix_rt",
    "actix_server",
    "warp",
    "tonic",
    "prost",
    "reqwest",
    "ureq",
    "rustls",
    "matchit",
    "bytes",
    // Telemetry, data and errors.
    "tracing",
    "tracing_core",
    "tracing_futures",
    "tracing_subscriber",
    "tracing_opentelemetry",
    "tracing_log",
    "log",
    "opentelemetry",
    "opentelemetry_sdk",
    "serde",
    "serde_json",
    "sqlx",
    "sqlx_core",
    "sqlx_postgres",
    "sqlx_sqlite",
    "anyhow",
    "criterion",
];

/// The SDK's source directory as the compiler saw it (relative in its own
/// workspace, absolute as a path or registry dependency), so frames of the
/// SDK are recognised even when inlined under a bare name. This crate sits
/// beside the SDK wherever both come from (`crates/panicle-debuginfo` and
/// `crates/panicle`, `panicle-debuginfo-0.1.0` and `panicle-0.1.0`).
pub fn sdk_source_dir() -> &'static str {
    static DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let this = file!().replace('\\', "/");
        let crate_dir = this.strip_suffix("/src/classify.rs").unwrap_or(&this);
        let (parent, name) = crate_dir.rsplit_once('/').unwrap_or(("", crate_dir));
        let sdk = name.replacen("panicle-debuginfo", "panicle", 1);
        if parent.is_empty() {
            format!("{sdk}/src")
        } else {
            format!("{parent}/{sdk}/src")
        }
    });
    &DIR
}

#[test]
fn sdk_source_dir_is_the_sdk_crates_src() {
    assert!(
        sdk_source_dir().ends_with("crates/panicle/src"),
        "{}",
        sdk_source_dir()
    );
}

/// True for a frame of the panic machinery: the unwinder, the hook, std's
/// panic entry points and what they inline.
pub fn is_machinery(frame: &RawFrame) -> bool {
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

/// Where the stack below the panic machinery starts: the first frame that
/// is not machinery past std's panic entry (when it is on the stack; a hook
/// installed around ours, user code by name, sits above it). A stack no
/// frame of which is named is kept whole: the machinery cannot be told apart,
/// and the server symbolizes and cuts it later. An unnamed frame past the
/// entry was not symbolized (the loader was busy): kept, with its address.
pub fn cut_machinery(raw: &[RawFrame]) -> usize {
    if raw.iter().all(|f| f.function.is_none()) {
        return 0;
    }
    let entry = raw
        .iter()
        .position(|f| f.function.as_deref().is_some_and(is_panic_entry))
        .unwrap_or(0);
    raw.iter()
        .skip(entry)
        .position(|f| f.function.is_none() || !is_machinery(f))
        .map_or(raw.len(), |i| entry + i)
}

/// The schema frame of a symbolized one: readable path, package, `in_app`
/// by default (the service's own crates), address, and the build-id and
/// offset of the module the address is in.
pub fn finish(raw: &RawFrame, build_id: Option<String>, module_offset: Option<u64>) -> Frame {
    let (file, package_from_path) = match raw.file.as_deref() {
        Some(path) => {
            let (file, pkg) = clean_path(path);
            (Some(file), pkg)
        }
        None => (None, None),
    };
    let from_dependency_path =
        package_from_path.is_some() || file.as_deref().is_some_and(|f| f.starts_with("library/"));
    let full = raw.function.clone();
    let root = full.as_deref().map(symbol_root).unwrap_or("");
    // A name without a module path is a C symbol (`main`, `_start`, `__rust_try`).
    let rust_path = full.as_deref().is_some_and(has_path);
    // The SDK's own frames never count as the service's code, however it
    // is depended on (a path dependency's files look like the workspace's).
    let sdk = raw.file.as_deref().is_some_and(is_sdk_file);
    let in_app = rust_path && !from_dependency_path && !sdk && !DEPENDENCY_ROOTS.contains(&root);
    let package = package_from_path.or_else(|| (!root.is_empty()).then(|| root.to_string()));
    // Shown and grouped without generic arguments; the full name kept.
    let function = full.as_deref().map(short_function_name);
    let raw_function = full.filter(|f| Some(f) != function.as_ref());
    Frame {
        function,
        raw_function,
        file,
        line: raw.line,
        column: raw.column,
        in_app: Some(in_app),
        package,
        instruction_addr: Some(format!("{:#x}", raw.instruction_addr)),
        build_id,
        module_offset: module_offset.map(|o| format!("{o:#x}")),
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
pub(crate) fn after_cargo_home<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
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
pub(crate) fn crate_name(dir: &str) -> String {
    match dir.rfind('-') {
        Some(i) if dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => dir[..i].to_string(),
        _ => dir.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(addr: usize) -> RawFrame {
        RawFrame::bare(addr)
    }

    fn to_frames(raw: Vec<RawFrame>) -> Vec<Frame> {
        let start = cut_machinery(&raw);
        raw[start..].iter().map(|f| finish(f, None, None)).collect()
    }

    fn raw(function: &str, file: &str) -> RawFrame {
        RawFrame::named(function, file)
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
        let out = to_frames(frames);
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
        let out = to_frames(frames);
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
        let out = to_frames(frames);
        let addrs: Vec<_> = out.iter().map(|f| f.instruction_addr.clone()).collect();
        assert_eq!(addrs, [Some("0x30".into()), Some("0x40".into())]);
    }
}
