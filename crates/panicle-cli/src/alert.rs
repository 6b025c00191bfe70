//! `panicle alert add|list|remove|test`: alert rules in the server's
//! database (what the API's `/projects/{id}/alerts/rules` changes). These
//! commands never create a database: a rule on a database no server uses
//! would never fire.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use panicle_server::alerts::{AlertConfig, Alerts, RuleBody};
use panicle_server::webhook::TrustRoots;
use panicle_store::AlertRule;

use crate::DbArgs;

/// A rule as `alert add` takes it.
#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The project, by name.
    #[arg(long)]
    project: String,
    /// new-cluster, regression, spike, new-release or confined.
    #[arg(long)]
    kind: String,
    /// POST the JSON payload (README: "Alerts") to this URL.
    #[arg(long, conflicts_with = "slack", required_unless_present = "slack")]
    webhook: Option<String>,
    /// A Slack-compatible incoming webhook URL.
    #[arg(long)]
    slack: Option<String>,
    /// A name to tell rules apart (default: the kind).
    #[arg(long)]
    name: Option<String>,
    /// Only events of this service.
    #[arg(long)]
    service: Option<String>,
    /// Only events of this environment.
    #[arg(long)]
    environment: Option<String>,
    /// info, warning, error or fatal (a panic is error; a Go fatal error or a signal fatal).
    #[arg(long)]
    min_level: Option<String>,
    /// Seconds between two notifications of the rule for one cluster (default 3600).
    #[arg(long)]
    cooldown: Option<i64>,
    /// Spike: more than this many events; confined: at least this many (defaults 10, 3).
    #[arg(long)]
    threshold: Option<i64>,
    /// Spike and confined: the window in seconds (defaults 300, 86400).
    #[arg(long)]
    window: Option<i64>,
    /// Spike: also more than this × the cluster's usual rate.
    #[arg(long)]
    factor: Option<f64>,
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Add a rule to a project; prints its id.
    Add(Box<AddArgs>),
    /// List rules (one project's with --project).
    List {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        project: Option<String>,
    },
    /// Remove a rule and its delivery log.
    Remove {
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Send a sample notification for a rule now and say how it went.
    Test {
        id: i64,
        #[command(flatten)]
        db: DbArgs,
        /// The server's URL, for the payload's dashboard links.
        #[arg(long, env = "PANICLE_PUBLIC_URL")]
        public_url: Option<String>,
        /// Trust only the CA certificates of this PEM file for an https:// receiver (as `serve`).
        #[arg(long, env = "PANICLE_ALERT_CA_FILE")]
        alert_ca_file: Option<std::path::PathBuf>,
    },
}

/// The CA certificates of `--alert-ca-file`, read and checked at start: a
/// file that trusts nothing would only show up as failed deliveries later.
pub fn trust_roots(path: Option<&std::path::Path>) -> Result<Option<TrustRoots>> {
    let Some(path) = path else { return Ok(None) };
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read --alert-ca-file {}", path.display()))?;
    let roots = TrustRoots::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("--alert-ca-file {}: {e}", path.display()))?;
    Ok(Some(roots))
}

fn show_rule(r: &AlertRule, project: &str) -> String {
    let mut filters = Vec::new();
    if let Some(s) = &r.service {
        filters.push(format!("service={s}"));
    }
    if let Some(s) = &r.environment {
        filters.push(format!("environment={s}"));
    }
    if let Some(s) = &r.min_level {
        filters.push(format!("level>={s}"));
    }
    if let Some(t) = r.threshold {
        filters.push(format!("threshold={t}"));
    }
    if let Some(w) = r.window_ms {
        filters.push(format!("window={}s", w / 1000));
    }
    if let Some(f) = r.factor {
        filters.push(format!("factor={f}"));
    }
    format!(
        "{}\t{project}\t{}\t{}\t{} {}\tcooldown={}s\t{}",
        r.id,
        r.name,
        r.kind.as_str(),
        r.destination.as_str(),
        r.url,
        r.cooldown_ms / 1000,
        if filters.is_empty() {
            "-".to_string()
        } else {
            filters.join(" ")
        }
    )
}

pub async fn run(command: AlertCommand) -> Result<()> {
    match command {
        AlertCommand::Add(args) => {
            let AddArgs {
                db,
                project,
                kind,
                webhook,
                slack,
                name,
                service,
                environment,
                min_level,
                cooldown,
                threshold,
                window,
                factor,
            } = *args;
            let store = crate::open_existing(&db).await?;
            let p = store.project_by_name(&project).await?.with_context(|| {
                format!("no project named `{project}` (see `panicle project list`)")
            })?;
            let (destination, url) = match (webhook, slack) {
                (Some(u), _) => ("webhook", u),
                (None, Some(u)) => ("slack", u),
                (None, None) => bail!("give --webhook URL or --slack URL"),
            };
            let body = RuleBody {
                name: name.unwrap_or_else(|| kind.replace('-', " ")),
                kind,
                destination: destination.into(),
                url,
                service,
                environment,
                min_level,
                cooldown_seconds: cooldown,
                threshold,
                window_seconds: window,
                factor,
            };
            let rule = body.into_rule(p.id).map_err(anyhow::Error::msg)?;
            let made = store.create_alert_rule(&rule).await?;
            println!("{}", made.id);
            Ok(())
        }
        AlertCommand::List { db, project } => {
            let store = crate::open_existing(&db).await?;
            let projects = store.projects().await?;
            let only = match &project {
                Some(name) => Some(
                    projects
                        .iter()
                        .find(|p| &p.name == name)
                        .with_context(|| format!("no project named `{name}`"))?
                        .id,
                ),
                None => None,
            };
            println!("ID\tPROJECT\tNAME\tKIND\tDESTINATION\tCOOLDOWN\tFILTERS");
            for r in store.alert_rules(only).await? {
                let name = projects
                    .iter()
                    .find(|p| p.id == r.project_id)
                    .map_or("?", |p| p.name.as_str());
                println!("{}", show_rule(&r, name));
            }
            Ok(())
        }
        AlertCommand::Remove { id, db } => {
            let store = crate::open_existing(&db).await?;
            if !store.delete_alert_rule(id).await? {
                bail!("no alert rule with id {id} (see `panicle alert list`)");
            }
            eprintln!("alert rule {id} removed");
            Ok(())
        }
        AlertCommand::Test {
            id,
            db,
            public_url,
            alert_ca_file,
        } => {
            let trust_roots = trust_roots(alert_ca_file.as_deref())?;
            let store = crate::open_existing(&db).await?;
            let rule = store.alert_rule(id).await?.with_context(|| {
                format!("no alert rule with id {id} (see `panicle alert list`)")
            })?;
            let rules = Arc::new(panicle_rules::RuleSet::builtin()?);
            let alerts = Alerts::new(
                store,
                rules,
                AlertConfig {
                    trust_roots,
                    ..AlertConfig::default()
                },
                &crate::public_url_or_listen(public_url),
            );
            match alerts
                .send_test(&rule)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                Ok(status) => {
                    println!("sent: {} answered HTTP {status}", rule.url);
                    Ok(())
                }
                Err(e) => bail!("not delivered to {}: {e}", rule.url),
            }
        }
    }
}
