//! Every crash fixture (testdata/crashtext) as log pipelines deliver it:
//! behind each shipper's prefix, interleaved with another stream, copied
//! from a web page. The crash found must be the one the clean text gives
//! (platform, kind, message, culprit), and no prefix style or interleaving
//! may panic the detection or lose a well-formed crash.

use panicle_protocol::crashtext::{ParsedCrash, parse_crash, parse_crash_log};
use proptest::prelude::*;

fn fixtures() -> Vec<(String, String)> {
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
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
    out
}

/// What must survive the pipeline: platform, kind, message, culprit frame.
fn shape(crash: &ParsedCrash) -> (String, String, String, Option<String>) {
    (
        crash.platform.as_str().to_string(),
        crash.kind.as_str().to_string(),
        crash.message.clone(),
        crash
            .frames
            .iter()
            .find(|f| f.in_app == Some(true))
            .or(crash.frames.first())
            .and_then(|f| f.function.clone()),
    )
}

type Prefixer = fn(usize, &str) -> String;

const STYLES: &[(&str, Prefixer)] = &[
    ("docker compose", |_, l| format!("haven2-relay  | {l}")),
    ("journald", |_, l| {
        format!("Feb 18 20:48:08 node-3 inventory[898]: {l}")
    }),
    ("journald iso", |_, l| {
        format!("2026-02-18T20:48:08+0000 node-3 inventory[898]: {l}")
    }),
    ("kubectl --timestamps", |i, l| {
        format!("2026-01-02T03:04:05.{i:09}Z {l}")
    }),
    ("cri", |_, l| {
        format!("2026-01-02T03:04:05.123456789Z stderr F {l}")
    }),
    ("docker json-file", |_, l| {
        serde_json::json!({"log": format!("{l}\n"), "stream": "stderr", "time": "2026-01-02T03:04:05.1Z"})
            .to_string()
    }),
    ("json shipper", |_, l| {
        serde_json::json!({"@timestamp": "2026-01-02T03:04:05Z", "message": l, "host": "node-3"})
            .to_string()
    }),
];

fn wrap(text: &str, prefix: Prefixer) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| prefix(i, l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_fixture_survives_every_prefix_style() {
    for (path, text) in fixtures() {
        let clean = parse_crash(&text).unwrap_or_else(|| panic!("{path}: no crash"));
        for (style, prefix) in STYLES {
            let (got, context) = parse_crash_log(&wrap(&text, *prefix))
                .unwrap_or_else(|| panic!("{path} via {style}: no crash found"));
            assert_eq!(shape(&got), shape(&clean), "{path} via {style}");
            assert!(context.format.is_some(), "{path} via {style}: no format");
        }
    }
}

#[test]
fn the_crash_is_recovered_from_interleaved_streams() {
    for (path, text) in fixtures() {
        let clean = parse_crash(&text).unwrap_or_else(|| panic!("{path}: no crash"));
        let mut lines = Vec::new();
        for (i, l) in text.lines().enumerate() {
            lines.push(format!("worker-1  | processed job {i} in 12ms"));
            lines.push(format!("api-1     | {l}"));
        }
        let (got, context) = parse_crash_log(&lines.join("\n"))
            .unwrap_or_else(|| panic!("{path} interleaved: no crash found"));
        assert_eq!(shape(&got), shape(&clean), "{path} interleaved");
        assert_eq!(context.container.as_deref(), Some("api-1"), "{path}");
    }
}

#[test]
fn copies_from_web_pages_parse_like_the_original() {
    for (path, text) in fixtures() {
        let clean = parse_crash(&text).unwrap_or_else(|| panic!("{path}: no crash"));
        let pasted = text
            .replace('\'', "\u{2019}")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\n', "\r\n");
        let (got, _) =
            parse_crash_log(&pasted).unwrap_or_else(|| panic!("{path} pasted: no crash found"));
        // Typographic quotes cannot be told from ones the message had.
        let normalize = |s: (String, String, String, Option<String>)| {
            (s.0, s.1, s.2.replace('\u{2019}', "'"), s.3)
        };
        assert_eq!(
            normalize(shape(&got)),
            normalize(shape(&clean)),
            "{path} pasted"
        );
    }
}

#[test]
fn the_first_crash_lines_time_becomes_the_context_timestamp() {
    let (_, text) = fixtures()
        .into_iter()
        .find(|(p, _)| p.ends_with("rust1.95-unwrap-backtrace.txt"))
        .expect("fixture");
    let noisy = format!(
        "2026-01-02T03:04:01Z starting\n2026-01-02T03:04:02Z ready\n{}",
        wrap(&text, |_, l| format!("2026-01-02T03:04:05.5Z {l}"))
    );
    let (_, context) = parse_crash_log(&noisy).expect("crash");
    assert_eq!(context.timestamp.as_deref(), Some("2026-01-02T03:04:05.5Z"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random prefixes on random lines and random foreign lines in between:
    /// never a panic, and a crash whose every line carries the same prefix
    /// is always found.
    #[test]
    fn random_prefixes_and_interleavings_never_lose_a_crash(
        which in 0usize..1000,
        style in 0usize..STYLES.len(),
        noise in proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,40}"), 0..30),
        garbage in proptest::collection::vec("[ -~\t|:\\[\\]{}\"]{0,60}", 0..10),
    ) {
        let all = fixtures();
        let (path, text) = &all[which % all.len()];
        let clean = parse_crash(text).expect("fixture parses");
        let (_, prefix) = STYLES[style];
        let mut lines: Vec<String> = text.lines().enumerate().map(|(i, l)| prefix(i, l)).collect();
        // Garbage never panics anything.
        let mut wild = lines.clone();
        for (i, g) in garbage.iter().enumerate() {
            let at = (i * 7 + which) % (wild.len() + 1);
            wild.insert(at, g.clone());
        }
        let _ = parse_crash_log(&wild.join("\n"));
        // Other streams of the same style interleaved: the crash survives.
        if STYLES[style].0 == "docker compose" {
            for (i, (name, line)) in noise.iter().enumerate() {
                let at = (i * 5 + which) % (lines.len() + 1);
                lines.insert(at, format!("{name}-other | {line}"));
            }
        }
        let found = parse_crash_log(&lines.join("\n"));
        prop_assert!(found.is_some(), "{} lost", path);
        if let Some((got, _)) = found {
            prop_assert_eq!(shape(&got), shape(&clean), "{}", path);
        }
    }
}
