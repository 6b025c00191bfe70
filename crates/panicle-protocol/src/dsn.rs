//! The DSN: `http://<ingest-key>@<host>:<port>/<project-id>`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub scheme: String,
    pub key: String,
    /// `host:port` (or just host), as written.
    pub host: String,
    pub project_id: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    #[error("DSN must start with http:// or https:// (got `{0}`)")]
    Scheme(String),
    #[error("DSN has no ingest key: expected http://<key>@host:port/<project-id>")]
    MissingKey,
    #[error("DSN has no host: expected http://<key>@host:port/<project-id>")]
    MissingHost,
    #[error("DSN project id `{0}` is not a number: expected http://<key>@host:port/<project-id>")]
    ProjectId(String),
}

impl Dsn {
    /// Base URL of the server, without the key: `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// Where events are posted.
    pub fn ingest_url(&self) -> String {
        format!("{}/api/v1/events", self.base_url())
    }
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .filter(|(scheme, _)| *scheme == "http" || *scheme == "https")
            .ok_or_else(|| DsnError::Scheme(s.to_string()))?;
        let (key, rest) = rest.split_once('@').ok_or(DsnError::MissingKey)?;
        if key.is_empty() {
            return Err(DsnError::MissingKey);
        }
        let (host, project) = rest.split_once('/').ok_or(DsnError::MissingHost)?;
        if host.is_empty() {
            return Err(DsnError::MissingHost);
        }
        let project = project.trim_end_matches('/');
        let project_id = project
            .parse()
            .map_err(|_| DsnError::ProjectId(project.to_string()))?;
        Ok(Dsn {
            scheme: scheme.to_string(),
            key: key.to_string(),
            host: host.to_string(),
            project_id,
        })
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}@{}/{}",
            self.scheme, self.key, self.host, self.project_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dsn: Dsn = "http://abc123@127.0.0.1:8471/7".parse().unwrap();
        assert_eq!(dsn.key, "abc123");
        assert_eq!(dsn.host, "127.0.0.1:8471");
        assert_eq!(dsn.project_id, 7);
        assert_eq!(dsn.ingest_url(), "http://127.0.0.1:8471/api/v1/events");
        assert_eq!(dsn.to_string(), "http://abc123@127.0.0.1:8471/7");
    }

    #[test]
    fn bad_dsns_say_why() {
        assert!(matches!(
            "ftp://k@h/1".parse::<Dsn>(),
            Err(DsnError::Scheme(_))
        ));
        assert_eq!("http://h:1/1".parse::<Dsn>(), Err(DsnError::MissingKey));
        assert!(matches!(
            "http://k@h/x".parse::<Dsn>(),
            Err(DsnError::ProjectId(_))
        ));
    }
}
