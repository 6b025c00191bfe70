//! What the service shows next to a cluster: a fix suggestion that always
//! says where it came from.

use serde::{Deserialize, Serialize};

/// A fix suggestion, from a rule or derived from the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Which rule, or which evidence, produced it.
    pub source: SuggestionSource,
    pub title: String,
    /// Why it happens.
    pub why: String,
    /// How to fix it: concrete steps.
    pub how: String,
    /// The compile-time or CI check that would have caught it.
    pub caught_by: Vec<String>,
    pub links: Vec<String>,
    /// A short code sketch of the fix, when one helps.
    pub code: Option<String>,
    /// Plain-word reasons: what matched, or the evidence used.
    pub because: Vec<String>,
}

/// Where a suggestion came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SuggestionSource {
    /// A rule of the rule base matched.
    Rule { id: String },
    /// No rule matched; the suggestion is derived from these signals.
    Evidence { signals: Vec<Signal> },
}

/// One kind of evidence a derived suggestion can rest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Culprit,
    Path,
    FirstSeenRelease,
    PodConcentration,
    RouteConcentration,
}
