//! `panicle debug-files upload|list|remove`: the debug info of stripped
//! binaries, stored by GNU build-id so the server can name their addresses.
//!
//! Two ways to reach the store. Remote (`--url` and `--token`, e.g. from
//! CI): HTTP to a running server's `/api/v1/debug-files`, the file streamed
//! from disk; the server re-symbolizes its events as soon as a file lands.
//! Direct (`--database-url` and `--debug-files-dir`, as `panicle project
//! create`): the database and directory a server uses, on the same host or
//! volume; never a new database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use panicle_store::{DebugFileRow, DebugFiles, MAX_DEBUG_FILE_BYTES, Stored};
use serde_json::Value;

use crate::DbArgs;

#[derive(Subcommand)]
pub enum DebugFilesCommand {
    /// Store debug files: unstripped binaries or their `objcopy
    /// --only-keep-debug` files, keyed by GNU build-id. A build-id already
    /// stored with DWARF is kept; DWARF replaces a file with symbols only.
    Upload {
        /// The files (ELF, with a build-id and DWARF or a symbol table).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// List stored debug files, newest first.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Remove a stored debug file (remote: needs an admin token).
    Remove {
        /// Its build-id, as `list` shows it.
        build_id: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where the debug files are: a server (`--url`), else the store itself.
#[derive(Args)]
pub struct Target {
    /// A running Panicle server (remote mode); without it, the database and
    /// directory are used directly.
    #[arg(long, env = "PANICLE_URL")]
    url: Option<String>,
    /// API token for --url: an admin token, or a project's (upload, list).
    #[arg(long, env = "PANICLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    db: DbArgs,
    /// Direct mode: the server's debug-file directory (default: as `serve`,
    /// a `debug-files` directory beside the SQLite file; for PostgreSQL
    /// ./panicle-debug-files).
    #[arg(long, env = "PANICLE_DEBUG_FILES_DIR")]
    debug_files_dir: Option<PathBuf>,
}

enum Mode {
    Remote { url: String, token: String },
    Direct(DebugFiles),
}

impl Target {
    async fn mode(self) -> Result<Mode> {
        if let Some(url) = self.url {
            let Some(token) = self.token.filter(|t| !t.trim().is_empty()) else {
                bail!(
                    "--url needs --token (or PANICLE_TOKEN): an admin token, or a project's token to upload and list"
                );
            };
            return Ok(Mode::Remote {
                url: url.trim_end_matches('/').to_string(),
                token: token.trim().to_string(),
            });
        }
        let dir = crate::debug_files_dir(&self.db.database_url, self.debug_files_dir);
        let store = crate::open_existing(&self.db).await?;
        Ok(Mode::Direct(DebugFiles::new(store, dir)))
    }
}

pub async fn run(command: DebugFilesCommand) -> Result<()> {
    match command {
        DebugFilesCommand::Upload { paths, target } => {
            let mode = target.mode().await?;
            let mut failed = 0;
            for path in &paths {
                match upload_one(&mode, path).await {
                    Ok(line) => println!("{}: {line}", path.display()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: error: {e:#}", path.display());
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} files were not stored", paths.len());
            }
            Ok(())
        }
        DebugFilesCommand::List { target } => {
            let rows = match target.mode().await? {
                Mode::Direct(files) => files.list().await?,
                Mode::Remote { url, token } => {
                    let body = remote(move || {
                        agent()
                            .get(&format!("{url}/api/v1/debug-files"))
                            .header("Authorization", format!("Bearer {token}"))
                            .call()
                    })
                    .await?;
                    serde_json::from_value(body["items"].clone())
                        .context("the server's list is not what this version expects")?
                }
            };
            println!("BUILD ID\tKIND\tARCH\tDWARF\tSIZE\tUPLOADED\tNAME");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.build_id,
                    r.kind,
                    r.arch,
                    if r.has_dwarf { "yes" } else { "no" },
                    human_size(r.size_bytes.max(0) as u64),
                    crate::rfc3339_ms(r.uploaded_at),
                    r.name
                );
            }
            Ok(())
        }
        DebugFilesCommand::Remove { build_id, target } => {
            let removed = match target.mode().await? {
                Mode::Direct(files) => files.remove(&build_id).await?,
                Mode::Remote { url, token } => {
                    let id = build_id.trim().to_string();
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                        bail!(
                            "`{build_id}` is not a build-id: give the hex build-id `panicle debug-files list` shows"
                        );
                    }
                    let answer = remote(move || {
                        agent()
                            .delete(&format!("{url}/api/v1/debug-files/{id}"))
                            .header("Authorization", format!("Bearer {token}"))
                            .call()
                    })
                    .await;
                    match answer {
                        Ok(_) => true,
                        Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => {
                            false
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            if !removed {
                bail!("no debug file with build-id `{build_id}` (see `panicle debug-files list`)");
            }
            println!("removed {build_id}");
            Ok(())
        }
    }
}

/// Checks the file here (a bad one is not sent), then stores it; the line
/// to print.
async fn upload_one(mode: &Mode, path: &Path) -> Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_DEBUG_FILE_BYTES {
        bail!(
            "{} is larger than the limit of {} bytes: upload its `objcopy --only-keep-debug` file, or compress its DWARF (`objcopy --compress-debug-sections`)",
            human_size(size),
            MAX_DEBUG_FILE_BYTES
        );
    }
    let checked = path.to_path_buf();
    tokio::task::spawn_blocking(move || panicle_debuginfo::inspect_path(&checked))
        .await
        .context("the file check stopped")??;
    let (row, word) = match mode {
        Mode::Direct(files) => {
            let stored = files.store_path(path).await?;
            let word = match &stored {
                Stored::New(_) => "stored",
                Stored::Replaced(_) => "stored (replaced a file without DWARF)",
                Stored::Exists(_) => "already stored",
            };
            (stored.row().clone(), word)
        }
        Mode::Remote { url, token } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let url = format!("{url}/api/v1/debug-files");
            let token = token.clone();
            let body = remote(move || {
                agent()
                    .post(&url)
                    .query("name", &name)
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Content-Type", "application/octet-stream")
                    // A refusal (bad token, too large) comes before the file is sent.
                    .header("Expect", "100-continue")
                    .send(&file)
            })
            .await?;
            let word = match body["status"].as_str() {
                Some("exists") => "already stored",
                Some("replaced") => "stored (replaced a file without DWARF)",
                _ => "stored",
            };
            let row: DebugFileRow = serde_json::from_value(body)
                .context("the server's answer is not what this version expects")?;
            (row, word)
        }
    };
    Ok(format!(
        "{} {} {} {word}",
        row.build_id,
        row.kind,
        human_size(row.size_bytes.max(0) as u64)
    ))
}

/// A server's refusal: its status and `{"error":{"code","message"}}`.
#[derive(Debug)]
struct Refused {
    status: u16,
    code: String,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server refused it ({} {}): {}",
            self.status, self.code, self.message
        )
    }
}

impl std::error::Error for Refused {}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build(),
    )
}

/// Runs one blocking request and returns its JSON body; a 4xx/5xx is a
/// [`Refused`] carrying the server's message.
async fn remote(
    request: impl FnOnce() -> Result<ureq::http::Response<ureq::Body>, ureq::Error> + Send + 'static,
) -> Result<Value> {
    tokio::task::spawn_blocking(move || {
        let mut response = request().context("cannot reach the server (check --url)")?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .context("the server's answer could not be read")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let error = &body["error"];
            return Err(Refused {
                status,
                code: error["code"].as_str().unwrap_or("unknown").to_string(),
                message: error["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(300).collect()),
            }
            .into());
        }
        Ok(body)
    })
    .await
    .context("the request stopped")?
}

/// Bytes as people read them: `512 B`, `61.9 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(300 * 1024 * 1024), "300.0 MiB");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
    }
}
