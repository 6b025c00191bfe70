//! Real crash texts (testdata/crashtext, see SOURCES.md) parsed end to end.

use panicle_protocol::crashtext::{CrashDetector, ParsedCrash, parse_crash, parse_go, parse_rust};
use panicle_protocol::{Kind, Platform, fingerprint};

fn fixture(path: &str) -> String {
    let full = format!(
        "{}/../../testdata/crashtext/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn parse(path: &str) -> ParsedCrash {
    parse_crash(&fixture(path)).unwrap_or_else(|| panic!("{path}: no crash found"))
}

/// The first `n` frame functions, innermost first.
fn top(crash: &ParsedCrash, n: usize) -> Vec<&str> {
    crash
        .frames
        .iter()
        .take(n)
        .map(|f| f.function.as_deref().unwrap_or("?"))
        .collect()
}

fn location(crash: &ParsedCrash) -> String {
    let loc = crash.location.as_ref().expect("location");
    format!("{}:{}", loc.file, loc.line.unwrap_or(0))
}

fn thread_name(crash: &ParsedCrash) -> &str {
    crash
        .thread
        .as_ref()
        .and_then(|t| t.name.as_deref())
        .unwrap_or("")
}

fn others(crash: &ParsedCrash) -> Vec<(&str, Option<&str>)> {
    crash
        .other_threads
        .iter()
        .map(|t| (t.name.as_str(), t.state.as_deref()))
        .collect()
}

/// Everything a detector hands out when fed the fixture line by line.
fn detect_all(text: &str) -> Vec<ParsedCrash> {
    let mut detector = CrashDetector::new();
    let mut out = Vec::new();
    for line in text.lines() {
        detector.push_line(line);
        while let Some(crash) = detector.take_complete() {
            out.push(crash);
        }
    }
    out.extend(detector.finish_all());
    out
}

// ---------------------------------------------------------------- Go

#[test]
fn go_nil_pointer_is_a_panic_with_a_signal_tag() {
    let c = parse("go/go1.19-nil-pointer.txt");
    assert_eq!(c.platform, Platform::Go);
    assert_eq!(c.kind, Kind::Panic);
    assert_eq!(
        c.message,
        "runtime error: invalid memory address or nil pointer dereference"
    );
    assert_eq!(c.tags.get("signal").map(String::as_str), Some("SIGSEGV"));
    assert_eq!(
        top(&c, 3),
        ["main.(*Store).Get", "main.handle", "main.main"]
    );
    assert_eq!(location(&c), "/tmp/crashgen/go/nilptr.go:7");
    assert_eq!(thread_name(&c), "goroutine 1");
    assert_eq!(c.thread.as_ref().and_then(|t| t.id.as_deref()), Some("1"));
    assert_eq!(c.thread_state.as_deref(), Some("running"));
    assert!(c.frames.iter().all(|f| f.in_app == Some(true)));
}

#[test]
fn go_log_lines_before_the_panic_are_ignored() {
    let c = parse("go/go1.19-panic-error-after-log.txt");
    assert_eq!(
        c.message,
        "open /etc/app/config.yaml: no such file or directory"
    );
    assert_eq!(top(&c, 2), ["main.mustLoad", "main.main"]);
    assert!(c.tags.is_empty());
}

#[test]
fn go_concurrent_map_faults_are_fatal() {
    for (path, message, first) in [
        (
            "go/go1.19-concurrent-map-writes.txt",
            "concurrent map writes",
            "main.main.func1",
        ),
        (
            "go/go1.19-concurrent-map-read-write.txt",
            "concurrent map read and map write",
            "main.main",
        ),
        (
            "go/go1.19-concurrent-map-iteration.txt",
            "concurrent map iteration and map write",
            "main.main",
        ),
        (
            "go/go1.24-maps-fatal-concurrent-writes.txt",
            "concurrent map writes",
            "main.main.func1",
        ),
        (
            "go/go1.24-maps-fatal-iteration.txt",
            "concurrent map iteration and map write",
            "internal/runtime/maps.(*Iter).Next",
        ),
    ] {
        let c = parse(path);
        assert_eq!(c.kind, Kind::Fatal, "{path}");
        assert_eq!(c.message, message, "{path}");
        assert_eq!(top(&c, 1), [first], "{path}");
        // runtime.throw / internal/runtime/maps.fatal are cut.
        assert!(
            c.frames.iter().all(|f| {
                let name = f.function.as_deref().unwrap_or("");
                name != "internal/runtime/maps.fatal" && !name.starts_with("runtime.throw")
            }),
            "{path}"
        );
    }
}

#[test]
fn go_1_24_map_fatal_keeps_the_runtime_frame_out_of_the_app() {
    let c = parse("go/go1.24-maps-fatal-iteration.txt");
    assert_eq!(c.frames[0].in_app, Some(false));
    assert_eq!(
        c.frames[0].package.as_deref(),
        Some("internal/runtime/maps")
    );
    assert_eq!(
        location(&c),
        "/home/user/opencost/test_race_condition.go:33"
    );
}

#[test]
fn go_1_21_created_by_names_the_parent_goroutine() {
    let c = parse("go/go1.24-maps-fatal-concurrent-writes.txt");
    assert_eq!(thread_name(&c), "goroutine 17");
    // `created by main.main in goroutine 1` becomes the outermost frame.
    assert_eq!(top(&c, 2), ["main.main.func1", "main.main"]);
    assert_eq!(c.frames[1].line, Some(14));
    assert_eq!(others(&c), [("goroutine 1", Some("sync.WaitGroup.Wait"))]);
}

#[test]
fn go_1_17_style_created_by_without_parent() {
    let c = parse("go/go1.19-goroutine-index.txt");
    assert_eq!(
        c.message,
        "runtime error: index out of range [3] with length 2"
    );
    assert_eq!(thread_name(&c), "goroutine 18");
    assert_eq!(top(&c, 3), ["main.process", "main.consume", "main.main"]);
    assert_eq!(c.frames[2].line, Some(20));
}

#[test]
fn go_deadlock_takes_the_first_goroutine() {
    let c = parse("go/go1.19-deadlock.txt");
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.message, "all goroutines are asleep - deadlock!");
    assert_eq!(c.thread_state.as_deref(), Some("semacquire"));
    assert_eq!(
        top(&c, 3),
        [
            "sync.runtime_Semacquire",
            "sync.(*WaitGroup).Wait",
            "main.main"
        ]
    );
    assert_eq!(c.frames[0].in_app, Some(false));
    assert_eq!(location(&c), "/tmp/crashgen/go/deadlock.go:20");
    assert_eq!(
        others(&c),
        [
            ("goroutine 6", Some("chan receive")),
            ("goroutine 7", Some("chan receive"))
        ]
    );
}

#[test]
fn go_gotraceback_all_keeps_other_goroutines() {
    let c = parse("go/go1.19-gotraceback-all.txt");
    assert_eq!(thread_name(&c), "goroutine 6");
    assert_eq!(
        others(&c),
        [
            ("goroutine 1", Some("sleep")),
            ("goroutine 7", Some("sleep"))
        ]
    );
    let event = c.into_event("id-1".into(), "2026-11-26T12:00:00Z".into());
    let threads = event.extra["threads"].as_array().expect("threads array");
    assert_eq!(threads.len(), 2);
    assert_eq!(threads[0]["name"], "goroutine 1");
    assert_eq!(threads[0]["state"], "sleep");
    assert_eq!(threads[0]["frames"][0]["function"], "time.Sleep");
    assert_eq!(event.extra["thread_state"], "running");
}

#[test]
fn go_recovered_chain_reports_the_last_panic() {
    let c = parse("go/go1.19-recovered-chain.txt");
    assert_eq!(c.message, "middle failed: assignment to entry in nil map");
    let chain = c.extra["panic_chain"].as_array().expect("chain");
    assert_eq!(chain[0], "assignment to entry in nil map");
    assert_eq!(top(&c, 1), ["main.middle.func1"]);

    let c = parse("go/go1.19-repanic-same-value.txt");
    assert_eq!(c.message, "boom");
}

#[test]
fn go_recovered_repanicked_in_a_test_cuts_testing_and_panic_frames() {
    let c = parse("go/go1.25-recovered-repanicked-testing.txt");
    assert_eq!(c.message, "runtime error: integer divide by zero");
    assert!(c.extra.contains_key("panic_chain"));
    assert_eq!(
        top(&c, 1),
        ["github.com/zhangchengcheng/stock-replenishment-planner/internal/domain.roundUp"]
    );
    assert_eq!(location(&c), "/app/internal/domain/policy.go:42");
    assert_eq!(thread_name(&c), "goroutine 9");
    let last = c.frames.last().expect("frames");
    assert_eq!(last.function.as_deref(), Some("testing.(*T).Run"));
    assert_eq!(last.in_app, Some(false));
}

#[test]
fn go_multiline_message() {
    let c = parse("go/go1.19-multiline-message.txt");
    assert_eq!(
        c.message,
        "validation failed:\n  field a: required\n  field b: too long"
    );
}

#[test]
fn go_unexpected_signal_is_kind_signal() {
    let c = parse("go/go1.19-cgo-unexpected-signal.txt");
    assert_eq!(c.kind, Kind::Signal);
    assert_eq!(c.message, "unexpected signal during runtime execution");
    assert_eq!(c.tags.get("signal").map(String::as_str), Some("SIGSEGV"));
    // The goroutine, not the system stack, is the crashing thread.
    assert_eq!(thread_name(&c), "goroutine 1");
    assert_eq!(c.thread_state.as_deref(), Some("syscall"));
    assert_eq!(location(&c), "_cgo_gotypes.go:41");
    assert_eq!(c.other_threads[0].name, "runtime stack");
    assert_eq!(c.frames[0].instruction_addr.as_deref(), Some("0x40455c"));
}

#[test]
fn go_fault_address_with_gp_header_and_memory_dump() {
    let c = parse("go/go1.22-fault-gp-header-stack-dump.txt");
    assert_eq!(c.kind, Kind::Signal);
    assert_eq!(c.message, "fault");
    assert_eq!(thread_name(&c), "goroutine 1");
    // Memory dump lines after the frames are not frames.
    assert_eq!(top(&c, 5), ["main.main"]);
    assert_eq!(
        location(&c),
        "/mnt/d/hk/.GSHS CTF/GoOutside/make_prob/prob.go:89"
    );
    assert_eq!(c.extra["runtime_notes"][0], "unexpected fault address 0x0");
    assert_eq!(
        others(&c),
        [
            ("goroutine 2", Some("force gc (idle)")),
            ("goroutine 5", Some("finalizer wait"))
        ]
    );
}

#[test]
fn go_1_23_system_header_with_wait_time() {
    let c = parse("go/go1.23-gotraceback-system-reconstructed.txt");
    assert_eq!(c.kind, Kind::Panic);
    assert_eq!(top(&c, 2), ["main.(*Store).Get", "main.handle"]);
    let worker = &c.other_threads[1];
    assert_eq!(worker.name, "goroutine 18");
    assert_eq!(worker.state.as_deref(), Some("chan receive, 2 minutes"));
    assert_eq!(
        worker.frames.last().and_then(|f| f.function.as_deref()),
        Some("main.main")
    );
}

#[test]
fn go_trimpath_module_without_dot_is_app_code() {
    let c = parse("go/go1.24-maps-fatal-trimpath-truncated.txt");
    assert_eq!(c.message, "concurrent map writes");
    assert_eq!(
        top(&c, 1),
        ["mineru-tools/internal/latex.(*Runner).clientFor"]
    );
    assert_eq!(c.frames[0].in_app, Some(true));
    assert_eq!(location(&c), "mineru-tools/internal/latex/runner.go:328");
    assert_eq!(thread_name(&c), "goroutine 1653");
}

#[test]
fn go_stack_overflow_keeps_notes_and_marks_elision() {
    let c = parse("go/go1.19-stack-overflow.txt");
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.message, "stack overflow");
    assert_eq!(c.extra["frames_elided"], true);
    assert_eq!(
        c.extra["runtime_notes"][0],
        "runtime: goroutine stack exceeds 1000000000-byte limit"
    );
    assert_eq!(top(&c, 1), ["main.f"]);
}

#[test]
fn go_sigquit_dump_is_a_signal() {
    let c = parse("go/go1.19-sigquit.txt");
    assert_eq!(c.kind, Kind::Signal);
    assert_eq!(c.message, "SIGQUIT: quit");
    assert_eq!(c.tags.get("signal").map(String::as_str), Some("SIGQUIT"));
    assert_eq!(location(&c), "/tmp/crashgen/go/sigquit.go:11");
}

#[test]
fn go_gotraceback_none_and_crash() {
    let c = parse("go/go1.19-gotraceback-none.txt");
    assert_eq!(
        c.message,
        "open /etc/app/config.yaml: no such file or directory"
    );
    assert!(c.frames.is_empty());

    // GOTRACEBACK=crash: the SIGABRT dump that follows adds no goroutine twice.
    let c = parse("go/go1.19-gotraceback-crash.txt");
    assert_eq!(c.kind, Kind::Panic);
    assert_eq!(top(&c, 2), ["main.mustLoad", "main.main"]);
    let names: Vec<&str> = c.other_threads.iter().map(|t| t.name.as_str()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len());
    assert!(!names.contains(&"goroutine 1"));
}

// ---------------------------------------------------------------- Rust

#[test]
fn rust_current_form_without_backtrace() {
    let c = parse("rust/rust1.95-unwrap-none.txt");
    assert_eq!(c.platform, Platform::Rust);
    assert_eq!(c.kind, Kind::Panic);
    assert_eq!(c.message, "called `Option::unwrap()` on a `None` value");
    assert_eq!(location(&c), "src/main.rs:9");
    assert_eq!(c.location.as_ref().and_then(|l| l.column), Some(30));
    assert_eq!(thread_name(&c), "main");
    assert!(c.frames.is_empty());
}

#[test]
fn rust_short_backtrace_cuts_the_panic_machinery() {
    let c = parse("rust/rust1.95-unwrap-backtrace.txt");
    assert_eq!(
        top(&c, 4),
        [
            "core::option::Option<T>::unwrap",
            "main::Cart::quantity",
            "main::checkout",
            "main::main"
        ]
    );
    assert_eq!(c.frames[0].in_app, Some(false));
    assert_eq!(c.frames[1].in_app, Some(true));
    assert_eq!(c.frames[1].file.as_deref(), Some("src/main.rs"));
    assert_eq!(c.frames[1].column, Some(30));
}

#[test]
fn rust_full_backtrace_strips_hashes_and_keeps_addresses() {
    let c = parse("rust/rust1.95-unwrap-backtrace-full.txt");
    assert_eq!(
        top(&c, 2),
        ["core::option::Option<T>::unwrap", "main::Cart::quantity"]
    );
    assert_eq!(
        c.frames[1].instruction_addr.as_deref(),
        Some("0x55da1093d345")
    );
    assert_eq!(
        c.frames[1].file.as_deref(),
        Some("/tmp/crashgen/rust/src/main.rs")
    );
    assert!(c.frames.iter().all(|f| {
        let name = f.function.as_deref().unwrap_or("");
        !name.contains("::h") || !name.ends_with(|ch: char| ch.is_ascii_hexdigit())
    }));
    // v0 crate disambiguators go too.
    assert!(
        c.frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .all(|f| !f.contains("[e28293b1aa0f68bd]"))
    );
    assert!(
        c.frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .any(|f| f == "std::rt::lang_start_internal")
    );
}

#[test]
fn rust_release_backtrace_without_files() {
    let c = parse("rust/rust1.95-release-backtrace.txt");
    assert_eq!(top(&c, 5), ["main::main"]);
    assert_eq!(c.frames[0].file, None);
    assert_eq!(location(&c), "src/main.rs:9");
}

#[test]
fn rust_multiline_message() {
    let c = parse("rust/rust1.95-multiline-message.txt");
    assert_eq!(
        c.message,
        "validation failed:\nValidationError {\n    field: \"email\",\n    reason: \"missing @\",\n}\nend of report"
    );
}

#[test]
fn rust_another_threads_lines_among_the_frames_are_dropped() {
    let text = fixture("rust/rust1.95-interleaved-backtrace.txt");
    let c = parse("rust/rust1.95-interleaved-backtrace.txt");
    assert_eq!(c.message, "stock for sku 4711 is negative: -3");
    assert_eq!(location(&c), "interleave.rs:9");
    // The frames after `stack backtrace:` and the counting thread's lines.
    assert_eq!(
        top(&c, 3),
        [
            "interleave::reserve",
            "interleave::main",
            "core::ops::function::FnOnce::call_once"
        ]
    );
    assert_eq!(c.frames[0].in_app, Some(true));
    // Fed line by line, as `panicle run` reads stderr: the same crash.
    let detected = detect_all(&text);
    assert_eq!(detected.len(), 1, "{detected:#?}");
    assert_eq!(detected[0].message, c.message);
    assert_eq!(top(&detected[0], 2), top(&c, 2));
}

#[test]
fn rust_another_threads_line_between_header_and_message_is_dropped() {
    let text = fixture("rust/rust1.7x-interleaved-header-message-reconstructed.txt");
    let c = parse("rust/rust1.7x-interleaved-header-message-reconstructed.txt");
    // `count is 4` has the shape of the lines around the crash: not the message.
    assert_eq!(c.message, "stock for sku 4711 is negative: -3");
    assert_eq!(c.extra["interleaved_lines_dropped"], 1);
    assert_eq!(location(&c), "interleave.rs:9");
    assert_eq!(thread_name(&c), "main");
    let detected = detect_all(&text);
    assert_eq!(detected.len(), 1, "{detected:#?}");
    assert_eq!(detected[0].message, c.message);
    // A log line in that place (another thread's `tracing` output) too,
    // with nothing of its shape around it.
    let logged = "thread 'main' panicked at src/orders.rs:88:14:\n\
        2026-01-02T03:04:05.121Z  INFO worker: polled queue\n\
        called `Result::unwrap()` on an `Err` value: Timeout\n\
        note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
    let c = parse_crash(logged).unwrap();
    assert_eq!(
        c.message,
        "called `Result::unwrap()` on an `Err` value: Timeout"
    );
    let detected = detect_all(logged);
    assert_eq!(detected.len(), 1);
    assert_eq!(detected[0].message, c.message);
}

#[test]
fn rust_old_forms() {
    let c = parse("rust/rust1.4x-old-format-expect.txt");
    assert_eq!(
        c.message,
        "Please type a number: ParseIntError { kind: InvalidDigit }"
    );
    assert_eq!(location(&c), "src/main.rs:19");

    let c = parse("rust/rust1.2x-old-format-wrapped-message.txt");
    assert_eq!(
        c.message,
        "index out of bounds: the len is 5 but the index is\n 10"
    );
    assert_eq!(c.location.as_ref().and_then(|l| l.column), Some(19));

    let c = parse("rust/rust1.1x-old-format-no-column.txt");
    assert!(
        c.message
            .starts_with("There was a problem opening the file: Error {")
    );
    assert_eq!(location(&c), "src/main.rs:8");
    assert_eq!(c.location.as_ref().and_then(|l| l.column), None);

    let c = parse("rust/rust1.6x-old-format-backtrace-reconstructed.txt");
    assert_eq!(c.message, "called `Option::unwrap()` on a `None` value");
    assert_eq!(
        top(&c, 2),
        ["core::option::Option<T>::unwrap", "shop::Cart::quantity"]
    );
    assert_eq!(c.frames[1].package.as_deref(), Some("shop"));
}

#[test]
fn rust_very_old_full_backtrace_in_a_named_thread() {
    let c = parse("rust/rust1.15-old-format-full-backtrace.txt");
    assert_eq!(thread_name(&c), "rustc");
    assert_eq!(
        top(&c, 1),
        ["rustc_metadata::creader::CrateLoader::resolve_crate"]
    );
    let tail: Vec<_> = c
        .frames
        .iter()
        .rev()
        .take(3)
        .map(|f| (f.function.as_deref(), f.in_app))
        .collect();
    assert_eq!(
        tail,
        [
            (None, Some(false)),
            (Some("clone"), Some(false)),
            (Some("start_thread"), Some(false))
        ]
    );
}

#[test]
fn rust_thread_panics_are_separate_crashes_for_the_detector() {
    let text = fixture("rust/rust1.95-thread-panics-backtrace.txt");
    let crashes = detect_all(&text);
    let summary: Vec<(&str, &str)> = crashes
        .iter()
        .map(|c| (thread_name(c), c.message.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "config-loader",
                "index out of bounds: the len is 3 but the index is 7"
            ),
            (
                "<unnamed>",
                "invalid port in config: ParseIntError { kind: InvalidDigit }"
            ),
            (
                "main",
                "invalid port in config: ParseIntError { kind: InvalidDigit }"
            ),
        ]
    );
    assert_eq!(
        top(&crashes[0], 4).last(),
        Some(&"threads::main::{{closure}}")
    );
    // Same bug, different callers: the fingerprints differ only by frames.
    let a = crashes[1].clone().into_event("a".into(), "t".into());
    let b = crashes[2].clone().into_event("b".into(), "t".into());
    assert_ne!(fingerprint(&a), fingerprint(&b));
}

#[test]
fn rust_panic_in_drop_gives_three_panics_and_marks_the_abort() {
    let crashes = detect_all(&fixture("rust/rust1.95-panic-in-drop-abort.txt"));
    let messages: Vec<&str> = crashes.iter().map(|c| c.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "first panic",
            "panic in drop",
            "panic in a destructor during cleanup"
        ]
    );
    assert_eq!(
        top(&crashes[1], 1),
        ["<abort::Guard as core::ops::drop::Drop>::drop"]
    );
    assert_eq!(crashes[2].extra["aborted"], true);
}

#[test]
fn parse_rust_and_parse_go_only_see_their_own_language() {
    assert!(parse_go(&fixture("rust/rust1.95-unwrap-none.txt")).is_none());
    assert!(parse_rust(&fixture("go/go1.19-nil-pointer.txt")).is_none());
    assert!(parse_rust(&fixture("rust/rust1.95-unwrap-none.txt")).is_some());
    assert!(parse_go(&fixture("go/go1.19-nil-pointer.txt")).is_some());
}

#[test]
fn detector_agrees_with_parse_crash_on_every_fixture() {
    for dir in ["go", "rust"] {
        let root = format!(
            "{}/../../testdata/crashtext/{dir}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut paths: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        assert!(paths.len() >= 8, "{root}");
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = parse_crash(&text).expect("fixture parses");
            let detected = detect_all(&text);
            let first = detected.first().expect("detector finds it");
            assert_eq!(first.message, parsed.message, "{}", path.display());
            assert_eq!(first.kind, parsed.kind, "{}", path.display());
            assert_eq!(first.frames, parsed.frames, "{}", path.display());
        }
    }
}

#[test]
fn into_event_carries_everything() {
    let c = parse("go/go1.19-nil-pointer.txt");
    let event = c.into_event(
        "0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f".into(),
        "2026-11-26T12:00:00Z".into(),
    );
    assert_eq!(event.event_id, "0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f");
    assert_eq!(event.timestamp, "2026-11-26T12:00:00Z");
    assert_eq!(event.platform, Some(Platform::Go));
    assert_eq!(event.kind, Some(Kind::Panic));
    assert_eq!(
        event.tags.get("signal").map(String::as_str),
        Some("SIGSEGV")
    );
    assert_eq!(
        event.thread.as_ref().and_then(|t| t.id.as_deref()),
        Some("1")
    );
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["platform"], "go");
    assert_eq!(json["kind"], "panic");
    assert_eq!(json["frames"][0]["function"], "main.(*Store).Get");
    assert_eq!(json["thread_state"], "running");
    assert!(json.get("threads").is_none());
}

#[test]
fn go_locked_to_thread_state_is_kept() {
    let c = parse("go/go1.19-locked-to-thread.txt");
    assert_eq!(c.kind, Kind::Panic);
    assert_eq!(c.message, "runtime error: integer divide by zero");
    assert_eq!(thread_name(&c), "goroutine 1");
    assert_eq!(c.thread_state.as_deref(), Some("running, locked to thread"));
    assert_eq!(top(&c, 2), ["main.(*device).open", "main.main"]);
    assert_eq!(c.frames[0].in_app, Some(true));
    assert_eq!(location(&c), "/tmp/gofx/locked/main.go:11");
}

#[test]
fn go_out_of_memory_is_fatal_with_the_allocation_in_the_app() {
    let c = parse("go/go1.19-out-of-memory.txt");
    assert_eq!(c.kind, Kind::Fatal);
    assert_eq!(c.message, "out of memory");
    // The runtime's allocator frames are not the app's; the culprit is.
    let first_app = c.frames.iter().find(|f| f.in_app == Some(true)).unwrap();
    assert_eq!(first_app.function.as_deref(), Some("main.buildIndex"));
    assert_eq!(first_app.line, Some(8));
}

#[test]
fn go_crash_in_a_library_goroutine_has_no_app_frame() {
    let c = parse("go/go1.19-library-goroutine-no-app-frame.txt");
    assert_eq!(c.kind, Kind::Panic);
    assert_eq!(
        c.message,
        "runtime error: invalid memory address or nil pointer dereference"
    );
    assert_eq!(thread_name(&c), "goroutine 17");
    assert_eq!(top(&c, 1), ["bytes.(*Buffer).Reset"]);
    assert!(
        c.frames.iter().all(|f| f.in_app != Some(true)),
        "{:?}",
        c.frames
    );
}
