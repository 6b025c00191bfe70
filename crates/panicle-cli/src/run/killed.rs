//! A child killed by a signal that left no crash text on stderr (SIGSEGV in
//! native code, SIGKILL from the OOM killer, an `abort()` in C): its event,
//! with the last lines of stderr as context and, for SIGKILL, what the
//! cgroup's `memory.events` says about an out-of-memory kill.

use std::collections::VecDeque;

use panicle_protocol::crashtext::ParsedCrash;
use panicle_protocol::{Kind, Platform};
use serde_json::{Value, json};

/// Lines of stderr kept as the context of a signal death.
pub const TAIL_LINES: usize = 50;
/// Longest tail line kept.
pub const TAIL_LINE_BYTES: usize = 1024;

/// The last lines of a stream, bounded.
#[derive(Debug, Default)]
pub struct Tail(VecDeque<String>);

impl Tail {
    pub fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        let kept = panicle_protocol::truncate_str(line, TAIL_LINE_BYTES);
        self.0.push_back(kept.to_string());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// The cgroup's OOM-kill counter before the child started and after it died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCount {
    pub path: String,
    pub before: u64,
    pub after: u64,
}

/// Signals that kill a process without a word from it.
pub fn is_silent_death(signal: i32) -> bool {
    matches!(
        signal,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGKILL | libc::SIGABRT
    )
}

/// The signal's name (`SIGSEGV`), as the SDK's signal handlers name it too.
pub fn signal_name(signal: i32) -> String {
    panicle::signals::signal_name(signal)
}

fn what(signal: i32) -> &'static str {
    panicle::signals::signal_description(signal)
}

/// The event of a child killed by `signal` with no crash on stderr.
pub fn crash(signal: i32, tail: Vec<String>, oom: Option<OomCount>) -> ParsedCrash {
    let name = signal_name(signal);
    let message = if signal == libc::SIGKILL {
        match &oom {
            Some(o) if o.after > o.before => format!(
                "killed by SIGKILL: out of memory (the cgroup's memory.events counted {} OOM kill{})",
                o.after - o.before,
                if o.after - o.before == 1 { "" } else { "s" }
            ),
            _ => "killed by SIGKILL (most often the kernel's out-of-memory killer; no OOM kill was counted where Panicle could look)".to_string(),
        }
    } else {
        format!("killed by {name} ({})", what(signal))
    };
    let mut crash = ParsedCrash::new(Platform::Other, Kind::Signal, message);
    crash.tags.insert("process.signal_name".into(), name);
    crash.extra.insert("stderr_tail".into(), Value::from(tail));
    if let Some(o) = oom {
        crash.extra.insert(
            "oom".into(),
            json!({"memory_events": o.path, "oom_kill_before": o.before, "oom_kill_after": o.after, "confirmed": o.after > o.before}),
        );
    }
    crash
}

/// This process's cgroup v2 `memory.events` and its `oom_kill` count (the
/// child runs in the same cgroup); None where it cannot be read.
pub fn oom_kills() -> Option<OomCount> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: a single `0::/path` line.
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let file = format!("/sys/fs/cgroup{}/memory.events", path.trim_end_matches('/'));
    let text = std::fs::read_to_string(&file).ok()?;
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))?
        .trim()
        .parse()
        .ok()?;
    Some(OomCount {
        path: file,
        before: count,
        after: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigkill_names_the_oom_killer_and_says_when_it_is_confirmed() {
        let oom = |before, after| OomCount {
            path: "/sys/fs/cgroup/x/memory.events".into(),
            before,
            after,
        };
        let confirmed = crash(libc::SIGKILL, vec![], Some(oom(2, 3)));
        assert_eq!(confirmed.kind, Kind::Signal);
        assert!(
            confirmed.message.contains("out of memory"),
            "{}",
            confirmed.message
        );
        assert_eq!(confirmed.extra["oom"]["confirmed"], true);
        let unknown = crash(libc::SIGKILL, vec![], Some(oom(3, 3)));
        assert!(unknown.message.contains("most often"));
        assert_eq!(unknown.extra["oom"]["confirmed"], false);
        let segv = crash(libc::SIGSEGV, vec!["last words".into()], None);
        assert_eq!(
            segv.message,
            "killed by SIGSEGV (segmentation fault: an invalid memory access)"
        );
        assert_eq!(segv.tags["process.signal_name"], "SIGSEGV");
        assert_eq!(segv.extra["stderr_tail"][0], "last words");
    }

    #[test]
    fn the_tail_keeps_the_last_lines_bounded() {
        let mut tail = Tail::default();
        for i in 0..120 {
            tail.push(&format!(
                "line {i} {}",
                "x".repeat(if i == 119 { 5000 } else { 1 })
            ));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert!(lines[0].starts_with("line 70 "));
        assert_eq!(lines[49].len(), TAIL_LINE_BYTES);
        assert!(is_silent_death(libc::SIGKILL) && !is_silent_death(libc::SIGTERM));
    }
}
