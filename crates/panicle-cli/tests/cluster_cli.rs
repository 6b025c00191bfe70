//! `panicle cluster`: the JSON-lines contract of DESIGN.md, end to end.

mod common;

use std::process::Command;

use common::PANICLE;

#[test]
fn clusters_a_jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("groups.jsonl");
    let output = dir.path().join("labels.jsonl");
    // a and b share two of three frames: plain Jaccard distance 0.75 with
    // bigrams ({r,c,m,rc,cm} vs {r,b,m,rb,bm}: 2 shared of 8; decay 1, no
    // leaf tokens), and eps is inclusive; c shares nothing.
    std::fs::write(
        &input,
        concat!(
            r#"{"id":"a","frames":["reserve","checkout","main"],"count":3}"#,
            "\n",
            r#"{"id":"b","frames":["reserve","batch","main"]}"#,
            "\n",
            r#"{"id":"c","frames":["total","render"],"count":1}"#,
            "\n",
        ),
    )
    .unwrap();
    let run = |eps: &str| {
        Command::new(PANICLE)
            .args(["cluster", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(["--eps", eps, "--min-samples", "2", "--decay", "1"])
            .args(["--leaf-weight", "0"])
            .output()
            .unwrap()
    };
    let out = run("0.75");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels[0]["id"], "a");
    assert_eq!(
        labels[0]["cluster"], labels[1]["cluster"],
        "a and b are within 0.75"
    );
    assert_ne!(labels[0]["cluster"], -1);
    assert_eq!(labels[2]["cluster"], -1, "c is noise");

    // A tighter radius splits a from b: a (3 events) is a cluster alone, b is noise.
    let out = run("0.7");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&output).unwrap();
    let labels: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_ne!(labels[0]["cluster"], -1);
    assert_eq!(labels[1]["cluster"], -1);

    // Bad input is a clear error and a non-zero exit.
    std::fs::write(&input, "{\"id\": 1}\n").unwrap();
    let out = run("0.5");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 1"), "{stderr}");
    let out = run("1.5");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("eps"));
}
