//! The demo built and then `strip`ped still reports its panic with every
//! frame's address, the executable's GNU build-id and module offsets, and
//! those offsets symbolize against the unstripped build (as a server would).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use object::Object;

fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join("demo");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "panicle", "--example", "demo"])
            .status()
            .unwrap();
        assert!(status.success(), "building the demo failed");
    }
    path
}

#[test]
fn stripped_demo_reports_addresses_and_build_id() {
    let server = common::TestServer::start();
    let original = demo_binary();
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("demo");
    std::fs::copy(&original, &stripped).unwrap();
    let status = Command::new("strip")
        .arg(&stripped)
        .status()
        .expect("run strip");
    assert!(status.success());

    let original_bytes = std::fs::read(&original).unwrap();
    let original_obj = object::File::parse(&*original_bytes).unwrap();
    let build_id: String = original_obj
        .build_id()
        .unwrap()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stripped_bytes = std::fs::read(&stripped).unwrap();
    let stripped_obj = object::File::parse(&*stripped_bytes).unwrap();
    assert!(
        stripped_obj.section_by_name(".debug_line").is_none(),
        "strip removed the debug info"
    );
    assert!(
        stripped_obj.section_by_name(".symtab").is_none(),
        "strip removed the symbol table"
    );

    let out = Command::new(&stripped)
        .arg("unwrap-none")
        .env("PANICLE_DSN", &server.dsn)
        .env("PANICLE_SPOOL_DIR", dir.path().join("spool"))
        .env("OTEL_SERVICE_NAME", "demo-stripped")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let events = server.wait_for_events(1);
    let event = events
        .first()
        .expect("the stripped demo's panic was stored");
    assert_eq!(event.message, "called `Option::unwrap()` on a `None` value");
    assert!(event.frames.len() >= 5, "{:?}", event.frames);
    let in_exe: Vec<_> = event
        .frames
        .iter()
        .filter(|f| f.build_id.as_deref() == Some(&build_id))
        .collect();
    assert!(
        in_exe.len() >= 5,
        "frames carry the executable's build-id {build_id}: {:#?}",
        event.frames
    );
    for f in &event.frames {
        assert!(
            f.instruction_addr
                .as_deref()
                .is_some_and(|a| a.starts_with("0x"))
        );
    }

    // Symbolized later from the unstripped build, as a server would.
    let loader = addr2line::Loader::new(&original).unwrap();
    let names: Vec<String> = in_exe
        .iter()
        .filter_map(|f| {
            let offset =
                u64::from_str_radix(f.module_offset.as_deref()?.trim_start_matches("0x"), 16)
                    .ok()?;
            let name = loader.find_symbol(offset - 1)?;
            Some(format!("{:#}", rustc_demangle::demangle(name)))
        })
        .collect();
    assert!(
        names.iter().any(|n| n == "demo::orders::reserve"),
        "{names:#?}"
    );
    assert!(names.iter().any(|n| n == "demo::main"), "{names:#?}");
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .expect("binutils (objcopy, strip) are installed");
    assert!(status.success(), "{cmd:?}");
}

/// A copy of `original` in `dir` stripped of everything (`strip
/// --strip-all`), and its debug info split off beside it (`objcopy
/// --only-keep-debug`): (executable, debug file).
fn split_debug_info(original: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let exe = dir.join("demo");
    let debug = dir.join("demo.debug");
    std::fs::copy(original, &exe).unwrap();
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&exe)
        .arg(&debug));
    run(Command::new("strip").arg("--strip-all").arg(&exe));
    (exe, debug)
}

/// Function, file, line, in-app.
type Named = (Option<String>, Option<String>, Option<u32>, Option<bool>);

/// What a frame says once symbolized: the parts a stripped build must not lose.
fn named(frames: &[panicle::protocol::Frame]) -> Vec<Named> {
    frames
        .iter()
        .map(|f| (f.function.clone(), f.file.clone(), f.line, f.in_app))
        .collect()
}

/// Runs `exe unwrap-none` against a fresh server and returns the event.
fn panic_of(exe: &Path, spool: &Path) -> panicle::protocol::Event {
    panic_on(&common::TestServer::start(), exe, spool, "auto")
}

/// Issue 18: a stripped build whose debug info was split off with
/// `objcopy --only-keep-debug` and linked back with `--add-gnu-debuglink`
/// symbolizes on the spot exactly as the unstripped build does.
#[test]
fn a_stripped_demo_follows_its_debuglink_to_the_same_frames() {
    let original = demo_binary();
    let dir = tempfile::tempdir().unwrap();
    let (exe, debug) = split_debug_info(&original, dir.path());
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&exe));
    let bytes = std::fs::read(&exe).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    assert!(obj.section_by_name(".debug_line").is_none(), "stripped");
    assert!(obj.section_by_name(".symtab").is_none(), "stripped");

    let unstripped = panic_of(&original, &dir.path().join("spool-a"));
    let split = panic_of(&exe, &dir.path().join("spool-b"));
    assert_eq!(
        split.frames[0].function.as_deref(),
        Some("demo::orders::reserve"),
        "{:#?}",
        split.frames
    );
    assert!(split.frames[0].line.is_some(), "{:#?}", split.frames);
    assert_eq!(named(&split.frames), named(&unstripped.frames));
}

/// Runs `exe unwrap-none` against `server` and returns the new event.
fn panic_on(
    server: &common::TestServer,
    exe: &Path,
    spool: &Path,
    symbolize: &str,
) -> panicle::protocol::Event {
    let before: Vec<String> = server.events().into_iter().map(|e| e.event_id).collect();
    let out = Command::new(exe)
        .arg("unwrap-none")
        .env("PANICLE_SYMBOLIZE", symbolize)
        .env("PANICLE_DSN", &server.dsn)
        .env("PANICLE_SPOOL_DIR", spool)
        .env("OTEL_SERVICE_NAME", "demo")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
        .wait_for_events(before.len() + 1)
        .into_iter()
        .find(|e| !before.contains(&e.event_id))
        .expect("the panic was stored")
}

/// Issue 18: a fully stripped build (no symbols, no DWARF, no debuglink)
/// reports bare addresses; once its `objcopy --only-keep-debug` file is
/// uploaded, the server names the stored event and moves it to the group
/// the unstripped build's panic is in, and names new ones at ingest — the
/// same frames (function, file, line, in-app) the unstripped build reports.
#[test]
fn a_stripped_demo_is_named_by_the_server_from_its_debug_file() {
    let original = demo_binary();
    let dir = tempfile::tempdir().unwrap();
    let (exe, debug) = split_debug_info(&original, dir.path());
    let debug_files = dir.path().join("debug-files");
    let server = common::TestServer::start_with(panicle_server::ServerConfig {
        debug_files_dir: debug_files.clone(),
        ..panicle_server::ServerConfig::default()
    });

    let unstripped = panic_on(&server, &original, &dir.path().join("spool-a"), "local");
    assert_eq!(
        unstripped.frames[0].function.as_deref(),
        Some("demo::orders::reserve")
    );
    let bare = panic_on(&server, &exe, &dir.path().join("spool-b"), "auto");
    assert!(
        bare.frames.iter().all(|f| f.function.is_none()),
        "no debug file yet: addresses only {:#?}",
        bare.frames
    );
    let build_id = bare.frames[0].build_id.clone().expect("a build-id");
    assert_ne!(
        server.group_of(&bare.event_id),
        server.group_of(&unstripped.event_id)
    );

    // The debug file is uploaded, as CI would (`panicle debug-files upload`
    // posts the same request); the stored event is named in the background.
    let token = server.block_on(server.store.create_token("ci")).unwrap();
    let answer = ureq::post(&format!(
        "{}/api/v1/debug-files?name=demo.debug",
        server.url
    ))
    .header("Authorization", &format!("Bearer {token}"))
    .header("Content-Type", "application/octet-stream")
    .send(std::fs::read(&debug).unwrap())
    .expect("the upload is taken");
    assert_eq!(answer.status().as_u16(), 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.group_of(&bare.event_id) != server.group_of(&unstripped.event_id)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        debug_files
            .join(&build_id[..2])
            .join(format!("{}.debug", &build_id[2..]))
            .is_file()
    );

    let again = server
        .events()
        .into_iter()
        .find(|e| e.event_id == bare.event_id)
        .unwrap();
    assert_eq!(named(&again.frames), named(&unstripped.frames));
    assert_eq!(
        server.group_of(&bare.event_id),
        server.group_of(&unstripped.event_id),
        "moved to the unstripped build's group"
    );
    // Its first frame keeps the address, build-id and offset it came with.
    assert_eq!(again.frames[0].build_id.as_deref(), Some(build_id.as_str()));

    // A new panic of the stripped build is named at ingest.
    let fresh = panic_on(&server, &exe, &dir.path().join("spool-c"), "auto");
    assert_eq!(named(&fresh.frames), named(&unstripped.frames));
    assert_eq!(
        server.group_of(&fresh.event_id),
        server.group_of(&unstripped.event_id)
    );

    // The unstripped build told to leave names to the server (`symbolize =
    // Server`): addresses only leave the process, the same frames come out.
    let by_server = panic_on(&server, &original, &dir.path().join("spool-d"), "server");
    assert_eq!(named(&by_server.frames), named(&unstripped.frames));
    assert_eq!(
        server.group_of(&by_server.event_id),
        server.group_of(&unstripped.event_id)
    );
}
