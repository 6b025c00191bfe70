//! The golden cases of testdata/rules/golden.toml against the built-in rules.

use std::collections::BTreeMap;

use panicle_rules::{MatchInput, RuleSet, SuggestionSource};
use serde::Deserialize;

const GOLDEN: &str = include_str!("../../../testdata/rules/golden.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Golden {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    rule: String,
    #[serde(rename = "match", default)]
    matches: Vec<Sample>,
    #[serde(default)]
    near_miss: Vec<Sample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    message: String,
    #[serde(default)]
    frames: Vec<String>,
    platform: Option<String>,
    /// For near misses: the rule that must fire instead, or "none".
    instead: Option<String>,
    source: String,
}

fn golden() -> Golden {
    toml::from_str(GOLDEN).unwrap()
}

fn suggested_id(rules: &RuleSet, s: &Sample) -> Option<String> {
    let input = MatchInput {
        platform: s.platform.as_deref(),
        message: &s.message,
        frames: &s.frames,
    };
    rules.suggest(&input).map(|sug| match sug.source {
        SuggestionSource::Rule { id } => id,
        SuggestionSource::Evidence { .. } => panic!("suggest returned evidence"),
    })
}

#[test]
fn every_match_selects_its_rule() {
    let rules = RuleSet::builtin().unwrap();
    let mut failures = Vec::new();
    for case in golden().case {
        assert!(
            rules.get(&case.rule).is_some(),
            "golden case for unknown rule {}",
            case.rule
        );
        for s in &case.matches {
            assert!(!s.source.trim().is_empty());
            let got = suggested_id(&rules, s);
            if got.as_deref() != Some(case.rule.as_str()) {
                failures.push(format!("{}: {:?} gave {:?}", case.rule, s.message, got));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn near_misses_do_not_select_the_rule() {
    let rules = RuleSet::builtin().unwrap();
    let mut failures = Vec::new();
    for case in golden().case {
        for s in &case.near_miss {
            assert!(!s.source.trim().is_empty());
            let got = suggested_id(&rules, s);
            if got.as_deref() == Some(case.rule.as_str()) {
                failures.push(format!("{}: near miss {:?} matched", case.rule, s.message));
            }
            match s.instead.as_deref() {
                Some("none") if got.is_some() => failures.push(format!(
                    "{}: near miss {:?} should match nothing, gave {:?}",
                    case.rule, s.message, got
                )),
                Some(want) if want != "none" && got.as_deref() != Some(want) => {
                    failures.push(format!(
                        "{}: near miss {:?} should give {want}, gave {:?}",
                        case.rule, s.message, got
                    ))
                }
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_builtin_rule_has_two_matches_and_a_near_miss() {
    let rules = RuleSet::builtin().unwrap();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for case in golden().case {
        let entry = counts.entry(case.rule).or_default();
        entry.0 += case.matches.len();
        entry.1 += case.near_miss.len();
    }
    let mut missing = Vec::new();
    for rule in rules.rules() {
        let (m, n) = counts.get(&rule.id).copied().unwrap_or_default();
        if m < 2 || n < 1 {
            missing.push(format!("{}: {m} matches, {n} near misses", rule.id));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn issue_examples_are_covered() {
    // The wordings the issue lists by name, each tied to its rule.
    let rules = RuleSet::builtin().unwrap();
    let expect = [
        (
            "called `Option::unwrap()` on a `None` value",
            "rust.option-unwrap-none",
        ),
        ("attempt to add with overflow", "rust.arithmetic-overflow"),
        (
            "attempt to multiply with overflow",
            "rust.arithmetic-overflow",
        ),
        (
            "already borrowed: BorrowMutError",
            "rust.refcell-already-borrowed",
        ),
        (
            "already mutably borrowed: BorrowError",
            "rust.refcell-already-borrowed",
        ),
        ("RefCell already borrowed", "rust.refcell-already-borrowed"),
        (
            "index out of bounds: the len is 3 but the index is 5",
            "rust.index-out-of-bounds",
        ),
        (
            "range end index 10 out of range for slice of length 4",
            "rust.slice-range",
        ),
        (
            "byte index 1 is not a char boundary; it is inside 'é' (bytes 0..2) of `é`",
            "rust.str-char-boundary",
        ),
        ("PoisonError { .. }", "rust.poisoned-lock"),
        (
            "called `Result::unwrap()` on an `Err` value: PoisonError { .. }",
            "rust.poisoned-lock",
        ),
        (
            "Cannot start a runtime from within a runtime.",
            "tokio.runtime-in-runtime",
        ),
        (
            "there is no reactor running, must be called from the context of a Tokio 1.x runtime",
            "tokio.no-reactor",
        ),
        (
            "Cannot block the current thread from within a runtime.",
            "tokio.blocking-in-async",
        ),
        ("capacity overflow", "rust.capacity-overflow"),
        (
            "memory allocation of 1024 bytes failed",
            "rust.allocation-failed",
        ),
        (
            "fatal error: concurrent map writes",
            "go.concurrent-map-writes",
        ),
        (
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "go.nil-pointer-dereference",
        ),
        (
            "panic: assignment to entry in nil map",
            "go.nil-map-assignment",
        ),
        (
            "panic: runtime error: index out of range [5] with length 3",
            "go.index-out-of-range",
        ),
        (
            "panic: runtime error: slice bounds out of range [:7] with capacity 5",
            "go.slice-bounds-out-of-range",
        ),
        (
            "panic: close of closed channel",
            "go.close-of-closed-channel",
        ),
        ("panic: send on closed channel", "go.send-on-closed-channel"),
        (
            "fatal error: all goroutines are asleep - deadlock!",
            "go.all-goroutines-asleep",
        ),
    ];
    for (message, id) in expect {
        let input = MatchInput {
            platform: None,
            message,
            frames: &[],
        };
        let got = rules.suggest(&input).map(|s| s.source);
        assert_eq!(
            got,
            Some(SuggestionSource::Rule { id: id.to_string() }),
            "{message}"
        );
    }
}
