//! The Dockerfile agrees with the repository. No Docker engine runs here, so
//! each of its commands and paths is checked against what the workspace
//! builds and serves: the files it copies exist and are not left out of the
//! build context, `cargo build` names a package whose binary is what the
//! image copies and runs, the image runs as a user other than root, the port
//! it exposes is the server's, and its HEALTHCHECK command, run as written
//! against the real server, passes when `/readyz` answers and fails when
//! nothing listens. docker-compose.yml uses the same port and leaves the
//! health check to the image.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{PANICLE, Server};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One Dockerfile instruction, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    /// Index of the build stage (`FROM`) it belongs to.
    stage: usize,
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let whole = std::mem::take(&mut pending);
        let (keyword, args) = whole
            .split_once(char::is_whitespace)
            .unwrap_or((&whole, ""));
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" && !out.is_empty() {
            stage += 1;
        }
        out.push(Instruction {
            stage,
            keyword,
            args: args.trim().to_string(),
        });
    }
    out
}

struct Dockerfile {
    instructions: Vec<Instruction>,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
        Dockerfile {
            instructions: instructions(&text),
        }
    }

    fn last_stage(&self) -> usize {
        self.instructions.last().unwrap().stage
    }

    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    /// The final stage's one instruction of `keyword`.
    fn in_final(&self, keyword: &str) -> &Instruction {
        let last = self.last_stage();
        let found: Vec<_> = self.all(keyword).filter(|i| i.stage == last).collect();
        assert_eq!(
            found.len(),
            1,
            "the final stage needs exactly one {keyword}: {found:?}"
        );
        found[0]
    }

    /// The alias (`FROM image AS alias`) of the stage `stage`.
    fn stage_name(&self, stage: usize) -> Option<String> {
        let from = self.all("FROM").find(|i| i.stage == stage)?;
        let words: Vec<&str> = from.args.split_whitespace().collect();
        match words.as_slice() {
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
            _ => None,
        }
    }
}

/// `KEY=VALUE` of `ENV` lines of the final stage.
fn final_env(docker: &Dockerfile, key: &str) -> Option<String> {
    let last = docker.last_stage();
    docker
        .all("ENV")
        .filter(|i| i.stage == last)
        .flat_map(|i| i.args.split_whitespace().map(str::to_string))
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Splits off `--flag=value` words; returns (flags, the rest).
fn flags_and_rest(args: &str) -> (Vec<&str>, Vec<&str>) {
    args.split_whitespace().partition(|w| w.starts_with("--"))
}

/// A JSON-array (`["a", "b"]`) instruction's words.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec-form array: {args}: {e}"))
}

/// The workspace's packages: (package name, manifest text).
fn workspace_packages(root: &Path) -> Vec<(String, String)> {
    let mut packages = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = toml_value(&text, "package", "name").expect("package name");
        packages.push((name, text));
    }
    packages
}

/// The value of `key = "…"` in the first `[section]` (or `[[section]]`).
fn toml_value(manifest: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line.trim_matches(|c| c == '[' || c == ']') == section;
            continue;
        }
        if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}

#[test]
fn the_image_is_built_in_one_stage_and_run_from_another() {
    let docker = Dockerfile::load();
    let froms: Vec<_> = docker.all("FROM").collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    let build_image = froms[0].args.split_whitespace().next().unwrap();
    let run_image = froms
        .last()
        .unwrap()
        .args
        .split_whitespace()
        .next()
        .unwrap();
    assert_ne!(
        build_image, run_image,
        "the image that runs should not carry the build toolchain"
    );
    let build_stage = docker.stage_name(0).expect("the build stage has a name");
    let copy = docker.in_final("COPY");
    assert!(
        copy.args.contains(&format!("--from={build_stage}")),
        "the final stage copies from {build_stage}: {copy:?}"
    );
}

#[test]
fn copied_paths_exist_and_the_build_context_keeps_what_the_build_reads() {
    let root = repo_root();
    let docker = Dockerfile::load();
    let mut copies_context = false;
    for copy in docker.all("COPY").chain(docker.all("ADD")) {
        let (flags, paths) = flags_and_rest(&copy.args);
        if flags.iter().any(|f| f.starts_with("--from=")) {
            continue;
        }
        let (_dest, sources) = paths.split_last().expect("COPY needs a destination");
        for source in sources {
            assert!(
                root.join(source).exists(),
                "COPY {source}: not in the repository"
            );
            copies_context = true;
        }
    }
    assert!(copies_context, "the build stage copies no sources");

    // What the build reads: the manifests, every workspace member, and every
    // file the crates compile in (include_str!, include_bytes!, RustEmbed).
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        ignored.contains(&"target"),
        ".dockerignore should leave out target/ (gigabytes of build output)"
    );
    let mut needed = vec![
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
        root.join("examples/shop"),
    ];
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        needed.push(dir.clone());
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        sources.extend(files.into_iter().map(|f| (dir.clone(), f)));
    }
    for (crate_dir, file) in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        // include_*! paths are relative to the file, RustEmbed's to the crate.
        let markers = [
            ("include_str!(\"", file.parent().unwrap()),
            ("include_bytes!(\"", file.parent().unwrap()),
            ("#[folder = \"", crate_dir.as_path()),
        ];
        for (marker, base) in markers {
            for piece in text.split(marker).skip(1) {
                let relative = piece.split('"').next().unwrap();
                let path = base.join(relative);
                needed.push(
                    path.canonicalize().unwrap_or_else(|_| {
                        panic!("{}: {relative} does not exist", file.display())
                    }),
                );
            }
        }
    }
    for path in needed {
        let inside = path.strip_prefix(&root).unwrap();
        for pattern in &ignored {
            assert!(
                !pattern.contains(['*', '?', '[', '!']),
                ".dockerignore pattern {pattern:?}: this test reads plain paths only"
            );
            assert!(
                !inside.starts_with(pattern),
                ".dockerignore's {pattern:?} leaves {} out of the build",
                inside.display()
            );
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_image_builds_copies_and_runs_the_panicle_binary() {
    let root = repo_root();
    let docker = Dockerfile::load();
    let build = docker
        .all("RUN")
        .find(|i| i.args.contains("cargo build"))
        .expect("a RUN with cargo build");
    assert_eq!(build.stage, 0, "cargo build runs in the build stage");
    let words: Vec<&str> = build.args.split_whitespace().collect();
    assert!(words.contains(&"--release"), "{}", build.args);
    assert!(
        words.contains(&"--locked"),
        "the image should build the versions in Cargo.lock: {}",
        build.args
    );
    let package = words
        .iter()
        .skip_while(|w| **w != "-p")
        .nth(1)
        .unwrap_or_else(|| panic!("cargo build names no package (-p): {}", build.args));
    let packages = workspace_packages(&root);
    let (_, manifest) = packages
        .iter()
        .find(|(name, _)| name == package)
        .unwrap_or_else(|| panic!("no workspace package {package}"));
    let bin = toml_value(manifest, "bin", "name").unwrap_or_else(|| package.to_string());
    assert_eq!(
        Path::new(PANICLE).file_name().unwrap(),
        bin.as_str(),
        "{package}'s binary is the one these tests run"
    );

    // The build stage puts target/release/<bin> somewhere; the final stage
    // copies that file and runs it.
    let built = format!("target/release/{bin}");
    let placed = words
        .windows(3)
        .find(|w| w[0] == "cp" && w[1] == built)
        .map(|w| w[2].to_string())
        .unwrap_or_else(|| panic!("the build stage copies no {built} out: {}", build.args));
    let copy = docker.in_final("COPY");
    let (_, paths) = flags_and_rest(&copy.args);
    assert_eq!(
        paths,
        [placed.as_str(), placed.as_str()],
        "the final stage copies {placed} to the same path"
    );
    let entrypoint = exec_form(&docker.in_final("ENTRYPOINT").args);
    assert!(
        entrypoint[0] == bin || entrypoint[0] == placed,
        "ENTRYPOINT runs {:?}, not {bin}",
        entrypoint[0]
    );
    let cmd = exec_form(&docker.in_final("CMD").args);
    assert_eq!(cmd, ["serve"]);
    // `panicle serve` is a command the binary has.
    let help = Command::new(PANICLE)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "panicle serve --help failed");
}

#[test]
fn the_image_runs_as_a_user_it_creates_not_root() {
    let docker = Dockerfile::load();
    let user = &docker.in_final("USER").args;
    let name = user.split(':').next().unwrap();
    assert!(
        !matches!(name, "root" | "0" | ""),
        "the server should not run as root: USER {user}"
    );
    let last = docker.last_stage();
    let creates = docker
        .all("RUN")
        .filter(|i| i.stage == last)
        .any(|i| i.args.contains("useradd") && i.args.split_whitespace().any(|w| w == name));
    assert!(creates, "the final stage does not create user {name}");
}

#[test]
fn the_exposed_port_is_the_servers_and_compose_agrees() {
    let docker = Dockerfile::load();
    let exposed: u16 = docker.in_final("EXPOSE").args.parse().expect("one port");
    // The default `serve` listens on, as the binary itself reports it.
    let help = Command::new(PANICLE)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let listen_help = help
        .split("--listen")
        .nth(1)
        .expect("serve --help shows --listen");
    let default = listen_help
        .split("[default: ")
        .nth(1)
        .and_then(|d| d.split(']').next())
        .expect("--listen has a default");
    assert_eq!(
        exposed,
        port_of(default),
        "EXPOSE vs the default listen address"
    );
    let listen = final_env(&docker, "PANICLE_LISTEN").expect("ENV PANICLE_LISTEN");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "in a container the server listens on every interface: {listen}"
    );
    assert_eq!(port_of(&listen), exposed, "PANICLE_LISTEN vs EXPOSE");

    let compose = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let service = compose
        .split("\n  panicle:\n")
        .nth(1)
        .expect("docker-compose.yml has a panicle service");
    let service: String = service
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        service.contains("build: ."),
        "compose builds this Dockerfile"
    );
    let compose_listen = service
        .lines()
        .find_map(|l| l.trim().strip_prefix("PANICLE_LISTEN:"))
        .map(str::trim)
        .expect("compose sets PANICLE_LISTEN");
    assert_eq!(port_of(compose_listen), exposed, "compose's PANICLE_LISTEN");
    assert!(
        service.contains(&format!(":{exposed}\"")),
        "compose publishes the container's port {exposed}: {service}"
    );
    assert!(
        !service.contains("healthcheck:"),
        "compose should use the image's HEALTHCHECK (on /readyz), not its own: {service}"
    );
}

/// The HEALTHCHECK's command, as the container's shell would run it.
fn healthcheck_command(docker: &Dockerfile) -> String {
    let check = &docker.in_final("HEALTHCHECK").args;
    let (_, command) = check
        .split_once(" CMD ")
        .or_else(|| check.strip_prefix("CMD ").map(|c| ("", c)))
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {check}"));
    command.trim().to_string()
}

/// The path a health check command requests: after `GET ` (a raw HTTP
/// request) or after the host of an `http://` URL (curl, wget).
fn requested_path(command: &str) -> String {
    let after = if let Some((_, rest)) = command.split_once("GET ") {
        rest
    } else if let Some((_, rest)) = command.split_once("://") {
        &rest[rest.find('/').unwrap_or(rest.len())..]
    } else {
        panic!("no request in the health check: {command}")
    };
    after
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '?')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_healthcheck_passes_when_readyz_answers_and_fails_when_nothing_listens() {
    let docker = Dockerfile::load();
    let command = healthcheck_command(&docker);
    let path = requested_path(&command);
    assert_eq!(
        path, "/readyz",
        "the health check should ask /readyz (the database answers): {command}"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let server = Server::start(&url);
    // /readyz is a route of the server's own (the dashboard answers 200 to
    // any other path, so a passing check alone would not show it).
    let (status, openapi) = server.get("/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(
        openapi["paths"][&path]["get"].is_object(),
        "the server has no GET {path} route"
    );

    // The container runs it with the image's environment; here the listen
    // address is the test server's.
    let listen = server.base.trim_start_matches("http://").to_string();
    let run = |listen: &str| {
        Command::new("sh")
            .args(["-c", &command])
            .env("PANICLE_LISTEN", listen)
            .output()
            .expect("run the health check")
    };
    let ready = run(&listen);
    assert!(
        ready.status.success(),
        "health check failed against a ready server: {}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unused = free.local_addr().unwrap().to_string();
    drop(free);
    assert!(
        !run(&unused).status.success(),
        "health check passed with nothing listening on {unused}"
    );
}
