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

use panicle_protocol::{Dsn, Event, StormRecord, StormSample};

use crate::batch::{Backoff, ServerErrors, send_batch};
use crate::options::{DeliveryOptions, Options};
use crate::spool::journal::{self, Journal};
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

/// Milliseconds on a monotonic clock, for storm rates.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

const STORM_SLOTS: usize = 256;
const STORM_PROBES: usize = 8;
/// Folded panics' samples waiting for the sender; more are dropped (the
/// count never is: it lives in the slot).
const SAMPLE_QUEUE: usize = 256;
/// Compare-and-swap retries of a slot's rate before the hook gives up
/// measuring: contention that high means many threads panic the same way at
/// once, which is a storm.
const RATE_CAS_RETRIES: usize = 1000;
/// Folded panics one id prefix numbers: `seq_end` (one past the last) must
/// fit a u32, so the last value is left out and the next number starts a
/// new prefix.
const SEQS_PER_PREFIX: u64 = u32::MAX as u64;

/// One fingerprint's storm state. Written by the hook without locks.
struct StormSlot {
    /// The fingerprint's storm key; 0 while the slot is free.
    key: AtomicU64,
    /// Packed rate state, see [`rate_step`].
    rate: AtomicU64,
    /// Folded panics numbered so far (the next one gets this number).
    folded: AtomicU64,
    /// Folded panics already written out in aggregates (the sender's).
    reported: AtomicU64,
    /// Folded panics whose hook has handed its sample over (or found the
    /// queue full): until this catches up with `folded`, a hook is between
    /// counting its panic and handing the sample, and a periodic aggregate
    /// would go out without it.
    handed: AtomicU64,
    /// The sender holds a template event for this slot's aggregates; until
    /// then the hook hands it each folded panic's whole event.
    has_template: AtomicBool,
}

/// Per-fingerprint storm control, lock-free: a fixed open-addressing table
/// of fingerprint keys, each with its rate in the current second. A
/// fingerprint the table has no room for is never folded (the spool cap
/// still bounds it).
struct Storm {
    slots: Vec<StormSlot>,
    /// Panics per second above which a fingerprint is folded; 0: off.
    threshold: u32,
    /// Per-process randomness of the folded panics' ids.
    seed: (u64, u64),
    /// The counts again, in a file the process maps: they outlive a kill.
    ledger: Option<crate::ledger::Ledger>,
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Sent on its own; the template of the slot's aggregates of panics
    /// folded after `folded_before`.
    Individual {
        slot: usize,
        folded_before: u64,
    },
    /// Folded into the storm of slot `slot` as its folded panic number `n`.
    Folded {
        slot: usize,
        n: u64,
    },
    Untracked,
}

/// The rate state after one more panic at second `now_sec`, and whether
/// that panic is folded. The state packs the second (bits 32..64), the
/// panics counted in it (bits 1..32) and "storming" (bit 0).
///
/// A storm starts with the panic that takes a second's count over the
/// threshold, and lasts while each ended second stayed over it: a second
/// at or below the threshold, or a second without any, ends it.
fn rate_step(state: u64, now_sec: u32, threshold: u32) -> (u64, bool) {
    const COUNT_MAX: u32 = 0x7fff_ffff;
    let sec = (state >> 32) as u32;
    let count = ((state >> 1) as u32) & COUNT_MAX;
    let storming = state & 1 == 1;
    // A thread that read the clock before another moved the slot on counts
    // in the newer second: the state never goes back.
    let now_sec = now_sec.max(sec);
    let (count, storming) = if now_sec == sec {
        let count = count.saturating_add(1).min(COUNT_MAX);
        (count, storming || count > threshold)
    } else {
        let goes_on = storming && now_sec == sec.wrapping_add(1) && count > threshold;
        (1, goes_on || 1 > threshold)
    };
    let state = (u64::from(now_sec) << 32) | (u64::from(count) << 1) | u64::from(storming);
    (state, storming)
}

/// splitmix64's finalizer: spreads seed and key over all bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Which id prefix (its epoch) and sequence number folded panic `n` gets.
fn folded_position(n: u64) -> (u32, u32) {
    ((n / SEQS_PER_PREFIX) as u32, (n % SEQS_PER_PREFIX) as u32)
}

/// The aggregates that cover folded panics `from..to`: ranges that stay
/// within one id prefix and stand for at most `max_count` panics each.
fn aggregate_ranges(from: u64, to: u64, max_count: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut start = from;
    while start < to {
        let (epoch, _) = folded_position(start);
        let epoch_end = (u64::from(epoch) + 1) * SEQS_PER_PREFIX;
        let stop = to.min(epoch_end).min(start + max_count.max(1));
        ranges.push((start, stop));
        start = stop;
    }
    ranges
}

impl Storm {
    fn new(threshold: u32) -> Storm {
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        Storm {
            slots: (0..STORM_SLOTS)
                .map(|_| StormSlot {
                    key: AtomicU64::new(0),
                    rate: AtomicU64::new(0),
                    folded: AtomicU64::new(0),
                    reported: AtomicU64::new(0),
                    handed: AtomicU64::new(0),
                    has_template: AtomicBool::new(false),
                })
                .collect(),
            threshold,
            seed,
            ledger: None,
        }
    }

    /// The slot of `key`, claimed if it has none yet.
    fn slot_of(&self, key: u64) -> Option<usize> {
        let start = (key % STORM_SLOTS as u64) as usize;
        for i in 0..STORM_PROBES {
            let idx = (start + i) % STORM_SLOTS;
            let slot = self.slots.get(idx)?;
            let mut k = slot.key.load(Ordering::Acquire);
            if k == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        if let Some(ledger) = &self.ledger {
                            ledger.set_key(idx, key);
                        }
                        return Some(idx);
                    }
                    Err(actual) => k = actual,
                }
            }
            if k == key {
                return Some(idx);
            }
        }
        None
    }

    fn observe(&self, key: u64, now_ms: u64) -> Seen {
        if self.threshold == 0 {
            return Seen::Untracked;
        }
        let Some(idx) = self.slot_of(key) else {
            return Seen::Untracked;
        };
        let Some(slot) = self.slots.get(idx) else {
            return Seen::Untracked;
        };
        let now_sec = (now_ms / 1000) as u32;
        let mut state = slot.rate.load(Ordering::Acquire);
        let mut folded = true;
        for _ in 0..RATE_CAS_RETRIES {
            let (next, storming) = rate_step(state, now_sec, self.threshold);
            match slot
                .rate
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    folded = storming;
                    break;
                }
                Err(actual) => state = actual,
            }
        }
        if folded {
            let n = slot.folded.fetch_add(1, Ordering::AcqRel);
            if let Some(ledger) = &self.ledger {
                ledger.folded(idx, n + 1);
            }
            Seen::Folded { slot: idx, n }
        } else {
            Seen::Individual {
                slot: idx,
                folded_before: slot.folded.load(Ordering::Acquire),
            }
        }
    }

    /// The id prefix of the storm of `key` for folded panics of this epoch.
    fn id_prefix(&self, key: u64, epoch: u32) -> String {
        let high = mix(self.seed.0 ^ key);
        let low = mix(self.seed.1 ^ key.rotate_left(32) ^ u64::from(epoch)) as u32;
        panicle_protocol::storm::storm_id_prefix(high, low)
    }

    /// The id folded panic `n` of `key` was handed.
    fn folded_id(&self, key: u64, n: u64) -> String {
        let (epoch, seq) = folded_position(n);
        panicle_protocol::storm::folded_event_id(&self.id_prefix(key, epoch), seq)
    }

    /// Folded panics not yet written out in an aggregate.
    fn unsent(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| {
                let reported = s.reported.load(Ordering::Acquire);
                s.folded.load(Ordering::Acquire).saturating_sub(reported)
            })
            .sum()
    }
}

/// The storm key of an event: its fingerprint's first 8 bytes (never 0).
fn storm_key(event: &Event) -> u64 {
    let fp = panicle_protocol::fingerprint(event);
    let head = fp.get(..16).unwrap_or("1");
    u64::from_str_radix(head, 16).unwrap_or(1).max(1)
}

/// An event of a tracked fingerprint sent on its own.
struct StormTemplate {
    slot: usize,
    /// The slot's folded panics before this one: their aggregates name the
    /// template before this one.
    folded_before: u64,
    event: Event,
}

/// What the hook hands the sender for a folded panic (on a queue of its
/// own, dropped when full).
struct FoldedPanic {
    slot: usize,
    sampled: Sampled,
    /// The whole event, while the sender has no template for the slot.
    template: Option<Box<Event>>,
}

/// One folded panic's sample.
struct Sampled {
    /// Its number in the slot's storm.
    n: u64,
    sample: StormSample,
    /// The request's method (not part of a sample; the aggregate's request
    /// is its first sample's).
    method: Option<String>,
    /// The message was cut to [`SAMPLE_MESSAGE_BYTES`].
    message_cut: bool,
}

/// Longest message a sample keeps: 40 samples and 20 variants of the
/// longest messages (16 KiB) would take an aggregate near the server's
/// body limit.
const SAMPLE_MESSAGE_BYTES: usize = 1024;

/// What the sender gathered for a slot's next aggregates.
#[derive(Default)]
struct StormAcc {
    /// The last event of this fingerprint sent on its own (else a folded
    /// panic's): frames, resource and tags of the aggregates.
    template: Option<Event>,
    /// The id of the last event of this fingerprint sent on its own.
    last_individual_id: Option<String>,
    /// Since when folded panics wait for a template.
    waiting_since: Option<Instant>,
    /// The last round found a hook between counting a panic and handing
    /// its sample: this round emits regardless.
    handoff_late: bool,
    /// The first samples since the last aggregate, by folded number.
    head: Vec<Sampled>,
    /// The last ones.
    tail: VecDeque<Sampled>,
    /// One message per distinct template.
    messages: Vec<String>,
    message_templates: HashSet<String>,
    /// Raw messages already templated (bounded): a storm repeats one.
    seen_messages: HashSet<String>,
    /// The ledger's copy of `template` is current.
    template_saved: bool,
    /// Messages templated for this aggregate (bounded: one fingerprint
    /// shares one template but for key collisions, so looking on at every
    /// sample of a long storm would cost the sender for nothing).
    templated: usize,
}

/// Samples kept from the start and from the end of one aggregate.
const SAMPLES_EACH_END: usize = panicle_protocol::storm::MAX_STORM_SAMPLES / 2;
/// Raw messages remembered to skip templating them again.
const SEEN_MESSAGES: usize = 256;
/// Messages templated per aggregate at most.
const MAX_TEMPLATED: usize = 256;

impl StormAcc {
    fn add_sample(&mut self, sampled: Sampled) {
        if let Some(message) = &sampled.sample.message
            && self.messages.len() < panicle_protocol::storm::MAX_STORM_MESSAGES
            && self.templated < MAX_TEMPLATED
            && !self.seen_messages.contains(message)
        {
            self.templated += 1;
            let template = panicle_protocol::message_template(message);
            if self.message_templates.insert(template) {
                self.messages.push(message.clone());
            }
            if self.seen_messages.len() < SEEN_MESSAGES {
                self.seen_messages.insert(message.clone());
            }
        }
        self.push(sampled);
    }

    /// Takes the samples of folded panics `from..to`, in order, and clears
    /// the messages for the next aggregate.
    fn take_samples(&mut self, from: u64, to: u64) -> Vec<Sampled> {
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for s in self.head.drain(..).chain(self.tail.drain(..)) {
            if (from..to).contains(&s.n) {
                taken.push(s);
            } else if s.n >= to {
                kept.push(s);
            }
        }
        for s in kept {
            self.push(s);
        }
        taken.sort_by_key(|s| s.n);
        taken
    }

    fn push(&mut self, s: Sampled) {
        if self.head.len() < SAMPLES_EACH_END {
            self.head.push(s);
        } else {
            if self.tail.len() == SAMPLES_EACH_END {
                self.tail.pop_front();
            }
            self.tail.push_back(s);
        }
    }

    fn take_messages(&mut self) -> Vec<String> {
        self.message_templates.clear();
        self.seen_messages.clear();
        self.templated = 0;
        std::mem::take(&mut self.messages)
    }
}

/// What the hook hands to the sender.
struct Item {
    entry: SpoolEntry,
    json: Vec<u8>,
    /// The event is only in this journal record (no spool file): the sender
    /// clears it once the server has the event, or writes the file first to
    /// make room.
    journal_record: Option<journal::Record>,
    /// For an event of a tracked fingerprint: the template of the slot's
    /// next aggregates.
    storm_template: Option<StormTemplate>,
}

struct Queued {
    entry: SpoolEntry,
    json: Option<Vec<u8>>,
}

/// Sender state, owned by the sender thread under "the sender lock". The
/// hook never takes it (a test holds it, and panics under it, to prove so).
struct Core {
    rx: Receiver<Item>,
    folded_rx: Receiver<FoldedPanic>,
    ready: VecDeque<Queued>,
    known: HashSet<PathBuf>,
    /// Events that are only in the hook's journal (no spool file): their
    /// record is cleared once the server has them, or when they are written
    /// out to make room (see `make_room_in_journal`).
    journaled: HashMap<PathBuf, journal::Record>,
    storms: HashMap<usize, StormAcc>,
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
    /// Where the hook writes its events (see `spool::journal`); without it
    /// the hook writes spool files itself.
    journal: Option<Journal>,
    transport: HttpTransport,
    /// Same endpoint, short timeout: the hook's send when the spool is unusable.
    fallback: HttpTransport,
    tx: SyncSender<Item>,
    folded_tx: SyncSender<FoldedPanic>,
    /// Spooled events this process knows of and the server has not acknowledged.
    pending: AtomicUsize,
    /// The hand-off queue overflowed: the sender must rescan the spool.
    rescan: AtomicBool,
    /// Someone waits in `flush`: emit storm counts and skip the backoff once.
    flush_requested: AtomicBool,
    /// Counts `flush` calls; a send remembers the count it started under.
    flush_round: AtomicU64,
    /// The latest flush round in which a send found the server unreachable.
    unreachable_round: AtomicU64,
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
        // What a killed process left, before the backlog is read: the
        // events in its journal become spool files, then the storm counts
        // in its ledger aggregates (whose template may be one of those).
        if let Some(spool) = &spool {
            journal::recover(spool);
            recover_storm_ledgers(spool);
        }
        let journal = spool
            .as_ref()
            .and_then(|spool| match Journal::create(spool.dir(), opts.spool_fsync) {
                Ok(journal) => Some(journal),
                Err(e) => {
                    eprintln!(
                        "panicle: no hook journal in the spool ({e}): the hook writes spool files itself"
                    );
                    None
                }
            });
        let backlog = spool
            .as_ref()
            .and_then(|s| s.list().ok())
            .unwrap_or_default();
        let mut storm = Storm::new(opts.storm_threshold_per_sec);
        if let Some(spool) = &spool
            && storm.threshold > 0
        {
            match crate::ledger::Ledger::create(spool.dir(), STORM_SLOTS, storm.seed) {
                Ok(ledger) => storm.ledger = Some(ledger),
                Err(e) => eprintln!(
                    "panicle: no storm ledger in the spool ({e}): a kill during a storm loses its folded counts"
                ),
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(opts.queue_capacity.max(1));
        let (folded_tx, folded_rx) = std::sync::mpsc::sync_channel(SAMPLE_QUEUE);
        let mut core = Core {
            rx,
            folded_rx,
            ready: VecDeque::new(),
            known: HashSet::new(),
            journaled: HashMap::new(),
            storms: HashMap::new(),
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
            storm,
            pending: AtomicUsize::new(core.ready.len()),
            options: opts,
            spool,
            journal,
            tx,
            folded_tx,
            rescan: AtomicBool::new(false),
            flush_requested: AtomicBool::new(false),
            flush_round: AtomicU64::new(0),
            unreachable_round: AtomicU64::new(0),
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
    /// while the spool works, never panics. Returns the id handed out for
    /// this panic: the event's own, or a folded panic's derived id.
    #[cfg_attr(not(feature = "tower"), allow(unused_mut))]
    pub fn submit(&self, mut event: Event) -> String {
        #[cfg(feature = "tower")]
        crate::breaker::annotate(&mut event);
        let s = &*self.shared;
        let key = if s.storm.threshold == 0 {
            0
        } else {
            storm_key(&event)
        };
        let storm_slot = match s.storm.observe(key, now_ms()) {
            Seen::Folded { slot, n } => return s.fold(slot, key, n, event),
            Seen::Individual {
                slot,
                folded_before,
            } => Some((slot, folded_before)),
            Seen::Untracked => None,
        };
        let event_id = event.event_id.clone();
        let Ok(json) = serde_json::to_vec(&event) else {
            return event_id;
        };
        let Some(spool) = &s.spool else {
            s.send_from_hook(&json);
            return event_id;
        };
        match s.spool_from_hook(spool, &event.event_id, &json) {
            Ok((entry, journal_record)) => {
                bump(&STATS.spooled, 1);
                let item = Item {
                    entry,
                    json,
                    journal_record,
                    storm_template: storm_slot.map(|(slot, folded_before)| StormTemplate {
                        slot,
                        folded_before,
                        event,
                    }),
                };
                s.pending.fetch_add(1, Ordering::AcqRel);
                if let Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) =
                    s.tx.try_send(item)
                {
                    // The sender will not hear of it: the file must be there
                    // for its rescan.
                    if let Some(record) = item.journal_record {
                        s.write_out(spool, &item.entry, &item.json, record);
                    }
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
        event_id
    }

    /// Waits until every known event is acknowledged (storm counts included).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout, false)
    }

    /// The exit's flush: storm counts go to the spool first, then the wait
    /// for the server, cut short (unless `wait_when_unreachable`) once a
    /// send made for it finds nothing listening: everything is in the spool
    /// already and the next start ships it.
    pub fn flush_at_exit(&self, timeout: Duration, wait_when_unreachable: bool) -> bool {
        let flushed = self.shared.flush(timeout, !wait_when_unreachable);
        // What the server has not taken stays in the journal (or the spool)
        // for the next start; an empty journal goes.
        if let Some(journal) = &self.shared.journal {
            journal.close_if_empty();
        }
        // Every count is in an aggregate in the spool: the ledger has
        // nothing left to keep.
        if self.shared.storm.unsent() == 0
            && let Some(ledger) = &self.shared.storm.ledger
        {
            ledger.remove();
        }
        flushed
    }

    /// The spool directory, when the spool could be opened.
    pub fn spool_dir(&self) -> Option<&std::path::Path> {
        self.shared.spool.as_ref().map(|s| s.dir())
    }

    /// A recovered crash record's event: written to the spool as it is (no
    /// storm control: a record is one death, never folded), then handed to
    /// the sender. True once it is in the spool, so the record may go.
    pub fn spool_recovered(&self, event: &Event) -> bool {
        let s = &*self.shared;
        let Some(spool) = &s.spool else { return false };
        let Ok(json) = serde_json::to_vec(event) else {
            return false;
        };
        match spool.write(&event.event_id, &json) {
            Ok(entry) => {
                bump(&STATS.spooled, 1);
                s.pending.fetch_add(1, Ordering::AcqRel);
                let item = Item {
                    entry,
                    json,
                    journal_record: None,
                    storm_template: None,
                };
                if s.tx.try_send(item).is_err() {
                    s.pending.fetch_sub(1, Ordering::AcqRel);
                    s.rescan.store(true, Ordering::Release);
                }
                s.wake();
                true
            }
            Err(e) => {
                eprintln!("panicle: a recovered crash record stays in the spool: {e}");
                false
            }
        }
    }
}

impl Shared {
    /// The hook's write: the event's record in the journal (one copy into
    /// mapped memory), or, when the journal cannot take it, its spool file.
    /// The record, if any, is the sender's to clear.
    fn spool_from_hook(
        &self,
        spool: &Spool,
        event_id: &str,
        json: &[u8],
    ) -> Result<(SpoolEntry, Option<journal::Record>), SpoolError> {
        let entry = spool.entry(crate::spool::unix_nanos(), event_id, json.len())?;
        let record = self.journal.as_ref().and_then(|journal| {
            let name = entry.path.file_name()?.to_str()?;
            journal.append(name, json)
        });
        if record.is_none() {
            spool
                .write_entry(&entry, json)
                .inspect_err(|_| spool.forget(&entry))?;
        }
        Ok((entry, record))
    }

    /// A journaled event becomes its spool file and leaves the journal.
    /// False when the file cannot be written: the record stays.
    fn write_out(
        &self,
        spool: &Spool,
        entry: &SpoolEntry,
        json: &[u8],
        record: journal::Record,
    ) -> bool {
        let Some(journal) = &self.journal else {
            return false;
        };
        match spool.write_entry(entry, json) {
            Ok(()) => {
                journal.release(record);
                true
            }
            Err(e) => {
                bump(&STATS.spool_errors, 1);
                eprintln!("panicle: {e} (the event stays in the hook journal)");
                false
            }
        }
    }

    /// A folded panic: counted in its slot (already, by its number `n`),
    /// handed its derived id, and sampled for the sender when there is room.
    fn fold(&self, slot: usize, key: u64, n: u64, mut event: Event) -> String {
        bump(&STATS.storm_suppressed, 1);
        let event_id = self.storm.folded_id(key, n);
        crate::scope::set_last_event_id(&event_id);
        let needs_template = self
            .storm
            .slots
            .get(slot)
            .is_some_and(|s| !s.has_template.load(Ordering::Acquire));
        let request = event.request.as_ref();
        let mut sample = StormSample {
            event_id: event_id.clone(),
            timestamp: String::new(),
            trace: event.trace.clone(),
            request_id: request.and_then(|r| r.request_id.clone()),
            route: request.and_then(|r| r.route.clone()),
            message: None,
        };
        let method = request.and_then(|r| r.method.clone());
        let cut = panicle_protocol::truncate_str(&event.message, SAMPLE_MESSAGE_BYTES);
        let message_cut = cut.len() < event.message.len();
        let template = if needs_template {
            sample.timestamp = event.timestamp.clone();
            sample.message = Some(cut.to_string());
            Some(Box::new(event))
        } else {
            let kept = cut.len();
            sample.timestamp = std::mem::take(&mut event.timestamp);
            let mut message = std::mem::take(&mut event.message);
            message.truncate(kept);
            sample.message = Some(message);
            None
        };
        let _ = self.folded_tx.try_send(FoldedPanic {
            slot,
            sampled: Sampled {
                n,
                sample,
                method,
                message_cut,
            },
            template,
        });
        if let Some(s) = self.storm.slots.get(slot) {
            s.handed.fetch_add(1, Ordering::AcqRel);
        }
        self.wake();
        event_id
    }

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

    fn flush(&self, timeout: Duration, give_up_when_unreachable: bool) -> bool {
        let deadline = Instant::now() + timeout;
        if self.idle() {
            return true;
        }
        let round = self.flush_round.fetch_add(1, Ordering::AcqRel) + 1;
        self.flush_requested.store(true, Ordering::Release);
        self.wake();
        // Folded panics are only counts in memory until an aggregate holds
        // them: write those to the spool before any wait on the network, so
        // an exit after a flush that timed out (a server that hangs) loses
        // none of them.
        self.spool_storm_counts(deadline);
        if self.sender_thread.get().is_none() {
            return self.idle();
        }
        let mut guard = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.idle() {
                return true;
            }
            if give_up_when_unreachable
                && self.unreachable_round.load(Ordering::Acquire) >= round
                && self.storm.unsent() == 0
            {
                return false;
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

    /// Writes every storm slot's unreported folded panics to the spool as
    /// aggregates, from the calling thread. The sender holds its lock only
    /// between sends, so this waits for at most one round's bookkeeping
    /// (bounded by `deadline` all the same).
    fn spool_storm_counts(&self, deadline: Instant) {
        let Some(spool) = &self.spool else { return };
        if self.storm.unsent() == 0 {
            return;
        }
        let mut core = loop {
            match self.core.try_lock() {
                Ok(core) => break core,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let core = &mut *core;
        take_in(self, spool, core);
        emit_storm_counts(self, spool, core, true);
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
    let mut guard = s.core.lock().unwrap_or_else(PoisonError::into_inner);
    if s.panic_in_sender.swap(false, Ordering::AcqRel) {
        panic!("panicle test: the sender panicked while holding its lock");
    }
    let core = &mut *guard;
    let Some(spool) = &s.spool else {
        // Without a spool the hook sent each event itself: drain the queues.
        while core.folded_rx.try_recv().is_ok() {}
        while core.rx.try_recv().is_ok() {}
        return Duration::from_secs(1);
    };
    take_in(s, spool, core);
    let flushing = s.flush_requested.load(Ordering::Acquire);
    // A flush (the exit's above all) wants the server first; what it
    // leaves in the journal is as safe there.
    if !flushing {
        make_room_in_journal(s, spool, core);
    }
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
    let now = Instant::now();
    if flushing || now >= core.next_storm {
        emit_storm_counts(s, spool, core, flushing);
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
    // The lock is not held on the network: a flush at exit takes it to
    // write storm counts out while a send hangs.
    let mut server_errors = std::mem::take(&mut core.server_errors);
    let round = s.flush_round.load(Ordering::Acquire);
    drop(guard);
    let result = send_batch(&s.transport, spool, batch, &mut server_errors);
    if result.unreachable {
        s.unreachable_round.fetch_max(round, Ordering::AcqRel);
    }
    let mut guard = s.core.lock().unwrap_or_else(PoisonError::into_inner);
    let core = &mut *guard;
    core.server_errors = server_errors;
    let resolved = result.acked.len() + result.rejected.len();
    for (e, acked) in result
        .acked
        .iter()
        .map(|e| (e, true))
        .chain(result.rejected.iter().map(|e| (e, false)))
    {
        core.known.remove(&e.path);
        if let Some(record) = core.journaled.remove(&e.path)
            && let Some(journal) = &s.journal
        {
            journal.release(record);
            // It had no file to remove: it leaves the accounting here (a
            // refused one did in `Spool::reject`).
            if acked {
                spool.forget(e);
            }
        }
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
    // A flush that began during the send has not been served: it keeps its
    // request (and its wake-up), so the next round skips the backoff for it.
    if s.flush_round.load(Ordering::Acquire) == round {
        s.flush_requested.store(false, Ordering::Release);
    }
    wait
}

/// The hook's events stay in its journal while they wait for the server
/// (as durable there as in a file, and no file system work at all when the
/// server answers). Once the journal is three quarters full, the waiting
/// ones become spool files, so that it empties and the hook keeps room.
fn make_room_in_journal(s: &Shared, spool: &Spool, core: &mut Core) {
    let Some(journal) = &s.journal else {
        return;
    };
    if journal.used() < journal::JOURNAL_BYTES / 4 * 3 {
        return;
    }
    for q in &core.ready {
        if let (Some(&record), Some(json)) = (core.journaled.get(&q.entry.path), &q.json)
            && s.write_out(spool, &q.entry, json, record)
        {
            core.journaled.remove(&q.entry.path);
        }
    }
}

/// Takes what the hook handed over: folded panics' samples, spooled events,
/// and the templates of storm slots (folded panics before a template belong
/// to aggregates that name the template before it: written out first).
fn take_in(s: &Shared, spool: &Spool, core: &mut Core) {
    while let Ok(folded) = core.folded_rx.try_recv() {
        take_folded(s, core, folded);
    }
    let mut templates = Vec::new();
    while let Ok(item) = core.rx.try_recv() {
        templates.extend(item.storm_template);
        if let Some(record) = item.journal_record {
            core.journaled.insert(item.entry.path.clone(), record);
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
    for template in templates {
        emit_storm_slot(s, spool, core, template.slot, template.folded_before, false);
        if let Some(slot) = s.storm.slots.get(template.slot) {
            slot.has_template.store(true, Ordering::Release);
        }
        let acc = core.storms.entry(template.slot).or_default();
        acc.last_individual_id = Some(template.event.event_id.clone());
        acc.template = Some(template.event);
        acc.template_saved = false;
    }
    save_templates(s, core);
}

/// Gives the ledger the template of each slot that folds panics, so the
/// next start can turn counts a killed process left into aggregates with
/// the right frames. Written when a slot's template changes while it folds
/// (the sender's thread, never the hook's).
fn save_templates(s: &Shared, core: &mut Core) {
    let Some(ledger) = &s.storm.ledger else {
        return;
    };
    for (idx, acc) in core.storms.iter_mut() {
        if acc.template_saved {
            continue;
        }
        let Some(template) = &acc.template else {
            continue;
        };
        let folding = s
            .storm
            .slots
            .get(*idx)
            .is_some_and(|slot| slot.folded.load(Ordering::Acquire) > 0);
        if !folding {
            continue;
        }
        let Ok(event) = serde_json::to_value(template) else {
            continue;
        };
        let saved = serde_json::json!({
            "last_individual_id": acc.last_individual_id,
            "event": event,
        });
        let Ok(json) = serde_json::to_vec(&saved) else {
            continue;
        };
        let path = ledger.template_path(*idx);
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, &json).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
            acc.template_saved = true;
        }
    }
}

/// Files a folded panic's sample (and the template it may carry) under its
/// slot; a sample of a panic already written out is dropped.
fn take_folded(s: &Shared, core: &mut Core, folded: FoldedPanic) {
    let Some(slot) = s.storm.slots.get(folded.slot) else {
        return;
    };
    let acc = core.storms.entry(folded.slot).or_default();
    if let Some(template) = folded.template
        && acc.template.is_none()
    {
        acc.template = Some(*template);
        acc.template_saved = false;
        slot.has_template.store(true, Ordering::Release);
    }
    if folded.sampled.n >= slot.reported.load(Ordering::Acquire) {
        acc.add_sample(folded.sampled);
    }
}

/// How long folded panics wait for their template (the last individual
/// event, in flight on the other queue) before going out without it.
const TEMPLATE_WAIT: Duration = Duration::from_secs(2);

/// Ships the folded panics of every storm slot not yet reported; a slot
/// whose template is still on its way waits for it a little (not when
/// someone flushes).
fn emit_storm_counts(s: &Shared, spool: &Spool, core: &mut Core, flushing: bool) {
    // Per slot: every panic counted so far has handed its sample over
    // (`handed` read first: then `handed >= folded` means each panic
    // numbered below `folded` is done), so the samples are in the queue,
    // taken in below before the aggregate is built. A hook caught between
    // the two waits for the next round, at most one: then the count goes
    // out without that sample. A flush takes everything counted.
    let mut upto: Vec<(usize, u64)> = Vec::new();
    for (idx, slot) in s.storm.slots.iter().enumerate() {
        let handed = slot.handed.load(Ordering::Acquire);
        let folded = slot.folded.load(Ordering::Acquire);
        if folded <= slot.reported.load(Ordering::Acquire) {
            continue;
        }
        let acc = core.storms.entry(idx).or_default();
        if flushing || handed >= folded || acc.handoff_late {
            acc.handoff_late = false;
            upto.push((idx, folded));
        } else {
            acc.handoff_late = true;
        }
    }
    while let Ok(folded) = core.folded_rx.try_recv() {
        take_folded(s, core, folded);
    }
    for (idx, folded) in upto {
        emit_storm_slot(s, spool, core, idx, folded, !flushing);
    }
}

/// Writes out slot `idx`'s folded panics from the last reported one up to
/// `upto`: aggregates covering those numbers (see [`aggregate_ranges`]),
/// built from the slot's template and samples.
fn emit_storm_slot(
    s: &Shared,
    spool: &Spool,
    core: &mut Core,
    idx: usize,
    upto: u64,
    may_wait: bool,
) {
    let Some(slot) = s.storm.slots.get(idx) else {
        return;
    };
    let reported = slot.reported.load(Ordering::Acquire);
    if upto <= reported {
        return;
    }
    let acc = core.storms.entry(idx).or_default();
    if acc.template.is_none() && may_wait {
        let since = *acc.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() < TEMPLATE_WAIT {
            return;
        }
    }
    acc.waiting_since = None;
    let ranges = aggregate_ranges(reported, upto, MAX_COUNT);
    // Pending before the count leaves its slot: a flush in between must
    // not find both at zero and let the process exit with it.
    s.pending.fetch_add(ranges.len(), Ordering::AcqRel);
    slot.reported.store(upto, Ordering::Release);
    let key = slot.key.load(Ordering::Acquire);
    let mut messages = acc.take_messages();
    for (from, to) in ranges {
        let samples = acc.take_samples(from, to);
        let event = aggregate(&s.storm, key, acc, from, to, samples, messages);
        messages = Vec::new();
        if spool_aggregate(spool, &mut core.known, &mut core.ready, &event) {
            if let Some(ledger) = &s.storm.ledger {
                ledger.reported(idx, to);
            }
        } else {
            s.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Turns what dead processes' storm ledgers counted but never wrote out
/// into aggregates in `spool` (exactly once: an aggregate a process wrote
/// before it could mark it in its ledger is found in the spool by its id),
/// then removes the ledgers. Their frames come from the slot's saved
/// template; without one the count still goes out, under a generic message.
pub(crate) fn recover_storm_ledgers(spool: &Spool) -> u64 {
    let mut recovered = 0;
    let dead = crate::ledger::dead_ledgers(spool.dir());
    if dead.is_empty() {
        return 0;
    }
    let existing: HashMap<String, PathBuf> = spool
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.event_id, e.path))
        .collect();
    // A storm whose template the sender had not saved yet (killed right
    // after the loop) takes the newest event of its fingerprint sent on its
    // own: the hook spools that one before it folds any.
    let mut individual: Option<HashMap<u64, Event>> = None;
    for ledger in dead {
        let storm = Storm {
            slots: Vec::new(),
            threshold: 0,
            seed: ledger.seed,
            ledger: None,
        };
        let mut complete = true;
        for (slot, counts) in &ledger.unreported {
            let mut acc = StormAcc::default();
            if let Some(saved) = ledger
                .template(*slot)
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                acc.last_individual_id = saved["last_individual_id"].as_str().map(String::from);
                acc.template = serde_json::from_value(saved["event"].clone()).ok();
            }
            if acc.template.is_none() {
                let newest = individual.get_or_insert_with(|| individual_events(spool));
                if let Some(event) = newest.get(&counts.key) {
                    acc.last_individual_id = Some(event.event_id.clone());
                    acc.template = Some(event.clone());
                }
            }
            let mut from = counts.reported;
            // Written to the spool just before the kill, not yet marked.
            while from < counts.folded {
                let id = storm.folded_id(counts.key, from);
                let Some(count) = existing
                    .get(&id)
                    .and_then(|p| std::fs::read(p).ok())
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["count"].as_u64())
                else {
                    break;
                };
                from += count.max(1);
            }
            for (a, b) in aggregate_ranges(from, counts.folded, MAX_COUNT) {
                let mut event = aggregate(&storm, counts.key, &acc, a, b, Vec::new(), Vec::new());
                if let Some(t) = &acc.template {
                    event.timestamp = t.timestamp.clone();
                }
                event
                    .tags
                    .insert("panicle.storm.recovered".into(), "true".into());
                let written = serde_json::to_vec(&event)
                    .ok()
                    .is_some_and(|json| spool.write(&event.event_id, &json).is_ok());
                if written {
                    recovered += b - a;
                } else {
                    complete = false;
                }
            }
        }
        if complete {
            ledger.remove();
        }
    }
    recovered
}

/// The newest event of each storm key in the spool that stands for one
/// panic (no aggregate).
fn individual_events(spool: &Spool) -> HashMap<u64, Event> {
    let mut newest = HashMap::new();
    // Oldest first: a newer event of a key replaces an older one.
    for entry in spool.list().unwrap_or_default() {
        let Some(event) = std::fs::read(&entry.path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Event>(&b).ok())
            .filter(|e| e.storm.is_none() && !e.extra.contains_key("count"))
        else {
            continue;
        };
        newest.insert(storm_key(&event), event);
    }
    newest
}

/// Most panics one aggregate carries (the server's bound).
const MAX_COUNT: u64 = panicle_protocol::decode::MAX_EVENT_COUNT as u64;

/// The aggregate of folded panics `from..to` of the storm of `key`: the
/// template's frames, resource and tags; the first sample's time, trace,
/// request and message (none of the template's: they are another panic's);
/// the id of folded panic `from`, so a retried aggregate deduplicates.
fn aggregate(
    storm: &Storm,
    key: u64,
    acc: &StormAcc,
    from: u64,
    to: u64,
    samples: Vec<Sampled>,
    messages: Vec<String>,
) -> Event {
    let (epoch, seq_start) = folded_position(from);
    let id_prefix = storm.id_prefix(key, epoch);
    let event_id = panicle_protocol::storm::folded_event_id(&id_prefix, seq_start);
    // A cut message could template differently: the template's (same
    // fingerprint) then stands in.
    let first_message = samples
        .first()
        .filter(|s| !s.message_cut)
        .and_then(|s| s.sample.message.clone());
    let mut event = match &acc.template {
        Some(template) => {
            let mut event = template.clone();
            event.event_id = event_id;
            event
        }
        None => {
            // The template never reached the sender (both queues were full):
            // the count still goes out, under the first sample's message.
            let mut event = Event::new(
                event_id,
                String::new(),
                samples
                    .first()
                    .and_then(|s| s.sample.message.clone())
                    .unwrap_or_else(|| "panic (storm aggregate)".into()),
            );
            event.platform = Some(panicle_protocol::Platform::Rust);
            event.kind = Some(panicle_protocol::Kind::Panic);
            event
        }
    };
    event.trace = None;
    event.request = None;
    event.timestamp = crate::capture::now_rfc3339();
    if let Some(Sampled {
        sample: first,
        method,
        ..
    }) = samples.first()
    {
        if !first.timestamp.is_empty() {
            event.timestamp = first.timestamp.clone();
        }
        event.trace = first.trace.clone();
        if first.request_id.is_some() || first.route.is_some() {
            event.request = Some(panicle_protocol::Request {
                method: method.clone(),
                route: first.route.clone(),
                request_id: first.request_id.clone(),
            });
        }
        if let Some(m) = first_message {
            event.message = m;
        }
    }
    match &acc.last_individual_id {
        Some(id) => {
            event
                .tags
                .insert("panicle.storm.first_event_id".into(), id.clone());
        }
        None => {
            event.tags.remove("panicle.storm.first_event_id");
        }
    }
    event
        .extra
        .insert("count".into(), serde_json::Value::from(to - from));
    event.storm = Some(StormRecord {
        first_event_id: acc.last_individual_id.clone(),
        id_prefix,
        seq_start,
        seq_end: seq_start + (to - from) as u32,
        samples: samples.into_iter().map(|s| s.sample).collect(),
        messages,
    });
    event
}

/// Writes an aggregate to the spool and queues it; false when nothing was queued.
fn spool_aggregate(
    spool: &Spool,
    known: &mut HashSet<PathBuf>,
    ready: &mut VecDeque<Queued>,
    event: &Event,
) -> bool {
    let Ok(json) = serde_json::to_vec(event) else {
        return false;
    };
    match spool.write(&event.event_id, &json) {
        Ok(entry) => {
            bump(&STATS.spooled, 1);
            known.insert(entry.path.clone());
            ready.push_back(Queued {
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

    /// `n` panics of `key` spread evenly over second `sec`.
    fn second(storm: &Storm, key: u64, sec: u64, n: u64) -> Vec<Seen> {
        (0..n)
            .map(|i| storm.observe(key, sec * 1000 + i * 1000 / n.max(1)))
            .collect()
    }

    fn individual(seen: &[Seen]) -> usize {
        seen.iter()
            .filter(|s| matches!(s, Seen::Individual { .. }))
            .count()
    }

    #[test]
    fn repeats_at_or_below_the_rate_are_all_individual() {
        let storm = Storm::new(10);
        for sec in 0..5 {
            let seen = second(&storm, 42, sec, 10);
            assert_eq!(individual(&seen), 10, "second {sec}: {seen:?}");
        }
        // 5 a second for 2 s, as in a slow failure: every one its own event.
        let seen: Vec<Seen> = (0..10)
            .map(|i| storm.observe(7, 10_000 + i * 200))
            .collect();
        assert_eq!(individual(&seen), 10);
        assert_eq!(storm.unsent(), 0);
    }

    #[test]
    fn a_storm_starts_over_the_rate_and_ends_after_a_quiet_second() {
        let storm = Storm::new(10);
        let seen = second(&storm, 42, 100, 25);
        assert_eq!(individual(&seen), 10, "the first 10 of the second go out");
        let folded: Vec<u64> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Folded { n, .. } => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(folded, (0..15).collect::<Vec<_>>(), "numbered in order");
        // The storm goes on into the next second while the last was over
        // the rate, even for a few panics.
        assert_eq!(individual(&second(&storm, 42, 101, 3)), 0);
        // Second 101 stayed at or below the rate: 102 starts afresh.
        assert_eq!(individual(&second(&storm, 42, 102, 10)), 10);
        // Over the rate again, then a gap of a whole second ends it.
        assert_eq!(individual(&second(&storm, 42, 103, 50)), 10);
        assert_eq!(individual(&second(&storm, 42, 105, 1)), 1);
        assert_eq!(storm.unsent(), 15 + 3 + 40);
        // Another fingerprint is measured on its own.
        assert_eq!(individual(&second(&storm, 43, 103, 10)), 10);
        assert_eq!(
            Storm::new(0).observe(42, 0),
            Seen::Untracked,
            "threshold 0: off"
        );
    }

    #[test]
    fn threads_racing_in_one_second_fold_all_but_the_threshold_once_each() {
        let storm = Storm::new(10);
        let seen: Vec<Seen> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..5000)
                            .map(|_| storm.observe(42, 7_500))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        assert_eq!(individual(&seen), 10);
        let mut numbers: Vec<u64> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Folded { n, .. } => Some(*n),
                _ => None,
            })
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..39_990).collect::<Vec<_>>(), "each number once");
        assert_eq!(storm.unsent(), 39_990);
    }

    #[test]
    fn a_late_clock_reading_counts_in_the_newer_second() {
        let (state, _) = rate_step(0, 9, 1);
        let (state, folded) = rate_step(state, 8, 1);
        assert!(folded, "two in second 9 are over a threshold of 1");
        assert_eq!(state >> 32, 9);
    }

    #[test]
    fn folded_ids_are_derived_and_resolve_to_one_aggregate() {
        let storm = Storm::new(10);
        let a = storm.folded_id(42, 0);
        assert_eq!(a, storm.folded_id(42, 0), "deterministic");
        assert_ne!(a, storm.folded_id(43, 0), "per fingerprint");
        assert_ne!(a, Storm::new(10).folded_id(42, 0), "per process");
        let (prefix, seq) = panicle_protocol::storm::split_folded_id(&a).unwrap();
        assert_eq!((prefix, seq), (storm.id_prefix(42, 0).as_str(), 0));
        assert!(uuid::Uuid::parse_str(&storm.folded_id(42, SEQS_PER_PREFIX + 5)).is_ok());
        assert_ne!(storm.id_prefix(42, 0), storm.id_prefix(42, 1));
    }

    #[test]
    fn aggregate_ranges_split_at_the_count_bound_and_the_prefix_end() {
        assert_eq!(aggregate_ranges(5, 5, 100), vec![]);
        assert_eq!(
            aggregate_ranges(5, 250, 100),
            vec![(5, 105), (105, 205), (205, 250)]
        );
        let end = SEQS_PER_PREFIX;
        assert_eq!(
            aggregate_ranges(end - 3, end + 2, 100),
            vec![(end - 3, end), (end, end + 2)]
        );
        let (epoch, seq) = folded_position(end - 1);
        assert_eq!((epoch, seq), (0, u32::MAX - 1));
        assert_eq!(folded_position(end), (1, 0));
    }

    fn sample(n: u64, message: &str) -> Sampled {
        Sampled {
            n,
            sample: StormSample {
                event_id: format!("id-{n}"),
                message: Some(message.into()),
                request_id: Some(format!("req-{n}")),
                ..StormSample::default()
            },
            method: None,
            message_cut: false,
        }
    }

    #[test]
    fn samples_keep_the_first_and_last_and_one_message_per_template() {
        let mut acc = StormAcc::default();
        for n in 0..1000u64 {
            let message = if n % 2 == 0 {
                format!("order {n} not found")
            } else {
                "lock poisoned".to_string()
            };
            acc.add_sample(sample(n, &message));
        }
        assert_eq!(
            acc.take_messages(),
            vec!["order 0 not found", "lock poisoned"]
        );
        let taken = acc.take_samples(0, 1000);
        let ns: Vec<u64> = taken.iter().map(|s| s.n).collect();
        let mut expected: Vec<u64> = (0..20).collect();
        expected.extend(980..1000);
        assert_eq!(ns, expected);
        assert!(acc.take_samples(0, 1000).is_empty());
        for k in 0..100 {
            let message = format!("failure {}", "z".repeat(k + 1));
            acc.add_sample(sample(k as u64, &message));
        }
        assert_eq!(
            acc.take_messages().len(),
            panicle_protocol::storm::MAX_STORM_MESSAGES
        );
    }

    #[test]
    fn samples_of_a_later_range_stay_for_it() {
        let mut acc = StormAcc::default();
        for n in 10..20u64 {
            acc.add_sample(sample(n, "boom"));
        }
        let first: Vec<u64> = acc.take_samples(10, 15).iter().map(|s| s.n).collect();
        assert_eq!(first, vec![10, 11, 12, 13, 14]);
        let rest: Vec<u64> = acc.take_samples(15, 20).iter().map(|s| s.n).collect();
        assert_eq!(rest, vec![15, 16, 17, 18, 19]);
    }

    #[test]
    fn storm_table_overflow_is_untracked_not_folded() {
        let storm = Storm::new(10);
        // Keys that all hash to slot 0 fill the probe run.
        for i in 1..=STORM_PROBES as u64 {
            assert!(matches!(
                storm.observe(i * STORM_SLOTS as u64, 0),
                Seen::Individual { .. }
            ));
        }
        assert!(matches!(
            storm.observe(99 * STORM_SLOTS as u64, 0),
            Seen::Untracked
        ));
    }

    /// Events spooled in `dir` (as files or in a hook journal), oldest first.
    fn spooled_events(dir: &std::path::Path) -> Vec<Event> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                Some((name, std::fs::read(&p).ok()?))
            })
            .collect();
        files.extend(journal::journaled_in(dir));
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        files
            .iter()
            .filter_map(|(_, json)| serde_json::from_slice(json).ok())
            .collect()
    }

    #[test]
    fn an_aggregate_names_the_event_sent_on_its_own_before_its_storm() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::default();
        options.delivery.spool_dir = Some(dir.path().to_path_buf());
        // Nothing goes out on a timer: only the event sent on its own after
        // the storm makes the sender write the storm's aggregate.
        options.delivery.storm_report_interval = Duration::from_secs(3600);
        // Nobody listens there: everything stays in the spool to be read.
        let dsn: Dsn = "http://key@127.0.0.1:1/1".parse().unwrap();
        let delivery = Delivery::start(&dsn, &options, Some("storm-unit"));
        let submit = |i: usize| {
            let mut event = Event::new(
                uuid::Uuid::new_v4().to_string(),
                crate::capture::now_rfc3339(),
                // Longer than a sample keeps (one template all the same).
                format!("order {i} not found: {}", "x".repeat(3000)),
            );
            event.frames = vec![panicle_protocol::Frame {
                function: Some("shop::find_order".into()),
                in_app: Some(true),
                ..panicle_protocol::Frame::default()
            }];
            event.request = Some(panicle_protocol::Request {
                request_id: Some(format!("req-{i}")),
                ..panicle_protocol::Request::default()
            });
            // What `capture::build_event` does for the layer's 500 body.
            crate::scope::set_last_event_id(&event.event_id);
            delivery.submit(event);
            crate::scope::take_last_event_id().unwrap()
        };
        let storm_ids: Vec<String> = (0..40).map(submit).collect();
        // A quiet second ends the storm: the next one goes out on its own.
        std::thread::sleep(Duration::from_millis(2100));
        let after = submit(40);

        let deadline = Instant::now() + Duration::from_secs(20);
        let events = loop {
            let events = spooled_events(dir.path());
            if events.iter().any(|e| e.storm.is_some()) || Instant::now() > deadline {
                break events;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let individual: Vec<&str> = storm_ids
            .iter()
            .map(String::as_str)
            .filter(|id| {
                events
                    .iter()
                    .any(|e| e.event_id == *id && e.storm.is_none())
            })
            .collect();
        assert!(
            individual.len() >= 10 && individual.len() < 40,
            "{individual:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.event_id == after && e.storm.is_none())
        );
        let aggregate = events
            .iter()
            .find(|e| e.storm.is_some())
            .expect("the storm's aggregate was written");
        let storm = aggregate.storm.as_ref().unwrap();
        assert_eq!(
            storm.first_event_id.as_deref(),
            individual.last().copied(),
            "the last event on its own before the storm, not the one after it"
        );
        let folded: Vec<&String> = storm_ids
            .iter()
            .filter(|id| !individual.contains(&id.as_str()))
            .collect();
        assert_eq!(aggregate.extra["count"], folded.len());
        assert!(folded.iter().all(|id| storm.holds(id)));
        assert!(!storm.holds(&after));
        assert_eq!(aggregate.frames, events[0].frames, "the template's frames");
        let first = storm.samples.first().expect("samples");
        assert_eq!(&first.event_id, folded[0]);
        assert_eq!(
            aggregate
                .request
                .as_ref()
                .and_then(|r| r.request_id.as_ref()),
            first.request_id.as_ref(),
            "the first folded panic's request, not the template's"
        );
        assert!(storm.samples.iter().all(|s| {
            s.message
                .as_ref()
                .is_some_and(|m| m.len() == SAMPLE_MESSAGE_BYTES)
        }));
        assert_eq!(storm.messages.len(), 1, "one template");
        assert!(storm.messages[0].len() <= SAMPLE_MESSAGE_BYTES);
        let template = events
            .iter()
            .find(|e| Some(e.event_id.as_str()) == storm.first_event_id.as_deref())
            .unwrap();
        assert!(
            aggregate.message == template.message,
            "a cut message never stands for the aggregate (it could group elsewhere)"
        );
    }
}
