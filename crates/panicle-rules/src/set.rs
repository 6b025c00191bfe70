//! The rule set: built-in rules plus `--rules-dir`, and the matcher that picks
//! the most specific rule for a panic.

use std::path::Path;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::error::RuleError;
use crate::rule::{Rule, parse_file};
use crate::suggestion::{Suggestion, SuggestionSource};

/// The built-in rule files, compiled into the binary so it needs no files at
/// runtime. Order matters only for ties of equal priority.
const BUILTIN: &[(&str, &str)] = &[
    (
        "builtin:rust.toml",
        include_str!("../../../rules/rust.toml"),
    ),
    (
        "builtin:rust-io.toml",
        include_str!("../../../rules/rust-io.toml"),
    ),
    (
        "builtin:tokio.toml",
        include_str!("../../../rules/tokio.toml"),
    ),
    ("builtin:go.toml", include_str!("../../../rules/go.toml")),
    (
        "builtin:python.toml",
        include_str!("../../../rules/python.toml"),
    ),
    (
        "builtin:javascript.toml",
        include_str!("../../../rules/javascript.toml"),
    ),
];

/// Longest payload the patterns look at; the head of a message names the
/// panic, and a Go goroutine dump behind it can be megabytes.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024;

/// What the matcher looks at.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    /// `rust`, `go`, `python`, `node`, `other` or None; None and unknown
    /// values admit every rule.
    pub platform: Option<&'a str>,
    /// The panic message as captured, wrapped or not.
    pub message: &'a str,
    /// Normalized function names, innermost first.
    pub frames: &'a [String],
}

/// An ordered set of rules with a one-pass index over their message patterns.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Every message pattern of every rule, in rule order.
    patterns: RegexSet,
    /// For each entry of `patterns`: (rule index, pattern index in that rule).
    owners: Vec<(usize, usize)>,
}

impl RuleSet {
    /// The rules of `rules/*.toml`, compiled in.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        for (file, text) in BUILTIN {
            rules.extend(parse_file(file, text)?);
        }
        check_unique(&rules)?;
        RuleSet::from_rules(rules)
    }

    /// A set made of the given rule file texts, `(name, text)`, in order.
    /// Names appear in error messages.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        for (file, text) in sources {
            rules.extend(parse_file(file, text)?);
        }
        check_unique(&rules)?;
        RuleSet::from_rules(rules)
    }

    fn from_rules(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut pats = Vec::new();
        let mut owners = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            for (pi, re) in rule.matcher.message.iter().enumerate() {
                pats.push(re.as_str());
                owners.push((ri, pi));
            }
        }
        let patterns = RegexSet::new(pats).map_err(|e| RuleError::PatternSet(Box::new(e)))?;
        Ok(RuleSet {
            rules,
            patterns,
            owners,
        })
    }

    /// Adds the rules of every `*.toml` file in `dir` (not recursive, in file
    /// name order). A rule whose id is already known replaces it in place.
    /// All or nothing: on error the set is unchanged. Returns how many rules
    /// were read.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, RuleError> {
        let io = |source| RuleError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut loaded = Vec::new();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
                path: path.clone(),
                source,
            })?;
            loaded.extend(parse_file(&path.display().to_string(), &text)?);
        }
        check_unique(&loaded)?;
        let count = loaded.len();
        let mut rules = self.rules.clone();
        for rule in loaded {
            match rules.iter_mut().find(|r| r.id == rule.id) {
                Some(slot) => *slot = rule,
                None => rules.push(rule),
            }
        }
        *self = RuleSet::from_rules(rules)?;
        Ok(count)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Every rule that matches, best first, with the reasons it matched.
    pub fn matches(&self, input: &MatchInput<'_>) -> Vec<(&Rule, Vec<String>)> {
        let payload = panic_payload(input.message);
        let mut hit: Vec<Option<usize>> = vec![None; self.rules.len()];
        for i in self.patterns.matches(payload).iter() {
            if let Some(&(ri, pi)) = self.owners.get(i)
                && let Some(slot) = hit.get_mut(ri)
                && slot.is_none()
            {
                *slot = Some(pi);
            }
        }
        let mut found: Vec<(usize, &Rule, Vec<String>)> = self
            .rules
            .iter()
            .zip(hit)
            .enumerate()
            .filter(|(_, (rule, _))| rule.platform.admits(input.platform))
            .filter_map(|(i, (rule, h))| {
                rule.matcher
                    .judge(payload, h, input.frames)
                    .map(|why| (i, rule, why))
            })
            .collect();
        found.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.cmp(&b.0)));
        found.into_iter().map(|(_, r, why)| (r, why)).collect()
    }

    /// The best matching rule as a suggestion: highest priority, then the
    /// earliest rule. None when no rule matches.
    pub fn suggest(&self, input: &MatchInput<'_>) -> Option<Suggestion> {
        let (rule, because) = self.matches(input).into_iter().next()?;
        Some(Suggestion::from_rule(rule, because))
    }
}

impl Suggestion {
    /// The suggestion a rule gives; `because` says what matched.
    pub fn from_rule(rule: &Rule, because: Vec<String>) -> Suggestion {
        Suggestion {
            source: SuggestionSource::Rule {
                id: rule.id.clone(),
            },
            title: rule.title.clone(),
            why: rule.why.clone(),
            how: rule.how.clone(),
            caught_by: rule.caught_by.clone(),
            links: rule.links.clone(),
            code: rule.code.clone(),
            because,
        }
    }
}

fn check_unique(rules: &[Rule]) -> Result<(), RuleError> {
    for (i, rule) in rules.iter().enumerate() {
        if let Some(first) = rules.iter().take(i).find(|r| r.id == rule.id) {
            return Err(RuleError::DuplicateId {
                id: rule.id.clone(),
                first: first.origin.clone(),
                second: rule.origin.clone(),
            });
        }
    }
    Ok(())
}

static RE_RUST_NEW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:thread '[^'\n]*'(?: \(\d+\))? )?panicked at [^\n]*?:\d+:\d+:\r?\n")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static RE_RUST_OLD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)^(?:thread '[^'\n]*'(?: \(\d+\))? )?panicked at '(.*)', [^\n']*?:\d+:\d+")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static RE_GO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:panic|fatal error): ").unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// The panic's own words: the message without the wrapper the Rust hook
/// (`thread 'x' panicked at file:1:2:` now, `panicked at '…', file:1:2`
/// before Rust 1.73) or the Go runtime (`panic: `, `fatal error: `) puts
/// around it, cut to [`MAX_PAYLOAD_BYTES`]. Rule message patterns see this,
/// so `^` means "the panic message starts with".
pub fn panic_payload(message: &str) -> &str {
    let m = truncate(message, 4 * MAX_PAYLOAD_BYTES).trim_start();
    let m = if let Some(found) = RE_RUST_NEW.find(m) {
        m.get(found.end()..).unwrap_or(m)
    } else if let Some(inner) = RE_RUST_OLD.captures(m).and_then(|c| c.get(1)) {
        inner.as_str()
    } else if let Some(found) = RE_GO.find(m) {
        m.get(found.end()..).unwrap_or(m)
    } else {
        m
    };
    truncate(m, MAX_PAYLOAD_BYTES)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_strips_rust_and_go_wrappers() {
        let cases = [
            (
                "thread 'main' (11649) panicked at src/bin/two.rs:5:60:\ncalled `Option::unwrap()` on a `None` value\nnote: run with `RUST_BACKTRACE=1`",
                "called `Option::unwrap()` on a `None` value\nnote: run with `RUST_BACKTRACE=1`",
            ),
            (
                "thread 'main' panicked at src/main.rs:2:5:\nnot implemented",
                "not implemented",
            ),
            ("panicked at C:\\src\\main.rs:2:5:\nboom", "boom"),
            (
                "thread 'tokio-runtime-worker' panicked at 'it's here: 'x'', src/a.rs:1:2\nnote: run with",
                "it's here: 'x'",
            ),
            ("panicked at 'boom', src/a.rs:1:2", "boom"),
            (
                "panic: send on closed channel\n\ngoroutine 1",
                "send on closed channel\n\ngoroutine 1",
            ),
            (
                "fatal error: concurrent map writes",
                "concurrent map writes",
            ),
            ("  plain message", "plain message"),
            ("the thread panicked at noon", "the thread panicked at noon"),
        ];
        for (message, want) in cases {
            assert_eq!(panic_payload(message), want, "{message}");
        }
    }

    #[test]
    fn payload_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(MAX_PAYLOAD_BYTES);
        let p = panic_payload(&long);
        assert!(p.len() <= MAX_PAYLOAD_BYTES);
        assert!(p.len() >= MAX_PAYLOAD_BYTES - 1);
        assert!(p.chars().all(|c| c == 'é'));
    }

    const TWO: &str = r#"
[[rule]]
id = "t.generic"
platform = "any"
title = "generic"
why = "w"
how = "h"
[rule.match]
message = ['boom']

[[rule]]
id = "t.rust-specific"
platform = "rust"
priority = 5
title = "specific"
why = "w"
how = "h"
[rule.match]
message = ['^boom: \d+']
message_not = ['ignored']

[[rule]]
id = "t.same-priority-later"
platform = "any"
title = "later"
why = "w"
how = "h"
[rule.match]
message = ['boom']
"#;

    fn best(set: &RuleSet, platform: Option<&str>, message: &str) -> Option<String> {
        let input = MatchInput {
            platform,
            message,
            frames: &[],
        };
        set.suggest(&input).map(|s| match s.source {
            SuggestionSource::Rule { id } => id,
            SuggestionSource::Evidence { .. } => unreachable!(),
        })
    }

    #[test]
    fn priority_then_order_decides() {
        let set = RuleSet::from_sources([("two.toml", TWO)]).unwrap();
        assert_eq!(
            best(&set, Some("rust"), "boom: 3").as_deref(),
            Some("t.rust-specific")
        );
        // Equal priority: the earlier rule wins.
        assert_eq!(
            best(&set, Some("rust"), "boom").as_deref(),
            Some("t.generic")
        );
        let all: Vec<&str> = set
            .matches(&MatchInput {
                platform: None,
                message: "boom: 3",
                frames: &[],
            })
            .into_iter()
            .map(|(r, _)| r.id.as_str())
            .collect();
        assert_eq!(
            all,
            ["t.rust-specific", "t.generic", "t.same-priority-later"]
        );
    }

    #[test]
    fn platform_filters_and_message_not_vetoes() {
        let set = RuleSet::from_sources([("two.toml", TWO)]).unwrap();
        assert_eq!(
            best(&set, Some("go"), "boom: 3").as_deref(),
            Some("t.generic")
        );
        assert_eq!(
            best(&set, Some("GO"), "boom: 3").as_deref(),
            Some("t.generic")
        );
        assert_eq!(
            best(&set, None, "boom: 3").as_deref(),
            Some("t.rust-specific")
        );
        assert_eq!(
            best(&set, Some("other"), "boom: 3").as_deref(),
            Some("t.rust-specific")
        );
        assert_eq!(
            best(&set, Some("rust"), "boom: 3 ignored").as_deref(),
            Some("t.generic")
        );
        assert_eq!(best(&set, Some("rust"), "bang"), None);
    }
}
