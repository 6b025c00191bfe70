//! The config file, seen through the real binary: precedence (file < env <
//! flag) as `panicle config` reports it, the file `serve` writes so that
//! commands run from another directory find its database, and commands
//! other than `serve` that create nothing when there is no database.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary with an environment of only what is given: a developer's
/// own DATABASE_URL, PANICLE_* or config file never leaks in.
fn panicle(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(common::PANICLE)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run panicle")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `panicle config`'s rows: setting → (value, source).
fn rows(stdout: &str) -> std::collections::HashMap<String, (String, String)> {
    stdout
        .lines()
        .skip(2)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((
                cols.next()?.to_string(),
                (cols.next()?.to_string(), cols.next()?.to_string()),
            ))
        })
        .collect()
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let file = home.join("config.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9911\"\n\
         rate_limit = 5\n\
         rate_burst = 7\n\
         retention_days = 30\n\
         database_url = \"sqlite://data/p.db\"\n\
         rules_dir = \"rules\"\n",
    )
    .unwrap();
    let home_s = home.to_str().unwrap();
    let out = panicle(
        root.path(),
        &[
            ("PANICLE_HOME", home_s),
            ("PANICLE_RATE_LIMIT", "6"),
            ("PANICLE_RETENTION_DAYS", "31"),
        ],
        &["config", "--rate-burst", "8", "--retention-days", "32"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        format!("config file: {} (read; from PANICLE_HOME)", file.display())
    );
    let shown = rows(&stdout);
    let from_file = format!("file {}", file.display());
    assert_eq!(
        shown["listen"],
        ("127.0.0.1:9911".into(), from_file.clone())
    );
    assert_eq!(
        shown["rate_limit"],
        ("6".into(), "env PANICLE_RATE_LIMIT".into())
    );
    assert_eq!(shown["rate_burst"], ("8".into(), "flag".into()));
    assert_eq!(shown["retention_days"], ("32".into(), "flag".into()));
    assert_eq!(
        shown["max_body_bytes"],
        ("1048576".into(), "default".into())
    );
    assert_eq!(shown["public_url"], ("(unset)".into(), "default".into()));
    // The default SQLite path is shown as the file it means here.
    let out = panicle(root.path(), &[], &["config"]);
    assert_eq!(
        rows(&text(&out.stdout))["database_url"],
        (
            format!("sqlite://{}/panicle-data/panicle.db", root.path().display()),
            "default".into()
        )
    );
    // Paths in the file are the file's: it is read from any directory.
    assert_eq!(
        shown["database_url"],
        (
            format!("sqlite://{}/data/p.db", home.display()),
            from_file.clone()
        )
    );
    assert_eq!(
        shown["rules_dir"],
        (home.join("rules").display().to_string(), from_file)
    );
    // Every setting of `serve` is listed, each once (all but --config,
    // which names the file).
    let help = text(&panicle(root.path(), &[], &["serve", "--help"]).stdout);
    let envs = help.matches("[env: ").count();
    assert_eq!(shown.len(), envs - 1, "{stdout}\n{help}");

    // What the file says is what the commands use, not only what is shown:
    // the DSN `project create` prints is on the file's listen address.
    let db = root.path().join("made.db");
    let store = tokio::runtime::Runtime::new().unwrap().block_on(async {
        panicle_store::Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap()
    });
    drop(store);
    let url = format!("sqlite://{}", db.display());
    let out = panicle(
        root.path(),
        &[("PANICLE_HOME", home_s), ("DATABASE_URL", &url)],
        &["project", "create", "shop"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("@127.0.0.1:9911/"),
        "{}",
        text(&out.stdout)
    );

    // A password is never printed.
    let out = panicle(
        root.path(),
        &[
            ("PANICLE_HOME", home_s),
            ("DATABASE_URL", "postgres://u:s3cret@db.internal/panicle"),
        ],
        &["config"],
    );
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert_eq!(
        rows(&stdout)["database_url"],
        (
            "postgres://u:***@db.internal/panicle".into(),
            "env DATABASE_URL".into()
        )
    );
}

#[test]
fn the_file_is_found_by_config_then_panicle_home_then_xdg_then_home() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let first_line = |env: &[(&str, &str)], args: &[&str]| {
        let out = panicle(root.path(), env, args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().next().unwrap().to_string()
    };
    assert_eq!(
        first_line(&[("HOME", r)], &["config"]),
        format!("config file: {r}/.config/panicle/config.toml (none there; from HOME)")
    );
    let xdg = format!("{r}/xdg");
    assert_eq!(
        first_line(&[("HOME", r), ("XDG_CONFIG_HOME", &xdg)], &["config"]),
        format!("config file: {r}/xdg/panicle/config.toml (none there; from XDG_CONFIG_HOME)")
    );
    let ph = format!("{r}/ph");
    let env = [
        ("HOME", r),
        ("XDG_CONFIG_HOME", &xdg),
        ("PANICLE_HOME", &ph),
    ];
    assert_eq!(
        first_line(&env, &["config"]),
        format!("config file: {r}/ph/config.toml (none there; from PANICLE_HOME)")
    );
    std::fs::write(root.path().join("c.toml"), "listen = \"127.0.0.1:1\"\n").unwrap();
    let c = format!("{r}/c.toml");
    let mut with_env = env.to_vec();
    with_env.push(("PANICLE_CONFIG", &c));
    assert_eq!(
        first_line(&with_env, &["config"]),
        format!("config file: {c} (read; from env PANICLE_CONFIG)")
    );
    assert_eq!(
        first_line(&with_env, &["config", "--config", "other.toml"]),
        format!("config file: {r}/other.toml (none there; from --config)")
    );
}

#[test]
fn a_bad_file_is_an_error_naming_the_file_and_what_is_wrong() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("config.toml");
    let name = file.display().to_string();
    let home = root.path().to_str().unwrap();
    let fails = |content: &str, args: &[&str]| {
        std::fs::write(&file, content).unwrap();
        let out = panicle(root.path(), &[("PANICLE_HOME", home)], args);
        assert_eq!(out.status.code(), Some(1), "{content}");
        text(&out.stderr)
    };
    let err = fails("listen = \"127.0.0.1:1\"\nlisen = \"x\"\n", &["config"]);
    assert!(
        err.contains(&name) && err.contains("unknown key `lisen`"),
        "{err}"
    );
    let err = fails(
        "listen = \"127.0.0.1:1\"\nrate_limit = \n",
        &["project", "list"],
    );
    assert!(err.contains(&name) && err.contains("line 2"), "{err}");
    let err = fails("max_connections = 0\n", &["serve"]);
    assert!(
        err.contains(&name)
            && err.contains("`max_connections`")
            && err.contains("--max-connections"),
        "{err}"
    );
    let err = fails("listen = [\"a\"]\n", &["token", "list"]);
    assert!(
        err.contains(&name) && err.contains("string or a number"),
        "{err}"
    );
    // The wrappers never read the server's file: a broken one cannot stop them.
    let path = std::env::var("PATH").unwrap_or_default();
    let out = panicle(
        root.path(),
        &[("PANICLE_HOME", home), ("PATH", &path)],
        &["run", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Runs `panicle serve` (default database URL) in `cwd` until it listens;
/// returns the child and the first-start DSN, if it printed one.
fn serve_in(cwd: &Path, home: &Path, log: &Path) -> (std::process::Child, Option<String>) {
    let mut child = Command::new(common::PANICLE)
        .arg("serve")
        .current_dir(cwd)
        .env_clear()
        .env("PANICLE_HOME", home)
        .env("PANICLE_LISTEN", "127.0.0.1:0")
        .env("PANICLE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut dsn = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(d) = line.trim().strip_prefix("DSN:") {
            dsn = Some(d.trim().to_string());
        }
        if line.starts_with("panicle listening on") {
            std::thread::spawn(move || for _ in lines {});
            return (child, dsn);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve stopped: {}", std::fs::read_to_string(log).unwrap());
}

#[test]
fn serve_records_its_database_and_commands_elsewhere_find_it() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, home) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("home"),
    );
    for d in [&a, &b] {
        std::fs::create_dir(d).unwrap();
    }
    let file = home.join("config.toml");
    let home_s = home.to_str().unwrap();

    // No config and no database: each command refuses, creates nothing,
    // and says where it looked and how to point it elsewhere.
    for args in [
        &["project", "list"][..],
        &["project", "create", "shop"],
        &["token", "create"],
        &["token", "list"],
        &["alert", "list"],
    ] {
        let out = panicle(&b, &[("PANICLE_HOME", home_s)], args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        let looked = b.join("panicle-data/panicle.db");
        assert!(
            err.contains(&format!("no database at {}", looked.display()))
                && err.contains(&format!(
                    "{} (none there; from PANICLE_HOME)",
                    file.display()
                ))
                && err.contains("--database-url")
                && err.contains("DATABASE_URL")
                && err.contains("panicle serve"),
            "{args:?}: {err}"
        );
        assert!(!b.join("panicle-data").exists(), "{args:?} made a database");
        assert!(!home.exists(), "{args:?} made a config");
    }

    // `serve` in a: its database there, its URL in the file, and the log says so.
    let log = root.path().join("serve-a.log");
    let (mut server, dsn) = serve_in(&a, &home, &log);
    let dsn = dsn.expect("a first start prints a DSN");
    let db = a.join("panicle-data/panicle.db");
    assert!(db.is_file());
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains(&format!("database_url = \"sqlite://{}\"", db.display())),
        "{written}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the file may hold a password: {mode:o}");
    }
    let _ = server.kill();
    let _ = server.wait();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("database URL recorded in the config file")
            && log_text.contains(&file.display().to_string()),
        "{log_text}"
    );

    // From b, the same database: the project serve made, with its key.
    let out = panicle(&b, &[("PANICLE_HOME", home_s)], &["project", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let key = dsn
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap();
    assert!(list.contains("\tdefault\t") && list.contains(key), "{list}");
    let out = panicle(&b, &[("PANICLE_HOME", home_s)], &["token", "create"]);
    assert!(
        text(&out.stdout).starts_with("pnk_"),
        "{}",
        text(&out.stderr)
    );
    let out = panicle(&b, &[("PANICLE_HOME", home_s)], &["config"]);
    let shown = rows(&text(&out.stdout));
    assert_eq!(
        shown["database_url"],
        (
            format!("sqlite://{}", db.display()),
            format!("file {}", file.display())
        )
    );
    assert!(!b.join("panicle-data").exists());

    // A second `serve`, from b, serves that database too (no first start),
    // and leaves the file as it was.
    let (mut again, dsn) = serve_in(&b, &home, &root.path().join("serve-b.log"));
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(dsn, None, "the second serve made a new database");
    assert!(!b.join("panicle-data").exists());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // A flag still wins over the file, and the error says it came from the flag.
    let none = format!("sqlite://{}/none.db", b.display());
    let out = panicle(
        &b,
        &[("PANICLE_HOME", home_s)],
        &["project", "list", "--database-url", &none],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("the URL came from --database-url"), "{err}");
    assert!(!b.join("none.db").exists());
}

#[test]
fn serve_adds_database_url_to_a_file_that_lacks_it_and_keeps_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let file = home.join("config.toml");
    // No newline at the end: the appended key must still be a key of its own.
    std::fs::write(&file, "# mine\nrate_limit = 5").unwrap();
    let (mut server, dsn) = serve_in(root.path(), &home, &root.path().join("serve.log"));
    let _ = server.kill();
    let _ = server.wait();
    assert!(dsn.is_some());
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with("# mine\nrate_limit = 5\n"), "{written}");
    let out = panicle(
        root.path(),
        &[("PANICLE_HOME", home.to_str().unwrap())],
        &["config"],
    );
    let shown = rows(&text(&out.stdout));
    let from_file = format!("file {}", file.display());
    assert_eq!(shown["rate_limit"], ("5".into(), from_file.clone()));
    assert_eq!(
        shown["database_url"],
        (
            format!("sqlite://{}/panicle-data/panicle.db", root.path().display()),
            from_file
        )
    );
}
