//! Between the stderr reader and the spool: crashes are counted into the
//! [`Aggregator`] as they are parsed, and a writer thread writes what it
//! queues (first crashes at once, counts every report interval) to the spool
//! while the child runs. The reader never waits on the disk: it only takes a
//! short lock, and a full queue is counted, never waited for.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use panicle::spool::Spool;
use panicle_protocol::Event;

use super::aggregate::{Aggregator, Observed, Ready, StormLimits};
use super::notices::{Failure, Notices};
use super::sender::Nudge;

/// Spool caps of the wrapper (the spool refuses at twice these).
const SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
const SPOOL_MAX_FILES: u64 = 10_000;
/// How often the writer looks for counts due when nothing wakes it.
const TICK: Duration = Duration::from_millis(100);
/// How long a queued event waits before it is written: a crash that ends
/// the process (a Rust main thread's panic) is followed by the exit within
/// this time, and then carries the exit code like a crash parsed at exit.
const HOLD_MS: u64 = 100;

/// The aggregator and the notices, shared by the reader, the writer and the
/// main thread.
pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    started: Instant,
    /// Set when a notice waits in `State::to_tell`.
    telling: AtomicBool,
}

struct State {
    aggregator: Aggregator,
    notices: Notices,
    /// Crashes seen (each counts once, whether written, counted or lost).
    crashes: u64,
    /// Set when the child has exited: when, and the tags that say how.
    exit: Option<(u64, Vec<(String, String)>)>,
    closing: bool,
    /// Notices waiting for the child's output to reach a line end (at most
    /// one per kind of failure).
    to_tell: Vec<String>,
}

/// What the writer did, for the messages at exit.
pub struct WriterReport {
    pub dir: PathBuf,
    pub crashes: u64,
    pub spooled: u64,
    pub notices: Notices,
}

impl Shared {
    pub fn new(limits: StormLimits) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                aggregator: Aggregator::new(limits),
                notices: Notices::default(),
                crashes: 0,
                exit: None,
                closing: false,
                to_tell: Vec::new(),
            }),
            wake: Condvar::new(),
            started: Instant::now(),
            telling: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts that are still right.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// One parsed crash, as an event.
    pub fn crash(&self, event: Event) {
        let key = panicle_protocol::fingerprint(&event);
        let mut state = self.lock();
        let now = self.now_ms();
        state.crashes += 1;
        match state.aggregator.observe(&key, event, now) {
            Observed::Counted => {}
            Observed::First | Observed::Single => {
                drop(state);
                self.wake.notify_one();
            }
            Observed::Dropped => {
                if let Some(line) = state.notices.record(Failure::QueueFull, 1, "queue full") {
                    state.to_tell.push(line);
                    self.telling.store(true, Ordering::Release);
                }
            }
        }
    }

    /// Starts the writer thread over the spool directory `dir` (opened at
    /// the first event to write, so a run without a crash leaves no trace);
    /// `nudge` hears of every batch written.
    pub fn start_writer(
        self: &Arc<Self>,
        dir: PathBuf,
        nudge: Option<Nudge>,
    ) -> std::io::Result<Writer> {
        let shared = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("panicle-spool".into())
            .spawn(move || shared.write_loop(dir, nudge))?;
        Ok(Writer {
            shared: Arc::clone(self),
            thread,
        })
    }

    fn write_loop(&self, dir: PathBuf, nudge: Option<Nudge>) -> WriterReport {
        let mut spool: Option<Spool> = None;
        let mut unavailable = false;
        let mut spooled = 0u64;
        let mut stamp = || (uuid::Uuid::new_v4().to_string(), crate::now_rfc3339());
        loop {
            let (mut batch, closing, exit) = {
                let mut state = self.lock();
                let now = self.now_ms();
                let batch = if state.closing {
                    state.aggregator.flush(now, &mut stamp);
                    state.aggregator.take_ready()
                } else if state.exit.is_some() {
                    // Exited: hold everything for the exit tags at closing.
                    Vec::new()
                } else {
                    state.aggregator.tick(now, &mut stamp);
                    state
                        .aggregator
                        .take_ready_until(now.saturating_sub(HOLD_MS))
                };
                let exit = state.exit.clone().filter(|_| state.closing);
                (batch, state.closing, exit)
            };
            if let Some((exited_at, tags)) = exit {
                for ready in batch.iter_mut() {
                    if ready.weight == 1 && ready.queued_at + HOLD_MS >= exited_at {
                        ready.json = with_tags(&ready.json, &tags);
                    }
                }
            }
            if closing && batch.is_empty() {
                break;
            }
            if !batch.is_empty() {
                if spool.is_none() && !unavailable {
                    match Spool::open(&dir, false, SPOOL_MAX_BYTES, SPOOL_MAX_FILES) {
                        Ok(s) => spool = Some(s),
                        Err(e) => {
                            unavailable = true;
                            self.notify(Failure::SpoolUnavailable, 0, &e.to_string());
                        }
                    }
                }
                let written = self.write_batch(spool.as_ref(), batch);
                if let Some(nudge) = nudge.as_ref().filter(|_| written > 0) {
                    nudge.spooled();
                }
                spooled += written;
                continue;
            }
            let state = self.lock();
            if !state.closing {
                let _ = self.wake.wait_timeout(state, TICK);
            }
        }
        let mut state = self.lock();
        // Counts that never found room in the queue (not expected: the
        // queue is emptied before each flush).
        let unsent = state.aggregator.unsent();
        if unsent > 0 {
            state
                .notices
                .record(Failure::QueueFull, unsent, "no room at exit");
        }
        WriterReport {
            dir,
            crashes: state.crashes,
            spooled,
            notices: std::mem::take(&mut state.notices),
        }
    }

    /// Writes a batch; returns how many were written. Failures are counted
    /// by kind, the first of each told at once.
    fn write_batch(&self, spool: Option<&Spool>, batch: Vec<Ready>) -> u64 {
        let Some(spool) = spool else {
            let crashes = batch.iter().map(|r| r.weight).sum();
            self.notify(Failure::SpoolUnavailable, crashes, "");
            return 0;
        };
        let mut written = 0;
        for ready in batch {
            match spool.write(&ready.event_id, &ready.json) {
                Ok(_) => written += 1,
                Err(e) => self.notify(Failure::SpoolWrite, ready.weight, &e.to_string()),
            }
        }
        written
    }

    /// Counts a failure; the first of its kind waits to be told between
    /// two lines of the child's stderr (see [`Shared::take_notices`]).
    fn notify(&self, kind: Failure, n: u64, detail: &str) {
        let mut state = self.lock();
        if let Some(line) = state.notices.record(kind, n, detail) {
            state.to_tell.push(line);
            self.telling.store(true, Ordering::Release);
        }
    }

    /// The child has exited: the crashes queued just before (within the
    /// hold) and after get `tags` (exit code, signal).
    pub fn exited(&self, tags: Vec<(String, String)>) {
        let mut state = self.lock();
        let now = self.now_ms();
        state.exit = Some((now, tags));
    }

    /// Notices to print now, called by the stderr reader where the child's
    /// output is at a line end, so a notice never splits one of its lines.
    /// Those still waiting at exit are said by the summary.
    pub fn take_notices(&self) -> Vec<String> {
        if !self.telling.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut self.lock().to_tell)
    }
}

/// The running writer thread.
pub struct Writer {
    shared: Arc<Shared>,
    thread: JoinHandle<WriterReport>,
}

impl Writer {
    /// Writes every count still held and what is queued, then stops.
    pub fn finish(self) -> Option<WriterReport> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        self.thread.join().ok()
    }
}

/// `json` with `tags` added to its tags (those already set are kept).
fn with_tags(json: &[u8], tags: &[(String, String)]) -> Vec<u8> {
    let Ok(mut event) = serde_json::from_slice::<serde_json::Value>(json) else {
        return json.to_vec();
    };
    let Some(object) = event.as_object_mut() else {
        return json.to_vec();
    };
    let entry = object
        .entry("tags")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if let Some(map) = entry.as_object_mut() {
        for (k, v) in tags {
            map.entry(k.clone())
                .or_insert_with(|| serde_json::Value::String(v.clone()));
        }
    }
    serde_json::to_vec(&event).unwrap_or_else(|_| json.to_vec())
}
