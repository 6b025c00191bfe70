//! The streaming detector on synthetic streams: what it ignores, when a Rust
//! block is complete, and its memory bounds.

use panicle_protocol::crashtext::{CrashDetector, DetectorLimits};
use panicle_protocol::{Kind, Platform};

fn feed(detector: &mut CrashDetector, text: &str) {
    for line in text.lines() {
        detector.push_line(line);
    }
}

#[test]
fn ordinary_output_yields_nothing() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "2026-11-26T12:00:00Z INFO starting\nlistening on :8080\nerror: connection refused\nthread pool size 8\n",
    );
    assert!(!d.in_crash());
    assert!(d.take_complete().is_none());
    assert!(d.finish().is_none());
}

#[test]
fn rust_panic_with_note_is_complete_at_once_and_log_lines_are_ignored() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "2026-11-26T12:00:00Z INFO shop: serving\n\nthread 'tokio-runtime-worker' (77) panicked at src/orders.rs:42:17:\ncalled `Option::unwrap()` on a `None` value\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
    );
    let crash = d.take_complete().expect("complete after the note");
    assert_eq!(crash.platform, Platform::Rust);
    assert_eq!(crash.message, "called `Option::unwrap()` on a `None` value");
    let thread = crash.thread.expect("thread");
    assert_eq!(thread.name.as_deref(), Some("tokio-runtime-worker"));
    assert_eq!(thread.id.as_deref(), Some("77"));
    assert!(!d.in_crash());
    feed(&mut d, "2026-11-26T12:00:01Z INFO shop: still serving\n");
    assert!(d.finish().is_none());
}

#[test]
fn a_log_line_ends_a_rust_message_without_note() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "thread 'worker' panicked at src/a.rs:1:1:\nfirst\n2026-11-26T12:00:01Z WARN app: worker died, restarting\n",
    );
    let crash = d.take_complete().expect("ended by the log line");
    assert_eq!(crash.message, "first");
    assert!(!d.in_crash());
}

#[test]
fn a_second_panic_completes_the_first() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "thread 'a' panicked at src/a.rs:1:1:\nfirst\n\nthread 'b' panicked at src/b.rs:2:2:\nsecond\n",
    );
    let first = d.take_complete().expect("first complete");
    assert_eq!(first.message, "first");
    assert!(d.take_complete().is_none());
    assert!(d.in_crash());
    let second = d.finish().expect("second at exit");
    assert_eq!(second.message, "second");
}

#[test]
fn finish_returns_pending_crashes_oldest_first() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "thread 'a' panicked at src/a.rs:1:1:\nfirst\nthread 'b' panicked at src/b.rs:2:2:\nsecond\n",
    );
    let all = d.finish_all();
    let messages: Vec<&str> = all.iter().map(|c| c.message.as_str()).collect();
    assert_eq!(messages, ["first", "second"]);
}

#[test]
fn go_crash_lasts_until_exit() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "2026/11/26 12:00:00 serving\npanic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\n",
    );
    assert!(d.in_crash());
    assert!(d.take_complete().is_none());
    let crash = d.finish().expect("go crash");
    assert_eq!(crash.platform, Platform::Go);
    assert_eq!(crash.kind, Kind::Panic);
    assert_eq!(crash.message, "boom");
}

#[test]
fn runtime_notes_and_signal_names_before_the_start_are_kept() {
    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "some log\nruntime: goroutine stack exceeds 1000000000-byte limit\nfatal error: stack overflow\n\nruntime stack:\nruntime.throw({0x1, 0x2})\n\t/go/src/runtime/panic.go:1 +0x1\n\ngoroutine 1 [running]:\nmain.f()\n\t/app/main.go:3 +0x1\n",
    );
    let crash = d.finish().expect("crash");
    assert_eq!(crash.message, "stack overflow");
    assert_eq!(
        crash.extra["runtime_notes"][0],
        "runtime: goroutine stack exceeds 1000000000-byte limit"
    );

    let mut d = CrashDetector::new();
    feed(
        &mut d,
        "working\nSIGQUIT: quit\nPC=0x40268e m=0 sigcode=0\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\n",
    );
    let crash = d.finish().expect("signal dump");
    assert_eq!(crash.kind, Kind::Signal);
    assert_eq!(crash.message, "SIGQUIT: quit");
}

#[test]
fn a_panic_word_in_ordinary_output_is_dropped_when_no_dump_follows() {
    let limits = DetectorLimits {
        go_confirm_lines: 5,
        ..DetectorLimits::default()
    };
    let mut d = CrashDetector::with_limits(limits);
    feed(&mut d, "panic: this is just a log line of some tool\n");
    for i in 0..10 {
        d.push_line(&format!("request {i} ok"));
    }
    assert!(!d.in_crash());
    assert!(d.finish().is_none());
}

#[test]
fn memory_is_bounded_and_the_head_is_kept() {
    let limits = DetectorLimits {
        max_bytes: 4096,
        max_lines: 100,
        max_line_bytes: 256,
        ..DetectorLimits::default()
    };
    let mut d = CrashDetector::with_limits(limits);
    feed(
        &mut d,
        "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:5 +0x1d\n\ngoroutine 2 [select]:\n",
    );
    let long = "x".repeat(100_000);
    for _ in 0..50_000 {
        d.push_line(&long);
        d.push_line("main.worker()");
    }
    let crash = d.finish().expect("crash");
    assert_eq!(crash.message, "boom");
    assert_eq!(crash.frames.len(), 1);
    assert_eq!(crash.extra["truncated"], true);
    assert!(crash.extra["dropped_lines"].as_u64().unwrap_or(0) > 90_000);
}

#[test]
fn pending_crashes_are_bounded() {
    let limits = DetectorLimits {
        max_pending: 3,
        ..DetectorLimits::default()
    };
    let mut d = CrashDetector::with_limits(limits);
    for i in 0..10 {
        feed(
            &mut d,
            &format!(
                "thread 'w{i}' panicked at src/a.rs:1:1:\nm{i}\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
            ),
        );
    }
    assert_eq!(d.dropped_crashes(), 7);
    let all = d.finish_all();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].message, "m0");
}

#[test]
fn carriage_returns_and_newlines_are_trimmed() {
    let mut d = CrashDetector::new();
    d.push_line("thread 'main' panicked at src/main.rs:2:5:\r\n");
    d.push_line("boom\r\n");
    d.push_line(
        "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\r\n",
    );
    let crash = d.take_complete().expect("crash");
    assert_eq!(crash.message, "boom");
    assert_eq!(
        crash.location.map(|l| (l.file, l.line, l.column)),
        Some(("src/main.rs".to_string(), Some(2), Some(5)))
    );
}
