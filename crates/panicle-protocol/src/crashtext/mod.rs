//! Parsers of the crash text that Rust and Go programs print on stderr.
//!
//! `panicle run -- CMD` watches a child's stderr with a [`CrashDetector`], which
//! cuts the crash text out of ordinary log lines; [`parse_crash`] turns such text
//! into a [`ParsedCrash`], and [`ParsedCrash::into_event`] into a schema-v1
//! [`Event`]. Everything here is pure: the caller supplies the event id and the
//! timestamp, so the same text always gives the same event.
//!
//! Understood formats:
//! - Rust's default panic hook, the 1.73+ form (`thread 'x' panicked at
//!   src/main.rs:5:9:` then the message) with or without the thread id that
//!   newer releases print, and the older one (`panicked at 'msg', file:line:col`,
//!   also without a column), with short or full backtraces.
//! - Go's `panic:` / `fatal error:` / `SIGQUIT: quit` dumps from Go 1.17 on:
//!   goroutine headers with state, wait time and the Go 1.22+ `gp= m= mp=`
//!   fields, `created by … in goroutine N`, `[recovered]` chains,
//!   `[signal …]` lines and GOTRACEBACK=all/system/crash dumps.
//! - Rust deaths without a panic block: stack overflow, allocation failure,
//!   `fatal runtime error: …`, a non-unwinding panic (kind `fatal`, tag `death`).

mod death;
mod detect;
mod go;
mod logs;
mod rust;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{Event, Frame, Kind, Location, Platform, Thread};

pub use detect::{CrashDetector, DetectorLimits};
pub use go::parse_go;
pub use logs::{LogContext, LogText, repair, unwrap_log_text};
pub use rust::parse_rust;

/// A thread or goroutine other than the crashing one, as kept in
/// `event.extra["threads"]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrashThread {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub frames: Vec<Frame>,
}

/// Everything a crash text says, without the event id and timestamp that only
/// the caller can make.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCrash {
    pub platform: Platform,
    pub kind: Kind,
    pub message: String,
    pub location: Option<Location>,
    pub thread: Option<Thread>,
    /// Go's goroutine state as printed (`chan receive, 2 minutes`).
    pub thread_state: Option<String>,
    /// Innermost first, the panic machinery (gopanic, rust_begin_unwind, …) cut.
    pub frames: Vec<Frame>,
    /// Other goroutines of a GOTRACEBACK=all dump, Go's `runtime stack:`.
    pub other_threads: Vec<CrashThread>,
    pub tags: BTreeMap<String, String>,
    /// Further details (`panic_chain`, `frames_elided`, `truncated`, …).
    pub extra: Map<String, Value>,
}

impl ParsedCrash {
    pub fn new(platform: Platform, kind: Kind, message: String) -> Self {
        ParsedCrash {
            platform,
            kind,
            message,
            location: None,
            thread: None,
            thread_state: None,
            frames: Vec::new(),
            other_threads: Vec::new(),
            tags: BTreeMap::new(),
            extra: Map::new(),
        }
    }

    /// The schema-v1 event; other threads go to `extra["threads"]` and the
    /// goroutine state to `extra["thread_state"]`.
    pub fn into_event(self, event_id: String, timestamp: String) -> Event {
        let mut event = Event::new(event_id, timestamp, self.message);
        event.platform = Some(self.platform);
        event.kind = Some(self.kind);
        event.location = self.location;
        event.thread = self.thread;
        event.frames = self.frames;
        event.tags = self.tags;
        event.extra = self.extra;
        if let Some(state) = self.thread_state {
            event
                .extra
                .insert("thread_state".into(), Value::String(state));
        }
        if !self.other_threads.is_empty() {
            let threads = serde_json::to_value(&self.other_threads).unwrap_or(Value::Null);
            event.extra.insert("threads".into(), threads);
        }
        event
    }
}

/// The first Rust or Go crash in `text`, whichever starts first; lines before
/// it are ignored. None when the text holds no crash.
pub fn parse_crash(text: &str) -> Option<ParsedCrash> {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if rust::is_header(line) {
            return rust::parse_from(&lines, i);
        }
        if go::starts_crash(&lines, i) {
            return go::parse_from(&lines, i);
        }
        if let Some(crash) = death::parse_line(line) {
            return Some(crash);
        }
    }
    None
}

/// The first crash in text as a log pipeline or a copy from a web page
/// delivered it (see [`unwrap_log_text`]), with what the log prefixes said.
pub fn parse_crash_log(text: &str) -> Option<(ParsedCrash, LogContext)> {
    let unwrapped = unwrap_log_text(text);
    let crash = parse_crash(&unwrapped.text)?;
    Some((crash, unwrapped.context))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest message kept; the head names the bug, the rest is payload.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Joins message lines, dropping trailing blank ones, bounded in size.
pub(crate) fn join_message(lines: &[&str]) -> String {
    let mut end = lines.len();
    while end > 0 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let joined = lines[..end].join("\n");
    truncate_str(&joined, MAX_MESSAGE_BYTES).to_string()
}
