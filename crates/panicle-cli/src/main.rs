//! `panicle`: the server and its operator commands.

mod alert;
mod cluster;
mod config;
mod debug_files;
mod demo;
mod demo_panic;
mod run;
mod spool;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use panicle_server::{AppState, ServerConfig};
use panicle_store::{Store, TokenScope};
use tracing_subscriber::EnvFilter;

const DEFAULT_DATABASE_URL: &str = "sqlite://./panicle-data/panicle.db";
const DEFAULT_LISTEN: &str = "127.0.0.1:8471";

#[derive(Parser)]
#[command(
    name = "panicle",
    version,
    about = "Self-hosted panic attribution: ingest, group, cluster, explain."
)]
struct Cli {
    /// The config file (TOML; keys are the long flags with `_`, e.g. `database_url`).
    /// Default: $PANICLE_HOME/config.toml, else $XDG_CONFIG_HOME/panicle/config.toml,
    /// else ~/.config/panicle/config.toml.
    #[arg(long, env = "PANICLE_CONFIG", global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Where events are stored: sqlite://FILE (created) or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: ingest, read API, dashboard.
    Serve {
        #[command(flatten)]
        server: Box<ServerArgs>,
        /// Once listening, fill a `demo` project with a generated history
        /// (services, releases, a regression, a storm, Go and Rust crashes)
        /// through the ingest API; running it again adds nothing.
        #[arg(long)]
        demo_data: bool,
    },
    /// Print every setting in effect and where it came from (flag, env,
    /// config file, default), and which config file was read. Takes the
    /// flags of `serve`, to show what they would change.
    Config {
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Manage API tokens for the read API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage alert rules: `panicle alert add|list|remove|test`.
    Alert {
        #[command(subcommand)]
        command: alert::AlertCommand,
    },
    /// Cluster groups offline: JSON lines `{"id","frames":[…],"count"}` in,
    /// `{"id","cluster"}` out (-1 for noise).
    Cluster {
        /// Input file of JSON lines (`-` for stdin).
        #[arg(long)]
        input: std::path::PathBuf,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = panicle_cluster::DEFAULT_EPS)]
        eps: f64,
        #[arg(long, default_value_t = panicle_cluster::DEFAULT_MIN_SAMPLES)]
        min_samples: u64,
        /// Weight ratio between a frame and the one inside it; 1 is plain Jaccard.
        #[arg(long, default_value_t = 1.0)]
        decay: f64,
        /// Weight of a frame's leaf name (last two path segments) relative to the frame.
        #[arg(long, default_value_t = panicle_cluster::DEFAULT_LEAF_WEIGHT)]
        leaf_weight: f64,
        /// Weight of the panic kind of an input line's `message`, when it has one
        /// (0 ignores messages).
        #[arg(long, default_value_t = panicle_cluster::DEFAULT_MESSAGE_WEIGHT)]
        message_weight: f64,
        /// Weight of the error type in a message (`ParseIntError`, `io::Error`).
        #[arg(long, default_value_t = panicle_cluster::DEFAULT_ERROR_TYPE_WEIGHT)]
        error_type_weight: f64,
        /// Weight of each payload detail in a message (`InvalidDigit`, `NotFound`).
        #[arg(long, default_value_t = panicle_cluster::DEFAULT_DETAIL_WEIGHT)]
        detail_weight: f64,
    },
    /// Run a program and report the crashes its stderr shows (Rust panics,
    /// Go panics and fatal errors). Exits with the program's exit code.
    Run {
        /// Where events go (default: PANICLE_DSN).
        #[arg(long, env = "PANICLE_DSN")]
        dsn: Option<String>,
        /// service.name of the events (default: OTEL_SERVICE_NAME, else the program's name).
        #[arg(long, env = "OTEL_SERVICE_NAME")]
        service: Option<String>,
        #[arg(long, env = "PANICLE_RELEASE")]
        release: Option<String>,
        #[arg(long, env = "PANICLE_ENVIRONMENT")]
        environment: Option<String>,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Panic once with the SDK's hook installed, to see an event arrive:
    /// `panicle demo-panic unwrap-none` (the DSN from PANICLE_DSN or --dsn).
    DemoPanic {
        #[arg(value_enum, default_value = "unwrap-none")]
        mode: demo_panic::Mode,
        /// Where the event goes (default: PANICLE_DSN).
        #[arg(long, env = "PANICLE_DSN")]
        dsn: Option<String>,
    },
    /// Ship what a process left in its SDK spool directory: `panicle spool send DIR`.
    Spool {
        #[command(subcommand)]
        command: spool::SpoolCommand,
    },
    /// Debug info of stripped binaries, by GNU build-id: `panicle debug-files
    /// upload|list|remove`, on a server (`--url`, `--token`) or the store directly.
    DebugFiles {
        #[command(subcommand)]
        command: debug_files::DebugFilesCommand,
    },
}

/// Everything `serve` is configured with (and `config` shows).
#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "PANICLE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// URL clients reach this server at, used in printed DSNs (default: the listen address).
    #[arg(long, env = "PANICLE_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    settings: ServeSettings,
}

/// Server settings beyond where to listen and store.
#[derive(Args)]
struct ServeSettings {
    /// Largest accepted request body in bytes, before and after gzip.
    #[arg(long, env = "PANICLE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Declared body bytes of the ingest requests in the server at once; past
    /// it a request is answered 503 + Retry-After before its body is read (0: no bound).
    #[arg(long, env = "PANICLE_MAX_INGEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_ingest_bytes: u64,
    /// Ingest requests in the server at once, past which the same 503 (0: no
    /// bound; clients stalling mid-body hold a slot until the body timeout).
    #[arg(long, env = "PANICLE_MAX_INGEST_REQUESTS", default_value_t = 0)]
    max_ingest_requests: u64,
    /// Group commit: writers, each committing the ingest requests that
    /// arrived since its last transaction as one (0: one transaction per request).
    #[arg(long, env = "PANICLE_INGEST_WRITERS", default_value_t = panicle_server::commit::GroupCommit::default().writers)]
    ingest_writers: usize,
    /// Milliseconds a writer waits for more requests after the first (0: it
    /// takes what is already waiting; under load that is what arrived during
    /// the last commit).
    #[arg(long, env = "PANICLE_COMMIT_WINDOW_MS", default_value_t = 0)]
    commit_window_ms: u64,
    /// Events at most in one group-commit transaction.
    #[arg(long, env = "PANICLE_COMMIT_MAX_EVENTS", default_value_t = panicle_server::commit::GroupCommit::default().max_events)]
    commit_max_events: usize,
    /// Trace link with `{trace_id}`, e.g. http://jaeger:16686/trace/{trace_id}.
    #[arg(long, env = "PANICLE_TRACE_URL_TEMPLATE")]
    trace_url_template: Option<String>,
    /// Seconds between clustering runs (0: only on POST /api/v1/clusters/recompute).
    #[arg(long, env = "PANICLE_CLUSTER_INTERVAL", default_value_t = 300)]
    cluster_interval: u64,
    /// Extra fix-suggestion rules (*.toml); a rule with a built-in id replaces it.
    #[arg(long, env = "PANICLE_RULES_DIR")]
    rules_dir: Option<std::path::PathBuf>,
    /// Seconds a client has to send a request's headers (also the keep-alive idle limit).
    #[arg(long, env = "PANICLE_HEADER_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client has to send a request's body after its headers (else 408).
    #[arg(long, env = "PANICLE_BODY_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 30)]
    body_timeout: u64,
    /// Seconds within which a request is answered (else 503 + Retry-After).
    #[arg(long, env = "PANICLE_REQUEST_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 60)]
    request_timeout: u64,
    /// Connections served at once; at the limit a new one replaces the connection idle longest.
    #[arg(long, env = "PANICLE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), default_value_t = 1024)]
    max_connections: u32,
    /// SQLite: milliseconds between looks at the write-ahead log's size (0: no checkpointer).
    #[arg(
        long,
        env = "PANICLE_WAL_CHECKPOINT_INTERVAL_MS",
        default_value_t = 250
    )]
    wal_checkpoint_interval_ms: u64,
    /// SQLite: write-ahead log size in bytes past which it is checkpointed and truncated.
    #[arg(long, env = "PANICLE_WAL_TRUNCATE_BYTES", default_value_t = panicle_store::WAL_SIZE_LIMIT)]
    wal_truncate_bytes: u64,
    /// Milliseconds before an alert notification's first retry; each further retry doubles it (up to an hour).
    #[arg(long, env = "PANICLE_ALERT_BACKOFF_MS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 5000)]
    alert_backoff_ms: u64,
    /// Seconds an alert receiver has to answer.
    #[arg(long, env = "PANICLE_ALERT_SEND_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 10)]
    alert_send_timeout: u64,
    /// Seconds between checks of spike and confined alert rules.
    #[arg(long, env = "PANICLE_ALERT_CHECK_INTERVAL", value_parser = clap::value_parser!(u64).range(1..), default_value_t = 60)]
    alert_check_interval: u64,
    /// Where uploaded debug files are kept (default: a `debug-files` directory
    /// beside the SQLite file; for PostgreSQL ./panicle-debug-files). Every
    /// replica of one deployment mounts the same volume here.
    #[arg(long, env = "PANICLE_DEBUG_FILES_DIR")]
    debug_files_dir: Option<std::path::PathBuf>,
    /// PEM file of the CA certificates to trust for https:// alert receivers,
    /// in place of the built-in Mozilla roots (a private CA).
    #[arg(long, env = "PANICLE_ALERT_CA_FILE")]
    alert_ca_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    cluster: ClusterParams,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Per-project limits every project gets unless it sets its own
/// (`panicle project update`), and retention. 0: unlimited.
#[derive(Args, Clone, Copy)]
struct LimitArgs {
    /// Events per second per project (0: unlimited). Over it: 429 + Retry-After.
    #[arg(
        long = "rate-limit",
        env = "PANICLE_RATE_LIMIT",
        default_value_t = 1000
    )]
    rate: u64,
    /// Events a project may send at once above the rate (0: the rate).
    #[arg(
        long = "rate-burst",
        env = "PANICLE_RATE_BURST",
        default_value_t = 10_000
    )]
    burst: u64,
    /// Events per project per UTC day (0: unlimited).
    #[arg(long, env = "PANICLE_DAILY_QUOTA", default_value_t = 0)]
    daily_quota: u64,
    /// Events per project per UTC month (0: unlimited).
    #[arg(long, env = "PANICLE_MONTHLY_QUOTA", default_value_t = 0)]
    monthly_quota: u64,
    /// Days events are kept (0: forever); a project may set its own.
    #[arg(long, env = "PANICLE_RETENTION_DAYS", default_value_t = 90)]
    retention_days: u64,
    /// Seconds between retention runs (0: never).
    #[arg(long, env = "PANICLE_RETENTION_INTERVAL", default_value_t = 3600)]
    retention_interval: u64,
    /// Events deleted per retention transaction.
    #[arg(long, env = "PANICLE_RETENTION_BATCH", default_value_t = 500)]
    retention_batch: u64,
    /// Events a group keeps in full; beyond it new ones are sampled (counts stay exact). 0: no cap.
    #[arg(long, env = "PANICLE_GROUP_EVENT_CAP", default_value_t = 10_000)]
    group_event_cap: u64,
}

/// DBSCAN parameters, shared by `serve` and `cluster`.
#[derive(Args, Clone, Copy)]
struct ClusterParams {
    /// Neighbour radius: groups within this weighted Jaccard distance (inclusive) are neighbours.
    #[arg(long, env = "PANICLE_CLUSTER_EPS", default_value_t = panicle_cluster::DEFAULT_EPS)]
    eps: f64,
    /// Events a neighbourhood needs to be dense (the point itself included).
    #[arg(long, env = "PANICLE_CLUSTER_MIN_SAMPLES", default_value_t = panicle_cluster::DEFAULT_MIN_SAMPLES)]
    min_samples: u64,
    /// Weight ratio between a frame and the one inside it; 1 is plain Jaccard.
    #[arg(long, env = "PANICLE_CLUSTER_DECAY", default_value_t = panicle_cluster::DEFAULT_DECAY)]
    decay: f64,
    /// Weight of a frame's leaf name (last two path segments, what survives a move) relative to the frame.
    #[arg(long, env = "PANICLE_CLUSTER_LEAF_WEIGHT", default_value_t = panicle_cluster::DEFAULT_LEAF_WEIGHT)]
    leaf_weight: f64,
    /// Weight of the message's panic kind (0 ignores messages).
    #[arg(long, env = "PANICLE_CLUSTER_MESSAGE_WEIGHT", default_value_t = panicle_cluster::DEFAULT_MESSAGE_WEIGHT)]
    message_weight: f64,
    /// Weight of the message's error type (`ParseIntError`, `io::Error`).
    #[arg(long, env = "PANICLE_CLUSTER_ERROR_TYPE_WEIGHT", default_value_t = panicle_cluster::DEFAULT_ERROR_TYPE_WEIGHT)]
    error_type_weight: f64,
    /// Weight of each payload detail of the message (`InvalidDigit`, `NotFound`).
    #[arg(long, env = "PANICLE_CLUSTER_DETAIL_WEIGHT", default_value_t = panicle_cluster::DEFAULT_DETAIL_WEIGHT)]
    detail_weight: f64,
}

impl ClusterParams {
    fn params(self) -> Result<panicle_cluster::Params> {
        let params = panicle_cluster::Params {
            eps: self.eps,
            min_samples: self.min_samples,
            decay: self.decay,
            leaf_weight: self.leaf_weight,
            message_weight: self.message_weight,
            error_type_weight: self.error_type_weight,
            detail_weight: self.detail_weight,
            threads: 0,
        };
        params.validate()?;
        Ok(params)
    }
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project and print its DSN.
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
        /// URL clients reach the server at (default: http:// + PANICLE_LISTEN).
        #[arg(long, env = "PANICLE_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Change a project's limits: a number, `0`/`none` for unlimited (retention:
    /// keep forever), or `default` for the server's default.
    Update {
        name: String,
        #[command(flatten)]
        db: DbArgs,
        /// Events per second.
        #[arg(long, value_parser = parse_limit)]
        rate: Option<Limit>,
        /// Events at once above the rate.
        #[arg(long, value_parser = parse_limit)]
        burst: Option<Limit>,
        /// Events per UTC day.
        #[arg(long, value_parser = parse_limit)]
        daily_quota: Option<Limit>,
        /// Events per UTC month.
        #[arg(long, value_parser = parse_limit)]
        monthly_quota: Option<Limit>,
        /// Days events are kept.
        #[arg(long, value_parser = parse_limit)]
        retention_days: Option<Limit>,
    },
    /// List projects with their DSNs.
    List {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, env = "PANICLE_PUBLIC_URL")]
        public_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (its id goes to stderr). Without
    /// --project it is an admin token: every project, ingest keys, changes.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// A note to tell tokens apart.
        #[arg(long, default_value = "cli")]
        label: String,
        /// An admin token (the default when no --project is given).
        #[arg(long, conflicts_with = "project")]
        admin: bool,
        /// Read-only access to this project (by name); repeat for several.
        #[arg(long = "project", value_name = "NAME")]
        project: Vec<String>,
    },
    /// List tokens: id, scope, created, last used, label (never the secret).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by its id (from `token list`); its dashboard sessions end too.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// A limit as typed: a number (0: unlimited) or the server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Value(i64),
    Default,
}

fn parse_limit(s: &str) -> std::result::Result<Limit, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "unlimited" => Ok(Limit::Value(0)),
        "default" => Ok(Limit::Default),
        n => n
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(Limit::Value)
            .ok_or_else(|| format!("`{s}` is not a number >= 0, `none` or `default`")),
    }
}

/// `Some(None)` resets to the default; `None` leaves the setting alone.
fn to_update(limit: Option<Limit>) -> Option<Option<i64>> {
    limit.map(|l| match l {
        Limit::Value(v) => Some(v),
        Limit::Default => None,
    })
}

fn show(v: Option<i64>) -> String {
    match v {
        None => "default".into(),
        Some(0) => "none".into(),
        Some(n) => n.to_string(),
    }
}

fn main() -> Result<()> {
    let matches = config::parse(Cli::command())?;
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Neither the demo nor the wrapper owns a runtime or a logger: a service
    // with the SDK has its own, and the wrapper must stay out of the way.
    if let Command::DemoPanic { mode, dsn } = cli.command {
        return demo_panic::run(dsn, mode);
    }
    if let Command::Run {
        dsn,
        service,
        release,
        environment,
        command,
    } = cli.command
    {
        let dsn = dsn
            .map(|d| d.parse::<panicle_protocol::Dsn>())
            .transpose()
            .context("invalid --dsn / PANICLE_DSN")?;
        let code = run::run(run::RunArgs {
            dsn,
            service,
            release,
            environment,
            command,
        })?;
        std::process::exit(code);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PANICLE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_in_colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

/// Colour codes are for a person at a terminal: a log file, journald or
/// `kubectl logs` shows them as garbage. `NO_COLOR` (any non-empty value,
/// <https://no-color.org>) turns them off even at a terminal.
fn log_in_colour(log_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    log_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { server, demo_data } => serve(*server, demo_data).await,
        Command::Config { server: _ } => {
            config::print(redact);
            Ok(())
        }
        Command::Cluster {
            input,
            output,
            eps,
            min_samples,
            decay,
            leaf_weight,
            message_weight,
            error_type_weight,
            detail_weight,
        } => {
            let params = ClusterParams {
                eps,
                min_samples,
                decay,
                leaf_weight,
                message_weight,
                error_type_weight,
                detail_weight,
            }
            .params()?;
            tokio::task::spawn_blocking(move || cluster::run(&input, output.as_deref(), &params))
                .await?
        }
        Command::Project {
            command:
                ProjectCommand::Create {
                    name,
                    db,
                    public_url,
                },
        } => {
            let store = open_existing(&db).await?;
            let project = store.create_project(&name).await?;
            println!("{}", dsn(&public_url_or_listen(public_url), &project));
            Ok(())
        }
        Command::Project {
            command:
                ProjectCommand::Update {
                    name,
                    db,
                    rate,
                    burst,
                    daily_quota,
                    monthly_quota,
                    retention_days,
                },
        } => {
            let store = open_existing(&db).await?;
            let now = store
                .update_project_limits(
                    &name,
                    &panicle_store::LimitsUpdate {
                        rate: to_update(rate),
                        burst: to_update(burst),
                        daily_quota: to_update(daily_quota),
                        monthly_quota: to_update(monthly_quota),
                        retention_days: to_update(retention_days),
                    },
                )
                .await?;
            println!(
                "{name}: rate {} burst {} daily-quota {} monthly-quota {} retention-days {}",
                show(now.rate),
                show(now.burst),
                show(now.daily_quota),
                show(now.monthly_quota),
                show(now.retention_days)
            );
            Ok(())
        }
        Command::Project {
            command: ProjectCommand::List { db, public_url },
        } => {
            let store = open_existing(&db).await?;
            let base = public_url_or_listen(public_url);
            for p in store.projects().await? {
                println!("{}\t{}\t{}", p.id, p.name, dsn(&base, &p));
            }
            Ok(())
        }
        Command::Token { command } => token(command).await,
        Command::Alert { command } => alert::run(command).await,
        Command::Spool { command } => spool::run(command).await,
        Command::DebugFiles { command } => debug_files::run(command).await,
        Command::Run { .. } | Command::DemoPanic { .. } => {
            anyhow::bail!("`run` and `demo-panic` are handled before the runtime starts")
        }
    }
}

async fn token(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create {
            db,
            label,
            admin: _,
            project,
        } => {
            let store = open_existing(&db).await?;
            let scope = if project.is_empty() {
                TokenScope::Admin
            } else {
                let mut ids = std::collections::BTreeSet::new();
                for name in &project {
                    let p = store.project_by_name(name).await?.with_context(|| {
                        format!("no project named `{name}` (see `panicle project list`)")
                    })?;
                    ids.insert(p.id);
                }
                TokenScope::Projects(ids)
            };
            let created = store.create_token_with_scope(&label, &scope).await?;
            println!("{}", created.token);
            eprintln!(
                "token id {} ({})",
                created.id,
                scope_text(&store, &scope).await?
            );
            Ok(())
        }
        TokenCommand::List { db } => {
            let store = open_existing(&db).await?;
            println!("ID\tSCOPE\tCREATED\tLAST USED\tLABEL");
            for t in store.tokens().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    scope_text(&store, &t.scope).await?,
                    rfc3339_ms(t.created_at),
                    t.last_used_at
                        .map(rfc3339_ms)
                        .unwrap_or_else(|| "never".into()),
                    t.label
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { id, db } => {
            let store = open_existing(&db).await?;
            if !store.revoke_token(&id).await? {
                anyhow::bail!("no token with id `{id}` (see `panicle token list`)");
            }
            eprintln!("token {id} revoked; its sessions ended");
            Ok(())
        }
    }
}

/// `admin` or `projects:NAME,NAME`.
async fn scope_text(store: &Store, scope: &TokenScope) -> Result<String> {
    let TokenScope::Projects(ids) = scope else {
        return Ok("admin".into());
    };
    let projects = store.projects().await?;
    let names: Vec<String> = ids
        .iter()
        .map(|id| {
            projects
                .iter()
                .find(|p| p.id == *id)
                .map(|p| p.name.clone())
                .unwrap_or_else(|| id.to_string())
        })
        .collect();
    Ok(format!("projects:{}", names.join(",")))
}

/// Epoch milliseconds as RFC 3339 (UTC, seconds).
fn rfc3339_ms(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The SQLite file of a `sqlite:` URL; None for PostgreSQL.
fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    Some(std::path::Path::new(
        rest.split_once('?').map_or(rest, |(p, _)| p),
    ))
}

/// Where debug files are kept unless `--debug-files-dir` says: beside the
/// SQLite file (one directory to back up and mount), or, for PostgreSQL,
/// `./panicle-debug-files`. `serve` and `debug-files` agree on it.
fn debug_files_dir(database_url: &str, given: Option<std::path::PathBuf>) -> std::path::PathBuf {
    if let Some(dir) = given {
        return dir;
    }
    match sqlite_path(database_url) {
        Some(file) => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join("debug-files"),
        None => std::path::PathBuf::from("./panicle-debug-files"),
    }
}

/// Opens the database a server already made. Every command but `serve`
/// goes through here: a missing SQLite file is an error that says where it
/// looked, never a new empty database in the current directory.
async fn open_existing(db: &DbArgs) -> Result<Store> {
    if let Some(path) = sqlite_path(&db.database_url)
        && !path.is_file()
    {
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        anyhow::bail!(
            "no database at {}\n  \
             why there: {}\n  \
             Only `panicle serve` creates a database; it records its URL in the config \
             file, where the other commands find it.\n  \
             Start `panicle serve` first, or point this command at the server's database: \
             --database-url URL, DATABASE_URL=URL, or `database_url = \"URL\"` in the config \
             file (another file: --config FILE or PANICLE_CONFIG). `panicle config` shows \
             the settings in effect.",
            shown.display(),
            database_url_origin()
        );
    }
    open(db).await
}

/// Where the database URL in effect came from, for an error about it.
fn database_url_origin() -> String {
    let Some(effective) = config::effective() else {
        return "from --database-url or DATABASE_URL".into();
    };
    match effective.source_of("database_url") {
        Some(config::Source::Flag) => "the URL came from --database-url".into(),
        Some(config::Source::Env(name)) => format!("the URL came from {name}"),
        Some(config::Source::File(path)) => {
            format!("the URL came from the config file {}", path.display())
        }
        _ => format!(
            "the default URL {DEFAULT_DATABASE_URL}: no --database-url, no DATABASE_URL, \
             and no `database_url` in the config file {}",
            effective.file_text()
        ),
    }
}

async fn open(db: &DbArgs) -> Result<Store> {
    Store::connect(&db.database_url).await.with_context(|| {
        format!(
            "cannot open the database at {} ({})",
            redact(&db.database_url),
            database_url_origin()
        )
    })
}

/// `serve` leaves the URL of its database in the config file, unless the
/// file already names one: the other commands find it from anywhere.
fn record_database_url(url: &str) {
    let file_url = config::effective().and_then(|e| e.file_value("database_url"));
    if let Some(file_url) = file_url {
        let cwd = std::env::current_dir().unwrap_or_default();
        if file_url != config::absolute_sqlite_url(url, &cwd) {
            tracing::warn!(
                config = %config::effective().map(|e| e.file_text()).unwrap_or_default(),
                file_database = %redact(file_url),
                database = %redact(url),
                "this server's database is not the config file's: commands run without \
                 --database-url or DATABASE_URL use the file's"
            );
        }
        return;
    }
    match config::record_database_url(url) {
        Ok(Some(path)) => tracing::info!(
            config = %path.display(),
            "database URL recorded in the config file: `panicle project`, `token` and `alert` \
             find this database from any directory"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "cannot record the database URL in the config file ({e:#}); other commands \
             need --database-url or DATABASE_URL to find this database"
        ),
    }
}

/// Hides a password in a database URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn public_url_or_listen(public_url: Option<String>) -> String {
    public_url.unwrap_or_else(|| {
        let listen = std::env::var("PANICLE_LISTEN")
            .ok()
            .filter(|l| !l.is_empty())
            .or_else(|| {
                config::effective()
                    .and_then(|e| e.file_value("listen"))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        format!("http://{listen}")
    })
}

fn dsn(base_url: &str, project: &panicle_store::Project) -> String {
    let base = base_url.trim_end_matches('/');
    let (scheme, host) = base.split_once("://").unwrap_or(("http", base));
    format!("{scheme}://{}@{host}/{}", project.ingest_key, project.id)
}

async fn serve(server: ServerArgs, demo_data: bool) -> Result<()> {
    let ServerArgs {
        db,
        listen,
        public_url,
        settings,
    } = server;
    if settings.request_timeout <= settings.body_timeout {
        anyhow::bail!(
            "--request-timeout ({} s) must be longer than --body-timeout ({} s): a client too slow to send its body gets 408 before the server is taken for the slow one (503)",
            settings.request_timeout,
            settings.body_timeout
        );
    }
    let mut rules = panicle_rules::RuleSet::builtin().context("the built-in rules do not load")?;
    if let Some(dir) = &settings.rules_dir {
        let n = rules
            .load_dir(dir)
            .with_context(|| format!("cannot load rules from {}", dir.display()))?;
        tracing::info!(rules = n, dir = %dir.display(), "extra rules loaded");
    }
    let cluster = settings
        .cluster
        .params()
        .context("invalid clustering parameters")?;
    let trust_roots = alert::trust_roots(settings.alert_ca_file.as_deref())?;
    let store = open(&db).await?;
    let debug_dir = debug_files_dir(&db.database_url, settings.debug_files_dir.clone());
    // What a crash left mid-upload; a day old, so no replica is still writing it.
    match panicle_store::DebugFiles::new(store.clone(), &debug_dir)
        .sweep_temp_files(Duration::from_secs(86_400))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "stale debug-file uploads removed"),
        Err(e) => tracing::warn!(error = %e, "cannot sweep the debug-file directory"),
    }
    record_database_url(&db.database_url);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen}: is another server running? pick another with --listen"
            )
        })?;
    let addr = listener.local_addr()?;
    let base = public_url.unwrap_or_else(|| format!("http://{addr}"));
    if store.projects().await?.is_empty() {
        match store.create_project("default").await {
            Ok(project) => {
                let token = store.create_token("first start").await?;
                println!("Panicle is ready. Keep these; they are printed once.");
                println!("  DSN:       {}", dsn(&base, &project));
                println!("  API token: {token}");
                println!("  Dashboard: {base}/");
            }
            // A replica started at the same moment made it and printed its
            // credentials: this one serves the same database.
            Err(panicle_store::StoreError::ProjectExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("panicle listening on http://{addr}");
    let cwd = std::env::current_dir().unwrap_or_default();
    tracing::info!(
        %addr,
        database = %redact(&config::absolute_sqlite_url(&db.database_url, &cwd)),
        debug_files = %debug_dir.display(),
        "panicle serving"
    );
    let state = AppState::with_rules(
        store.clone(),
        ServerConfig {
            max_body_bytes: settings.max_body_bytes,
            max_ingest_requests: settings.max_ingest_requests,
            max_ingest_bytes: settings.max_ingest_bytes,
            public_url: base.clone(),
            trace_url_template: settings.trace_url_template,
            cluster,
            header_timeout: Duration::from_secs(settings.header_timeout),
            body_timeout: Duration::from_secs(settings.body_timeout),
            request_timeout: Duration::from_secs(settings.request_timeout),
            max_connections: settings.max_connections as usize,
            limits: panicle_server::LimitDefaults {
                rate: settings.limits.rate,
                burst: settings.limits.burst,
                daily_quota: settings.limits.daily_quota,
                monthly_quota: settings.limits.monthly_quota,
                group_event_cap: settings.limits.group_event_cap,
            },
            retention: panicle_server::RetentionConfig {
                days: settings.limits.retention_days,
                batch: settings.limits.retention_batch.max(1),
                ..panicle_server::RetentionConfig::default()
            },
            alerts: panicle_server::alerts::AlertConfig {
                backoff_base: Duration::from_millis(settings.alert_backoff_ms),
                send_timeout: Duration::from_secs(settings.alert_send_timeout),
                check_interval: Duration::from_secs(settings.alert_check_interval),
                trust_roots,
                ..panicle_server::alerts::AlertConfig::default()
            },
            debug_files_dir: debug_dir,
            group_commit: panicle_server::commit::GroupCommit {
                writers: settings.ingest_writers,
                max_events: settings.commit_max_events.max(1),
                window: Duration::from_millis(settings.commit_window_ms),
            },
            ..ServerConfig::default()
        },
        rules,
    );
    state.alerts.spawn();
    // Events that arrived before their debug file: named once it is there.
    panicle_server::symbolicate::spawn_sweep(&state, Duration::from_secs(60));
    if settings.limits.retention_interval > 0 {
        state
            .retention
            .spawn_interval(std::time::Duration::from_secs(
                settings.limits.retention_interval,
            ));
    }
    if settings.cluster_interval > 0 {
        state
            .job
            .spawn_interval(std::time::Duration::from_secs(settings.cluster_interval));
    }
    let checkpointer = (settings.wal_checkpoint_interval_ms > 0)
        .then(|| {
            store.spawn_wal_checkpointer(panicle_store::WalPolicy {
                interval: Duration::from_millis(settings.wal_checkpoint_interval_ms),
                truncate_above: settings.wal_truncate_bytes,
                ..panicle_store::WalPolicy::default()
            })
        })
        .flatten();
    let demo_state = demo_data.then(|| state.clone());
    let serving = panicle_server::serve(listener, state, shutdown_signal());
    tokio::pin!(serving);
    let mut stopped = false;
    if let Some(state) = demo_state {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        tokio::select! {
            r = &mut serving => {
                r?;
                stopped = true;
            }
            r = demo::fill(&state, addr, now as i64) => {
                let summary = r.context(
                    "cannot fill the demo project (the server stops; start it without --demo-data to keep serving)",
                )?;
                for line in summary.lines(&base) {
                    println!("{line}");
                }
            }
        }
    }
    if !stopped {
        serving.await?;
    }
    drop(checkpointer);
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

/// Now as RFC 3339, for events made here.
pub(crate) fn now_rfc3339() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_numbers_none_and_default() {
        assert_eq!(parse_limit("50"), Ok(Limit::Value(50)));
        assert_eq!(parse_limit("0"), Ok(Limit::Value(0)));
        assert_eq!(parse_limit("None"), Ok(Limit::Value(0)));
        assert_eq!(parse_limit("default"), Ok(Limit::Default));
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("lots").is_err());
        assert_eq!(to_update(Some(Limit::Default)), Some(None));
        assert_eq!(to_update(None), None);
    }

    #[test]
    fn debug_files_go_beside_the_sqlite_file() {
        use std::path::PathBuf;
        assert_eq!(
            debug_files_dir("sqlite://./panicle-data/panicle.db", None),
            PathBuf::from("./panicle-data/debug-files")
        );
        assert_eq!(
            debug_files_dir("sqlite:///var/lib/panicle/p.db?mode=rwc", None),
            PathBuf::from("/var/lib/panicle/debug-files")
        );
        assert_eq!(
            debug_files_dir("sqlite://p.db", None),
            PathBuf::from("./debug-files")
        );
        assert_eq!(
            debug_files_dir("postgres://u@h/db", None),
            PathBuf::from("./panicle-debug-files")
        );
        assert_eq!(
            debug_files_dir("postgres://u@h/db", Some("/mnt/dbg".into())),
            PathBuf::from("/mnt/dbg")
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
    }
}
