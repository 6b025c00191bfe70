//! SDK configuration, from code or from the environment.

use std::path::PathBuf;
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
    pub delivery: DeliveryOptions,
    /// Install the handlers for deaths by signal (SIGSEGV, SIGBUS, SIGILL,
    /// SIGFPE, SIGABRT, stack overflow; Linux, with a DSN). On by default;
    /// `PANICLE_SIGNAL_HANDLERS=0` (or `false`, `off`) turns them off, e.g.
    /// when another crash reporter owns those signals. Records left by
    /// earlier runs are shipped either way.
    pub signal_handlers: bool,
    /// Where a panic's addresses get their names (`PANICLE_SYMBOLIZE`:
    /// `auto`, `local`, `server`).
    pub symbolize: Symbolize,
}

/// Where a panic's addresses get their names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Symbolize {
    /// In the process when the executable (or a separate debug file it
    /// links) has debug info or symbols, else on the server.
    #[default]
    Auto,
    /// In the process, with its debug info loaded at `init` on a background
    /// thread: names in every event, whatever server receives it.
    Local,
    /// On the server, from the debug file uploaded for the build
    /// (`panicle debug-files upload`): the process loads no debug info (less
    /// memory, no warm-up thread), and a panic costs only the unwinding and
    /// the spool write, first or not.
    Server,
}

impl std::str::FromStr for Symbolize {
    type Err = String;

    fn from_str(s: &str) -> Result<Symbolize, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Symbolize::Auto),
            "local" => Ok(Symbolize::Local),
            "server" => Ok(Symbolize::Server),
            other => Err(format!(
                "unknown symbolize mode {other:?}: use auto, local or server"
            )),
        }
    }
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
            delivery: DeliveryOptions::default(),
            signal_handlers: true,
            symbolize: Symbolize::Auto,
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
    /// separated), `PANICLE_STORM_THRESHOLD` (panics per second, 0: off),
    /// `PANICLE_SIGNAL_HANDLERS` (`0`: no signal handlers), `PANICLE_SYMBOLIZE`
    /// (`auto`, `local`, `server`). A
    /// malformed DSN is reported on stderr and sending stays off, a malformed
    /// threshold keeps the default: a bad setting must not take the service down.
    pub fn from_env() -> Options {
        let dsn = env("PANICLE_DSN").and_then(|s| match s.parse::<Dsn>() {
            Ok(dsn) => Some(dsn),
            Err(e) => {
                eprintln!("panicle: PANICLE_DSN ignored: {e}");
                None
            }
        });
        let mut delivery = DeliveryOptions::default();
        if let Some(v) = env("PANICLE_STORM_THRESHOLD") {
            match v.parse::<u32>() {
                Ok(n) => delivery.storm_threshold_per_sec = n,
                Err(e) => eprintln!(
                    "panicle: PANICLE_STORM_THRESHOLD={v:?} ignored ({e}); using {DEFAULT_STORM_THRESHOLD_PER_SEC} per second"
                ),
            }
        }
        let symbolize = env("PANICLE_SYMBOLIZE")
            .and_then(|v| match v.parse::<Symbolize>() {
                Ok(mode) => Some(mode),
                Err(e) => {
                    eprintln!("panicle: PANICLE_SYMBOLIZE ignored: {e}");
                    None
                }
            })
            .unwrap_or_default();
        Options {
            dsn,
            symbolize,
            release: env("PANICLE_RELEASE"),
            environment: env("PANICLE_ENVIRONMENT"),
            service_name: env("OTEL_SERVICE_NAME"),
            service_version: env("PANICLE_SERVICE_VERSION"),
            in_app_include: env_list("PANICLE_IN_APP_INCLUDE"),
            in_app_exclude: env_list("PANICLE_IN_APP_EXCLUDE"),
            delivery,
            signal_handlers: !env("PANICLE_SIGNAL_HANDLERS").is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "0" | "false" | "off" | "no"
                )
            }),
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

    /// Where addresses get their names (see [`Symbolize`]).
    pub fn with_symbolize(mut self, mode: Symbolize) -> Self {
        self.symbolize = mode;
        self
    }

    /// Turns the signal handlers on or off (see [`Options::signal_handlers`]).
    pub fn with_signal_handlers(mut self, on: bool) -> Self {
        self.signal_handlers = on;
        self
    }

    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }
}

/// Default of [`DeliveryOptions::storm_threshold_per_sec`].
pub const DEFAULT_STORM_THRESHOLD_PER_SEC: u32 = 10;

/// How delivery behaves; part of [`Options`] as `options.delivery`.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Spool directory; `None`: `PANICLE_SPOOL_DIR`, else
    /// `$XDG_CACHE_HOME/panicle/spool/<service>/<project>@<host>` (or under
    /// `~/.cache`, or the temp dir): one per server and project.
    pub spool_dir: Option<PathBuf>,
    /// fsync each spooled event (and its directory): survives a node crash,
    /// costs a disk flush per panic. Off: the page cache already survives the
    /// death of the process.
    pub spool_fsync: bool,
    /// Spool cap; over it the oldest events are dropped (and counted).
    pub spool_max_bytes: u64,
    pub spool_max_files: u64,
    /// Capacity of the hand-off queue to the sender; when full, the sender
    /// finds the event by rescanning the spool, so nothing is lost.
    pub queue_capacity: usize,
    /// Events per request.
    pub batch_events: usize,
    /// Storm control: while one fingerprint panics more than this many times
    /// a second in this process, its panics are folded into aggregates (one
    /// per report interval, with a `count`, the folded panics' id range and
    /// a sample of their traces and requests) instead of sent one by one.
    /// Below the rate every panic is its own event. `PANICLE_STORM_THRESHOLD`;
    /// 0 turns storm control off.
    ///
    /// Why 10: a healthy service panicking the same way that often in one
    /// process is already an outage, while a storm loop (a retry loop, a
    /// poisoned lock hit by every request) repeats thousands of times a
    /// second (the hook costs ~25 µs, so one thread alone reaches ~40,000/s).
    /// At 10/s the individual events still carry every trace of an ordinary
    /// bad deploy, and a storm costs 10 events/s plus one aggregate per
    /// report interval.
    pub storm_threshold_per_sec: u32,
    /// How often folded panics are shipped as aggregates.
    pub storm_report_interval: Duration,
    /// In a `panic = "abort"` build the process dies right after the hook:
    /// the hook waits this long for the sender to deliver (the event is
    /// spooled either way).
    pub abort_flush_timeout: Duration,
    /// Bound of the synchronous send from the hook when the spool is unusable.
    pub fallback_send_timeout: Duration,
    /// How long dropping the [`Guard`](crate::Guard) (the end of `main`)
    /// waits for the server to take what is queued. Storm counts are written
    /// to the spool before the wait, so a server that is slow or hangs
    /// delays the exit by at most this and loses nothing: the next start or
    /// `panicle spool send` ships the rest.
    pub exit_flush_timeout: Duration,
    /// When the exit's flush finds nothing listening (connection refused, no
    /// such host), it returns at once, since everything is in the spool.
    /// `true` waits the whole `exit_flush_timeout` anyway (a server that
    /// is restarting right now).
    pub exit_waits_for_unreachable_server: bool,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            spool_dir: None,
            spool_fsync: false,
            spool_max_bytes: 64 * 1024 * 1024,
            spool_max_files: 10_000,
            queue_capacity: 1024,
            batch_events: crate::batch::DEFAULT_BATCH_EVENTS,
            storm_threshold_per_sec: DEFAULT_STORM_THRESHOLD_PER_SEC,
            storm_report_interval: Duration::from_secs(2),
            abort_flush_timeout: Duration::from_secs(1),
            fallback_send_timeout: Duration::from_millis(500),
            exit_flush_timeout: crate::DEFAULT_FLUSH_TIMEOUT,
            exit_waits_for_unreachable_server: false,
        }
    }
}

impl Options {
    /// Where events are spooled before they are sent.
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.delivery.spool_dir = Some(dir.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::Symbolize;

    #[test]
    fn symbolize_modes_parse_and_a_bad_one_says_what_to_use() {
        assert_eq!(" Server ".parse::<Symbolize>(), Ok(Symbolize::Server));
        assert_eq!("local".parse::<Symbolize>(), Ok(Symbolize::Local));
        assert_eq!("AUTO".parse::<Symbolize>(), Ok(Symbolize::Auto));
        let err = "remote".parse::<Symbolize>().unwrap_err();
        assert!(
            err.contains("\"remote\"") && err.contains("auto, local or server"),
            "{err}"
        );
    }
}
