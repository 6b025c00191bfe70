//! One place for the server's settings: flags, environment variables and an
//! optional TOML config file, in that order of precedence over the
//! built-in defaults.
//!
//! The file exists so that `panicle serve` started in one directory and
//! `panicle project list` run from another work on the same database:
//! `serve` records the database URL it uses there, the other commands read
//! it. Its keys are the long flags with `_` for `-` (`listen`,
//! `database_url`, `rate_limit`, …): every flag that also has an
//! environment variable, so the three ways to set a value name the same
//! settings. The file's values become the flags' defaults before the
//! command line is parsed again, which lets clap keep its own precedence
//! (flag, then env, then default) and lets `--help` show them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// Where the file is looked for, for a message about it.
#[derive(Debug, Clone)]
pub struct Location {
    /// None when no rule gives a place (no HOME or the like).
    pub path: Option<PathBuf>,
    /// The rule that chose it: `--config`, `env PANICLE_CONFIG`, …
    pub how: String,
}

/// The file as read: its settings (as strings, paths resolved) or nothing.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub location: Location,
    /// None: no file there.
    pub values: Option<BTreeMap<String, String>>,
}

/// Where a setting in effect came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One setting of the command that runs.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: String,
    pub value: Option<String>,
    pub source: Source,
}

/// What the running command was given, and where from.
#[derive(Debug, Clone)]
pub struct Effective {
    pub file: Loaded,
    pub settings: Vec<Setting>,
}

static EFFECTIVE: OnceLock<Effective> = OnceLock::new();

/// The settings of this run; None before `parse` (or for commands that read
/// no config file: `run`, `spool`, `cluster`).
pub fn effective() -> Option<&'static Effective> {
    EFFECTIVE.get()
}

/// Commands that never read the file: `run` and `spool` are wrappers that
/// must not fail over a server's config file, and `cluster` works on files
/// only. Every other command (a new one too) reads it.
const UNCONFIGURED: [&str; 3] = ["run", "spool", "cluster"];

/// Parses the command line twice: once to find the config file, once with
/// the file's values as defaults.
pub fn parse(cmd: Command) -> Result<ArgMatches> {
    let first = cmd.clone().get_matches();
    let Some(name) = first.subcommand_name() else {
        return Ok(first);
    };
    if UNCONFIGURED.contains(&name) {
        return Ok(first);
    }
    let known = known_keys(&cmd);
    let location = locate(&first);
    let loaded = load(location, &known, &cmd)?;
    let cmd = match &loaded.values {
        Some(values) => with_defaults(cmd, values),
        None => cmd,
    };
    let matches = cmd.clone().get_matches();
    let settings = settings_of(&cmd, &matches, &loaded);
    let _ = EFFECTIVE.set(Effective {
        file: loaded,
        settings,
    });
    Ok(matches)
}

/// The key of a flag, if it is a setting: a long flag with an env var.
fn key_of(arg: &clap::Arg) -> Option<String> {
    arg.get_env()?;
    if arg.get_id() == "config" {
        return None;
    }
    arg.get_long().map(|l| l.replace('-', "_"))
}

/// The keys a file may hold: the settings of `serve`, the command that
/// takes them all.
fn known_keys(cmd: &Command) -> Vec<String> {
    cmd.find_subcommand("serve")
        .map(|s| s.get_arguments().filter_map(key_of).collect())
        .unwrap_or_default()
}

fn locate(first: &ArgMatches) -> Location {
    if let Some(path) = first.get_one::<PathBuf>("config") {
        let how = match first.value_source("config") {
            Some(ValueSource::EnvVariable) => "env PANICLE_CONFIG",
            _ => "--config",
        };
        return Location {
            path: Some(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            how: how.into(),
        };
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let (path, how) = if let Some(home) = var("PANICLE_HOME") {
        (
            Some(PathBuf::from(home).join("config.toml")),
            "PANICLE_HOME",
        )
    } else if let Some(xdg) = var("XDG_CONFIG_HOME") {
        (
            Some(PathBuf::from(xdg).join("panicle/config.toml")),
            "XDG_CONFIG_HOME",
        )
    } else if let Some(home) = var("HOME") {
        (
            Some(PathBuf::from(home).join(".config/panicle/config.toml")),
            "HOME",
        )
    } else {
        (
            None,
            "none of PANICLE_CONFIG, PANICLE_HOME, XDG_CONFIG_HOME, HOME is set",
        )
    };
    Location {
        path: path.map(|p| std::path::absolute(&p).unwrap_or(p)),
        how: how.into(),
    }
}

fn load(location: Location, known: &[String], cmd: &Command) -> Result<Loaded> {
    let Some(path) = &location.path else {
        return Ok(Loaded {
            location,
            values: None,
        });
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                location,
                values: None,
            });
        }
        Err(e) => bail!("cannot read the config file {}: {e}", path.display()),
    };
    let values = parse_file(path, &text, known)?;
    if let Some(serve) = cmd.find_subcommand("serve") {
        check_values(path, &values, serve)?;
    }
    Ok(Loaded {
        location,
        values: Some(values),
    })
}

/// The file's settings as the strings a flag would take. Relative paths
/// are taken from the file's directory: the file is read from anywhere.
fn parse_file(path: &Path, text: &str, known: &[String]) -> Result<BTreeMap<String, String>> {
    let table: toml::Table = toml::from_str(text)
        .with_context(|| format!("the config file {} is not valid TOML", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !known.contains(&key) {
            bail!(
                "the config file {} has an unknown key `{key}`; the keys are: {}",
                path.display(),
                known.join(", ")
            );
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "the config file {}: `{key}` must be a string or a number, not {}",
                path.display(),
                other.type_str()
            ),
        };
        let text = if key == "database_url" {
            absolute_sqlite_url(&text, dir)
        } else if is_path_key(&key) && !text.is_empty() {
            dir.join(&text).display().to_string()
        } else {
            text
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// Settings that name a file or a directory (`rules_dir`, `alert_ca_file`, …).
fn is_path_key(key: &str) -> bool {
    key.ends_with("_dir") || key.ends_with("_file")
}

/// Each value checked by its flag's own parser, so a bad one is reported
/// as the file's, with its key, rather than as a flag nobody typed.
fn check_values(path: &Path, values: &BTreeMap<String, String>, serve: &Command) -> Result<()> {
    for arg in serve.get_arguments() {
        let Some(key) = key_of(arg) else { continue };
        let Some(value) = values.get(&key) else {
            continue;
        };
        let probe = arg
            .clone()
            .env(None::<&'static str>)
            .default_value(None::<&'static str>)
            .required(false)
            .global(false);
        let check = Command::new("check")
            .no_binary_name(true)
            .arg(probe)
            .try_get_matches_from([format!("--{}={value}", arg.get_long().unwrap_or(""))]);
        if let Err(e) = check {
            let detail = e
                .render()
                .to_string()
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string();
            bail!(
                "the config file {}: the value of `{key}` is refused: {detail}",
                path.display()
            );
        }
    }
    Ok(())
}

/// Every command's settings get the file's values as their defaults.
fn with_defaults(cmd: Command, values: &BTreeMap<String, String>) -> Command {
    cmd.mut_args(|arg| match key_of(&arg).and_then(|k| values.get(&k)) {
        Some(v) => arg.default_value(v.clone()),
        None => arg,
    })
    .mut_subcommands(|sub| with_defaults(sub, values))
}

/// The settings of the subcommand that runs, with their sources.
fn settings_of(cmd: &Command, matches: &ArgMatches, loaded: &Loaded) -> Vec<Setting> {
    let (mut cmd, mut matches) = (cmd, matches);
    while let Some((name, sub)) = matches.subcommand() {
        let Some(next) = cmd.find_subcommand(name) else {
            break;
        };
        (cmd, matches) = (next, sub);
    }
    let in_file = |key: &str| loaded.values.as_ref().is_some_and(|v| v.contains_key(key));
    let mut settings = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(key) = key_of(arg) else { continue };
        let id = arg.get_id().as_str();
        let value = matches
            .get_raw(id)
            .and_then(|mut v| v.next())
            .map(|v| v.to_string_lossy().into_owned());
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            Some(ValueSource::DefaultValue) if in_file(&key) => {
                Source::File(loaded.location.path.clone().unwrap_or_default())
            }
            _ => Source::Default,
        };
        settings.push(Setting { key, value, source });
    }
    settings
}

impl Effective {
    pub fn source_of(&self, key: &str) -> Option<&Source> {
        self.settings
            .iter()
            .find(|s| s.key == key)
            .map(|s| &s.source)
    }

    /// The file for a message: its path, whether it exists, and why there.
    pub fn file_text(&self) -> String {
        match (&self.file.location.path, &self.file.values) {
            (Some(path), Some(_)) => {
                format!("{} (read; from {})", path.display(), self.file.location.how)
            }
            (Some(path), None) => format!(
                "{} (none there; from {})",
                path.display(),
                self.file.location.how
            ),
            (None, _) => format!("none ({})", self.file.location.how),
        }
    }

    /// The file's own value of `key`, whether or not it is in effect.
    pub fn file_value(&self, key: &str) -> Option<&str> {
        self.file
            .values
            .as_ref()
            .and_then(|v| v.get(key))
            .map(String::as_str)
    }
}

/// A `sqlite:` URL with a relative path made absolute against `base`;
/// other URLs as they are.
pub fn absolute_sqlite_url(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return url.to_string();
    };
    let rest = rest.trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return url.to_string();
    }
    let joined = base.join(path);
    // `./panicle-data` under /a reads better as /a/panicle-data.
    let clean: PathBuf = joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    match query {
        Some(q) => format!("sqlite://{}?{q}", clean.display()),
        None => format!("sqlite://{}", clean.display()),
    }
}

/// A TOML basic string: the value written back as the parser reads it.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What `serve` does with the file on start: records the database it uses
/// when the file does not name one, so the other commands find it from
/// any directory. Returns the file written, if any.
pub fn record_database_url(url: &str) -> Result<Option<PathBuf>> {
    let Some(effective) = effective() else {
        return Ok(None);
    };
    if effective.file_value("database_url").is_some() {
        return Ok(None);
    }
    let Some(path) = &effective.file.location.path else {
        return Ok(None);
    };
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let url = absolute_sqlite_url(url, &cwd);
    let line = format!(
        "# Written by `panicle serve`: the database the other commands use.\ndatabase_url = {}\n",
        toml_string(&url)
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let text = match existing {
        // A flat file: a key appended at the end is a top-level key.
        Some(old) if old.is_empty() || old.ends_with('\n') => format!("{old}{line}"),
        Some(old) => format!("{old}\n{line}"),
        None => line,
    };
    write_private(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path.clone()))
}

/// The file may hold a PostgreSQL password: readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// `panicle config`: each setting, its value (passwords hidden) and where
/// it came from.
pub fn print(redact: impl Fn(&str) -> String) {
    let Some(effective) = effective() else {
        return;
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    println!("config file: {}", effective.file_text());
    println!("SETTING\tVALUE\tSOURCE");
    for s in &effective.settings {
        // The default SQLite path is relative: the file it means here.
        let value = s
            .value
            .as_deref()
            .map(|v| match s.key.as_str() {
                "database_url" => redact(&absolute_sqlite_url(v, &cwd)),
                _ => redact(v),
            })
            .unwrap_or_else(|| "(unset)".into());
        println!("{}\t{}\t{}", s.key, value, s.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_paths_become_absolute() {
        let base = Path::new("/srv/a");
        assert_eq!(
            absolute_sqlite_url("sqlite://./panicle-data/panicle.db", base),
            "sqlite:///srv/a/panicle-data/panicle.db"
        );
        assert_eq!(
            absolute_sqlite_url("sqlite:x.db?mode=rw", base),
            "sqlite:///srv/a/x.db?mode=rw"
        );
        assert_eq!(
            absolute_sqlite_url("sqlite:///data/p.db", base),
            "sqlite:///data/p.db"
        );
        assert_eq!(
            absolute_sqlite_url("postgres://u:p@h/db", base),
            "postgres://u:p@h/db"
        );
    }

    #[test]
    fn strings_round_trip_through_toml() {
        let nasty = "sqlite:///tmp/a \"b\"\\c\td.db";
        let text = format!("database_url = {}\n", toml_string(nasty));
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(table["database_url"].as_str(), Some(nasty));
    }

    #[test]
    fn file_errors_name_the_file_the_key_and_the_line() {
        let known = vec!["listen".to_string(), "database_url".to_string()];
        let path = Path::new("/etc/p/config.toml");
        let err = parse_file(path, "listen = \"x\"\nlisen = 1\n", &known).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("unknown key `lisen`") && text.contains("/etc/p/config.toml"),
            "{text}"
        );
        let err = parse_file(path, "listen = \"x\"\ndatabase_url = \n", &known).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("line 2") && text.contains("/etc/p/config.toml"),
            "{text}"
        );
        let values = parse_file(path, "database_url = \"sqlite://p.db\"\n", &known).unwrap();
        assert_eq!(values["database_url"], "sqlite:///etc/p/p.db");
    }
}
