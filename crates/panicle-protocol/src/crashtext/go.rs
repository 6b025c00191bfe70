//! Go's crash dumps: `panic:`, `fatal error:` and signal dumps.
//!
//! ```text
//! panic: boom [recovered]                        a chain, oldest first
//!     panic: wrapped: boom
//! [signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x481419]
//!
//! goroutine 7 gp=0xc000007dc0 m=5 mp=0xc000100008 [chan receive, 2 minutes]:
//! main.worker(0xc000012345, ...)                 function, innermost first
//!     /app/worker.go:12 +0x65 fp=0x… sp=0x… pc=0x…
//! ...additional frames elided...
//! created by main.main in goroutine 1           (1.21+; before: no "in goroutine")
//!     /app/main.go:20 +0x6a
//! ```

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{CrashThread, ParsedCrash, join_message};
use crate::event::{Frame, Kind, Location, Platform, Thread};

static RE_GOROUTINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^goroutine (\d+)(?: gp=\S+)?(?: m=\S+)?(?: mp=\S+)? \[([^\]]*)\]:\s*$").unwrap()
});
static RE_FILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s+(\S.*?):(\d+)(?: \+0x[0-9a-fA-F]+)?(?: fp=\S+ sp=\S+ pc=(0x[0-9a-fA-F]+))?\s*$",
    )
    .unwrap()
});
static RE_SIGNAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[signal ([^\s:\]]+):?(?: ([^\]]*?))?(?: code=(\S+))?(?: addr=(\S+))?(?: pc=([^\s\]]+))?\]\s*$")
        .unwrap()
});
static RE_SIGNAL_DUMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(SIG[A-Z0-9]+): \S.*$").unwrap());
static RE_CREATED_BY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^created by (\S+?)(?: in goroutine (\d+))?\s*$").unwrap());
static RE_ELIDED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\.\.\.(?:additional frames elided|\d+ frames elided)\.\.\.\s*$").unwrap()
});
static RE_RECOVERED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s\[recovered(?:, [a-z]+)*\]\s*$").unwrap());
/// Module-cache paths: a dependency's code, even when it lives on github.com.
static RE_MODULE_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:/pkg/mod/|@v\d+\.\d+)").unwrap());

/// Continuation lines of a panic message kept before the header is given up.
const MAX_HEADER_LINES: usize = 1000;

/// First path elements of the standard library (`net/http` → `net`).
const STD_ROOTS: &[&str] = &[
    "archive",
    "arena",
    "bufio",
    "builtin",
    "bytes",
    "cmd",
    "cmp",
    "compress",
    "container",
    "context",
    "crypto",
    "database",
    "debug",
    "embed",
    "encoding",
    "errors",
    "expvar",
    "flag",
    "fmt",
    "go",
    "hash",
    "html",
    "image",
    "index",
    "internal",
    "io",
    "iter",
    "log",
    "maps",
    "math",
    "mime",
    "net",
    "os",
    "path",
    "plugin",
    "reflect",
    "regexp",
    "runtime",
    "slices",
    "sort",
    "strconv",
    "strings",
    "structs",
    "sync",
    "syscall",
    "testing",
    "text",
    "time",
    "type",
    "unicode",
    "unique",
    "unsafe",
    "vendor",
    "weak",
];

/// `panic: …` or `fatal error: …` at the start of a line.
pub(crate) fn is_start_line(line: &str) -> bool {
    line.starts_with("panic: ") || line.starts_with("fatal error: ")
}

/// `SIGQUIT: quit` directly followed by `PC=0x…`: a dump on a fatal signal.
pub(crate) fn is_signal_dump(line: &str, next: &str) -> bool {
    next.starts_with("PC=0x") && RE_SIGNAL_DUMP.is_match(line)
}

/// Lines the runtime prints before `fatal error:` (`runtime: goroutine stack
/// exceeds …`, `unexpected fault address …`).
pub(crate) fn is_runtime_note(line: &str) -> bool {
    line.starts_with("runtime: ") || line.starts_with("unexpected fault address ")
}

/// Lines that only a Go dump prints; they confirm that a `panic:` line
/// started one.
pub(crate) fn is_dump_line(line: &str) -> bool {
    RE_GOROUTINE.is_match(line)
        || RE_SIGNAL.is_match(line)
        || line.trim_end() == "runtime stack:"
        || line.starts_with("\tpanic: ")
}

pub(crate) fn starts_crash(lines: &[&str], i: usize) -> bool {
    let line = lines[i];
    is_start_line(line)
        || lines
            .get(i + 1)
            .is_some_and(|next| is_signal_dump(line, next))
}

/// The first Go crash in `text`; lines before it are ignored.
pub fn parse_go(text: &str) -> Option<ParsedCrash> {
    let lines: Vec<&str> = text.lines().collect();
    let start = (0..lines.len()).find(|&i| starts_crash(&lines, i))?;
    parse_from(&lines, start)
}

struct Section {
    name: String,
    id: Option<String>,
    state: Option<String>,
    frames: Vec<Frame>,
    elided: bool,
    duplicate: bool,
    runtime_stack: bool,
}

/// Parses the crash that starts at `lines[start]`, through the end of `lines`.
pub(crate) fn parse_from(lines: &[&str], start: usize) -> Option<ParsedCrash> {
    let mut notes_from = start;
    while notes_from > 0 && is_runtime_note(lines[notes_from - 1]) {
        notes_from -= 1;
    }
    let first = *lines.get(start)?;
    let mut idx = start + 1;
    let mut signal: Option<regex::Captures<'_>> = None;
    let mut crash = if let Some(c) = RE_SIGNAL_DUMP.captures(first).filter(|_| {
        lines
            .get(start + 1)
            .is_some_and(|n| is_signal_dump(first, n))
    }) {
        idx += 1;
        let mut crash = ParsedCrash::new(Platform::Go, Kind::Signal, first.trim().to_string());
        crash.tags.insert("signal".into(), c[1].to_string());
        crash
    } else {
        let (kind, first_message) = if let Some(m) = first.strip_prefix("panic: ") {
            (Kind::Panic, m)
        } else if let Some(m) = first.strip_prefix("fatal error: ") {
            (Kind::Fatal, m)
        } else {
            return None;
        };
        // The chain, oldest first; each entry a list of message lines.
        let mut chain: Vec<Vec<&str>> = vec![vec![first_message]];
        let mut taken = 0;
        while let Some(line) = lines.get(idx) {
            let trimmed = line.trim_start();
            if line.trim().is_empty()
                || RE_GOROUTINE.is_match(line)
                || line.trim_end() == "runtime stack:"
                || taken >= MAX_HEADER_LINES
            {
                break;
            }
            if *line == first && kind == Kind::Fatal {
                // Another thread hit the same throw at the same moment and
                // printed it too (concurrent map writes do): one message.
            } else if RE_SIGNAL.is_match(line) {
                signal = RE_SIGNAL.captures(line);
            } else if line.starts_with(char::is_whitespace)
                && (trimmed.starts_with("panic: ") || trimmed.starts_with("fatal error: "))
            {
                let m = trimmed
                    .strip_prefix("panic: ")
                    .or_else(|| trimmed.strip_prefix("fatal error: "))
                    .unwrap_or(trimmed);
                chain.push(vec![m]);
            } else if let Some(entry) = chain.last_mut() {
                entry.push(line);
            }
            taken += 1;
            idx += 1;
        }
        let messages: Vec<String> = chain
            .iter()
            .map(|entry| {
                let joined = join_message(entry);
                RE_RECOVERED.replace(&joined, "").into_owned()
            })
            .collect();
        let message = messages.last().cloned().unwrap_or_default();
        let kind = if kind == Kind::Fatal
            && (message.starts_with("unexpected signal") || message == "fault")
        {
            Kind::Signal
        } else {
            kind
        };
        let mut crash = ParsedCrash::new(Platform::Go, kind, message);
        if chain.len() > 1
            || chain
                .iter()
                .any(|e| RE_RECOVERED.is_match(&join_message(e)))
        {
            crash.extra.insert(
                "panic_chain".into(),
                Value::Array(messages.into_iter().map(Value::String).collect()),
            );
        }
        crash
    };
    if notes_from < start {
        let notes = lines[notes_from..start]
            .iter()
            .map(|l| Value::String(l.trim().to_string()))
            .collect();
        crash
            .extra
            .insert("runtime_notes".into(), Value::Array(notes));
    }

    let mut sections: Vec<Section> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    // A function line waits for its file line.
    let mut open = false;
    for line in &lines[idx.min(lines.len())..] {
        if signal.is_none() && RE_SIGNAL.is_match(line) {
            signal = RE_SIGNAL.captures(line);
            continue;
        }
        if let Some(c) = RE_GOROUTINE.captures(line) {
            let id = c[1].to_string();
            let duplicate = !seen.insert(id.clone());
            sections.push(Section {
                name: format!("goroutine {id}"),
                id: Some(id),
                state: Some(c[2].to_string()),
                frames: Vec::new(),
                elided: false,
                duplicate,
                runtime_stack: false,
            });
            open = true;
            continue;
        }
        if line.trim_end() == "runtime stack:" {
            sections.push(Section {
                name: "runtime stack".into(),
                id: None,
                state: None,
                frames: Vec::new(),
                elided: false,
                duplicate: false,
                runtime_stack: true,
            });
            open = true;
            continue;
        }
        let Some(section) = sections.last_mut().filter(|_| open) else {
            continue;
        };
        if line.trim().is_empty() {
            open = false;
        } else if RE_ELIDED.is_match(line) {
            section.elided = true;
        } else if let Some(c) = RE_FILE.captures(line) {
            if let Some(frame) = section.frames.last_mut().filter(|f| f.file.is_none()) {
                frame.file = Some(c[1].to_string());
                frame.line = c[2].parse().ok();
                frame.instruction_addr = c.get(3).map(|m| m.as_str().to_string());
            }
        } else if let Some(c) = RE_CREATED_BY.captures(line) {
            section.frames.push(frame_of(&c[1]));
        } else if let Some(function) = function_of(line) {
            section.frames.push(frame_of(function));
        }
    }
    for section in &mut sections {
        for frame in &mut section.frames {
            frame.in_app = Some(is_in_app(frame));
        }
    }

    if let Some(c) = signal {
        crash.tags.insert("signal".into(), c[1].to_string());
        let detail = c.get(0).map_or("", |m| m.as_str()).trim();
        let detail = detail.trim_start_matches('[').trim_end_matches(']');
        crash
            .extra
            .insert("signal_detail".into(), Value::String(detail.to_string()));
    }

    let main_index = sections
        .iter()
        .position(|s| !s.runtime_stack)
        .or(if sections.is_empty() { None } else { Some(0) });
    let mut others = Vec::new();
    for (i, section) in sections.into_iter().enumerate() {
        if Some(i) == main_index {
            let mut frames = section.frames;
            cut_panic_machinery(&mut frames);
            crash.location = frames
                .iter()
                .find(|f| f.in_app == Some(true) && f.file.is_some())
                .map(|f| Location {
                    file: f.file.clone().unwrap_or_default(),
                    line: f.line,
                    column: None,
                });
            crash.thread = Some(Thread {
                name: Some(section.name),
                id: section.id,
            });
            crash.thread_state = section.state;
            if section.elided {
                crash
                    .extra
                    .insert("frames_elided".into(), Value::Bool(true));
            }
            crash.frames = frames;
        } else if !section.duplicate {
            others.push(CrashThread {
                name: section.name,
                state: section.state,
                frames: section.frames,
            });
        }
    }
    crash.other_threads = others;
    Some(crash)
}

/// The function of a frame line, without its argument list; None for lines
/// that are not frames (memory dumps, registers, `exit status 2`).
fn function_of(line: &str) -> Option<&str> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let line = line.trim_end();
    let name = strip_args(line);
    let plausible = !name.is_empty()
        && !name.contains(char::is_whitespace)
        && !name.ends_with(':')
        && (name.contains('.') || name == "panic")
        && !name.starts_with("0x")
        && !name.contains('=');
    plausible.then_some(name)
}

/// `main.(*T).M(0xc000, {…})` → `main.(*T).M`.
fn strip_args(line: &str) -> &str {
    if !line.ends_with(')') {
        return line;
    }
    let mut depth = 0usize;
    for (i, ch) in line.char_indices().rev() {
        match ch {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &line[..i];
                }
            }
            _ => {}
        }
    }
    line
}

fn frame_of(function: &str) -> Frame {
    // The builtin `panic` frame is the runtime's.
    let package = if function.contains('.') {
        package_of(function)
    } else {
        "runtime"
    };
    Frame {
        function: Some(function.to_string()),
        package: (!package.is_empty()).then(|| package.to_string()),
        ..Frame::default()
    }
}

/// The import path of a function: `github.com/a/b.(*T).M` → `github.com/a/b`.
fn package_of(function: &str) -> &str {
    let head_end = function.find(['[', '(']).unwrap_or(function.len());
    let head = &function[..head_end];
    let slash = head.rfind('/').map_or(0, |p| p + 1);
    let dot = head[slash..].find('.').map_or(head.len(), |d| slash + d);
    &function[..dot]
}

/// App code: not the standard library (no dot in the first path element and
/// a known std root), not the runtime's builtins, not the module cache.
fn is_in_app(frame: &Frame) -> bool {
    let Some(function) = frame.function.as_deref() else {
        return false;
    };
    if !function.contains('.') {
        return false;
    }
    if frame
        .file
        .as_deref()
        .is_some_and(|f| RE_MODULE_VERSION.is_match(&f.replace('\\', "/")))
    {
        return false;
    }
    let package = package_of(function);
    if package == "main" {
        return true;
    }
    let first = package.split('/').next().unwrap_or(package);
    if first.contains(':') {
        return false;
    }
    first.contains('.') || !STD_ROOTS.contains(&first)
}

fn is_panic_machinery(function: &str) -> bool {
    let f = function;
    f == "panic"
        || f.starts_with("runtime.gopanic")
        || f.starts_with("runtime.panic")
        || f.starts_with("runtime.goPanic")
        || f.starts_with("runtime.sigpanic")
        || f.starts_with("runtime.throw")
        || f.starts_with("runtime.fatal")
        || f.starts_with("runtime.dopanic")
        || f == "internal/runtime/maps.fatal"
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
    fn packages_and_app_code() {
        assert_eq!(package_of("github.com/a/b.(*T).M"), "github.com/a/b");
        assert_eq!(package_of("main.(*Store).Get"), "main");
        assert_eq!(package_of("net/http.(*conn).serve"), "net/http");
        assert_eq!(
            package_of("internal/runtime/maps.fatal"),
            "internal/runtime/maps"
        );
        let app = |f: &str| is_in_app(&frame_of(f));
        assert!(app("main.main"));
        assert!(app("github.com/a/b.F"));
        assert!(app("mineru-tools/internal/latex.(*Runner).clientFor"));
        assert!(!app("runtime.gopark"));
        assert!(!app("net/http.(*conn).serve"));
        assert!(!app("sync.(*WaitGroup).Wait"));
        assert!(!app("internal/runtime/maps.fatal"));
        assert!(!app("panic"));
        assert!(!app("type:.eq.main.T"));
    }

    #[test]
    fn a_fatal_error_printed_by_two_threads_is_one_message() {
        let text = "fatal error: concurrent map writes\nfatal error: concurrent map writes\n\n\
                    goroutine 19 [running]:\nmain.reserve(...)\n\t/app/main.go:15\n";
        let lines: Vec<&str> = text.lines().collect();
        let crash = parse_from(&lines, 0);
        assert_eq!(
            crash.map(|c| (c.message, c.extra.contains_key("panic_chain"))),
            Some(("concurrent map writes".to_string(), false))
        );
    }

    #[test]
    fn args_are_stripped() {
        assert_eq!(strip_args("main.(*T).M(0xc000, {0x1, 0x2})"), "main.(*T).M");
        assert_eq!(strip_args("main.f(...)"), "main.f");
        assert_eq!(function_of("0x000000c00008de48:  0x1  0x2"), None);
        assert_eq!(function_of("exit status 2"), None);
        assert_eq!(function_of("panic({0x48bd00, 0x4b7ca8})"), Some("panic"));
    }
}
