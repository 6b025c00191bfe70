//! Delivery while the child runs: a long-lived service wrapped by
//! `panicle run` may crash in a thread and live on for days, so what the
//! writer spools is sent soon, not only at exit. Quiet by design: failures
//! leave the events in the spool for the next attempt, and the send at exit
//! reports what is left.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use panicle_protocol::Dsn;

/// Gathers the events of a burst into one attempt.
const SETTLE: Duration = Duration::from_millis(500);
/// How long one attempt may retry an unreachable server.
const ATTEMPT_BUDGET: Duration = Duration::from_secs(5);
/// Waits between failed attempts, doubling up to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Tells the sender thread that something was spooled; dropping it stops
/// the thread after its current attempt.
#[derive(Clone)]
pub struct Nudge(SyncSender<()>);

impl Nudge {
    pub fn spooled(&self) {
        // Full means a nudge is already waiting: nothing more to say.
        let _ = self.0.try_send(());
    }
}

/// Starts the sender thread for spool `dir`.
pub fn start(dir: PathBuf, dsn: Dsn) -> std::io::Result<(Nudge, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("panicle-send".into())
        .spawn(move || send_loop(&dir, &dsn, &rx))?;
    Ok((Nudge(tx), thread))
}

/// Longest the send at exit waits for the sender's attempt in flight (its
/// budget and the settle time): two senders on one spool would post the
/// same events twice and race to move a refused one to `rejected/`.
pub const FINISH_WAIT: Duration = Duration::from_millis(6_000);

/// Waits up to [`FINISH_WAIT`] for the sender thread (its nudge dropped) to
/// end; past that the send at exit goes ahead (resends are deduplicated).
pub fn finish(thread: JoinHandle<()>) {
    let deadline = Instant::now() + FINISH_WAIT;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}

fn send_loop(dir: &std::path::Path, dsn: &Dsn, nudges: &Receiver<()>) {
    let mut backoff = BACKOFF_FIRST;
    // After a failed attempt: the next one comes after the backoff, whether
    // or not more is spooled meanwhile.
    let mut retry_at: Option<Instant> = None;
    loop {
        let woke = match retry_at {
            None => nudges.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                match nudges.recv_timeout(wait) {
                    // Something new: still wait out the backoff.
                    Ok(()) => continue,
                    other => other,
                }
            }
        };
        if let Err(RecvTimeoutError::Disconnected) = woke {
            return;
        }
        // More of the burst lands meanwhile.
        std::thread::sleep(SETTLE);
        while nudges.try_recv().is_ok() {}
        let left = super::send_spool(dir, dsn, ATTEMPT_BUDGET)
            .map(|report| report.remaining)
            .unwrap_or(1);
        if left == 0 {
            backoff = BACKOFF_FIRST;
            retry_at = None;
        } else {
            retry_at = Some(Instant::now() + backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}
