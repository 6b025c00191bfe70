//! `panicle run -- CMD ARGS…`: runs a program, passes its stdio through
//! untouched, and turns the crash text on its stderr (Rust panics, Go
//! `panic:`/`fatal error:` dumps) into events, even when the crash cannot be
//! caught inside the process (Go's concurrent map writes).
//!
//! Threads: the main thread spawns and waits for the child; `panicle-stderr`
//! copies stderr through and parses it; `panicle-spool` writes what the storm
//! aggregator queues; `panicle-send` ships the spool while the child runs;
//! `panicle-signals` forwards signals.

mod aggregate;
#[cfg(target_os = "linux")]
mod killed;
mod notices;
mod sender;
mod writer;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use panicle_protocol::crashtext::{CrashDetector, DetectorLimits, ParsedCrash};
use panicle_protocol::{Dsn, Event};
use serde_json::Value;

use aggregate::StormLimits;
use writer::{Shared, WriterReport};

/// Options of one wrapped run.
pub struct RunArgs {
    pub dsn: Option<Dsn>,
    pub service: Option<String>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub command: Vec<String>,
}

/// Runs the child to its end; returns the exit code the wrapper must exit with.
///
/// Memory stays bounded whatever the child prints: crash text is cut out by
/// the streaming detector (bounded per crash), each crash is counted into
/// the storm aggregator as soon as it is parsed, and a writer thread spools
/// what that queues while the child runs.
pub fn run(args: RunArgs) -> Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("nothing to run: use `panicle run -- CMD ARGS…`");
    };
    let maker = Arc::new(EventMaker::new(&args));
    // Threads first: a failure to start one must not leave a child behind.
    let shared = Shared::new(StormLimits::default());
    let dir = panicle::spool::default_spool_dir(maker.service(), args.dsn.as_ref());
    let (nudge, sender_thread) = match &args.dsn {
        Some(dsn) => {
            let (nudge, thread) =
                sender::start(dir.clone(), dsn.clone()).context("cannot start the sender")?;
            (Some(nudge), Some(thread))
        }
        None => (None, None),
    };
    let writer = shared
        .start_writer(dir, nudge)
        .context("cannot start the spool writer")?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    die_with_parent(&mut command);
    // Signals are caught before the child exists, so a SIGTERM that comes
    // while it starts waits to be forwarded instead of killing the wrapper.
    let caught = catch_signals();
    // The OOM killer's count before the child runs: compared at its death.
    #[cfg(target_os = "linux")]
    let oom_before = killed::oom_kills();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let pid = child.id();
    let forwarder = forward_signals(caught, pid);
    let stderr = child.stderr.take().context("child stderr is not piped")?;

    let (done_tx, done_rx) = mpsc::channel::<Pumped>();
    {
        let shared = Arc::clone(&shared);
        let maker = Arc::clone(&maker);
        std::thread::Builder::new()
            .name("panicle-stderr".into())
            .spawn(move || {
                let pumped = pump_stderr(
                    stderr,
                    |crash| shared.crash(maker.event(crash, None)),
                    || shared.take_notices(),
                );
                let _ = done_tx.send(pumped);
            })
            .context("cannot start the stderr reader")?;
    }

    let status = child.wait().context("waiting for the child")?;
    shared.exited(exit_tags(status));
    // The pid is reaped now and may be reused: stop forwarding at once.
    #[cfg(unix)]
    if let Some(handle) = forwarder {
        handle.close();
    }
    // A grandchild may hold the stderr pipe open: drain for a bounded time.
    // The crash in progress at the exit is the one that ended the process.
    if let Ok(pumped) = done_rx.recv_timeout(STDERR_DRAIN) {
        let crashes = pumped.detector.finish_all();
        let silent = crashes.is_empty() && pumped.crashes_taken == 0;
        for crash in crashes {
            shared.crash(maker.event(crash, Some(status)));
        }
        // Killed without a word on stderr (native code's SIGSEGV, the OOM
        // killer's SIGKILL): the signal is the crash.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::ExitStatusExt;
            if silent
                && let Some(signal) = status.signal()
                && killed::is_silent_death(signal)
            {
                let oom = oom_before.map(|mut o| {
                    if let Some(now) = killed::oom_kills() {
                        o.after = now.after;
                    }
                    o
                });
                let crash = killed::crash(signal, pumped.tail.lines(), oom);
                shared.crash(maker.event(crash, Some(status)));
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = silent;
    }
    // The writer's end drops the sender's nudge: its attempt in flight
    // finishes before the send at exit takes the spool over.
    let report = writer.finish();
    if let Some(thread) = sender_thread {
        sender::finish(thread);
    }
    if let Some(report) = report {
        deliver(args.dsn.as_ref(), report);
    }
    Ok(exit_code(status))
}

/// Makes the child die with the wrapper: if the wrapper is killed (even by
/// SIGKILL, which it cannot forward), the kernel sends the child SIGKILL
/// rather than leave it running unwatched. PR_SET_PDEATHSIG fires when the
/// thread that forked the child ends; `run` forks from the main thread,
/// which lives until the wrapper exits.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The wrapper may have died between fork and prctl: then the
            // signal will never come, so do not start the program at all.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Longest stderr line looked at; the detector cuts lines shorter anyway,
/// and the pass-through is never cut.
fn max_line_bytes() -> usize {
    DetectorLimits::default().max_line_bytes
}

/// Copies stderr through byte for byte as it arrives (unbuffered: each read
/// is written and flushed at once), and feeds whole lines to the crash
/// detector; each finished crash goes to `on_crash` at once. The wrapper's
/// own notices (`notices`) are written only where the child's output is at
/// a line end, never inside one of its lines.
/// What the stderr reader hands back at the child's exit.
struct Pumped {
    detector: CrashDetector,
    /// Crashes reported while the child ran.
    crashes_taken: usize,
    #[cfg(target_os = "linux")]
    tail: killed::Tail,
}

fn pump_stderr(
    mut stderr: impl Read,
    mut on_crash: impl FnMut(ParsedCrash),
    mut notices: impl FnMut() -> Vec<String>,
) -> Pumped {
    let mut detector = CrashDetector::new();
    let mut crashes_taken = 0;
    #[cfg(target_os = "linux")]
    let mut tail = killed::Tail::default();
    let mut out = std::io::stderr();
    let mut buf = [0u8; 8192];
    let max_line = max_line_bytes();
    let mut line: Vec<u8> = Vec::with_capacity(256);
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let _ = out.write_all(chunk);
        if chunk.last() == Some(&b'\n') {
            for notice in notices() {
                let _ = writeln!(out, "{notice}");
            }
        }
        let _ = out.flush();
        let mut rest = chunk;
        while !rest.is_empty() {
            let (part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], Some(i + 1)),
                None => (rest, None),
            };
            let room = max_line.saturating_sub(line.len());
            line.extend_from_slice(&part[..part.len().min(room)]);
            let Some(next) = ended else { break };
            rest = &rest[next..];
            let text = String::from_utf8_lossy(&line);
            detector.push_line(&text);
            #[cfg(target_os = "linux")]
            tail.push(&text);
            line.clear();
            if line.capacity() > 4 * 1024 {
                line.shrink_to(256);
            }
            while let Some(crash) = detector.take_complete() {
                crashes_taken += 1;
                on_crash(crash);
            }
        }
    }
    if !line.is_empty() {
        let text = String::from_utf8_lossy(&line);
        detector.push_line(&text);
        #[cfg(target_os = "linux")]
        tail.push(&text);
    }
    Pumped {
        detector,
        crashes_taken,
        #[cfg(target_os = "linux")]
        tail,
    }
}

/// How the child ended, as event tags.
fn exit_tags(status: ExitStatus) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            tags.push(("process.signal".to_string(), sig.to_string()));
        }
    }
    if let Some(code) = status.code() {
        tags.push(("process.exit_code".to_string(), code.to_string()));
    }
    tags
}

fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

/// What every event of this run carries, worked out once (the environment
/// is read at the start, not once per crash).
struct EventMaker {
    service: Option<String>,
    resource: BTreeMap<String, Value>,
    command: String,
    release: Option<String>,
}

impl EventMaker {
    fn new(args: &RunArgs) -> Self {
        let service = args.service.clone().or_else(|| {
            args.command.first().and_then(|program| {
                std::path::Path::new(program)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        });
        let options = panicle::Options {
            service_name: service.clone(),
            ..panicle::Options::from_env()
        };
        let mut resource = panicle::detect_resource(&options);
        if let Some(env) = &args.environment {
            resource.insert("deployment.environment".into(), Value::String(env.clone()));
        }
        EventMaker {
            service,
            resource,
            command: panicle_protocol::truncate_str(&args.command.join(" "), 1024).to_string(),
            release: args.release.clone(),
        }
    }

    /// The service the spool directory is named after: the events' own.
    fn service(&self) -> Option<&str> {
        self.resource
            .get("service.name")
            .and_then(Value::as_str)
            .or(self.service.as_deref())
    }

    /// The event of one crash; `status` when the crash ended the process.
    fn event(&self, crash: ParsedCrash, status: Option<ExitStatus>) -> Event {
        let mut event = crash.into_event(uuid::Uuid::new_v4().to_string(), crate::now_rfc3339());
        event.resource = self.resource.clone();
        event
            .tags
            .insert("process.command".into(), self.command.clone());
        if let Some(status) = status {
            event.tags.extend(exit_tags(status));
        }
        event.tags.insert("capture".into(), "panicle-run".into());
        event.release = self.release.clone();
        event.sdk = Some(panicle_protocol::Sdk {
            name: "panicle-run".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        });
        event
    }
}

/// After the writer spooled every crash of the run: one line per kind of
/// failure, then the spool is drained to the server. What cannot be sent now
/// stays for the next run or `panicle spool send`. Never fatal to the exit code.
fn deliver(dsn: Option<&Dsn>, report: WriterReport) {
    for line in report.notices.summary() {
        eprintln!("{line}");
    }
    if report.crashes == 0 {
        return;
    }
    let dir = &report.dir;
    let Some(dsn) = dsn else {
        if report.spooled > 0 {
            eprintln!(
                "panicle: PANICLE_DSN is not set: {} crash event(s) kept in {} (ship them with `panicle spool send`)",
                report.spooled,
                dir.display()
            );
        }
        return;
    };
    if report.spooled == 0 && !dir.is_dir() {
        return;
    }
    match send_spool(dir, dsn, SEND_BUDGET) {
        Ok(sent) if sent.remaining == 0 => {}
        Ok(sent) => eprintln!(
            "panicle: {} event(s) not delivered yet, kept in {}",
            sent.remaining,
            dir.display()
        ),
        Err(e) => eprintln!(
            "panicle: could not send spooled events from {}: {e}",
            dir.display()
        ),
    }
}

/// Drains the spool to the server: the SDK's `send_dir` (the one place that
/// names it, for both the sender thread and the send at exit).
fn send_spool(
    dir: &std::path::Path,
    dsn: &Dsn,
    budget: Duration,
) -> Result<panicle::batch::SendReport, panicle::spool::SpoolError> {
    panicle::batch::send_dir(dir, dsn, budget)
}

/// How long stderr may stay open after the child exited (a grandchild holding it).
const STDERR_DRAIN: Duration = Duration::from_secs(2);
/// How long the wrapper may delay its own exit to deliver.
const SEND_BUDGET: Duration = Duration::from_secs(5);

/// Catches SIGTERM, SIGINT and SIGHUP for the child, which gets them
/// forwarded while it runs.
#[cfg(unix)]
fn catch_signals() -> Option<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).ok()
}

#[cfg(not(unix))]
fn catch_signals() -> Option<()> {
    None
}

/// Forwards what `caught` receives (from before the child started on) to
/// the child.
#[cfg(unix)]
fn forward_signals(
    caught: Option<signal_hook::iterator::Signals>,
    pid: u32,
) -> Option<signal_hook::iterator::Handle> {
    use std::io::IsTerminal;

    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // At a terminal, Ctrl-C already reaches the child (same foreground
    // process group); forwarding it again would be a second SIGINT, which
    // many programs take as "quit now". Still caught here, so the wrapper
    // itself outlives it and reports the child's end.
    let forwarded: &[i32] = if std::io::stdin().is_terminal() {
        &[SIGTERM, SIGHUP]
    } else {
        &[SIGTERM, SIGINT, SIGHUP]
    };
    let mut signals = caught?;
    let handle = signals.handle();
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    std::thread::Builder::new()
        .name("panicle-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if !forwarded.contains(&sig) {
                    continue;
                }
                if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        })
        .ok()?;
    Some(handle)
}

#[cfg(not(unix))]
fn forward_signals(_caught: Option<()>, _pid: u32) -> Option<()> {
    None
}
