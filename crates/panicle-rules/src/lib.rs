//! Panicle's fix-suggestion rule base, kept as data, and its matcher.
//!
//! Rules live in `rules/*.toml` at the repository root and are compiled in
//! ([`RuleSet::builtin`]); more come from `--rules-dir` ([`RuleSet::load_dir`]).
//! A rule matches the panic payload (the message without the Rust or Go
//! wrapper, see [`panic_payload`]) with regexes, and/or the normalized frame
//! names. When no rule matches, [`derived_suggestion`] turns the evidence
//! (culprit, path, release, pod and route shares) into plain advice.
//!
//! Architecture invariant: matching is pure; `load_dir` is the only I/O.

mod derived;
mod error;
mod rule;
mod set;
mod suggestion;

pub use derived::{Culprit, Evidence, Share, derived_suggestion};
pub use error::RuleError;
pub use rule::{Combine, Matcher, Rule, RulePlatform};
pub use set::{MAX_PAYLOAD_BYTES, MatchInput, RuleSet, panic_payload};
pub use suggestion::{Signal, Suggestion, SuggestionSource};
