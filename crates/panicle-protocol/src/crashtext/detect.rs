//! A streaming detector for `panicle run`: fed a child's stderr line by line,
//! it keeps only crash text, in bounded memory.
//!
//! A Rust panic block ends with its note or backtrace, or at the next panic
//! header; the process may live on after it (a panic in a thread), so a
//! finished block is handed out by [`CrashDetector::take_complete`] at once. A
//! Go crash ends the process: everything from its first line to the exit is
//! kept and parsed by [`CrashDetector::finish`].

use std::collections::VecDeque;

use serde_json::Value;

use super::rust::{Step, Tracker};
use super::{ParsedCrash, death, go, rust, truncate_str};

/// Memory bounds of a detector. The head of a crash is kept: it holds the
/// message and the crashing goroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorLimits {
    /// Bytes of crash text kept per crash.
    pub max_bytes: usize,
    /// Lines of crash text kept per crash.
    pub max_lines: usize,
    /// Longer lines are cut to this many bytes.
    pub max_line_bytes: usize,
    /// Finished crashes held until taken; later ones are counted and dropped.
    pub max_pending: usize,
    /// Lines after a `panic:` line without any goroutine header, signal or
    /// `runtime stack:` before the text is taken as ordinary output.
    pub go_confirm_lines: usize,
}

impl Default for DetectorLimits {
    fn default() -> Self {
        DetectorLimits {
            max_bytes: 256 * 1024,
            max_lines: 10_000,
            max_line_bytes: 16 * 1024,
            max_pending: 64,
            go_confirm_lines: 64,
        }
    }
}

/// Lines remembered before a crash starts, for Go's `runtime: …` notes and a
/// signal name followed by `PC=`.
const LOOKBEHIND_LINES: usize = 8;
const LOOKBEHIND_LINE_BYTES: usize = 1024;

#[derive(Debug)]
enum Mode {
    Rust(Tracker),
    Go { confirmed: bool, since_start: usize },
}

#[derive(Debug)]
struct Block {
    mode: Mode,
    lines: Vec<String>,
    bytes: usize,
    dropped_lines: usize,
    /// The lines before a Rust panic's header: another thread's output
    /// of the same shape inside the message is not the message.
    context: Vec<String>,
}

impl Block {
    fn new(mode: Mode) -> Self {
        Block {
            mode,
            lines: Vec::new(),
            bytes: 0,
            dropped_lines: 0,
            context: Vec::new(),
        }
    }

    fn push(&mut self, line: &str, limits: &DetectorLimits) {
        if self.lines.len() >= limits.max_lines || self.bytes + line.len() > limits.max_bytes {
            self.dropped_lines += 1;
            return;
        }
        self.bytes += line.len() + 1;
        self.lines.push(line.to_string());
    }

    fn parse(&self) -> Option<ParsedCrash> {
        let lines: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        let mut crash = match self.mode {
            Mode::Rust(_) => {
                let context: Vec<&str> = self.context.iter().map(String::as_str).collect();
                rust::parse_block(&lines, &context)?
            }
            Mode::Go { .. } => {
                let start = (0..lines.len()).find(|&i| go::starts_crash(&lines, i))?;
                go::parse_from(&lines, start)?
            }
        };
        if self.dropped_lines > 0 {
            crash.extra.insert("truncated".into(), Value::Bool(true));
            crash
                .extra
                .insert("dropped_lines".into(), Value::from(self.dropped_lines));
        }
        Some(crash)
    }
}

/// Finds Rust and Go crash text in a stream of stderr lines.
///
/// ```
/// use panicle_protocol::crashtext::CrashDetector;
///
/// let mut detector = CrashDetector::new();
/// for line in ["listening on :8080", "panic: boom", "", "goroutine 1 [running]:",
///              "main.main()", "\t/app/main.go:5 +0x1d", "exit status 2"] {
///     detector.push_line(line);
///     while let Some(crash) = detector.take_complete() {
///         drop(crash); // a Rust panic of a process that lives on
///     }
/// }
/// let crash = detector.finish().unwrap();
/// assert_eq!(crash.message, "boom");
/// ```
#[derive(Debug)]
pub struct CrashDetector {
    limits: DetectorLimits,
    lookbehind: VecDeque<String>,
    current: Option<Block>,
    complete: VecDeque<ParsedCrash>,
    dropped_crashes: usize,
    /// The last line was `thread '…' has overflowed its stack`.
    after_overflow: bool,
}

impl Default for CrashDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl CrashDetector {
    pub fn new() -> Self {
        Self::with_limits(DetectorLimits::default())
    }

    pub fn with_limits(limits: DetectorLimits) -> Self {
        CrashDetector {
            limits,
            lookbehind: VecDeque::with_capacity(LOOKBEHIND_LINES),
            current: None,
            complete: VecDeque::new(),
            dropped_crashes: 0,
            after_overflow: false,
        }
    }

    /// True while the lines pushed belong to a crash.
    pub fn in_crash(&self) -> bool {
        self.current.is_some()
    }

    /// Finished crashes that were dropped because too many were pending.
    pub fn dropped_crashes(&self) -> usize {
        self.dropped_crashes
    }

    /// Feeds one line of stderr, without its line ending.
    pub fn push_line(&mut self, line: &str) {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = truncate_str(line, self.limits.max_line_bytes);
        // A line that ends a block is looked at again as a possible start.
        for _ in 0..2 {
            match self.feed(line) {
                Fed::Done => return,
                Fed::Again => continue,
            }
        }
    }

    /// A finished crash, oldest first, while the process may still run.
    pub fn take_complete(&mut self) -> Option<ParsedCrash> {
        self.complete.pop_front()
    }

    /// At process exit: the first crash not yet taken (the one in progress if
    /// every finished one was taken). Use [`CrashDetector::finish_all`] to get
    /// all of them.
    pub fn finish(self) -> Option<ParsedCrash> {
        self.finish_all().into_iter().next()
    }

    /// At process exit: every crash not yet taken, oldest first.
    pub fn finish_all(mut self) -> Vec<ParsedCrash> {
        self.end_block();
        self.complete.into_iter().collect()
    }

    fn feed(&mut self, line: &str) -> Fed {
        let Some(block) = self.current.as_mut() else {
            self.idle_line(line);
            return Fed::Done;
        };
        let action = match &mut block.mode {
            Mode::Rust(tracker) => match tracker.step(line) {
                Step::Take => Action::Push,
                Step::TakeAndEnd => Action::PushAndEnd,
                Step::EndBefore => Action::EndBefore,
            },
            Mode::Go {
                confirmed,
                since_start,
            } => {
                if rust::is_header(line) {
                    Action::EndBefore
                } else if *confirmed {
                    Action::Push
                } else {
                    *since_start += 1;
                    if go::is_dump_line(line) {
                        *confirmed = true;
                        Action::Push
                    } else if *since_start > self.limits.go_confirm_lines {
                        Action::Abandon
                    } else {
                        Action::Push
                    }
                }
            }
        };
        match action {
            Action::Push => {
                block.push(line, &self.limits);
                Fed::Done
            }
            Action::PushAndEnd => {
                block.push(line, &self.limits);
                self.end_block();
                Fed::Done
            }
            Action::EndBefore => {
                self.end_block();
                Fed::Again
            }
            Action::Abandon => {
                // Ordinary output that happened to start with "panic: ".
                self.current = None;
                self.remember(line);
                Fed::Done
            }
        }
    }

    fn idle_line(&mut self, line: &str) {
        // The runtime's second line of a stack overflow already reported.
        if self.after_overflow && death::is_overflow_follow_up(line) {
            self.after_overflow = false;
            return;
        }
        self.after_overflow = false;
        if let Some(crash) = death::parse_line(line) {
            self.after_overflow = crash
                .tags
                .get("death")
                .is_some_and(|d| d == "stack_overflow")
                && !death::is_overflow_follow_up(line);
            self.lookbehind.clear();
            if self.complete.len() >= self.limits.max_pending {
                self.dropped_crashes += 1;
            } else {
                self.complete.push_back(crash);
            }
            return;
        }
        if rust::is_header(line) {
            let mut block = Block::new(Mode::Rust(Tracker::start(line)));
            block.push(line, &self.limits);
            block.context = self.lookbehind.drain(..).collect();
            self.current = Some(block);
            return;
        }
        let signal_start = self
            .lookbehind
            .back()
            .is_some_and(|prev| go::is_signal_dump(prev, line));
        if go::is_start_line(line) || signal_start {
            let mut block = Block::new(Mode::Go {
                confirmed: signal_start,
                since_start: 0,
            });
            let keep_from = if signal_start {
                self.lookbehind.len().saturating_sub(1)
            } else {
                let mut from = self.lookbehind.len();
                while from > 0 && go::is_runtime_note(&self.lookbehind[from - 1]) {
                    from -= 1;
                }
                from
            };
            for prev in self.lookbehind.drain(..).skip(keep_from) {
                block.push(&prev, &self.limits);
            }
            block.push(line, &self.limits);
            self.current = Some(block);
            return;
        }
        self.remember(line);
    }

    fn remember(&mut self, line: &str) {
        if self.lookbehind.len() == LOOKBEHIND_LINES {
            self.lookbehind.pop_front();
        }
        self.lookbehind
            .push_back(truncate_str(line, LOOKBEHIND_LINE_BYTES).to_string());
    }

    fn end_block(&mut self) {
        let Some(block) = self.current.take() else {
            return;
        };
        let Some(crash) = block.parse() else {
            return;
        };
        if self.complete.len() >= self.limits.max_pending {
            self.dropped_crashes += 1;
        } else {
            self.complete.push_back(crash);
        }
    }
}

enum Fed {
    Done,
    Again,
}

enum Action {
    Push,
    PushAndEnd,
    EndBefore,
    Abandon,
}
