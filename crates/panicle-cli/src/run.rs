//! `panicle run -- CMD ARGS…`: runs a program, passes its stdio through
//! untouched, and turns the crash text on its stderr (Rust panics, Go
//! `panic:`/`fatal error:` dumps) into events, even when the crash cannot be
//! caught inside the process (Go's concurrent map writes).

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use panicle_protocol::crashtext::{CrashDetector, ParsedCrash};
use panicle_protocol::{Dsn, Event};
use serde_json::Value;

/// Options of one wrapped run.
pub struct RunArgs {
    pub dsn: Option<Dsn>,
    pub service: Option<String>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub command: Vec<String>,
}

/// Runs the child to its end; returns the exit code the wrapper must exit with.
pub fn run(args: RunArgs) -> Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("nothing to run: use `panicle run -- CMD ARGS…`");
    };
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let pid = child.id();
    let forwarder = forward_signals(pid);
    let stderr = child.stderr.take().context("child stderr is not piped")?;

    // Crashes seen while the child runs (a Rust thread panic does not end the process).
    let (crash_tx, crash_rx) = mpsc::channel::<ParsedCrash>();
    let (done_tx, done_rx) = mpsc::channel::<CrashDetector>();
    std::thread::Builder::new()
        .name("panicle-stderr".into())
        .spawn(move || {
            let _ = done_tx.send(pump_stderr(stderr, crash_tx));
        })
        .context("cannot start the stderr reader")?;

    let status = child.wait().context("waiting for the child")?;
    // The pid is reaped now and may be reused: stop forwarding at once.
    #[cfg(unix)]
    if let Some(handle) = forwarder {
        handle.close();
    }
    // A grandchild may hold the stderr pipe open: drain for a bounded time.
    let detector = done_rx.recv_timeout(STDERR_DRAIN).ok();
    let mut crashes: Vec<ParsedCrash> = crash_rx.try_iter().collect();
    crashes.extend(detector.map(CrashDetector::finish_all).unwrap_or_default());

    let code = exit_code(status);
    if !crashes.is_empty() {
        let events: Vec<Event> = crashes
            .into_iter()
            .map(|c| to_event(c, &args, status))
            .collect();
        deliver(args.dsn.as_ref(), &events);
    }
    Ok(code)
}

/// Copies stderr through byte for byte as it arrives, and feeds whole lines
/// to the crash detector.
fn pump_stderr(mut stderr: impl Read, crashes: mpsc::Sender<ParsedCrash>) -> CrashDetector {
    let mut detector = CrashDetector::new();
    let mut out = std::io::stderr();
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = out.write_all(&buf[..n]);
        let _ = out.flush();
        for &b in &buf[..n] {
            if b == b'\n' {
                detector.push_line(&String::from_utf8_lossy(&line));
                line.clear();
                while let Some(crash) = detector.take_complete() {
                    let _ = crashes.send(crash);
                }
            } else if line.len() < 64 * 1024 {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        detector.push_line(&String::from_utf8_lossy(&line));
    }
    detector
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

fn to_event(crash: ParsedCrash, args: &RunArgs, status: ExitStatus) -> Event {
    let mut event = crash.into_event(uuid::Uuid::new_v4().to_string(), crate::now_rfc3339());
    let command = args.command.join(" ");
    let service = args.service.clone().or_else(|| {
        std::path::Path::new(&args.command[0])
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    let options = panicle::Options {
        service_name: service,
        ..panicle::Options::from_env()
    };
    event.resource = panicle::detect_resource(&options);
    event
        .tags
        .insert("process.command".into(), truncate(&command, 1024));
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            event.tags.insert("process.signal".into(), sig.to_string());
        }
    }
    if let Some(code) = status.code() {
        event
            .tags
            .insert("process.exit_code".into(), code.to_string());
    }
    event.tags.insert("capture".into(), "panicle-run".into());
    event.release = args.release.clone();
    if let Some(env) = &args.environment {
        event
            .resource
            .insert("deployment.environment".into(), Value::String(env.clone()));
    }
    event.sdk = Some(panicle_protocol::Sdk {
        name: "panicle-run".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    });
    event
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

/// Spools the crash events like the SDK does (one file each, written
/// atomically), then drains the spool to the server. What cannot be sent now
/// stays for the next run or `panicle spool send`. Never fatal to the exit code.
fn deliver(dsn: Option<&Dsn>, events: &[Event]) {
    let service = events
        .first()
        .and_then(|e| e.resource_str("service.name"))
        .map(str::to_string);
    let dir = panicle::spool::default_spool_dir(service.as_deref(), dsn);
    let spool = match panicle::spool::Spool::open(&dir, false, SPOOL_MAX_BYTES, SPOOL_MAX_FILES) {
        Ok(spool) => spool,
        Err(e) => {
            eprintln!(
                "panicle: spool unavailable ({e}); {} crash event(s) not kept",
                events.len()
            );
            return;
        }
    };
    for event in events {
        let written = serde_json::to_vec(event)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                spool
                    .write(&event.event_id, &json)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            eprintln!(
                "panicle: could not spool crash event {}: {e}",
                event.event_id
            );
        }
    }
    let Some(dsn) = dsn else {
        eprintln!(
            "panicle: PANICLE_DSN is not set: {} crash event(s) kept in {} (ship them with `panicle spool send`)",
            events.len(),
            dir.display()
        );
        return;
    };
    match panicle::batch::send_dir(&dir, dsn, SEND_BUDGET) {
        Ok(report) if report.remaining == 0 => {}
        Ok(report) => eprintln!(
            "panicle: {} event(s) not delivered yet, kept in {}",
            report.remaining,
            dir.display()
        ),
        Err(e) => eprintln!(
            "panicle: could not send spooled events from {}: {e}",
            dir.display()
        ),
    }
}

/// How long stderr may stay open after the child exited (a grandchild holding it).
const STDERR_DRAIN: Duration = Duration::from_secs(2);
const SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
const SPOOL_MAX_FILES: u64 = 10_000;
/// How long the wrapper may delay its own exit to deliver.
const SEND_BUDGET: Duration = Duration::from_secs(5);

/// Forwards SIGTERM, SIGINT and SIGHUP to the child while it runs.
#[cfg(unix)]
fn forward_signals(pid: u32) -> Option<signal_hook::iterator::Handle> {
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
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).ok()?;
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
fn forward_signals(_pid: u32) -> Option<()> {
    None
}
