//! One rule: what it matches and what it tells the reader. Parsed from TOML,
//! validated field by field so an error can name the rule.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::RuleError;

/// Which platform's events a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RulePlatform {
    Rust,
    Go,
    /// Python (events from sentry-python).
    Python,
    /// JavaScript on Node (events from @sentry/node; `javascript` too).
    #[serde(alias = "javascript")]
    Node,
    /// Any platform: the message alone decides.
    Any,
}

impl RulePlatform {
    pub fn as_str(self) -> &'static str {
        match self {
            RulePlatform::Rust => "rust",
            RulePlatform::Go => "go",
            RulePlatform::Python => "python",
            RulePlatform::Node => "node",
            RulePlatform::Any => "any",
        }
    }

    /// True when a rule for this platform may judge an event of `platform`.
    /// An event of unknown or `other` platform is judged by every rule: the
    /// message wording is specific enough, and `panicle run` may not know.
    pub fn admits(self, platform: Option<&str>) -> bool {
        let Some(p) = platform else { return true };
        match self {
            RulePlatform::Any => true,
            RulePlatform::Rust => p.eq_ignore_ascii_case("rust") || !is_known(p),
            RulePlatform::Go => p.eq_ignore_ascii_case("go") || !is_known(p),
            RulePlatform::Python => p.eq_ignore_ascii_case("python") || !is_known(p),
            RulePlatform::Node => is_javascript(p) || !is_known(p),
        }
    }
}

fn is_javascript(platform: &str) -> bool {
    platform.eq_ignore_ascii_case("node") || platform.eq_ignore_ascii_case("javascript")
}

fn is_known(platform: &str) -> bool {
    ["rust", "go", "python"]
        .iter()
        .any(|k| platform.eq_ignore_ascii_case(k))
        || is_javascript(platform)
}

/// How the message and frame conditions of a rule combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Every condition given must hold (the default).
    #[default]
    All,
    /// One condition is enough.
    Any,
}

/// The compiled match part of a rule.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub(crate) message: Vec<Regex>,
    pub(crate) message_not: Vec<Regex>,
    pub(crate) frames: Vec<Regex>,
    pub(crate) combine: Combine,
}

impl Matcher {
    /// Message patterns: one must match the panic payload.
    pub fn message_patterns(&self) -> impl Iterator<Item = &str> {
        self.message.iter().map(Regex::as_str)
    }
    /// Patterns that veto the rule when they match the payload.
    pub fn message_not_patterns(&self) -> impl Iterator<Item = &str> {
        self.message_not.iter().map(Regex::as_str)
    }
    /// Frame patterns: one must match one normalized function name.
    pub fn frame_patterns(&self) -> impl Iterator<Item = &str> {
        self.frames.iter().map(Regex::as_str)
    }
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// Why the rule applies, in plain words, or None when it does not.
    /// `message_hit` is the index of the message pattern that matched, found
    /// beforehand (by the rule set's one-pass pattern set).
    pub(crate) fn judge(
        &self,
        payload: &str,
        message_hit: Option<usize>,
        frames: &[String],
    ) -> Option<Vec<String>> {
        if self.message_not.iter().any(|re| re.is_match(payload)) {
            return None;
        }
        let message_reason = message_hit
            .and_then(|i| self.message.get(i))
            .map(|re| format!("message matches /{}/", re.as_str()));
        let frame_reason = if self.frames.is_empty() {
            None
        } else {
            frames.iter().find_map(|f| {
                self.frames
                    .iter()
                    .find(|re| re.is_match(f))
                    .map(|re| format!("frame `{f}` matches /{}/", re.as_str()))
            })
        };
        let has_message = !self.message.is_empty();
        let has_frames = !self.frames.is_empty();
        let ok = match self.combine {
            Combine::All => {
                (!has_message || message_reason.is_some())
                    && (!has_frames || frame_reason.is_some())
            }
            Combine::Any => message_reason.is_some() || frame_reason.is_some(),
        };
        ok.then(|| message_reason.into_iter().chain(frame_reason).collect())
    }
}

/// A rule of the rule base: how to recognize a panic and what to tell the
/// person who has to fix it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub platform: RulePlatform,
    /// Higher wins when several rules match; ties go to the earlier rule.
    pub priority: i32,
    pub title: String,
    pub why: String,
    pub how: String,
    pub code: Option<String>,
    pub caught_by: Vec<String>,
    pub links: Vec<String>,
    pub matcher: Matcher,
    /// Where the rule was read from (`builtin:rust.toml` or a path).
    pub origin: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<String>,
    platform: Option<RulePlatform>,
    #[serde(default)]
    priority: i32,
    title: Option<String>,
    why: Option<String>,
    how: Option<String>,
    code: Option<String>,
    #[serde(default)]
    caught_by: Vec<String>,
    #[serde(default)]
    links: Vec<String>,
    #[serde(rename = "match")]
    matcher: Option<RawMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    message: Vec<String>,
    #[serde(default)]
    message_not: Vec<String>,
    #[serde(default)]
    frames: Vec<String>,
    #[serde(default)]
    combine: Combine,
}

/// Parses one rule file. `file` names it in errors.
pub(crate) fn parse_file(file: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    let raw: RawFile = toml::from_str(text).map_err(|source| RuleError::Syntax {
        file: file.to_string(),
        source,
    })?;
    raw.rule
        .into_iter()
        .enumerate()
        .map(|(n, table)| parse_rule(file, n, table))
        .collect()
}

fn parse_rule(file: &str, n: usize, table: toml::Table) -> Result<Rule, RuleError> {
    // The id is read first so that every later error can name the rule.
    let id = match table.get("id").and_then(toml::Value::as_str) {
        Some(id) => id.to_string(),
        None => format!("#{} (no id)", n + 1),
    };
    let invalid = |problem: String| RuleError::Invalid {
        file: file.to_string(),
        id: id.clone(),
        problem,
    };
    let raw: RawRule = table
        .try_into()
        .map_err(|e: toml::de::Error| invalid(e.message().trim().to_string()))?;
    let missing = |field: &'static str| RuleError::MissingField {
        file: file.to_string(),
        id: id.clone(),
        field,
    };
    let rule_id = raw.id.ok_or_else(|| missing("id"))?;
    if rule_id.trim().is_empty() || rule_id.chars().any(char::is_whitespace) {
        return Err(invalid(
            "`id` must be non-empty and contain no spaces".into(),
        ));
    }
    let platform = raw.platform.ok_or_else(|| missing("platform"))?;
    let title = non_empty(raw.title).ok_or_else(|| missing("title"))?;
    let why = non_empty(raw.why).ok_or_else(|| missing("why"))?;
    let how = non_empty(raw.how).ok_or_else(|| missing("how"))?;
    let m = raw.matcher.ok_or_else(|| missing("match"))?;
    if m.message.is_empty() && m.frames.is_empty() {
        return Err(invalid(
            "`match` needs at least one `message` or `frames` pattern".into(),
        ));
    }
    let compile = |field: &'static str, patterns: Vec<String>| {
        patterns
            .into_iter()
            .map(|pattern| {
                Regex::new(&pattern).map_err(|source| RuleError::BadRegex {
                    file: file.to_string(),
                    id: id.clone(),
                    field,
                    pattern,
                    source: Box::new(source),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let matcher = Matcher {
        message: compile("message", m.message)?,
        message_not: compile("message_not", m.message_not)?,
        frames: compile("frames", m.frames)?,
        combine: m.combine,
    };
    Ok(Rule {
        id: rule_id,
        platform,
        priority: raw.priority,
        title,
        why: trim_block(&why),
        how: trim_block(&how),
        code: non_empty(raw.code).map(|c| trim_block(&c)),
        caught_by: raw.caught_by,
        links: raw.links,
        matcher,
        origin: file.to_string(),
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// TOML multi-line strings keep the newline before the closing quotes.
fn trim_block(s: &str) -> String {
    s.trim_matches('\n').trim_end().to_string()
}
