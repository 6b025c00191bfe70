//! Delivery: the hook's fast path (storm check, spool write, hand-off) and
//! the background sender thread (batching, gzip, retry with backoff, delete
//! on acknowledgement).
//!
//! MUST on the hook path ([`Delivery::submit`]): no network unless the spool
//! is unusable, no lock (not even one the sender holds: the hand-off is a
//! `try_send` on a bounded channel and a `Thread::unpark`), no panic.
//! A spooled event is deleted only after a 2xx from the server; everything
//! else leaves it on disk for a later attempt or a later process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use panicle_protocol::{Dsn, Event};

use crate::batch::{Backoff, ServerErrors, send_batch};
use crate::options::{DeliveryOptions, Options};
use crate::spool::{Spool, SpoolEntry, SpoolError, default_spool_dir};
use crate::transport::HttpTransport;

/// Counters of what delivery did in this process (see [`delivery_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Events written to the spool by the hook (storm aggregates included).
    pub spooled: u64,
    /// Events the server acknowledged.
    pub sent: u64,
    /// Panics counted into a storm aggregate instead of sent on their own.
    pub storm_suppressed: u64,
    /// Events dropped because the spool was over its cap (oldest first).
    pub spool_dropped: u64,
    /// Events the server refused for good (moved to `rejected/`).
    pub rejected: u64,
    /// Spool write failures (the hook then sent synchronously).
    pub spool_errors: u64,
    /// Events sent from the panicking thread because the spool was unusable.
    pub sent_from_hook: u64,
}

#[derive(Default)]
struct Stats {
    spooled: AtomicU64,
    sent: AtomicU64,
    storm_suppressed: AtomicU64,
    spool_dropped: AtomicU64,
    rejected: AtomicU64,
    spool_errors: AtomicU64,
    sent_from_hook: AtomicU64,
}

static STATS: Stats = Stats {
    spooled: AtomicU64::new(0),
    sent: AtomicU64::new(0),
    storm_suppressed: AtomicU64::new(0),
    spool_dropped: AtomicU64::new(0),
    rejected: AtomicU64::new(0),
    spool_errors: AtomicU64::new(0),
    sent_from_hook: AtomicU64::new(0),
};

/// What delivery did since the process started.
pub fn delivery_stats() -> DeliveryStats {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    DeliveryStats {
        spooled: l(&STATS.spooled),
        sent: l(&STATS.sent),
        storm_suppressed: l(&STATS.storm_suppressed),
        spool_dropped: l(&STATS.spool_dropped),
        rejected: l(&STATS.rejected),
        spool_errors: l(&STATS.spool_errors),
        sent_from_hook: l(&STATS.sent_from_hook),
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// Milliseconds on a monotonic clock, for storm windows.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

const STORM_SLOTS: usize = 256;
const STORM_PROBES: usize = 8;

struct StormSlot {
    key: AtomicU64,
    window_start: AtomicU64,
    suppressed: AtomicU64,
}

/// Per-fingerprint storm control, lock-free: a fixed open-addressing table
/// of fingerprint keys. A fingerprint the table has no room for is never
/// suppressed (the spool cap still bounds it).
struct Storm {
    slots: Vec<StormSlot>,
    window_ms: u64,
}

enum Seen {
    First(usize),
    Suppressed,
    Untracked,
}

impl Storm {
    fn new(window: Duration) -> Storm {
        Storm {
            slots: (0..STORM_SLOTS)
                .map(|_| StormSlot {
                    key: AtomicU64::new(0),
                    window_start: AtomicU64::new(0),
                    suppressed: AtomicU64::new(0),
                })
                .collect(),
            window_ms: window.as_millis() as u64,
        }
    }

    fn observe(&self, key: u64, now: u64) -> Seen {
        if self.window_ms == 0 {
            return Seen::Untracked;
        }
        let start = (key % STORM_SLOTS as u64) as usize;
        for i in 0..STORM_PROBES {
            let idx = (start + i) % STORM_SLOTS;
            let Some(slot) = self.slots.get(idx) else {
                break;
            };
            let mut k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        slot.window_start.store(now, Ordering::Release);
                        return Seen::First(idx);
                    }
                    Err(actual) => k = actual,
                }
            }
            if k != key {
                continue;
            }
            let ws = slot.window_start.load(Ordering::Acquire);
            if now < ws.saturating_add(self.window_ms) {
                slot.suppressed.fetch_add(1, Ordering::AcqRel);
                return Seen::Suppressed;
            }
            return match slot.window_start.compare_exchange(
                ws,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => Seen::First(idx),
                Err(_) => {
                    slot.suppressed.fetch_add(1, Ordering::AcqRel);
                    Seen::Suppressed
                }
            };
        }
        Seen::Untracked
    }

    fn unsent(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.suppressed.load(Ordering::Acquire))
            .sum()
    }
}

/// The storm key of an event: its fingerprint's first 8 bytes (never 0).
fn storm_key(event: &Event) -> u64 {
    let fp = panicle_protocol::fingerprint(event);
    let head = fp.get(..16).unwrap_or("1");
    u64::from_str_radix(head, 16).unwrap_or(1).max(1)
}

/// What the hook hands to the sender.
struct Item {
    entry: SpoolEntry,
    json: Vec<u8>,
    /// For the first event of a storm window: the slot and the event, kept as
    /// the template of the aggregate that carries the count.
    storm_first: Option<(usize, Event)>,
}

struct Queued {
    entry: SpoolEntry,
    json: Option<Vec<u8>>,
}

/// Sender state, owned by the sender thread under "the sender lock". The
/// hook never takes it (a test holds it, and panics under it, to prove so).
struct Core {
    rx: Receiver<Item>,
    ready: VecDeque<Queued>,
    known: HashSet<PathBuf>,
    reps: HashMap<usize, Event>,
    backoff: Backoff,
    server_errors: ServerErrors,
    retry_at: Option<Instant>,
    /// `retry_at` is the server's `Retry-After` (a 429 or 503): even a flush
    /// waits for it, where it skips our own backoff.
    retry_at_from_server: bool,
    next_storm: Instant,
}

struct Shared {
    options: DeliveryOptions,
    spool: Option<Spool>,
    transport: HttpTransport,
    /// Same endpoint, short timeout: the hook's send when the spool is unusable.
    fallback: HttpTransport,
    tx: SyncSender<Item>,
    /// Spooled events this process knows of and the server has not acknowledged.
    pending: AtomicUsize,
    /// The hand-off queue overflowed: the sender must rescan the spool.
    rescan: AtomicBool,
    /// Someone waits in `flush`: emit storm counts and skip the backoff once.
    flush_requested: AtomicBool,
    storm: Storm,
    core: Mutex<Core>,
    flush_lock: Mutex<()>,
    flushed: Condvar,
    sender_thread: OnceLock<Thread>,
    /// Test support: make the sender panic while it holds its lock.
    panic_in_sender: AtomicBool,
}

thread_local! {
    static IS_SENDER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static ACTIVE: OnceLock<Arc<Shared>> = OnceLock::new();

/// Handle the client keeps: the hook calls [`Delivery::submit`].
pub struct Delivery {
    shared: Arc<Shared>,
}

impl Delivery {
    /// Opens the spool (reporting on stderr if it cannot) and starts the
    /// sender, which first ships what earlier processes left in the spool.
    pub fn start(dsn: &Dsn, options: &Options, service: Option<&str>) -> Delivery {
        let opts = options.delivery.clone();
        let dir = opts
            .spool_dir
            .clone()
            .unwrap_or_else(|| default_spool_dir(service, Some(dsn)));
        let spool = match Spool::open(
            &dir,
            opts.spool_fsync,
            opts.spool_max_bytes,
            opts.spool_max_files,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "panicle: spool unavailable, panics will be sent from the panicking thread: {e}"
                );
                None
            }
        };
        let backlog = spool
            .as_ref()
            .and_then(|s| s.list().ok())
            .unwrap_or_default();
        let (tx, rx) = std::sync::mpsc::sync_channel(opts.queue_capacity.max(1));
        let mut core = Core {
            rx,
            ready: VecDeque::new(),
            known: HashSet::new(),
            reps: HashMap::new(),
            backoff: Backoff::default(),
            server_errors: ServerErrors::default(),
            retry_at: None,
            retry_at_from_server: false,
            next_storm: Instant::now() + opts.storm_report_interval,
        };
        for entry in backlog {
            core.known.insert(entry.path.clone());
            core.ready.push_back(Queued { entry, json: None });
        }
        let shared = Arc::new(Shared {
            transport: HttpTransport::new(dsn, options.send_timeout),
            fallback: HttpTransport::new(dsn, opts.fallback_send_timeout),
            storm: Storm::new(opts.storm_window),
            pending: AtomicUsize::new(core.ready.len()),
            options: opts,
            spool,
            tx,
            rescan: AtomicBool::new(false),
            flush_requested: AtomicBool::new(false),
            core: Mutex::new(core),
            flush_lock: Mutex::new(()),
            flushed: Condvar::new(),
            sender_thread: OnceLock::new(),
            panic_in_sender: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        match std::thread::Builder::new()
            .name("panicle-sender".into())
            .spawn(move || run_sender(&for_thread))
        {
            Ok(handle) => {
                let _ = shared.sender_thread.set(handle.thread().clone());
            }
            Err(e) => {
                eprintln!("panicle: cannot start the sender thread; events stay in the spool: {e}")
            }
        }
        let _ = ACTIVE.set(shared.clone());
        Delivery { shared }
    }

    /// The hook's path. Never blocks on a lock, never touches the network
    /// while the spool works, never panics.
    #[cfg_attr(not(feature = "tower"), allow(unused_mut))]
    pub fn submit(&self, mut event: Event) {
        #[cfg(feature = "tower")]
        crate::breaker::annotate(&mut event);
        let s = &*self.shared;
        let key = if s.storm.window_ms == 0 {
            0
        } else {
            storm_key(&event)
        };
        let storm_first = match s.storm.observe(key, now_ms()) {
            Seen::Suppressed => {
                bump(&STATS.storm_suppressed, 1);
                s.wake();
                return;
            }
            Seen::First(slot) => Some(slot),
            Seen::Untracked => None,
        };
        let Ok(json) = serde_json::to_vec(&event) else {
            return;
        };
        let Some(spool) = &s.spool else {
            s.send_from_hook(&json);
            return;
        };
        match spool.write(&event.event_id, &json) {
            Ok(entry) => {
                bump(&STATS.spooled, 1);
                let item = Item {
                    entry,
                    json,
                    storm_first: storm_first.map(|slot| (slot, event)),
                };
                s.pending.fetch_add(1, Ordering::AcqRel);
                if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                    s.tx.try_send(item)
                {
                    s.pending.fetch_sub(1, Ordering::AcqRel);
                    s.rescan.store(true, Ordering::Release);
                }
                s.wake();
                if cfg!(panic = "abort") && !IS_SENDER.with(|f| f.get()) {
                    s.wait_idle_spinning(s.options.abort_flush_timeout);
                }
            }
            Err(SpoolError::Full { .. }) => bump(&STATS.spool_dropped, 1),
            Err(e) => {
                bump(&STATS.spool_errors, 1);
                eprintln!("panicle: {e}");
                s.send_from_hook(&json);
            }
        }
    }

    /// Waits until every known event is acknowledged (storm counts included).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = self.sender_thread.get() {
            t.unpark();
        }
    }

    /// Storm counts are read before `pending`: the sender counts an
    /// aggregate as pending before it takes the count (see
    /// `emit_storm_counts`), so a count in transit is always seen somewhere.
    fn idle(&self) -> bool {
        self.storm.unsent() == 0
            && self.pending.load(Ordering::Acquire) == 0
            && !self.rescan.load(Ordering::Acquire)
    }

    fn send_from_hook(&self, json: &[u8]) {
        if self.fallback.send_now(json) {
            bump(&STATS.sent_from_hook, 1);
            bump(&STATS.sent, 1);
        }
    }

    /// The abort-build wait: lock-free polling, bounded.
    fn wait_idle_spinning(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.flush_requested.store(true, Ordering::Release);
        self.wake();
        while !self.idle() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.idle() {
            return true;
        }
        self.flush_requested.store(true, Ordering::Release);
        self.wake();
        if self.sender_thread.get().is_none() {
            return false;
        }
        let mut guard = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.idle() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            guard = self
                .flushed
                .wait_timeout(guard, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn notify_flushers(&self) {
        let _g = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.flushed.notify_all();
    }
}

fn run_sender(shared: &Shared) {
    IS_SENDER.with(|f| f.set(true));
    loop {
        let wait = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cycle(shared)))
            .unwrap_or(Duration::from_millis(100));
        shared.notify_flushers();
        if !wait.is_zero() {
            std::thread::park_timeout(wait);
        }
    }
}

/// One round of the sender: take in, rescan, storm counts, trim, send one
/// batch. Returns how long to sleep (zero: go on at once).
fn cycle(s: &Shared) -> Duration {
    let mut core = s.core.lock().unwrap_or_else(PoisonError::into_inner);
    if s.panic_in_sender.swap(false, Ordering::AcqRel) {
        panic!("panicle test: the sender panicked while holding its lock");
    }
    let core = &mut *core;
    while let Ok(item) = core.rx.try_recv() {
        if let Some((slot, event)) = item.storm_first {
            core.reps.insert(slot, event);
        }
        if core.known.insert(item.entry.path.clone()) {
            core.ready.push_back(Queued {
                entry: item.entry,
                json: Some(item.json),
            });
        } else {
            s.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let Some(spool) = &s.spool else {
        return Duration::from_secs(1);
    };
    if s.rescan.swap(false, Ordering::AcqRel)
        && let Ok(entries) = spool.list()
    {
        for entry in entries {
            if core.known.insert(entry.path.clone()) {
                s.pending.fetch_add(1, Ordering::AcqRel);
                core.ready.push_back(Queued { entry, json: None });
            }
        }
    }
    let flushing = s.flush_requested.load(Ordering::Acquire);
    let now = Instant::now();
    if flushing || now >= core.next_storm {
        emit_storm_counts(s, spool, core);
        core.next_storm = now + s.options.storm_report_interval;
    }
    if spool.over_cap()
        && let Ok(dropped) = spool.trim()
    {
        bump(&STATS.spool_dropped, dropped.len() as u64);
        for e in dropped {
            if core.known.remove(&e.path) {
                core.ready.retain(|q| q.entry.path != e.path);
                s.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    if core.ready.is_empty() {
        s.flush_requested.store(false, Ordering::Release);
        return core
            .next_storm
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
    }
    if let Some(at) = core.retry_at
        && now < at
        && (!flushing || core.retry_at_from_server)
    {
        return at - now;
    }
    let mut batch = Vec::new();
    while batch.len() < s.options.batch_events.max(1) {
        let Some(q) = core.ready.pop_front() else {
            break;
        };
        let json = match q.json {
            Some(j) => Some(j),
            None => std::fs::read(&q.entry.path).ok(),
        };
        match json {
            Some(j) => batch.push((q.entry, j)),
            None => {
                // Gone: another process sharing the spool sent it.
                core.known.remove(&q.entry.path);
                s.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    if batch.is_empty() {
        return Duration::ZERO;
    }
    let result = send_batch(&s.transport, spool, batch, &mut core.server_errors);
    let resolved = result.acked.len() + result.rejected.len();
    for e in result.acked.iter().chain(&result.rejected) {
        core.known.remove(&e.path);
    }
    bump(&STATS.sent, result.acked.len() as u64);
    bump(&STATS.rejected, result.rejected.len() as u64);
    s.pending.fetch_sub(resolved, Ordering::AcqRel);
    if result.unsent.is_empty() {
        core.backoff.reset();
        core.retry_at = None;
        return Duration::ZERO;
    }
    for (entry, json) in result.unsent.into_iter().rev() {
        core.ready.push_front(Queued {
            entry,
            json: Some(json),
        });
    }
    let wait = core.backoff.next(result.retry_after);
    // Counted from the answer, not from when the request left: a
    // `Retry-After` is a wait after the response (RFC 9110).
    core.retry_at = Some(Instant::now() + wait);
    core.retry_at_from_server = result.retry_after.is_some();
    s.flush_requested.store(false, Ordering::Release);
    wait
}

/// Ships the counts of suppressed panics: per storm slot, one event cloned
/// from the window's first event, with a fresh id and `"count": n`.
fn emit_storm_counts(s: &Shared, spool: &Spool, core: &mut Core) {
    let now = now_ms();
    for (idx, slot) in s.storm.slots.iter().enumerate() {
        if slot.suppressed.load(Ordering::Acquire) == 0 {
            continue;
        }
        // Pending before the count leaves its slot: a flush in between must
        // not find both at zero and let the process exit with it.
        s.pending.fetch_add(1, Ordering::AcqRel);
        let mut n = slot.suppressed.swap(0, Ordering::AcqRel);
        // The server bounds what one event may stand for: larger counts go
        // out as several aggregates, so none is clamped away.
        while n > MAX_COUNT {
            s.pending.fetch_add(1, Ordering::AcqRel);
            if !spool_storm_count(s, spool, core, idx, MAX_COUNT, now) {
                s.pending.fetch_sub(1, Ordering::AcqRel);
            }
            n -= MAX_COUNT;
        }
        let written = spool_storm_count(s, spool, core, idx, n, now);
        if !written {
            s.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Most panics one aggregate carries (the server's bound).
const MAX_COUNT: u64 = panicle_protocol::decode::MAX_EVENT_COUNT as u64;

/// Writes the aggregate of `n` suppressed panics of storm slot `idx` and
/// queues it; false when nothing was queued.
fn spool_storm_count(
    s: &Shared,
    spool: &Spool,
    core: &mut Core,
    idx: usize,
    n: u64,
    now: u64,
) -> bool {
    let Some(slot) = s.storm.slots.get(idx) else {
        return false;
    };
    let Some(rep) = core.reps.get(&idx) else {
        // The first event is still on its way (or overflowed the queue):
        // keep the count a little, then give up on it.
        if now
            < slot
                .window_start
                .load(Ordering::Acquire)
                .saturating_add(1000)
        {
            slot.suppressed.fetch_add(n, Ordering::AcqRel);
        }
        return false;
    };
    let mut event = rep.clone();
    event
        .tags
        .insert("panicle.storm.first_event_id".into(), rep.event_id.clone());
    event.event_id = uuid::Uuid::new_v4().to_string();
    event.timestamp = crate::capture::now_rfc3339();
    event
        .extra
        .insert("count".into(), serde_json::Value::from(n));
    let Ok(json) = serde_json::to_vec(&event) else {
        return false;
    };
    match spool.write(&event.event_id, &json) {
        Ok(entry) => {
            bump(&STATS.spooled, 1);
            core.known.insert(entry.path.clone());
            core.ready.push_back(Queued {
                entry,
                json: Some(json),
            });
            true
        }
        Err(_) => {
            bump(&STATS.spool_dropped, 1);
            false
        }
    }
}

/// Test support for the delivery tests; not part of the API.
#[doc(hidden)]
pub mod test_support {
    use super::*;

    /// Holds the sender's lock until the guard is dropped, as a sender stuck
    /// in a slow send would.
    pub fn hold_sender_lock() -> Option<impl Sized + 'static> {
        let shared: &'static Shared = ACTIVE.get()?;
        Some(shared.core.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes the sender thread panic on its next round, while it holds its lock.
    pub fn panic_in_sender() -> bool {
        let Some(s) = ACTIVE.get() else { return false };
        s.panic_in_sender.store(true, Ordering::Release);
        s.wake();
        true
    }

    /// Spooled events this process has not yet seen acknowledged.
    pub fn pending() -> usize {
        ACTIVE
            .get()
            .map(|s| s.pending.load(Ordering::Acquire))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_counts_after_the_first_and_restarts_after_the_window() {
        let storm = Storm::new(Duration::from_millis(100));
        assert!(matches!(storm.observe(42, 1000), Seen::First(_)));
        for t in 0..10 {
            assert!(matches!(storm.observe(42, 1000 + t), Seen::Suppressed));
        }
        assert!(matches!(storm.observe(43, 1000), Seen::First(_)));
        assert_eq!(storm.unsent(), 10);
        assert!(matches!(storm.observe(42, 1100), Seen::First(_)));
        assert!(matches!(
            Storm::new(Duration::ZERO).observe(42, 0),
            Seen::Untracked
        ));
    }

    #[test]
    fn storm_table_overflow_is_untracked_not_suppressed() {
        let storm = Storm::new(Duration::from_secs(60));
        // Keys that all hash to slot 0 fill the probe run.
        for i in 1..=STORM_PROBES as u64 {
            assert!(matches!(
                storm.observe(i * STORM_SLOTS as u64, 0),
                Seen::First(_)
            ));
        }
        assert!(matches!(
            storm.observe(99 * STORM_SLOTS as u64, 0),
            Seen::Untracked
        ));
    }
}
