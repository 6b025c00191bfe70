//! `panicle spool send DIR`: ships what a process left in its SDK spool
//! directory (a pod that died, a job that aborted), so a sidecar or an init
//! container can deliver it. Each event is deleted once the server has
//! acknowledged it; resending is safe because the server dedups by event id.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum SpoolCommand {
    /// Send every event in a spool directory, deleting each once acknowledged.
    Send(SendArgs),
}

#[derive(Args)]
pub struct SendArgs {
    /// The spool directory (the SDK's PANICLE_SPOOL_DIR).
    dir: PathBuf,
    /// Where to send: http://<ingest-key>@host:port/<project-id>.
    #[arg(long, env = "PANICLE_DSN")]
    dsn: String,
    /// How long to keep retrying an unreachable server, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub async fn run(command: SpoolCommand) -> Result<()> {
    match command {
        SpoolCommand::Send(args) => tokio::task::spawn_blocking(move || send(args))
            .await
            .context("the spool sender stopped")?,
    }
}

fn send(args: SendArgs) -> Result<()> {
    let dsn: panicle_protocol::Dsn = args.dsn.parse().context("invalid --dsn / PANICLE_DSN")?;
    if !args.dir.is_dir() {
        bail!("spool directory {} does not exist", args.dir.display());
    }
    let report = panicle::batch::send_dir(&args.dir, &dsn, Duration::from_secs(args.timeout))
        .with_context(|| format!("cannot drain the spool {}", args.dir.display()))?;
    println!(
        "sent {} events, {} refused by the server (kept in {}/rejected), {} left",
        report.sent,
        report.rejected,
        args.dir.display(),
        report.remaining
    );
    if report.remaining > 0 {
        bail!(
            "{} events could not be sent within {} s; they stay in the spool",
            report.remaining,
            args.timeout
        );
    }
    Ok(())
}
