//! Panicle's SDK beside sentry-rust 0.49 on the same 200-panic loop, against
//! local sinks that answer at once, after 200 ms, never, or are not there
//! (issue 22's comparison; the numbers behind the crate README's cost section).
//!
//! ```text
//! cargo bench -p panicle-sentry-sdks --bench sdk_compare
//! cargo bench -p panicle-sentry-sdks --bench sdk_compare -- --reps 5 --panics 200
//! ```
//! Options: `--reps N` (3), `--panics N` (200), `--sinks fast,down,slow,never`,
//! `--sdks sentry,panicle,panicle-storm-off`, `--stall-secs S` (10: a panic that
//! has not returned by then never will), `--exit-secs S` (30).
//!
//! Each SDK × sink × repetition is a child process (this binary re-run with
//! `SDK_COMPARE_CHILD` set): it installs a silent panic hook (so the default
//! hook's stderr output is not part of the cost), inits the SDK with the DSN
//! `http://key@127.0.0.1:PORT/1` (Panicle: a fresh spool directory; the
//! defaults otherwise), panics 200 times at one site a few frames deep with
//! messages differing only in a number, each `catch_unwind` timed as a whole,
//! prints a marker, drops the SDK's guard and returns from `main`.
//! Repetitions are interleaved (every combination once, then again), so a
//! slow moment of the machine does not land on one SDK.
//!
//! Sinks are in-process HTTP/1.1 servers with keep-alive: `fast` answers at
//! once, `slow` after 200 ms, `never` reads requests and never answers,
//! `down` is a port nothing listens on. They take Panicle's gzip JSON
//! batches (`POST /api/v1/events`, answered `202 {"accepted":[ids]}`) and
//! Sentry's envelopes (`POST /api/1/envelope/`, answered `200 {}`), and count
//! a panic as stored when they answer (a storm aggregate stands for its
//! `count` panics); ids are counted once.
//!
//! Columns of the table:
//! - per panic: median / p99 / max of one `catch_unwind` around the panic
//!   (the SDK's hook included), over every repetition's panics but the
//!   first. A case whose panic never returned names the panic and shows the
//!   ones before it.
//! - first panic: the first panic of a process, median over repetitions
//!   (both SDKs load debug info or resolve a backtrace for the first time:
//!   it would be the max of every row otherwise).
//! - exit: from the marker after the loop to the process's end (guard drop,
//!   flush, teardown), median over repetitions; "never" when it was killed.
//! - accounted for: panics the sink stored; a range when repetitions differ.
//!   For Panicle also after `spool send` (`panicle::batch::send_dir` run on
//!   the child's spool against a fresh fast sink once the child is gone):
//!   what a later start or a sidecar ships. Sentry has no spool.
//!
//! The raw numbers (every panic's time, every run) go to a JSON file under
//! the target directory; its path is printed at the end.

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const CHILD_ENV: &str = "SDK_COMPARE_CHILD";
const DSN_ENV: &str = "SDK_COMPARE_DSN";
const SPOOL_ENV: &str = "SDK_COMPARE_SPOOL";
const PANICS_ENV: &str = "SDK_COMPARE_PANICS";
/// The child's line after its loop: exit time is measured from here.
const LOOP_DONE: &str = "loop-done";
const SLOW_ANSWER: Duration = Duration::from_millis(200);

fn main() -> Res<()> {
    if let Ok(sdk) = std::env::var(CHILD_ENV) {
        return child::run(&sdk);
    }
    parent(Args::parse()?)
}

/// The SDK (and its configuration) under test in one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    Sentry,
    Panicle,
    /// Panicle with `storm_threshold_per_sec = 0`: every panic its own event.
    PanicleStormOff,
}

impl Sdk {
    const ALL: [Sdk; 3] = [Sdk::Sentry, Sdk::Panicle, Sdk::PanicleStormOff];

    fn key(self) -> &'static str {
        match self {
            Sdk::Sentry => "sentry",
            Sdk::Panicle => "panicle",
            Sdk::PanicleStormOff => "panicle-storm-off",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sdk::Sentry => "sentry-rust 0.49.5",
            Sdk::Panicle => "Panicle",
            Sdk::PanicleStormOff => "Panicle, storm control off",
        }
    }

    fn is_panicle(self) -> bool {
        self != Sdk::Sentry
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Fast,
    Down,
    Slow,
    Never,
}

impl Behaviour {
    const ALL: [Behaviour; 4] = [
        Behaviour::Fast,
        Behaviour::Down,
        Behaviour::Slow,
        Behaviour::Never,
    ];

    fn key(self) -> &'static str {
        match self {
            Behaviour::Fast => "fast",
            Behaviour::Down => "down",
            Behaviour::Slow => "slow",
            Behaviour::Never => "never",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Behaviour::Fast => "fast server",
            Behaviour::Down => "nothing listening",
            Behaviour::Slow => "answers after 200 ms",
            Behaviour::Never => "accepts, never answers",
        }
    }
}

struct Args {
    reps: usize,
    panics: usize,
    sinks: Vec<Behaviour>,
    sdks: Vec<Sdk>,
    stall: Duration,
    exit: Duration,
}

impl Args {
    fn parse() -> Res<Args> {
        let mut a = Args {
            reps: 3,
            panics: 200,
            sinks: Behaviour::ALL.to_vec(),
            sdks: Sdk::ALL.to_vec(),
            stall: Duration::from_secs(10),
            exit: Duration::from_secs(30),
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next().ok_or_else(|| {
                    format!("{arg} needs a value (see the doc comment of sdk_compare.rs)")
                })
            };
            match arg.as_str() {
                // `cargo bench` passes it to every bench binary.
                "--bench" => {}
                "--reps" => a.reps = value()?.parse()?,
                "--panics" => a.panics = value()?.parse()?,
                "--stall-secs" => a.stall = Duration::from_secs(value()?.parse()?),
                "--exit-secs" => a.exit = Duration::from_secs(value()?.parse()?),
                "--sinks" => {
                    let v = value()?;
                    a.sinks = Behaviour::ALL
                        .into_iter()
                        .filter(|b| v.split(',').any(|s| s == b.key()))
                        .collect();
                }
                "--sdks" => {
                    let v = value()?;
                    a.sdks = Sdk::ALL
                        .into_iter()
                        .filter(|s| v.split(',').any(|x| x == s.key()))
                        .collect();
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}: use --reps, --panics, --sinks, --sdks, --stall-secs, --exit-secs"
                    )
                    .into());
                }
            }
        }
        if a.sinks.is_empty() || a.sdks.is_empty() || a.reps == 0 {
            return Err("nothing to run: --sinks takes fast,down,slow,never; --sdks takes sentry,panicle,panicle-storm-off; --reps at least 1".into());
        }
        Ok(a)
    }
}

/// One child's run.
struct Run {
    sdk: Sdk,
    sink: Behaviour,
    rep: usize,
    /// Per panic, in the order they happened.
    panic_ns: Vec<u64>,
    /// Set when the loop stalled: the index of the panic that never returned.
    stalled_at: Option<usize>,
    /// Set when the child ended before its loop did: its exit status.
    died: Option<String>,
    /// `None`: killed (the loop stalled, or the exit took over `--exit-secs`).
    exit: Option<Duration>,
    /// Panics the sink stored.
    stored: u64,
    /// Panics the sink received but never answered for.
    unanswered: u64,
    requests: usize,
    /// Panicle: stored by the sink or by the fresh sink `spool send` ran against.
    after_spool_send: Option<u64>,
    spool_send: Option<String>,
    /// Requests the sinks could not read (wrong path, bad body): must be none.
    sink_errors: Vec<String>,
    stderr: String,
}

fn parent(args: Args) -> Res<()> {
    let exe = std::env::current_exe()?;
    let combos = args.sinks.len() * args.sdks.len();
    let mut runs = Vec::new();
    for rep in 1..=args.reps {
        for (i, &sink) in args.sinks.iter().enumerate() {
            for (j, &sdk) in args.sdks.iter().enumerate() {
                eprint!(
                    "rep {rep}/{} [{}/{combos}] {} → {} … ",
                    args.reps,
                    i * args.sdks.len() + j + 1,
                    sdk.key(),
                    sink.key()
                );
                let run = run_child(&exe, &args, sdk, sink, rep)?;
                eprintln!("{}", run_summary(&run));
                runs.push(run);
            }
        }
    }
    println!();
    println!(
        "{} panics per run, {} repetitions interleaved; per panic = one catch_unwind (hook included).",
        args.panics, args.reps
    );
    println!();
    println!(
        "| sink | SDK | median / p99 / max per panic | first panic | exit after the loop | panics accounted for |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for &sink in &args.sinks {
        for &sdk in &args.sdks {
            let of: Vec<&Run> = runs
                .iter()
                .filter(|r| r.sdk == sdk && r.sink == sink)
                .collect();
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                sink.label(),
                sdk.label(),
                per_panic_cell(&of),
                first_panic_cell(&of),
                exit_cell(&of),
                accounted_cell(&of, args.panics)
            );
        }
    }
    let errors: Vec<&String> = runs.iter().flat_map(|r| &r.sink_errors).collect();
    if !errors.is_empty() {
        println!();
        println!(
            "WARNING: the sinks could not read {} requests (first: {})",
            errors.len(),
            errors[0]
        );
    }
    let path = write_json(&args, &runs)?;
    println!();
    println!("raw numbers: {}", path.display());
    Ok(())
}

fn run_summary(r: &Run) -> String {
    let exit = match r.exit {
        Some(d) => format!("exit {:.0} ms", ms(d)),
        None => "killed".to_string(),
    };
    let stall = r
        .stalled_at
        .map(|i| format!(", panic {} never returned", i + 1))
        .unwrap_or_default();
    let died = r
        .died
        .as_ref()
        .map(|s| format!(", DIED before its loop ended ({s})"))
        .unwrap_or_default();
    let spool = r
        .after_spool_send
        .map(|n| format!(", {n} after spool send"))
        .unwrap_or_default();
    format!(
        "{} panics timed{stall}{died}, {exit}, {} stored{spool}",
        r.panic_ns.len(),
        r.stored
    )
}

fn run_child(exe: &Path, args: &Args, sdk: Sdk, behaviour: Behaviour, rep: usize) -> Res<Run> {
    let protocol = if sdk.is_panicle() {
        Protocol::Panicle
    } else {
        Protocol::Sentry
    };
    let sink = Sink::start(behaviour, protocol)?;
    let spool = tempfile::Builder::new()
        .prefix("sdk_compare-spool-")
        .tempdir()?;
    let dsn = format!("http://key@127.0.0.1:{}/1", sink.port);
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, sdk.key())
        .env(DSN_ENV, &dsn)
        .env(PANICS_ENV, args.panics.to_string())
        .env(SPOOL_ENV, spool.path())
        // Nothing from the caller's environment may configure either SDK.
        .env_remove("SENTRY_DSN")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("PANICLE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("the child's stdout was not piped")?;
    let stderr = child
        .stderr
        .take()
        .ok_or("the child's stderr was not piped")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let stderr_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr)
            .take(64 * 1024)
            .read_to_string(&mut s);
        s
    });

    let mut panic_ns = Vec::with_capacity(args.panics);
    let mut stalled_at = None;
    let mut loop_done = None;
    loop {
        match rx.recv_timeout(args.stall) {
            Ok((at, line)) => {
                if line == LOOP_DONE {
                    loop_done = Some(at);
                    break;
                }
                if let Some(ns) = line
                    .strip_prefix("panic ")
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|ns| ns.parse::<u64>().ok())
                {
                    panic_ns.push(ns);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stalled_at = Some(panic_ns.len());
                break;
            }
            // Stdout closed before the marker: the child died.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let exit = match loop_done {
        Some(start) => wait_exit(&mut child, start, args.exit)?,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    // Stdout closed before the marker: the child died (its stderr says why).
    let died = if loop_done.is_none() && stalled_at.is_none() {
        Some(child.wait()?.to_string())
    } else {
        None
    };
    // A request the slow sink is still answering counts once it is answered.
    sink.settle(Duration::from_secs(2));
    let (stored_ids, unanswered, requests, mut sink_errors) = sink.finish();
    let stored = stored_ids.values().sum();

    let (after_spool_send, spool_send) = if sdk.is_panicle() {
        let ship = Sink::start(Behaviour::Fast, Protocol::Panicle)?;
        let dsn: panicle::protocol::Dsn =
            format!("http://key@127.0.0.1:{}/1", ship.port).parse()?;
        let report = panicle::batch::send_dir(spool.path(), &dsn, Duration::from_secs(20));
        ship.settle(Duration::from_secs(2));
        let (shipped, _, _, errors) = ship.finish();
        sink_errors.extend(errors);
        let mut all = stored_ids.clone();
        all.extend(shipped);
        (
            Some(all.values().sum()),
            Some(match report {
                Ok(r) => format!("{r:?}"),
                Err(e) => format!("error: {e}"),
            }),
        )
    } else {
        (None, None)
    };
    Ok(Run {
        sdk,
        sink: behaviour,
        rep,
        panic_ns,
        stalled_at,
        died,
        exit,
        stored,
        unanswered,
        requests,
        after_spool_send,
        spool_send,
        sink_errors,
        stderr: stderr_text.join().unwrap_or_default(),
    })
}

/// Time from `start` to the child's end, polled finely; kills it after `limit`.
fn wait_exit(
    child: &mut std::process::Child,
    start: Instant,
    limit: Duration,
) -> Res<Option<Duration>> {
    loop {
        if child.try_wait()?.is_some() {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `940 µs`, `1.7 ms`, `2,021 ms`.
fn fmt_ns(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 100_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{} ms", thousands((us / 1e3).round() as u64))
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The first panic of each run, median over runs.
fn first_panic_cell(runs: &[&Run]) -> String {
    let mut firsts: Vec<u64> = runs
        .iter()
        .filter_map(|r| r.panic_ns.first().copied())
        .collect();
    firsts.sort_unstable();
    match firsts.len() {
        0 => "none returned".to_string(),
        n => fmt_ns(firsts[(n - 1) / 2]),
    }
}

/// Every panic after each run's first (that one is in its own column).
fn per_panic_cell(runs: &[&Run]) -> String {
    let mut all: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.panic_ns.iter().skip(1).copied())
        .collect();
    all.sort_unstable();
    let mut cell = if all.is_empty() {
        "none returned".to_string()
    } else {
        format!(
            "{} / {} / {}",
            fmt_ns(percentile(&all, 0.5)),
            fmt_ns(percentile(&all, 0.99)),
            fmt_ns(*all.last().unwrap_or(&0))
        )
    };
    let stalls: Vec<usize> = runs.iter().filter_map(|r| r.stalled_at).collect();
    if !stalls.is_empty() {
        let mut at: Vec<String> = stalls.iter().map(|i| (i + 1).to_string()).collect();
        at.dedup();
        cell.push_str(&format!(
            "; panic {} never returns ({} of {} runs)",
            at.join("/"),
            stalls.len(),
            runs.len()
        ));
    }
    let died = runs.iter().filter(|r| r.died.is_some()).count();
    if died > 0 {
        cell.push_str(&format!(
            "; the child died in {died} of {} runs (see the JSON's child_stderr)",
            runs.len()
        ));
    }
    cell
}

fn exit_cell(runs: &[&Run]) -> String {
    let mut exits: Vec<Duration> = runs.iter().filter_map(|r| r.exit).collect();
    if exits.is_empty() {
        return "never".to_string();
    }
    exits.sort_unstable();
    let median = exits[(exits.len() - 1) / 2];
    let mut cell = format!("{} ms", thousands(ms(median).round() as u64));
    let killed = runs.len() - exits.len();
    if killed > 0 {
        cell.push_str(&format!("; never in {killed} of {} runs", runs.len()));
    }
    cell
}

fn accounted_cell(runs: &[&Run], panics: usize) -> String {
    let stored: Vec<u64> = runs.iter().map(|r| r.stored).collect();
    let mut cell = spread(&stored, panics as u64);
    let after: Vec<u64> = runs.iter().filter_map(|r| r.after_spool_send).collect();
    if !after.is_empty() {
        cell.push_str(&format!(
            "; {} after `spool send`",
            spread(&after, panics as u64)
        ));
    }
    cell
}

/// `200` when every run agrees; else `1–200 (all 200 in 5 of 13 runs)`.
fn spread(counts: &[u64], all: u64) -> String {
    let (min, max) = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    );
    if min == max {
        return min.to_string();
    }
    let complete = counts.iter().filter(|&&n| n == all).count();
    format!(
        "{min}–{max} (all {all} in {complete} of {} runs)",
        counts.len()
    )
}

fn write_json(args: &Args, runs: &[Run]) -> Res<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdk_compare");
    std::fs::create_dir_all(&dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let path = dir.join(format!("run-{stamp}.json"));
    let runs: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "sdk": r.sdk.key(),
                "sink": r.sink.key(),
                "rep": r.rep,
                "panic_ns": r.panic_ns,
                "stalled_at_panic": r.stalled_at.map(|i| i + 1),
                "exit_ms": r.exit.map(ms),
                "stored_by_sink": r.stored,
                "received_unanswered": r.unanswered,
                "sink_requests": r.requests,
                "after_spool_send": r.after_spool_send,
                "spool_send_report": r.spool_send,
                "sink_errors": r.sink_errors,
                "died": r.died,
                "child_stderr": r.stderr,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "panics_per_run": args.panics,
        "reps": args.reps,
        "stall_timeout_s": args.stall.as_secs(),
        "exit_timeout_s": args.exit.as_secs(),
        "slow_sink_delay_ms": SLOW_ANSWER.as_millis() as u64,
        "runs": runs,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    Ok(path)
}

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Panicle,
    Sentry,
}

#[derive(Default)]
struct SinkState {
    /// event id → panics it stands for, once answered.
    stored: Mutex<HashMap<String, u64>>,
    /// Panics received in requests never answered.
    unanswered: Mutex<HashMap<String, u64>>,
    requests: AtomicUsize,
    /// Requests read but not yet answered (the slow sink's sleep).
    in_flight: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// A local HTTP server standing in for Panicle or Sentry; see the module doc.
struct Sink {
    port: u16,
    state: Arc<SinkState>,
    stop: Arc<AtomicBool>,
    listening: bool,
}

impl Sink {
    fn start(behaviour: Behaviour, protocol: Protocol) -> Res<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(SinkState::default());
        let stop = Arc::new(AtomicBool::new(false));
        if behaviour == Behaviour::Down {
            // The port was free a moment ago; now nothing listens on it.
            drop(listener);
            return Ok(Sink {
                port,
                state,
                stop,
                listening: false,
            });
        }
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, behaviour, protocol, &st));
            }
        });
        Ok(Sink {
            port,
            state,
            stop,
            listening: true,
        })
    }

    /// Waits (up to `limit`) for requests being answered right now.
    fn settle(&self, limit: Duration) {
        let start = Instant::now();
        while self.state.in_flight.load(Ordering::Acquire) > 0 && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops accepting; returns (stored ids, unanswered panics, requests, errors).
    fn finish(self) -> (HashMap<String, u64>, u64, usize, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        if self.listening {
            // Wakes the accept loop so it sees the flag.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
        let lock =
            |m: &Mutex<HashMap<String, u64>>| m.lock().map(|g| g.clone()).unwrap_or_default();
        let stored = lock(&self.state.stored);
        let unanswered = lock(&self.state.unanswered)
            .iter()
            .filter(|(id, _)| !stored.contains_key(*id))
            .map(|(_, n)| n)
            .sum();
        let errors = self
            .state
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        (
            stored,
            unanswered,
            self.state.requests.load(Ordering::Acquire),
            errors,
        )
    }
}

/// One connection: requests in a row (keep-alive) until the client closes it.
fn serve(conn: TcpStream, behaviour: Behaviour, protocol: Protocol, state: &SinkState) {
    let _ = conn.set_nodelay(true);
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut conn = conn;
    let note = |e: String| {
        if let Ok(mut errors) = state.errors.lock() {
            errors.push(e);
        }
    };
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                note(format!("reading a request: {e}"));
                return;
            }
        };
        state.requests.fetch_add(1, Ordering::AcqRel);
        let expected = match protocol {
            Protocol::Panicle => "/api/v1/events",
            Protocol::Sentry => "/api/1/envelope/",
        };
        let panics = if request.path != expected {
            Err(format!("POST {} (expected {expected})", request.path))
        } else {
            body_bytes(&request).and_then(|body| match protocol {
                Protocol::Panicle => panicle_events(&body),
                Protocol::Sentry => sentry_events(&body),
            })
        };
        let panics = match panics {
            Ok(p) => p,
            Err(e) => {
                note(e);
                let msg = r#"{"error":{"code":"bad_request","message":"sink could not read it"}}"#;
                if respond(&mut conn, 400, msg).is_err() {
                    return;
                }
                continue;
            }
        };
        if let Ok(mut u) = state.unanswered.lock() {
            u.extend(panics.iter().cloned());
        }
        match behaviour {
            // Read on (the client will not send again before an answer)
            // until it gives up and closes the connection.
            Behaviour::Never | Behaviour::Down => continue,
            Behaviour::Slow => {
                state.in_flight.fetch_add(1, Ordering::AcqRel);
                std::thread::sleep(SLOW_ANSWER);
            }
            Behaviour::Fast => {
                state.in_flight.fetch_add(1, Ordering::AcqRel);
            }
        }
        let answer = match protocol {
            Protocol::Panicle => (
                202,
                serde_json::json!({
                    "accepted": panics.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                    "stored": panics.len(),
                    "rejected": [],
                })
                .to_string(),
            ),
            Protocol::Sentry => (200, "{}".to_string()),
        };
        let sent = respond(&mut conn, answer.0, &answer.1);
        // Stored as a real server would: once it answers, whether or not
        // the client is still there to read it.
        if let Ok(mut s) = state.stored.lock() {
            s.extend(panics);
        }
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        if sent.is_err() {
            return;
        }
    }
}

struct Request {
    path: String,
    gzip: bool,
    body: Vec<u8>,
}

/// One HTTP/1.1 request (Content-Length or chunked body); `None` at a clean EOF.
fn read_request(r: &mut impl BufRead) -> Res<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut length, mut chunked, mut gzip) = (0usize, false, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse()?,
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "content-encoding" => gzip = value.eq_ignore_ascii_case("gzip"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request { path, gzip, body }))
}

fn respond(conn: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    // One write: head and body in two would meet Nagle and the client's
    // delayed ACK, 40 ms a request.
    let answer = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        if status < 300 { "OK" } else { "Bad Request" },
        body.len()
    );
    conn.write_all(answer.as_bytes())?;
    conn.flush()
}

fn body_bytes(r: &Request) -> Result<Vec<u8>, String> {
    if r.gzip {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut out)
            .map_err(|e| format!("gzip body: {e}"))?;
        Ok(out)
    } else {
        Ok(r.body.clone())
    }
}

/// Panicle's batch: a JSON array of events; one with a `count` stands for
/// that many panics.
fn panicle_events(body: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let events: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("Panicle batch: {e}"))?;
    events
        .iter()
        .map(|e| {
            let id = e["event_id"]
                .as_str()
                .ok_or("a Panicle event without event_id")?;
            let count = panicle::protocol::decode::event_weight(e.get("count"));
            Ok((id.to_string(), count.max(1) as u64))
        })
        .collect()
}

/// Sentry's envelope: each `event` item is one panic.
fn sentry_events(body: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let envelope =
        sentry::Envelope::from_slice(body).map_err(|e| format!("Sentry envelope: {e}"))?;
    Ok(envelope
        .items()
        .filter_map(|item| match item {
            sentry::protocol::EnvelopeItem::Event(event) => Some((event.event_id.to_string(), 1)),
            _ => None,
        })
        .collect())
}

/// What runs in the child process.
mod child {
    use super::*;
    use std::collections::HashMap;

    struct Order {
        cents: u64,
    }

    /// The raise site: always this line, the message differing only in `id`.
    #[inline(never)]
    fn find_order(orders: &HashMap<u64, Order>, id: u64) -> &Order {
        match orders.get(&id) {
            Some(order) => order,
            None => panic!("order {id} not found"),
        }
    }

    #[inline(never)]
    fn price_of(orders: &HashMap<u64, Order>, id: u64) -> u64 {
        std::hint::black_box(find_order(orders, id).cents + 1)
    }

    #[inline(never)]
    fn handle_request(orders: &HashMap<u64, Order>, id: u64) -> u64 {
        std::hint::black_box(price_of(orders, std::hint::black_box(id)) * 2)
    }

    fn var(name: &str) -> Res<String> {
        std::env::var(name).map_err(|_| format!("{name} is not set (the parent sets it)").into())
    }

    pub fn run(sdk: &str) -> Res<()> {
        let dsn = var(DSN_ENV)?;
        let panics: u64 = var(PANICS_ENV)?.parse()?;
        // The previous hook both SDKs chain: silent, so only the SDK is timed.
        std::panic::set_hook(Box::new(|_| {}));
        // Either SDK's guard, dropped after the loop: its flush is the exit.
        let guard: Box<dyn std::any::Any> = match sdk {
            "sentry" => {
                let mut options = sentry::ClientOptions::default();
                options.dsn = Some(dsn.parse()?);
                options.release = Some("sdk_compare@1.0.0".into());
                Box::new(sentry::init(options))
            }
            "panicle" | "panicle-storm-off" => {
                let mut options = panicle::Options {
                    dsn: Some(dsn.parse()?),
                    release: Some("sdk_compare@1.0.0".into()),
                    service_name: Some("sdk_compare".into()),
                    ..panicle::Options::default()
                };
                options.delivery.spool_dir = Some(PathBuf::from(var(SPOOL_ENV)?));
                if sdk == "panicle-storm-off" {
                    options.delivery.storm_threshold_per_sec = 0;
                }
                Box::new(panicle::init(options))
            }
            other => return Err(format!("unknown SDK {other:?} in {CHILD_ENV}").into()),
        };
        let orders = HashMap::from([(0u64, Order { cents: 100 })]);
        // Locked per line, not across the loop: an SDK thread that prints
        // must not wait for the loop.
        let line = |text: String| -> std::io::Result<()> {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        };
        for i in 0..panics {
            let id = 1000 + i;
            let start = Instant::now();
            let result = std::panic::catch_unwind(|| handle_request(&orders, id));
            let took = start.elapsed();
            if result.is_ok() {
                return Err(format!("order {id} was found: the loop must panic").into());
            }
            line(format!("panic {i} {}", took.as_nanos()))?;
        }
        line(LOOP_DONE.to_string())?;
        drop(guard);
        Ok(())
    }
}
