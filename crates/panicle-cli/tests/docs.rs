//! The repository's documents link only to files in the repository: a
//! reader of a fresh clone can follow every relative link, none leaves the
//! clone (`../shared/DESIGN.md` exists only on the team's machines), and a
//! `#fragment` names a heading of the file it points to.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Team documents that live outside the repository: a product document
/// that names one points its reader at a file they do not have.
const OUTSIDE_DOCS: [&str; 3] = ["DESIGN.md", "CRATE-NOTES.md", "STYLE.md"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `*.md` under `dir`, skipping build output, dependencies and git.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if !matches!(name.as_ref(), "target" | "node_modules" | ".git") {
                markdown_files(&path, out);
            }
        } else if kind.is_file() && name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks and inline code spans, where a
/// `](…)` is code, not a link.
fn prose(text: &str) -> String {
    outside_fences(text, false)
}

/// The lines outside fenced code blocks; inline code kept (without its
/// backticks) or dropped.
fn outside_fences(text: &str, keep_inline_code: bool) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if keep_inline_code || i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// Link targets: inline `[text](target "title")` (the text may span lines)
/// and reference definitions `[name]: target`.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let inner = rest[..end].trim();
        let target = inner
            .strip_prefix('<')
            .and_then(|t| t.split_once('>'))
            .map(|(t, _)| t)
            .unwrap_or_else(|| inner.split_whitespace().next().unwrap_or(""));
        targets.push(target.to_string());
    }
    for line in prose.lines() {
        let line = line.trim_start();
        if line.starts_with('[')
            && let Some((_, after)) = line.split_once("]:")
            && let Some(target) = after.split_whitespace().next()
        {
            targets.push(target.to_string());
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> HashSet<String> {
    outside_fences(markdown, true)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// What is wrong with `target`, linked from `file`, or None if it is fine.
fn check_link(root: &Path, file: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".into());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return (target.starts_with("file:")).then(|| "a file:// link".into());
    }
    let (path_part, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let path_part = path_part.split('?').next().unwrap_or("");
    if path_part.starts_with('/') {
        return Some("an absolute path (not portable to a clone)".into());
    }
    let linked = if path_part.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().unwrap().join(path_part)
    };
    let Ok(resolved) = linked.canonicalize() else {
        return Some(format!("{} does not exist", linked.display()));
    };
    if !resolved.starts_with(root) {
        return Some(format!("{} is outside the repository", resolved.display()));
    }
    if let Some(fragment) = fragment
        && resolved.extension().is_some_and(|e| e == "md")
    {
        let text = std::fs::read_to_string(&resolved).unwrap();
        if !anchors(&text).contains(fragment) {
            return Some(format!(
                "{} has no heading with anchor #{fragment}",
                resolved.display()
            ));
        }
    }
    None
}

#[test]
fn every_relative_link_in_the_docs_points_to_a_file_in_the_repository() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    let readme = root.join("README.md");
    assert!(files.contains(&readme), "README.md not found: {files:?}");

    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for target in link_targets(&prose(&text)) {
            checked += 1;
            if let Some(why) = check_link(&root, file, &target) {
                wrong.push(format!("{shown}: ({target}): {why}"));
            }
        }
        for name in OUTSIDE_DOCS {
            if text.contains(name) && !root.join(name).exists() {
                wrong.push(format!(
                    "{shown}: names {name}, a team document outside the repository"
                ));
            }
        }
    }
    assert!(checked > 0, "no links found in {files:?}");
    assert!(
        wrong.is_empty(),
        "links a reader of the repository cannot follow:\n{}",
        wrong.join("\n")
    );
}

/// The checker itself: each kind of bad link is caught, good ones pass.
#[test]
fn the_link_checker_catches_links_that_leave_or_miss_the_repository() {
    let root = repo_root();
    let readme = root.join("README.md");
    let bad = [
        "../shared/DESIGN.md",
        "../../etc/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
        "crates/no-such-crate/README.md",
        "crates/panicle/README.md#no-such-heading",
    ];
    for target in bad {
        assert!(
            check_link(&root, &readme, target).is_some(),
            "{target} passed"
        );
    }
    // A relative link up to a file that does exist, outside the clone.
    let up = "../".repeat(root.components().count());
    let outside = check_link(&root, &readme, &format!("{up}etc/passwd"));
    assert!(
        outside
            .as_deref()
            .is_some_and(|why| why.ends_with("is outside the repository")),
        "{outside:?}"
    );
    let good = [
        "crates/panicle/README.md#deaths-by-signal-linux",
        "crates/panicle-protocol/src/event.rs",
        "#configuration",
        "#any-process-panicle-run",
        "https://doc.rust-lang.org/cargo/",
    ];
    for target in good {
        assert_eq!(check_link(&root, &readme, target), None, "{target}");
    }
    let text = "See [the\ndesign](../shared/DESIGN.md \"t\") and `[x](code.md)`.\n\
                ```\n[y](fenced.md)\n```\n[ref]: other.md\n";
    assert_eq!(
        link_targets(&prose(text)),
        ["../shared/DESIGN.md", "other.md"]
    );
}

/// The README's install command builds the crate whose binary the rest of
/// the README calls `panicle`.
#[test]
fn the_readme_installs_the_panicle_binary() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let install = readme
        .lines()
        .find(|l| l.starts_with("cargo install "))
        .expect("README shows no `cargo install` command");
    let words: Vec<&str> = install.split_whitespace().collect();
    assert!(words.contains(&"--locked"), "{install}: not --locked");
    let path = words
        .iter()
        .skip_while(|w| **w != "--path")
        .nth(1)
        .unwrap_or_else(|| panic!("{install}: no --path"));
    let manifest = std::fs::read_to_string(root.join(path).join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{install}: {path}/Cargo.toml: {e}"));
    let bin = manifest
        .split("[[bin]]")
        .nth(1)
        .unwrap_or_else(|| panic!("{path}/Cargo.toml has no [[bin]]"));
    assert!(
        bin.lines()
            .take_while(|l| !l.starts_with('['))
            .any(|l| l.replace(' ', "") == "name=\"panicle\""),
        "{path}/Cargo.toml's [[bin]] is not named panicle: {bin}"
    );
}
