//! Fuzzing the crash-text parsers and the detector: no panic and no hang on
//! arbitrary input, nor on fixtures with lines deleted, inserted, shuffled
//! or cut.

use panicle_protocol::crashtext::{
    CrashDetector, DetectorLimits, parse_crash, parse_go, parse_rust,
};
use proptest::prelude::*;

fn fixtures() -> Vec<String> {
    let mut out = Vec::new();
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
        for path in paths {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
    out
}

/// Lines that steer the parsers into their states.
const INTERESTING: &[&str] = &[
    "panic: boom",
    "fatal error: concurrent map writes",
    "\tpanic: again [recovered]",
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x1]",
    "goroutine 7 [running]:",
    "goroutine 1 gp=0xc0000061c0 m=0 mp=0x551aa0 [chan receive, 2 minutes]:",
    "runtime stack:",
    "main.main()",
    "main.(*T).M(0x1, {0x2, 0x3})",
    "\t/app/main.go:5 +0x1d fp=0x1 sp=0x2 pc=0x3",
    "created by main.main in goroutine 1",
    "...additional frames elided...",
    "SIGQUIT: quit",
    "PC=0x40268e m=0 sigcode=0",
    "runtime: goroutine stack exceeds 1000000000-byte limit",
    "thread 'main' panicked at src/main.rs:5:9:",
    "thread 'main' (1) panicked at 'msg', src/main.rs:5:9",
    "thread 'x' panicked at 'unclosed",
    "stack backtrace:",
    "   0: std::panicking::begin_panic",
    "  12:     0x55d0c3a1b2c4 - shop::main::h0123456789abcdef",
    "             at ./src/main.rs:5:9",
    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
    "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
    "thread caused non-unwinding panic. aborting.",
    "",
    "((((((((",
    "))))))))",
    "<<<<<<<< as as as",
    "é'",
];

fn line_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(INTERESTING).prop_map(str::to_string),
        2 => "[ -~\t]{0,80}",
        1 => any::<String>(),
    ]
}

fn run_everything(text: &str) {
    let _ = parse_crash(text);
    let _ = parse_go(text);
    let _ = parse_rust(text);
    let mut detector = CrashDetector::with_limits(DetectorLimits {
        max_bytes: 64 * 1024,
        max_lines: 2_000,
        max_line_bytes: 4096,
        max_pending: 8,
        go_confirm_lines: 16,
    });
    for line in text.split('\n') {
        detector.push_line(line);
        while let Some(crash) = detector.take_complete() {
            let _ = crash.into_event("id".into(), "ts".into());
        }
    }
    for crash in detector.finish_all() {
        let event = crash.into_event("id".into(), "ts".into());
        let _ = serde_json::to_string(&event).unwrap();
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, String),
    Swap(usize, usize),
    CutLine(usize, usize),
    Truncate(usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), line_strategy()).prop_map(|(i, l)| Edit::Insert(i, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::CutLine(a, b)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            Edit::Delete(i) => {
                if !lines.is_empty() {
                    lines.remove(i % n);
                }
            }
            Edit::Insert(i, line) => lines.insert(i % (lines.len() + 1), line.clone()),
            Edit::Swap(a, b) => {
                if !lines.is_empty() {
                    lines.swap(a % n, b % n);
                }
            }
            Edit::CutLine(i, at) => {
                if let Some(line) = lines.get_mut(i % n) {
                    let mut cut = at % (line.len() + 1);
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                }
            }
            Edit::Truncate(i) => lines.truncate(i % (lines.len() + 1)),
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        run_everything(&text);
    }

    #[test]
    fn arbitrary_interesting_lines_never_panic(lines in proptest::collection::vec(line_strategy(), 0..80)) {
        run_everything(&lines.join("\n"));
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec(edit_strategy(), 0..24),
    ) {
        let all = fixtures();
        let text = index.get(&all);
        run_everything(&apply(text, &edits));
    }
}

#[test]
fn pathological_inputs_finish() {
    // Deep nesting and very long lines: linear work, no recursion.
    let parens = format!("main.f{}{}", "(".repeat(50_000), ")".repeat(50_000));
    let text = format!("panic: x\n\ngoroutine 1 [running]:\n{parens}\n\t/a.go:1 +0x1\n");
    run_everything(&text);
    let generic = format!(
        "thread 'main' panicked at src/a.rs:1:1:\nm\nstack backtrace:\n   0: {}x{}\n",
        "<".repeat(50_000),
        ">".repeat(50_000)
    );
    run_everything(&generic);
    let many_headers = "thread 'a' panicked at src/a.rs:1:1:\n".repeat(20_000);
    run_everything(&many_headers);
    let many_goroutines: String = (0..20_000)
        .map(|i| format!("goroutine {i} [running]:\nmain.f()\n\t/a.go:1 +0x1\n\n"))
        .collect();
    run_everything(&format!("fatal error: x\n\n{many_goroutines}"));
}
