//! SDK configuration, from code or from the environment.

use std::time::Duration;

use panicle_protocol::Dsn;

/// How the SDK behaves. `Options::from_env()` covers the usual deployment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where events go; `None` turns sending off (the hook still chains).
    pub dsn: Option<Dsn>,
    /// `service@version`; `PANICLE_RELEASE`, else `service.name@service.version`.
    pub release: Option<String>,
    /// `deployment.environment`: `PANICLE_ENVIRONMENT`.
    pub environment: Option<String>,
    /// `service.name`: `OTEL_SERVICE_NAME`, else the binary's name.
    pub service_name: Option<String>,
    /// `service.version`.
    pub service_version: Option<String>,
    /// Function-path prefixes that are in-app even if they look like dependencies.
    pub in_app_include: Vec<String>,
    /// Function-path prefixes that are never in-app.
    pub in_app_exclude: Vec<String>,
    /// Upper bound of one HTTP request of the background sender.
    pub send_timeout: Duration,
    /// Spool, sender and storm control (issue 4).
    pub delivery: crate::DeliveryOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dsn: None,
            release: None,
            environment: None,
            service_name: None,
            service_version: None,
            in_app_include: Vec::new(),
            in_app_exclude: Vec::new(),
            send_timeout: Duration::from_secs(2),
            delivery: crate::DeliveryOptions::default(),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn env_list(name: &str) -> Vec<String> {
    env(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl Options {
    /// Reads `PANICLE_DSN`, `PANICLE_RELEASE`, `PANICLE_ENVIRONMENT`,
    /// `OTEL_SERVICE_NAME`, `PANICLE_IN_APP_INCLUDE` / `_EXCLUDE` (comma
    /// separated). A malformed DSN is reported on stderr and sending stays off:
    /// a bad setting must not take the service down.
    pub fn from_env() -> Options {
        let dsn = env("PANICLE_DSN").and_then(|s| match s.parse::<Dsn>() {
            Ok(dsn) => Some(dsn),
            Err(e) => {
                eprintln!("panicle: PANICLE_DSN ignored: {e}");
                None
            }
        });
        Options {
            dsn,
            release: env("PANICLE_RELEASE"),
            environment: env("PANICLE_ENVIRONMENT"),
            service_name: env("OTEL_SERVICE_NAME"),
            service_version: env("PANICLE_SERVICE_VERSION"),
            in_app_include: env_list("PANICLE_IN_APP_INCLUDE"),
            in_app_exclude: env_list("PANICLE_IN_APP_EXCLUDE"),
            ..Options::default()
        }
    }

    /// Sets the release unless the environment already named one.
    pub fn with_release(mut self, release: impl Into<String>) -> Self {
        if self.release.is_none() {
            self.release = Some(release.into());
        }
        self
    }

    pub fn with_dsn(mut self, dsn: Dsn) -> Self {
        self.dsn = Some(dsn);
        self
    }

    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }
}
