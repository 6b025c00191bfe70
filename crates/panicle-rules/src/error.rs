//! Errors of loading rules. Each names the file, the rule id when there is
//! one, and what is wrong, so a bad `--rules-dir` is fixed from the message.

use std::path::PathBuf;

/// Why a rule file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read rules from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a valid rule file: {source}")]
    Syntax {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{file}: rule `{id}`: missing field `{field}`")]
    MissingField {
        file: String,
        id: String,
        field: &'static str,
    },
    #[error("{file}: rule `{id}`: bad regex in `match.{field}` {pattern:?}: {source}")]
    BadRegex {
        file: String,
        id: String,
        field: &'static str,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("{file}: rule `{id}`: {problem}")]
    Invalid {
        file: String,
        id: String,
        problem: String,
    },
    #[error("rule `{id}` is defined twice: in {first} and in {second}")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    #[error("the combined message patterns do not compile: {0}")]
    PatternSet(#[source] Box<regex::Error>),
}
