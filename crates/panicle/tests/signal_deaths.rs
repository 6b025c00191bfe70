//! Deaths by signal with the SDK (issue 17): the `crash` example overflows
//! its stack, raises SIGSEGV, writes through a bad pointer; it dies by its
//! signal as the shell sees it, and its next start ships exactly one event
//! of kind `signal`, its frames symbolized, to a real server.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use panicle::protocol::{Event, Kind};

/// The `crash` example, built once (a no-op when cargo already built it).
fn crash_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "panicle", "--example", "crash"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building the crash example failed");
        profile_dir.join("examples").join("crash")
    })
}

fn run(mode: &str, dsn: &str, spool: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(crash_binary());
    command
        .arg(mode)
        .env("PANICLE_DSN", dsn)
        .env("PANICLE_SPOOL_DIR", spool)
        .env("OTEL_SERVICE_NAME", "crash-demo")
        // A debug build's DWARF on a loaded machine (the whole suite runs
        // at once) can take longer than the default 2 s to load: these
        // tests check names, so they give recovery the time.
        .env("PANICLE_RECOVER_SYMBOLIZE_WAIT_MS", "60000")
        .env_remove("PANICLE_SIGNAL_HANDLERS");
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn records(spool: &Path) -> Vec<String> {
    std::fs::read_dir(spool)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".crash"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `mode` (which must die by `signal`), then a plain start; the one
/// event the server stored.
fn die_then_start(mode: &str, signal: i32) -> (Event, Output) {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let died = run(mode, &server.dsn, &spool, &[]);
    let stderr = String::from_utf8_lossy(&died.stderr).into_owned();
    assert_eq!(died.status.signal(), Some(signal), "{mode}: {stderr}");
    assert_eq!(records(&spool).len(), 1, "{mode} left one crash record");
    // Nothing was sent by the dying process.
    assert!(server.events().is_empty());

    let started = run("start", &server.dsn, &spool, &[]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let events = server.wait_for_events(1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(records(&spool).is_empty(), "the record was consumed");
    // A further start ships nothing more.
    let again = run("start", &server.dsn, &spool, &[]);
    assert!(again.status.success());
    assert_eq!(server.events().len(), 1);
    (events.into_iter().next().unwrap(), died)
}

fn functions(event: &Event) -> Vec<&str> {
    event
        .frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect()
}

#[test]
fn a_stack_overflow_is_one_signal_event_after_the_next_start() {
    let (event, died) = die_then_start("stack-overflow", libc::SIGABRT);
    // std's own report is still printed: its handler ran after ours.
    let stderr = String::from_utf8_lossy(&died.stderr);
    assert!(
        stderr.contains("has overflowed its stack"),
        "std's message kept: {stderr}"
    );
    // The shell sees 128 + SIGABRT.
    assert_eq!(128 + died.status.signal().unwrap(), 134);
    assert_eq!(event.kind, Some(Kind::Signal));
    assert_eq!(event.message, "thread 'main' has overflowed its stack");
    assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
    assert_eq!(event.tags["death"], "stack_overflow");
    assert_eq!(
        event.thread.as_ref().and_then(|t| t.name.as_deref()),
        Some("main")
    );
    let names = functions(&event);
    assert_eq!(
        names.first().copied(),
        Some("crash::worker::recurse"),
        "{names:#?}"
    );
    assert!(names.len() > 20, "many recursion frames: {names:#?}");
    let top = &event.frames[0];
    assert_eq!(top.in_app, Some(true));
    assert!(top.file.as_deref().is_some_and(|f| f.ends_with("crash.rs")));
    assert!(top.build_id.is_some() && top.module_offset.is_some());
    assert_eq!(event.resource_str("service.name"), Some("crash-demo"));
}

#[test]
fn a_raised_sigsegv_is_one_signal_event_after_the_next_start() {
    let (event, died) = die_then_start("segv", libc::SIGSEGV);
    let stderr = String::from_utf8_lossy(&died.stderr);
    assert!(!stderr.contains("still alive"), "{stderr}");
    assert_eq!(128 + died.status.signal().unwrap(), 139);
    assert_eq!(event.kind, Some(Kind::Signal));
    assert_eq!(
        event.message,
        "killed by SIGSEGV (segmentation fault: an invalid memory access)"
    );
    assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
    assert!(!event.tags.contains_key("death"));
    let names = functions(&event);
    // libc's raise on top (unsymbolized: not this executable), then ours.
    let first_named = names.first().copied();
    assert_eq!(first_named, Some("crash::worker::raise_segv"), "{names:#?}");
    assert!(names.contains(&"crash::main"), "{names:#?}");
    assert!(
        event.frames[0].function.is_none(),
        "raise itself, in libc: {:#?}",
        event.frames[0]
    );
    assert_eq!(event.extra["signal"]["number"], libc::SIGSEGV);
}

#[test]
fn a_bad_pointer_names_the_faulting_instruction_and_the_service_frame() {
    let (event, died) = die_then_start("null", libc::SIGSEGV);
    assert_eq!(128 + died.status.signal().unwrap(), 139);
    assert_eq!(event.extra["signal"]["fault_address"], "0x10");
    let names = functions(&event);
    // The faulting instruction's own function on top (std's
    // `write_volatile`, where a debug build does not inline it), then ours:
    // the first of the service's frames.
    assert!(
        names.first().is_some_and(|n| n.ends_with("write_volatile")),
        "{names:#?}"
    );
    assert!(event.frames[0].line.is_some());
    let first_in_app = event.frames.iter().find(|f| f.in_app == Some(true));
    assert_eq!(
        first_in_app.and_then(|f| f.function.as_deref()),
        Some("crash::worker::write_null"),
        "{names:#?}"
    );
}

#[test]
fn an_abort_is_one_signal_event_naming_its_caller() {
    let (event, died) = die_then_start("abort", libc::SIGABRT);
    assert_eq!(128 + died.status.signal().unwrap(), 134);
    assert_eq!(event.message, "killed by SIGABRT (aborted)");
    assert_eq!(event.tags["process.signal_name"], "SIGABRT");
    let first_in_app = event.frames.iter().find(|f| f.in_app == Some(true));
    assert_eq!(
        first_in_app.and_then(|f| f.function.as_deref()),
        Some("crash::worker::give_up"),
        "{:#?}",
        functions(&event)
    );
}

#[test]
fn a_fault_inside_the_abort_handler_chain_still_dies_by_sigabrt() {
    let (event, died) = die_then_start("fault-in-abort-handler", libc::SIGABRT);
    assert_eq!(128 + died.status.signal().unwrap(), 134);
    assert_eq!(event.message, "killed by SIGABRT (aborted)");
    assert_eq!(event.tags["process.signal_name"], "SIGABRT");
}

#[test]
fn a_record_cut_after_its_head_ships_at_the_next_start() {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let died = run("segv", &server.dsn, &spool, &[]);
    assert_eq!(died.status.signal(), Some(libc::SIGSEGV));
    let names = records(&spool);
    assert_eq!(names.len(), 1);
    // What a second fault in the stack walk leaves: the head lines only,
    // under the final name (the handler renames before it walks).
    let path = spool.join(&names[0]);
    let text = std::fs::read_to_string(&path).unwrap();
    let head_end = text.find("\nframe ").unwrap() + 1;
    std::fs::write(&path, &text[..head_end]).unwrap();

    let started = run("start", &server.dsn, &spool, &[]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let events = server.wait_for_events(1);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.kind, Some(Kind::Signal));
    assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
    assert_eq!(event.extra["signal"]["record_complete"], false);
    // The interrupted pc is the one frame there is (no modules on record:
    // shipped bare).
    let pc = text
        .lines()
        .find_map(|l| l.strip_prefix("pc "))
        .unwrap()
        .to_string();
    let addrs: Vec<_> = event
        .frames
        .iter()
        .map(|f| f.instruction_addr.clone().unwrap_or_default())
        .collect();
    assert_eq!(addrs, [pc]);
    assert!(records(&spool).is_empty(), "the record was consumed");
}

#[test]
fn recovered_records_are_never_folded_into_storm_counts() {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    for _ in 0..3 {
        let died = run("segv", &server.dsn, &spool, &[]);
        assert_eq!(died.status.signal(), Some(libc::SIGSEGV));
    }
    assert_eq!(records(&spool).len(), 3);
    // One crash per second is a storm: submitted through storm control,
    // the second and third deaths would be folded into a count.
    let started = run(
        "start",
        &server.dsn,
        &spool,
        &[("PANICLE_STORM_THRESHOLD", "1")],
    );
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let events = server.wait_for_events(3);
    let signals = events
        .iter()
        .filter(|e| e.kind == Some(Kind::Signal))
        .count();
    assert_eq!(signals, 3, "{events:#?}");
    assert!(records(&spool).is_empty());
}

#[test]
fn a_spawned_thread_overflowing_its_stack_is_named() {
    let (event, died) = die_then_start("thread-overflow", libc::SIGABRT);
    assert_eq!(128 + died.status.signal().unwrap(), 134);
    assert_eq!(
        event.message,
        "thread 'overflower' has overflowed its stack"
    );
    assert_eq!(
        functions(&event).first().copied(),
        Some("crash::worker::recurse")
    );
}

#[test]
fn a_fault_the_previous_handler_resolves_lets_the_process_live_without_a_record() {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let out = run("handled-fault", &server.dsn, &spool, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{out:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("resumed after the handled fault: 42"),
        "{stdout}"
    );
    assert!(records(&spool).is_empty(), "the record was withdrawn");
    let listing: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        listing
            .iter()
            .all(|n| !n.to_string_lossy().contains("signal-")),
        "{listing:?}"
    );
    assert!(server.events().is_empty());
}

#[test]
fn the_abort_after_a_panic_in_drop_is_that_panics_and_writes_no_record() {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let died = run("panic-in-drop", &server.dsn, &spool, &[]);
    let stderr = String::from_utf8_lossy(&died.stderr);
    assert_eq!(died.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(records(&spool).is_empty(), "no crash record: {stderr}");
    let started = run("start", &server.dsn, &spool, &[]);
    assert!(started.status.success());
    let events = server.wait_for_events(1);
    assert!(!events.is_empty(), "the panic was reported");
    assert!(
        events.iter().all(|e| e.kind == Some(Kind::Panic)),
        "{:#?}",
        events
            .iter()
            .map(|e| (&e.kind, &e.message))
            .collect::<Vec<_>>()
    );
    assert!(
        events.iter().any(|e| e.message == "order 17 is corrupt"),
        "{:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
}

#[test]
fn turned_off_the_process_dies_as_before_and_leaves_nothing() {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let died = run(
        "stack-overflow",
        &server.dsn,
        &spool,
        &[("PANICLE_SIGNAL_HANDLERS", "0")],
    );
    assert_eq!(died.status.signal(), Some(libc::SIGABRT));
    assert!(records(&spool).is_empty());
    // Without the SDK's handler, std's lets a raised SIGSEGV go.
    let raised = run(
        "segv",
        &server.dsn,
        &spool,
        &[("PANICLE_SIGNAL_HANDLERS", "off")],
    );
    assert!(
        String::from_utf8_lossy(&raised.stderr).contains("still alive"),
        "{raised:?}"
    );
    assert!(records(&spool).is_empty());
}

#[test]
fn spool_send_ships_a_record_with_addresses_build_id_and_offsets() {
    let server = common::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let died = run("null", &server.dsn, &spool, &[]);
    assert_eq!(died.status.signal(), Some(libc::SIGSEGV));
    // What `panicle spool send DIR` runs, in this (other) executable.
    let report = panicle::batch::send_dir(
        &spool,
        &server.dsn.parse().unwrap(),
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    assert!(records(&spool).is_empty());
    let events = server.wait_for_events(1);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, Some(Kind::Signal));
    assert_eq!(event.tags["process.signal_name"], "SIGSEGV");
    // Not this executable: no names, but every frame of the crash binary
    // has its build-id and offset for the server.
    let exe_bytes = std::fs::read(crash_binary()).unwrap();
    let build_id = panicle_build_id(&exe_bytes);
    let of_exe: Vec<_> = event
        .frames
        .iter()
        .filter(|f| f.build_id.as_deref() == Some(build_id.as_str()))
        .collect();
    assert!(of_exe.len() >= 3, "{:#?}", event.frames);
    assert!(of_exe.iter().all(|f| f.module_offset.is_some()));
    assert!(event.frames.iter().all(|f| f.function.is_none()));
    assert_eq!(event.resource_str("service.name"), Some("crash-demo"));
}

fn panicle_build_id(elf: &[u8]) -> String {
    use object::Object;
    let file = object::File::parse(elf).unwrap();
    file.build_id()
        .unwrap()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
