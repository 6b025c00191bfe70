//! Normalization: drop what changes without the bug changing.
//!
//! Symbol hashes, addresses, closure numbering, generic arguments and line
//! numbers go; runtime plumbing frames (std, core, tokio, futures, the Go
//! runtime, …) go; message values (numbers, quoted strings, ids, paths) become
//! placeholders. What is left is the bug's shape: the fingerprint and the
//! clustering signature are both built from it.

use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

use crate::event::{Event, Frame};

/// Longest message template kept; the head of a message names the bug.
const MAX_TEMPLATE_CHARS: usize = 300;
/// Frames kept in a signature; callers further out say little about the cause.
pub const MAX_SIGNATURE_FRAMES: usize = 32;

static RE_UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b").unwrap()
});
static RE_HEX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b0x[0-9a-fA-F]+\b").unwrap());
static RE_DQUOTE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap());
static RE_BACKTICK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`]*)`").unwrap());
static RE_CODE_LIKE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_:<>(), &]*$").unwrap());
static RE_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:[A-Za-z]:)?(?:/[\w.\-]+){2,}/?").unwrap());
static RE_LONG_HEXISH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[0-9a-fA-F]{12,}\b").unwrap());
static RE_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?").unwrap());
static RE_SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").unwrap());

/// The message with its values replaced by placeholders:
/// `index out of bounds: the len is 3 but the index is 7` →
/// `index out of bounds: the len is <n> but the index is <n>`.
pub fn message_template(message: &str) -> String {
    let s = RE_UUID.replace_all(message, "<id>");
    let s = RE_HEX.replace_all(&s, "<hex>");
    let s = RE_DQUOTE.replace_all(&s, "\"<s>\"");
    let s = RE_BACKTICK.replace_all(&s, |caps: &regex::Captures<'_>| {
        let inner = &caps[1];
        // `Option::unwrap()` and `None` are std's wording; `héllo` is data.
        if inner.len() <= 40 && RE_CODE_LIKE.is_match(inner) {
            caps[0].to_string()
        } else {
            "`<s>`".to_string()
        }
    });
    let s = RE_PATH.replace_all(&s, "<path>");
    let s = RE_LONG_HEXISH.replace_all(&s, "<id>");
    let s = RE_NUMBER.replace_all(&s, "<n>");
    let s = RE_SPACES.replace_all(s.trim(), " ");
    s.chars().take(MAX_TEMPLATE_CHARS).collect()
}

static RE_RUST_HASH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"::h[0-9a-f]{16}$").unwrap());
static RE_CLOSURE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{closure\}\}(?:#\d+)?|\{closure#\d+\}").unwrap());
static RE_GO_CLOSURE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\.(func|gowrap)\d+(?:\.\d+)*").unwrap());
static RE_GO_ARGS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\([^()]*\)$").unwrap());

/// Crates and packages whose frames are plumbing, never the root cause.
const RUNTIME_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "tokio",
    "futures",
    "futures_util",
    "futures_core",
    "futures_executor",
    "hyper",
    "hyper_util",
    "tower",
    "tower_http",
    "tower_service",
    "axum",
    "axum_core",
    "tracing",
    "tracing_core",
    "tracing_futures",
    "backtrace",
    "panicle",
    "panic_unwind",
    "rayon",
    "rayon_core",
    "async_trait",
    "pin_project",
    "pin_project_lite",
];

const PLUMBING_SYMBOLS: &[&str] = &[
    "rust_begin_unwind",
    "rust_panic",
    "main",
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
];

const GO_RUNTIME_PREFIXES: &[&str] = &["runtime.", "internal/", "runtime/", "reflect.", "testing."];

/// The first path segment of a Rust symbol, looking through `<T as Trait>`.
fn rust_root(function: &str) -> &str {
    let f = function.trim_start_matches('<').trim_start_matches('&');
    let f = f.trim_start_matches("mut ").trim_start_matches("dyn ");
    let end = f
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(f.len());
    &f[..end]
}

/// True when the function is runtime or language plumbing.
pub fn is_plumbing(function: &str) -> bool {
    let f = function.trim();
    if f.is_empty()
        || PLUMBING_SYMBOLS.contains(&f)
        || f.starts_with("__rust")
        || f.starts_with("__libc_")
        || f.starts_with("_start")
    {
        return true;
    }
    if GO_RUNTIME_PREFIXES.iter().any(|p| f.starts_with(p)) {
        return true;
    }
    if f.contains("::") || f.starts_with('<') {
        return RUNTIME_ROOTS.contains(&rust_root(f));
    }
    false
}

/// Strips what varies between builds from a function name.
pub fn normalize_function(function: &str) -> String {
    let f = function.trim();
    let f = RE_RUST_HASH.replace(f, "");
    let f = RE_CLOSURE.replace_all(&f, "{closure}");
    let f = RE_GO_CLOSURE.replace_all(&f, ".$1");
    let f = RE_GO_ARGS.replace(&f, "");
    let f = short_function_name(&f);
    // A function's anonymous bodies are one token: legacy mangling (what
    // sentry-rust and full debug info show) calls async bodies `{closure}`,
    // DWARF's names tell `{async fn}`/`{async block}`, and nesting depth
    // differs with how the compiler lowered them.
    RE_ANONYMOUS_RUN.replace_all(&f, "::{closure}").into_owned()
}

static RE_ANONYMOUS_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:::\{(?:closure|async fn|async block)\})+").unwrap());

/// The name a frame is shown and grouped by: generic arguments dropped
/// wherever they stand (`Core<T,S>::poll::{closure}<F>` → `Core::poll::{closure}`,
/// turbofish `parse::<u32>` → `parse`), the `<T as Trait>` qualifier kept
/// (it names the implementation) with its own arguments dropped, and an
/// async fn's marker dropped before the block or closure inside it
/// (`load::{async fn}::{async block}` → `load::{async block}`).
pub fn short_function_name(name: &str) -> String {
    let mut out = strip_generics_from(name.trim(), true);
    while let Some(at) = out.find("::{async fn}::{") {
        out.replace_range(at..at + "::{async fn}".len(), "");
    }
    out
}

/// The end (exclusive) of the `<…>` group opening at `open`; `->` does
/// not close one.
fn matching_angle(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'<' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    bytes.len()
}

fn strip_generics_from(s: &str, at_start: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if bytes[i] == b'<' {
            let end = matching_angle(bytes, i);
            if at_start && i == 0 {
                // `<T as Trait>::f`: kept, shortened inside.
                let inner = &s[1..end.saturating_sub(1).max(1)];
                out.push('<');
                match inner.split_once(" as ") {
                    Some((ty, tr)) => {
                        out.push_str(&strip_generics_from(ty, true));
                        out.push_str(" as ");
                        out.push_str(&strip_generics_from(tr, true));
                    }
                    None => out.push_str(&strip_generics_from(inner, true)),
                }
                out.push('>');
            } else if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
            i = end;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The normalized token of a frame, or None when it is plumbing or unnamed.
pub fn frame_token(frame: &Frame) -> Option<String> {
    let function = frame.function.as_deref()?;
    if is_plumbing(function) {
        return None;
    }
    let token = normalize_function(function);
    (!token.is_empty()).then_some(token)
}

/// The ordered frame tokens a group is known by, innermost first: the in-app
/// frames when the event marks any, else every non-plumbing frame.
pub fn signature_frames(event: &Event) -> Vec<String> {
    let any_in_app = event.frames.iter().any(|f| f.in_app == Some(true));
    let mut out: Vec<String> = Vec::new();
    for frame in &event.frames {
        if any_in_app && frame.in_app != Some(true) {
            continue;
        }
        if let Some(token) = frame_token(frame) {
            // Direct recursion adds frames without adding meaning.
            if out.last() != Some(&token) {
                out.push(token);
            }
        }
        if out.len() == MAX_SIGNATURE_FRAMES {
            break;
        }
    }
    out
}

/// The exact grouping key: the panic kind, the message template and the
/// normalized in-app frames, hashed. 32 hex digits.
pub fn fingerprint(event: &Event) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event.kind.map(|k| k.as_str()).unwrap_or("panic"));
    hasher.update([0]);
    hasher.update(message_template(&event.message));
    for token in signature_frames(event) {
        hasher.update([0]);
        hasher.update(token);
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: u32, in_app: bool) -> Frame {
        Frame {
            function: Some(function.into()),
            file: Some("src/orders.rs".into()),
            line: Some(line),
            in_app: Some(in_app),
            ..Frame::default()
        }
    }

    fn event(message: &str, frames: Vec<Frame>) -> Event {
        let mut e = Event::new(
            "0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f".into(),
            "2026-01-02T03:04:05Z".into(),
            message.into(),
        );
        e.frames = frames;
        e
    }

    #[test]
    fn templates_replace_values_and_keep_wording() {
        assert_eq!(
            message_template("index out of bounds: the len is 3 but the index is 17"),
            "index out of bounds: the len is <n> but the index is <n>"
        );
        assert_eq!(
            message_template("called `Option::unwrap()` on a `None` value"),
            "called `Option::unwrap()` on a `None` value"
        );
        assert_eq!(
            message_template(
                r#"called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: "No such file or directory" }"#
            ),
            r#"called `Result::unwrap()` on an `Err` value: Os { code: <n>, kind: NotFound, message: "<s>" }"#
        );
        assert_eq!(
            message_template(
                "user 0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f not in /var/lib/app/cache.db at 0x7ffd12"
            ),
            "user <id> not in <path> at <hex>"
        );
        assert_eq!(
            message_template(
                "byte index 2 is not a char boundary; it is inside 'é' (bytes 1..3) of `héllo wörld`"
            ),
            "byte index <n> is not a char boundary; it is inside 'é' (bytes <n>..<n>) of `<s>`"
        );
    }

    #[test]
    fn function_names_lose_hashes_closures_and_generics() {
        assert_eq!(
            normalize_function("shop::orders::reserve::h0123456789abcdef"),
            "shop::orders::reserve"
        );
        assert_eq!(
            normalize_function("shop::orders::reserve::{{closure}}::h0123456789abcdef"),
            "shop::orders::reserve::{closure}"
        );
        assert_eq!(normalize_function("shop::parse::<u32>"), "shop::parse");
        assert_eq!(
            normalize_function("<shop::Cart as core::ops::drop::Drop>::drop"),
            "<shop::Cart as core::ops::drop::Drop>::drop"
        );
        assert_eq!(
            normalize_function(
                "<F as axum::handler::Handler<(M,T1),S>>::call::{closure}<fn() -> u8, S>"
            ),
            "<F as axum::handler::Handler>::call::{closure}"
        );
        assert_eq!(normalize_function("main.worker.func2"), "main.worker.func");
        for spelling in [
            "shop::load::{async fn}::{async block}",
            "shop::load::{closure}::{closure}",
            "shop::load::{{closure}}",
            "shop::load::{async block}::{closure}",
        ] {
            assert_eq!(
                normalize_function(spelling),
                "shop::load::{closure}",
                "{spelling}"
            );
        }
        assert_eq!(
            normalize_function("main.(*Store).Put(0xc000010000, 0x1)"),
            "main.(*Store).Put"
        );
    }

    #[test]
    fn short_names_drop_generic_arguments_and_keep_the_qualifier() {
        for (full, short) in [
            (
                "panicle::layer::{closure}<axum::routing::route::RouteFuture<core::convert::Infallible>, axum_core::body::Body>::{closure}<axum::routing::route::RouteFuture<core::convert::Infallible>>",
                "panicle::layer::{closure}::{closure}",
            ),
            (
                "tokio::runtime::task::core::Core<T,S>::poll::{closure}",
                "tokio::runtime::task::core::Core::poll::{closure}",
            ),
            (
                "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll",
                "<tracing::instrument::Instrumented as core::future::future::Future>::poll",
            ),
            (
                "std::panicking::catch_unwind<(), core::panic::AssertUnwindSafe<fn(u8) -> u8>>",
                "std::panicking::catch_unwind",
            ),
            ("shop::parse::<u32>", "shop::parse"),
            (
                "shop::order::load::{async fn}::{async block}",
                "shop::order::load::{async block}",
            ),
            (
                "shop::order::load::{async fn}",
                "shop::order::load::{async fn}",
            ),
            (
                "core::ops::function::FnOnce::call_once{{vtable.shim}}",
                "core::ops::function::FnOnce::call_once{{vtable.shim}}",
            ),
            ("main.(*Store).Put", "main.(*Store).Put"),
            ("broken<unclosed", "broken"),
        ] {
            assert_eq!(short_function_name(full), short, "{full}");
        }
    }

    #[test]
    fn plumbing_is_recognized() {
        for f in [
            "std::panicking::begin_panic_handler",
            "core::option::unwrap_failed",
            "<core::pin::Pin<P> as core::future::future::Future>::poll",
            "tokio::runtime::task::harness::poll_future",
            "rust_begin_unwind",
            "__libc_start_main_impl",
            "runtime.throw",
            "internal/runtime/maps.fatal",
        ] {
            assert!(is_plumbing(f), "{f}");
        }
        for f in [
            "shop::orders::reserve",
            "<shop::Cart as core::ops::drop::Drop>::drop",
            "main.main",
        ] {
            assert!(!is_plumbing(f), "{f}");
        }
    }

    #[test]
    fn shifted_line_keeps_the_fingerprint() {
        let a = event(
            "index out of bounds: the len is 3 but the index is 5",
            vec![
                frame("shop::orders::reserve::h0000000000000001", 42, true),
                frame("shop::main", 10, true),
            ],
        );
        let b = event(
            "index out of bounds: the len is 4 but the index is 9",
            vec![
                frame("shop::orders::reserve::h00000000000000ff", 57, true),
                frame("shop::main", 12, true),
            ],
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 32);
    }

    #[test]
    fn different_function_or_message_changes_it() {
        let a = event("boom", vec![frame("shop::orders::reserve", 42, true)]);
        let b = event("boom", vec![frame("shop::orders::cancel", 42, true)]);
        let c = event("bang", vec![frame("shop::orders::reserve", 42, true)]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn dependency_frames_do_not_enter_the_signature() {
        let frames = vec![
            frame("core::option::unwrap_failed", 1, false),
            frame("serde_json::de::from_str", 1, false),
            frame("shop::orders::reserve", 42, true),
            frame("shop::orders::reserve", 40, true),
            frame("std::rt::lang_start", 1, false),
        ];
        assert_eq!(
            signature_frames(&event("m", frames)),
            vec!["shop::orders::reserve"]
        );
    }
}
