//! Rust's default panic hook output, old and new.
//!
//! ```text
//! thread 'main' (13305) panicked at src/main.rs:9:30:      1.73+ (id: newer)
//! called `Option::unwrap()` on a `None` value
//! thread 'main' panicked at 'msg', src/main.rs:5:9          before 1.73
//! stack backtrace:
//!    0: __rustc::rust_begin_unwind                           RUST_BACKTRACE=1
//!              at /rustc/…/library/std/src/panicking.rs:689:5
//!   19:     0x55da1093d345 - main::Cart::quantity::hea94…    RUST_BACKTRACE=full
//!                                at /tmp/shop/src/main.rs:9:30
//! note: Some details are omitted, run with `RUST_BACKTRACE=full` …
//! ```

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{ParsedCrash, join_message, truncate_str};
use crate::event::{Frame, Kind, Location, Platform, Thread};

static RE_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*thread '(.*?)'(?: \((\d+)\))? panicked at (.*)$").unwrap());
/// `src/main.rs:5:9:` — the 1.73+ location line ends with a colon.
static RE_NEW_LOC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.+):(\d+):(\d+):\s*$").unwrap());
/// `…msg', src/main.rs:5:9` — the end of an old-style quoted message.
static RE_OLD_CLOSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.*)', (\S.*?):(\d+)(?::(\d+))?\s*$").unwrap());
static RE_FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s{0,8}(\d+):\s+(?:(0x[0-9a-fA-F]+) - )?(\S.*?)\s*$").unwrap());
/// A full-mode frame line; unlike a short one it cannot be message text.
static RE_FRAME_ADDR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s{0,8}\d+:\s+0x[0-9a-fA-F]+ - \S").unwrap());
static RE_AT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s+at (\S.*?)\s*$").unwrap());
static RE_FILE_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.*?):(\d+)(?::(\d+))?$").unwrap());
static RE_LOG_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*\[?(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}|\s*(?:TRACE|DEBUG|INFO|WARN|WARNING|ERROR)[\s\]:])",
    )
    .unwrap()
});
static RE_LEGACY_HASH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"::h[0-9a-f]{16}$").unwrap());
static RE_CRATE_DISAMBIGUATOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[[0-9a-f]{16}\]").unwrap());

/// Lines in a row that are no frame, taken inside a backtrace before it is
/// taken as ended: another thread printing while std resolves the frames
/// (a full backtrace has no closing note, so its end is only seen this way).
pub(crate) const MAX_FOREIGN_RUN: usize = 32;

/// Message lines kept before the block is taken as ended: a panic in a thread
/// that prints no note would otherwise swallow the rest of the process' output.
pub(crate) const MAX_MESSAGE_LINES: usize = 1000;

/// Crates of the toolchain: their frames are never the app's.
const STD_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "backtrace",
    "panic_unwind",
    "panic_abort",
    "__rustc",
    "test",
    "proc_macro",
    "compiler_builtins",
    "std_detect",
];

/// Paths of the toolchain's and of dependencies' sources.
const NON_APP_PATHS: &[&str] = &[
    "/rustc/",
    "/.cargo/registry/",
    "/.cargo/git/",
    // CARGO_HOME elsewhere, e.g. `/usr/local/cargo` in the official images.
    "/cargo/registry/src/",
    "/cargo/git/checkouts/",
    "/library/std/src/",
    "/library/core/src/",
    "/library/alloc/src/",
    "/src/libstd/",
    "/src/libcore/",
    "/src/liballoc/",
    "/src/libpanic_unwind/",
];

/// The message of a panic whose text was cut off inside its header.
pub(crate) const CUT_MESSAGE: &str = "panic message lost: the crash text was cut off in its header";

/// True for `thread '…' panicked at …`.
pub(crate) fn is_header(line: &str) -> bool {
    line.contains(" panicked at ") && RE_HEADER.is_match(line)
}

fn is_note(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("note: ") && t.contains("RUST_BACKTRACE")
}

fn is_backtrace_start(line: &str) -> bool {
    line.trim() == "stack backtrace:"
}

/// Lines after which the runtime aborts: the panic block is over.
fn is_terminal(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("thread caused non-unwinding panic")
        || t.starts_with("thread panicked while processing panic")
        || t.starts_with("panicked while processing panic")
        || t.starts_with("fatal runtime error:")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Inside an old-style quoted message not yet closed.
    OldMessage,
    /// Lines of a 1.73+ message.
    Message,
    /// Message done; a note or a backtrace may follow.
    AfterMessage,
    Backtrace,
}

/// What to do with the next line of a panic block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Take,
    TakeAndEnd,
    /// The block ended before this line, which belongs to what follows.
    EndBefore,
}

/// Decides, line by line, where a panic block ends; shared by the detector and
/// the parser so that both cut the same text.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    phase: Phase,
    message_lines: usize,
    /// A log line was taken before the first message line.
    interleaved_log: bool,
    /// Lines in a row inside a backtrace that are no frame.
    foreign_run: usize,
}

impl Tracker {
    pub(crate) fn start(header: &str) -> Tracker {
        let rest = RE_HEADER
            .captures(header)
            .and_then(|c| c.get(3))
            .map_or("", |m| m.as_str());
        let phase = match rest.strip_prefix('\'') {
            Some(quoted) if RE_OLD_CLOSE.is_match(quoted) => Phase::AfterMessage,
            Some(_) => Phase::OldMessage,
            None => Phase::Message,
        };
        Tracker {
            phase,
            message_lines: 0,
            interleaved_log: false,
            foreign_run: 0,
        }
    }

    pub(crate) fn step(&mut self, line: &str) -> Step {
        if is_header(line) || super::go::is_start_line(line) {
            return Step::EndBefore;
        }
        match self.phase {
            Phase::OldMessage => {
                if is_note(line) {
                    return Step::TakeAndEnd;
                }
                if is_backtrace_start(line) {
                    self.phase = Phase::Backtrace;
                    return Step::Take;
                }
                self.message_lines += 1;
                if self.message_lines > MAX_MESSAGE_LINES {
                    return Step::EndBefore;
                }
                if RE_OLD_CLOSE.is_match(line) {
                    self.phase = Phase::AfterMessage;
                }
                Step::Take
            }
            Phase::Message => {
                if is_note(line) || is_terminal(line) {
                    return Step::TakeAndEnd;
                }
                if is_backtrace_start(line) || RE_FRAME_ADDR.is_match(line) {
                    self.phase = Phase::Backtrace;
                    return Step::Take;
                }
                // Another thread's log line between the header and the
                // message (std writes them separately): taken, and dropped
                // from the message by the parser. After a message line, a
                // log line is the program going on.
                if RE_LOG_LINE.is_match(line) {
                    return if self.message_lines == 0 && !self.interleaved_log {
                        self.interleaved_log = true;
                        Step::Take
                    } else {
                        Step::EndBefore
                    };
                }
                self.message_lines += 1;
                if self.message_lines > MAX_MESSAGE_LINES {
                    return Step::EndBefore;
                }
                Step::Take
            }
            Phase::AfterMessage => {
                if is_note(line) || is_terminal(line) {
                    return Step::TakeAndEnd;
                }
                if is_backtrace_start(line) || RE_FRAME.is_match(line) {
                    self.phase = Phase::Backtrace;
                    return Step::Take;
                }
                Step::EndBefore
            }
            Phase::Backtrace => {
                if is_note(line) || is_terminal(line) {
                    return Step::TakeAndEnd;
                }
                if RE_FRAME.is_match(line) || RE_AT.is_match(line) {
                    self.foreign_run = 0;
                    return Step::Take;
                }
                // std writes each frame on its own and resolves the next in
                // between: another thread's output lands among the frames
                // (real capture: testdata/crashtext/rust/rust1.95-interleaved-
                // backtrace.txt). Taken (the parser keeps only frame lines)
                // while frames may still come; a death line is a crash of its own.
                self.foreign_run += 1;
                if self.foreign_run > MAX_FOREIGN_RUN || super::death::parse_line(line).is_some() {
                    return Step::EndBefore;
                }
                Step::Take
            }
        }
    }
}

/// The first Rust panic in `text`; lines before it are ignored.
pub fn parse_rust(text: &str) -> Option<ParsedCrash> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| is_header(l))?;
    parse_from(&lines, start)
}

/// Parses the panic block that `lines[start]` (a header) starts; the lines
/// around it tell another thread's output interleaved into its message.
pub(crate) fn parse_from(lines: &[&str], start: usize) -> Option<ParsedCrash> {
    let block = lines.get(start..)?;
    let header = block.first()?;
    let mut tracker = Tracker::start(header);
    let mut end = 1;
    while end < block.len() {
        match tracker.step(block[end]) {
            Step::Take => end += 1,
            Step::TakeAndEnd => {
                end += 1;
                break;
            }
            Step::EndBefore => break,
        }
    }
    let before = &lines[start.saturating_sub(CONTEXT_LINES)..start];
    let after = &block[end..block.len().min(end + CONTEXT_LINES)];
    let context: Vec<&str> = before.iter().chain(after).copied().collect();
    parse_block(&block[..end], &context)
}

/// Lines on each side of a panic block compared with its message lines.
pub(crate) const CONTEXT_LINES: usize = 8;

/// A line's shape: its digit runs as `#` and its ends trimmed, so another
/// thread's `count is 2` inside a message matches its `count is 1` before.
fn shape_of(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_digits = false;
    for c in line.trim().chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The message lines without what another thread or process wrote between
/// them: std writes a panic's header and its message separately, and a
/// thread printing at that moment lands in between. A line is foreign when
/// it is a log line (timestamp or level first) or has the shape of a line
/// of the output around the crash (`context`). Blank lines stay, and never
/// every line goes: a message that looks like the output around it is still
/// the message. Returns the kept lines and how many were dropped.
fn without_interleaved<'a>(lines: &[&'a str], context: &[&str]) -> (Vec<&'a str>, usize) {
    let shapes: std::collections::HashSet<String> = context
        .iter()
        .filter(|l| !l.trim().is_empty() && !is_header(l) && !is_note(l))
        .map(|l| shape_of(l))
        .collect();
    let foreign = |l: &&str| {
        !l.trim().is_empty() && (RE_LOG_LINE.is_match(l) || shapes.contains(&shape_of(l)))
    };
    let kept: Vec<&str> = lines.iter().filter(|l| !foreign(l)).copied().collect();
    if kept.iter().all(|l| l.trim().is_empty()) {
        return (lines.to_vec(), 0);
    }
    let dropped = lines.len() - kept.len();
    (kept, dropped)
}

/// Parses one panic block as cut by [`Tracker`]; `context` is the output
/// around it (see [`without_interleaved`]).
pub(crate) fn parse_block(lines: &[&str], context: &[&str]) -> Option<ParsedCrash> {
    let caps = RE_HEADER.captures(lines.first()?)?;
    let name = caps.get(1).map_or("", |m| m.as_str()).to_string();
    let os_id = caps.get(2).map(|m| m.as_str().to_string());
    let rest = caps.get(3).map_or("", |m| m.as_str()).trim_end();

    let mut idx = 1;
    let mut header_location: Option<Location> = None;
    let mut cut_header = false;
    let mut interleaved = 0;
    let message = if let Some(quoted) = rest.strip_prefix('\'') {
        let mut parts: Vec<String> = vec![quoted.to_string()];
        loop {
            let last = parts.last().map(String::as_str).unwrap_or("");
            if let Some(c) = RE_OLD_CLOSE.captures(last) {
                header_location = Some(location_of(
                    &c[2],
                    c.get(3).map(|m| m.as_str()),
                    c.get(4).map(|m| m.as_str()),
                ));
                let text = c[1].to_string();
                if let Some(slot) = parts.last_mut() {
                    *slot = text;
                }
                break;
            }
            let next = lines.get(idx);
            match next {
                Some(line) if !is_note(line) && !is_backtrace_start(line) => {
                    parts.push((*line).to_string());
                    idx += 1;
                }
                _ => {
                    // Never closed: the quote was cut off; keep what is there.
                    if let Some(slot) = parts.last_mut() {
                        *slot = slot.trim_end().trim_end_matches('\'').to_string();
                    }
                    break;
                }
            }
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        join_message(&refs)
    } else if let Some(c) = RE_NEW_LOC.captures(rest) {
        header_location = Some(location_of(&c[1], Some(&c[2]), Some(&c[3])));
        let start = idx;
        while idx < lines.len() {
            let l = lines[idx];
            if is_note(l) || is_backtrace_start(l) || RE_FRAME_ADDR.is_match(l) || is_terminal(l) {
                break;
            }
            idx += 1;
        }
        let (kept, dropped) = without_interleaved(&lines[start..idx], context);
        interleaved = dropped;
        join_message(&kept)
    } else if idx >= lines.len() && !rest.is_empty() {
        // A header cut inside its location (`panicked at src/ma`) and
        // nothing after it: the message never arrived. Not `src/ma`.
        cut_header = true;
        CUT_MESSAGE.to_string()
    } else {
        truncate_str(rest, super::MAX_MESSAGE_BYTES).to_string()
    };

    let mut crash = ParsedCrash::new(Platform::Rust, Kind::Panic, message);
    if interleaved > 0 {
        crash
            .extra
            .insert("interleaved_lines_dropped".into(), Value::from(interleaved));
    }
    if cut_header {
        crash.extra.insert("truncated".into(), Value::Bool(true));
        crash.extra.insert(
            "truncated_header".into(),
            Value::String(truncate_str(rest, 256).to_string()),
        );
    }
    let mut frames: Vec<Frame> = Vec::new();
    let mut last_had_at = true;
    for line in &lines[idx.min(lines.len())..] {
        if is_terminal(line) {
            crash.extra.insert("aborted".into(), Value::Bool(true));
        } else if let Some(c) = RE_FRAME.captures(line) {
            frames.push(frame_of(c.get(2).map(|m| m.as_str()), &c[3]));
            last_had_at = false;
        } else if let Some(c) = RE_AT.captures(line) {
            // Only the first `at` line belongs to the frame; later ones are
            // the inlined callers of old toolchains.
            if !last_had_at && let Some(frame) = frames.last_mut() {
                set_frame_file(frame, &c[1]);
            }
            last_had_at = true;
        }
    }
    for frame in &mut frames {
        frame.in_app = Some(is_in_app(frame));
    }
    cut_panic_machinery(&mut frames);

    let first_app_location = frames
        .iter()
        .find(|f| f.in_app == Some(true) && f.file.is_some())
        .map(|f| Location {
            file: f.file.clone().unwrap_or_default(),
            line: f.line,
            column: f.column,
        });
    crash.location = match header_location {
        Some(loc) if is_non_app_path(&loc.file) => first_app_location.or(Some(loc)),
        Some(loc) => Some(loc),
        None => first_app_location,
    };
    crash.thread = Some(Thread {
        name: Some(name),
        id: os_id,
    });
    crash.frames = frames;
    Some(crash)
}

fn location_of(file: &str, line: Option<&str>, column: Option<&str>) -> Location {
    Location {
        file: clean_path(file),
        line: line.and_then(|l| l.parse().ok()),
        column: column.and_then(|c| c.parse().ok()),
    }
}

fn clean_path(file: &str) -> String {
    file.trim().trim_start_matches("./").to_string()
}

fn frame_of(addr: Option<&str>, symbol: &str) -> Frame {
    let function = strip_symbol(symbol);
    let known = !function.is_empty() && function != "<unknown>";
    let package = known
        .then(|| crate_of(&function))
        .filter(|c| !c.is_empty() && function.contains("::"))
        .map(str::to_string);
    Frame {
        function: known.then_some(function),
        package,
        instruction_addr: addr.map(str::to_string),
        ..Frame::default()
    }
}

fn set_frame_file(frame: &mut Frame, at: &str) {
    if let Some(c) = RE_FILE_LINE.captures(at) {
        frame.file = Some(clean_path(&c[1]));
        frame.line = c[2].parse().ok();
        frame.column = c.get(3).and_then(|m| m.as_str().parse().ok());
    } else {
        frame.file = Some(clean_path(at));
    }
}

/// Drops the build-specific parts of a symbol: the legacy `::h<hash>` suffix
/// and the `[<hash>]` crate disambiguators of v0 mangling.
fn strip_symbol(symbol: &str) -> String {
    let s = RE_LEGACY_HASH.replace(symbol.trim(), "");
    RE_CRATE_DISAMBIGUATOR.replace_all(&s, "").into_owned()
}

fn ident_prefix(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn strip_type_prefixes(mut s: &str) -> &str {
    loop {
        let before = s;
        s = s.trim_start_matches(['<', '&', ' ', '*']);
        for p in ["mut ", "dyn ", "impl ", "const "] {
            s = s.strip_prefix(p).unwrap_or(s);
        }
        if s == before {
            return s;
        }
    }
}

/// The crate a symbol belongs to; for `<T as Trait>::f` the self type's
/// crate, or the trait's when the self type is a primitive or generic.
fn crate_of(function: &str) -> &str {
    let Some(rest) = function.strip_prefix('<') else {
        return ident_prefix(function);
    };
    let self_ty = strip_type_prefixes(rest);
    let root = ident_prefix(self_ty);
    if self_ty[root.len()..].starts_with("::") {
        return root;
    }
    match rest.find(" as ") {
        Some(pos) => ident_prefix(strip_type_prefixes(&rest[pos + 4..])),
        None => root,
    }
}

fn is_non_app_path(file: &str) -> bool {
    let f = file.replace('\\', "/");
    f.starts_with("rustc/") || NON_APP_PATHS.iter().any(|p| f.contains(p))
}

/// App code: a Rust path outside the toolchain's crates and sources and
/// outside dependencies' sources.
fn is_in_app(frame: &Frame) -> bool {
    let Some(function) = frame.function.as_deref() else {
        return false;
    };
    if !function.contains("::") || STD_CRATES.contains(&crate_of(function)) {
        return false;
    }
    !frame.file.as_deref().is_some_and(is_non_app_path)
}

/// True for the frames that only carry a panic: the hook, the unwinder, the
/// `*_failed` helpers of core.
fn is_panic_machinery(function: &str) -> bool {
    let f = function;
    if matches!(f, "rust_begin_unwind" | "rust_panic") || f.starts_with("__rust_start_panic") {
        return true;
    }
    if f.contains("::") && !STD_CRATES.contains(&crate_of(f)) {
        return false;
    }
    if f.contains("catch_unwind")
        || f.contains("panicking::try")
        || f.contains("lang_start")
        || f.contains("begin_short_backtrace")
        || f.contains("maybe_catch_panic")
    {
        return false;
    }
    [
        "::panic",
        "backtrace",
        "begin_unwind",
        "rust_panic",
        "_fail",
        "do_panic",
        "default_hook",
    ]
    .iter()
    .any(|p| f.contains(p))
}

/// Cuts the frames before the panic site: through the last machinery frame
/// that comes before the first app frame.
fn cut_panic_machinery(frames: &mut Vec<Frame>) {
    let limit = frames
        .iter()
        .position(|f| f.in_app == Some(true))
        .unwrap_or(frames.len());
    let last = frames[..limit]
        .iter()
        .rposition(|f| f.function.as_deref().is_some_and(is_panic_machinery));
    if let Some(last) = last {
        frames.drain(..=last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_of_looks_through_qualified_paths() {
        assert_eq!(crate_of("shop::orders::reserve"), "shop");
        assert_eq!(
            crate_of("<shop::Cart as core::ops::drop::Drop>::drop"),
            "shop"
        );
        assert_eq!(crate_of("<F as alloc::boxed::FnBox<A>>::call_box"), "alloc");
        assert_eq!(
            crate_of("<usize as core::slice::index::SliceIndex<[T]>>::index"),
            "core"
        );
        assert_eq!(
            crate_of(
                "<&dyn core::ops::function::Fn<()> as core::ops::function::FnOnce<()>>::call_once"
            ),
            "core"
        );
        assert_eq!(
            crate_of(
                "<<std::sys::backtrace::BacktraceLock>::print::DisplayBacktrace as core::fmt::Display>::fmt"
            ),
            "std"
        );
    }

    #[test]
    fn registry_sources_are_not_in_app_wherever_cargo_home_is() {
        let frame = |file: &str| Frame {
            function: Some("hyper::proto::h1::dispatch::poll".into()),
            file: Some(file.into()),
            ..Frame::default()
        };
        let docker = "/usr/local/cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hyper-1.5.0/src/proto/h1/dispatch.rs";
        assert!(!is_in_app(&frame(docker)));
        assert!(is_in_app(&frame("/app/src/proto/h1/dispatch.rs")));
    }

    #[test]
    fn symbols_lose_hashes_and_disambiguators() {
        assert_eq!(
            strip_symbol("main::Cart::quantity::hea9481f7a9838fc9"),
            "main::Cart::quantity"
        );
        assert_eq!(
            strip_symbol("std[e28293b1aa0f68bd]::panicking::default_hook"),
            "std::panicking::default_hook"
        );
    }

    #[test]
    fn machinery_excludes_catch_unwind() {
        assert!(is_panic_machinery("core::option::unwrap_failed"));
        assert!(is_panic_machinery("__rustc::rust_begin_unwind"));
        assert!(is_panic_machinery(
            "std::sys::backtrace::__rust_end_short_backtrace"
        ));
        assert!(!is_panic_machinery("std::panicking::catch_unwind::do_call"));
        assert!(!is_panic_machinery("std::panicking::try::do_call"));
        assert!(!is_panic_machinery("shop::panic_handler"));
    }

    #[test]
    fn a_header_cut_in_its_location_is_marked_truncated_not_stored_as_a_message() {
        let crash = parse_from(&["thread 'main' panicked at src/ma"], 0).expect("a crash");
        assert_eq!(crash.message, CUT_MESSAGE);
        assert_eq!(crash.extra["truncated"], Value::Bool(true));
        assert_eq!(crash.extra["truncated_header"], "src/ma");
        assert_eq!(
            crash.thread.as_ref().and_then(|t| t.name.as_deref()),
            Some("main")
        );
    }

    #[test]
    fn a_message_keeps_lines_unlike_the_output_around_it() {
        let context = ["count is 1", "count is 5", "", "2026-01-02 INFO up"];
        let lines = ["count is 2", "validation failed:", "", "    field: 7"];
        let (kept, dropped) = without_interleaved(&lines, &context);
        assert_eq!(kept, ["validation failed:", "", "    field: 7"]);
        assert_eq!(dropped, 1);
        // All of it shaped like the output around: still the message.
        let (kept, dropped) = without_interleaved(&["count is 9"], &context);
        assert_eq!((kept, dropped), (vec!["count is 9"], 0));
        // No context: nothing is dropped but log lines.
        let (kept, _) = without_interleaved(&["count is 2", "boom"], &[]);
        assert_eq!(kept, ["count is 2", "boom"]);
        assert_eq!(shape_of("  took 12ms, 3 left "), "took #ms, # left");
    }
}
