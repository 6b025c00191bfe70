//! Rust process deaths that print no panic block: a stack overflow, a
//! failed allocation, another `fatal runtime error`, a panic that could not
//! unwind. The runtime prints one line (two for a stack overflow) and
//! aborts; each is a crash of its own kind.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{ParsedCrash, truncate_str};
use crate::event::{Kind, Platform, Thread};

static RE_OVERFLOW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*thread '(.*?)'(?: \(\d+\))? has overflowed its stack\s*$").unwrap()
});
static RE_ALLOC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*memory allocation of \d+ bytes failed\s*$").unwrap());
static RE_FATAL_RUNTIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*fatal runtime error: (\S.*?)\s*$").unwrap());

/// The runtime's line after `has overflowed its stack`: part of that death.
pub(crate) fn is_overflow_follow_up(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("fatal runtime error: stack overflow")
}

/// The death a line announces, if it is one.
pub(crate) fn parse_line(line: &str) -> Option<ParsedCrash> {
    let (message, death, thread) = if let Some(c) = RE_OVERFLOW.captures(line) {
        // Without the OS thread id newer releases print: it differs per run.
        let name = c[1].to_string();
        (
            format!("thread '{name}' has overflowed its stack"),
            "stack_overflow",
            Some(name),
        )
    } else if RE_ALLOC.is_match(line) {
        (line.trim().to_string(), "allocation_failure", None)
    } else if let Some(c) = RE_FATAL_RUNTIME.captures(line) {
        let what = if c[1].starts_with("stack overflow") {
            "stack_overflow"
        } else {
            "fatal_runtime_error"
        };
        (line.trim().to_string(), what, None)
    } else if line.trim() == "thread caused non-unwinding panic. aborting." {
        (line.trim().to_string(), "non_unwinding_panic", None)
    } else {
        return None;
    };
    let message = truncate_str(&message, super::MAX_MESSAGE_BYTES).to_string();
    let mut crash = ParsedCrash::new(Platform::Rust, Kind::Fatal, message);
    crash.thread = thread.map(|name| Thread {
        name: Some(name),
        id: None,
    });
    crash.tags.insert("death".into(), death.into());
    crash.extra.insert("aborted".into(), Value::Bool(true));
    Some(crash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_death_has_its_kind_and_tag() {
        let cases = [
            ("thread 'main' has overflowed its stack", "stack_overflow"),
            (
                "thread 'tokio-rt-worker' (4711) has overflowed its stack",
                "stack_overflow",
            ),
            (
                "memory allocation of 1099511627776 bytes failed",
                "allocation_failure",
            ),
            (
                "fatal runtime error: Rust cannot catch foreign exceptions",
                "fatal_runtime_error",
            ),
            (
                "fatal runtime error: stack overflow, aborting",
                "stack_overflow",
            ),
            (
                "thread caused non-unwinding panic. aborting.",
                "non_unwinding_panic",
            ),
        ];
        for (line, death) in cases {
            let crash = parse_line(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(crash.kind, Kind::Fatal);
            assert_eq!(crash.platform, Platform::Rust);
            assert_eq!(crash.tags["death"], death, "{line}");
            assert_eq!(crash.message, line.replace(" (4711)", ""));
        }
        assert_eq!(
            parse_line("thread 'main' has overflowed its stack")
                .and_then(|c| c.thread)
                .and_then(|t| t.name),
            Some("main".into())
        );
        assert!(parse_line("the stack has overflowed its budget").is_none());
        assert!(parse_line("fatal error: concurrent map writes").is_none());
    }
}
