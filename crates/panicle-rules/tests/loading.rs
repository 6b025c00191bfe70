//! Loading rules: `load_dir` overrides and extends, errors name the file,
//! the rule and the problem, and a failed load changes nothing.

use std::fs;

use panicle_rules::{MatchInput, RuleError, RuleSet, SuggestionSource};

const EXTRA: &str = r#"
[[rule]]
id = "shop.ledger-imbalance"
platform = "rust"
priority = 5
title = "Ledger out of balance"
why = "A posting was written without its counter-posting."
how = "Write both postings in one transaction."
caught_by = ["the ledger property test"]
links = ["https://wiki.example/ledger"]
[rule.match]
message = ['^ledger imbalance: \d+']
frames = ['^shop::ledger::']
"#;

const OVERRIDE: &str = r#"
[[rule]]
id = "rust.option-unwrap-none"
platform = "rust"
title = "Our house advice for unwrap on None"
why = "We ban unwrap."
how = "Use the shop::require! macro."
[rule.match]
message = ['called `Option::unwrap\(\)` on a `None` value']
"#;

fn id_of(rules: &RuleSet, message: &str, frames: &[String]) -> Option<String> {
    let input = MatchInput {
        platform: Some("rust"),
        message,
        frames,
    };
    rules.suggest(&input).map(|s| match s.source {
        SuggestionSource::Rule { id } => id,
        SuggestionSource::Evidence { .. } => unreachable!(),
    })
}

#[test]
fn load_dir_adds_and_overrides_in_place() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("10-extra.toml"), EXTRA).unwrap();
    fs::write(dir.path().join("20-override.toml"), OVERRIDE).unwrap();
    fs::write(dir.path().join("notes.md"), "not a rule file").unwrap();

    let mut rules = RuleSet::builtin().unwrap();
    let before = rules.rules().len();
    let pos = rules
        .rules()
        .iter()
        .position(|r| r.id == "rust.option-unwrap-none")
        .unwrap();
    assert_eq!(rules.load_dir(dir.path()).unwrap(), 2);
    assert_eq!(rules.rules().len(), before + 1);
    assert_eq!(rules.rules()[pos].id, "rust.option-unwrap-none");
    assert_eq!(
        rules.rules()[pos].title,
        "Our house advice for unwrap on None"
    );
    assert!(rules.rules()[pos].origin.ends_with("20-override.toml"));

    let frames = vec!["shop::ledger::post".to_string()];
    assert_eq!(
        id_of(&rules, "ledger imbalance: 12", &frames).as_deref(),
        Some("shop.ledger-imbalance")
    );
    // Both conditions are required by default.
    assert_eq!(id_of(&rules, "ledger imbalance: 12", &[]), None);
    let s = rules
        .suggest(&MatchInput {
            platform: None,
            message: "ledger imbalance: 3",
            frames: &frames,
        })
        .unwrap();
    assert_eq!(s.caught_by, vec!["the ledger property test"]);
    assert_eq!(
        s.because,
        vec![
            r"message matches /^ledger imbalance: \d+/".to_string(),
            "frame `shop::ledger::post` matches /^shop::ledger::/".to_string(),
        ]
    );
}

fn load_err(files: &[(&str, &str)]) -> (RuleError, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let mut rules = RuleSet::builtin().unwrap();
    let before: Vec<String> = rules.rules().iter().map(|r| r.title.clone()).collect();
    let err = rules.load_dir(dir.path()).unwrap_err();
    let after: Vec<String> = rules.rules().iter().map(|r| r.title.clone()).collect();
    assert_eq!(before, after, "a failed load must leave the set unchanged");
    let text = err.to_string();
    (err, text)
}

#[test]
fn bad_regex_names_file_rule_and_pattern() {
    let bad = EXTRA.replace(r"'^ledger imbalance: \d+'", "'ledger (imbalance'");
    let (err, text) = load_err(&[("00-ok.toml", OVERRIDE), ("bad.toml", &bad)]);
    assert!(matches!(err, RuleError::BadRegex { .. }), "{err:?}");
    assert!(text.contains("bad.toml"), "{text}");
    assert!(text.contains("shop.ledger-imbalance"), "{text}");
    assert!(text.contains("match.message"), "{text}");
    assert!(text.contains("ledger (imbalance"), "{text}");
}

#[test]
fn missing_field_names_file_rule_and_field() {
    let bad = EXTRA.replace("title = \"Ledger out of balance\"\n", "");
    let (err, text) = load_err(&[("missing.toml", &bad)]);
    assert!(
        matches!(err, RuleError::MissingField { field: "title", .. }),
        "{err:?}"
    );
    assert!(text.contains("missing.toml"), "{text}");
    assert!(text.contains("shop.ledger-imbalance"), "{text}");
    assert!(text.contains("`title`"), "{text}");
}

#[test]
fn unknown_key_and_bad_platform_are_named() {
    let typo = EXTRA.replace("message = [", "mesage = [");
    let (_, text) = load_err(&[("typo.toml", &typo)]);
    assert!(text.contains("typo.toml"), "{text}");
    assert!(text.contains("shop.ledger-imbalance"), "{text}");
    assert!(text.contains("mesage"), "{text}");

    let platform = EXTRA.replace("platform = \"rust\"", "platform = \"cobol\"");
    let (_, text) = load_err(&[("platform.toml", &platform)]);
    assert!(text.contains("shop.ledger-imbalance"), "{text}");
    assert!(text.contains("cobol"), "{text}");
}

#[test]
fn empty_match_duplicate_ids_and_syntax_errors_are_refused() {
    let empty = EXTRA
        .replace(r"message = ['^ledger imbalance: \d+']", "")
        .replace("frames = ['^shop::ledger::']", "");
    let (err, text) = load_err(&[("empty.toml", &empty)]);
    assert!(matches!(err, RuleError::Invalid { .. }), "{err:?}");
    assert!(text.contains("at least one"), "{text}");

    let (err, text) = load_err(&[("a.toml", EXTRA), ("b.toml", EXTRA)]);
    assert!(matches!(err, RuleError::DuplicateId { .. }), "{err:?}");
    assert!(text.contains("a.toml") && text.contains("b.toml"), "{text}");

    let (err, text) = load_err(&[("broken.toml", "[[rule]\nid = ")]);
    assert!(matches!(err, RuleError::Syntax { .. }), "{err:?}");
    assert!(text.contains("broken.toml"), "{text}");
}

#[test]
fn missing_directory_is_an_io_error_naming_it() {
    let mut rules = RuleSet::builtin().unwrap();
    let err = rules
        .load_dir(std::path::Path::new("/nonexistent/panicle-rules"))
        .unwrap_err();
    assert!(matches!(err, RuleError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/panicle-rules"));
}

#[test]
fn builtin_rules_are_complete() {
    let rules = RuleSet::builtin().unwrap();
    assert!(rules.rules().len() >= 40);
    for r in rules.rules() {
        assert!(!r.caught_by.is_empty(), "{} has no caught_by", r.id);
        assert!(!r.links.is_empty(), "{} has no links", r.id);
        assert!(
            r.links.iter().all(|l| l.starts_with("https://")),
            "{}",
            r.id
        );
        assert!(r.how.len() > 40 && r.why.len() > 40, "{}", r.id);
        assert!(
            r.id.starts_with(match r.platform {
                panicle_rules::RulePlatform::Rust => "rust.",
                panicle_rules::RulePlatform::Go => "go.",
                panicle_rules::RulePlatform::Python => "python.",
                panicle_rules::RulePlatform::Node => "js.",
                panicle_rules::RulePlatform::Any => "",
            }) || r.id.starts_with("tokio."),
            "{}",
            r.id
        );
    }
}
