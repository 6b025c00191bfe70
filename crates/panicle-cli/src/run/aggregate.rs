//! Storm control for `panicle run`, as the SDK's sender does it: the first
//! crash of a fingerprint in a window is written on its own, the repeats are
//! only counted, and every report interval one event cloned from the first
//! carries the count (`"count": n` in its extra fields, which the server
//! stores as the event's weight).
//!
//! Pure: no clock, no I/O. The caller passes monotonic milliseconds and
//! makes ids and timestamps; what must be written waits in a bounded queue.
//! Memory is bounded by the number of distinct fingerprints tracked at once
//! and by the bytes of their kept first events and of the queue.

use std::collections::{HashMap, VecDeque};

use panicle_protocol::Event;
use serde_json::Value;

/// Bounds and timing of the aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StormLimits {
    /// Repeats within this long of a fingerprint's first crash are counted.
    pub window_ms: u64,
    /// How often the counts gathered so far leave as an event.
    pub report_every_ms: u64,
    /// Distinct fingerprints tracked at once; more in one window are written
    /// one by one (while the queue has room).
    pub max_slots: usize,
    /// Bytes (as JSON) of the first events kept as templates of the counts.
    pub max_template_bytes: usize,
    /// Events waiting to be written, by number and by bytes of JSON. A crash
    /// that finds the queue full is folded into its count, or dropped (and
    /// counted) when its fingerprint is not tracked.
    pub max_queued: usize,
    pub max_queued_bytes: usize,
    /// Largest count one event carries: the server's bound on the weight of
    /// one event (`MAX_EVENT_WEIGHT` in panicle-server's ingest). A larger
    /// count leaves as several events.
    pub max_count: u64,
}

impl Default for StormLimits {
    fn default() -> Self {
        StormLimits {
            window_ms: 60_000,
            report_every_ms: 2_000,
            max_slots: 64,
            max_template_bytes: 4 * 1024 * 1024,
            max_queued: 64,
            max_queued_bytes: 4 * 1024 * 1024,
            max_count: 1_000_000,
        }
    }
}

/// One event to write to the spool: its id and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub event_id: String,
    pub json: Vec<u8>,
}

/// What [`Aggregator::observe`] did with a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// First of its window: queued to be written on its own.
    First,
    /// Counted into its fingerprint's next aggregate.
    Counted,
    /// Not tracked (too many distinct fingerprints): queued on its own.
    Single,
    /// Queue full and not tracked: lost, and counted in [`Aggregator::dropped`].
    Dropped,
}

/// A tracked fingerprint.
#[derive(Debug)]
struct Slot {
    window_start: u64,
    last_report: u64,
    /// Crashes counted and not yet carried by an emitted event.
    unsent: u64,
    /// The window's first event, without other threads: the template of counts.
    template: Event,
    template_bytes: usize,
}

/// Per-fingerprint counting with a bounded queue of events to write.
#[derive(Debug)]
pub struct Aggregator {
    limits: StormLimits,
    slots: HashMap<String, Slot>,
    template_bytes: usize,
    queue: VecDeque<Ready>,
    queued_bytes: usize,
    dropped: u64,
}

impl Aggregator {
    pub fn new(limits: StormLimits) -> Self {
        Aggregator {
            limits,
            slots: HashMap::new(),
            template_bytes: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            dropped: 0,
        }
    }

    /// Crashes lost because the queue was full and their fingerprint untracked.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Crashes counted and not yet in any queued event.
    pub fn unsent(&self) -> u64 {
        self.slots.values().map(|s| s.unsent).sum()
    }

    /// Distinct fingerprints tracked now.
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// One crash, `key` being its fingerprint.
    pub fn observe(&mut self, key: &str, event: Event, now: u64) -> Observed {
        let window_ms = self.limits.window_ms;
        if let Some(slot) = self.slots.get(key) {
            if now < slot.window_start.saturating_add(window_ms) {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.unsent += 1;
                }
                return Observed::Counted;
            }
            return self.restart_window(key, event, now);
        }
        let json = serde_json::to_vec(&event).unwrap_or_default();
        let template = strip_for_template(event);
        let template_bytes = json.len();
        if !self.has_room_for(template_bytes) {
            self.evict_ended(now);
        }
        let trackable = self.has_room_for(template_bytes);
        let event_id = template.event_id.clone();
        let queued = self.enqueue(Ready { event_id, json });
        if !trackable {
            if queued {
                return Observed::Single;
            }
            self.dropped += 1;
            return Observed::Dropped;
        }
        self.template_bytes += template_bytes;
        self.slots.insert(
            key.to_string(),
            Slot {
                window_start: now,
                last_report: now,
                // A first that found the queue full leaves in the count.
                unsent: u64::from(!queued),
                template,
                template_bytes,
            },
        );
        if queued {
            Observed::First
        } else {
            Observed::Counted
        }
    }

    /// The first crash after a tracked window ended starts a new one and
    /// becomes the template (as in the SDK, what the old window still
    /// counts leaves with the next report).
    fn restart_window(&mut self, key: &str, event: Event, now: u64) -> Observed {
        let json = serde_json::to_vec(&event).unwrap_or_default();
        let new_bytes = json.len();
        let event_id = event.event_id.clone();
        let queued = self.enqueue(Ready { event_id, json });
        let Some(slot) = self.slots.get_mut(key) else {
            return Observed::Dropped;
        };
        slot.window_start = now;
        let others = self.template_bytes - slot.template_bytes;
        if others + new_bytes <= self.limits.max_template_bytes {
            slot.template = strip_for_template(event);
            slot.template_bytes = new_bytes;
            self.template_bytes = others + new_bytes;
        }
        if queued {
            Observed::First
        } else {
            slot.unsent += 1;
            Observed::Counted
        }
    }

    fn has_room_for(&self, template_bytes: usize) -> bool {
        self.slots.len() < self.limits.max_slots
            && self.template_bytes + template_bytes <= self.limits.max_template_bytes
    }

    /// Queues the counts due for a report and forgets fingerprints whose
    /// window ended with nothing left to report. `stamp` makes the id and
    /// the timestamp of each aggregate.
    pub fn tick(&mut self, now: u64, stamp: &mut dyn FnMut() -> (String, String)) {
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.unsent > 0 && now >= s.last_report.saturating_add(self.limits.report_every_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.emit_slot(&key, now, stamp);
        }
        self.evict_ended(now);
    }

    /// At the end: every count queued, whatever its age (as far as the queue
    /// has room; see [`Aggregator::unsent`]).
    pub fn flush(&mut self, now: u64, stamp: &mut dyn FnMut() -> (String, String)) {
        let keys: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.unsent > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.emit_slot(&key, now, stamp);
        }
    }

    /// The events waiting to be written, oldest first.
    pub fn take_ready(&mut self) -> Vec<Ready> {
        self.queued_bytes = 0;
        self.queue.drain(..).collect()
    }

    /// Queues the count of one slot as events of at most `max_count` each;
    /// what finds no room stays counted in the slot.
    fn emit_slot(&mut self, key: &str, now: u64, stamp: &mut dyn FnMut() -> (String, String)) {
        let max_count = self.limits.max_count.max(1);
        loop {
            let Some(slot) = self.slots.get(key) else {
                return;
            };
            if slot.unsent == 0 {
                return;
            }
            let n = slot.unsent.min(max_count);
            let (id, timestamp) = stamp();
            let mut event = slot.template.clone();
            event.tags.insert(
                "panicle.storm.first_event_id".into(),
                slot.template.event_id.clone(),
            );
            event.event_id = id;
            event.timestamp = timestamp;
            event.extra.insert("count".into(), Value::from(n));
            let json = serde_json::to_vec(&event).unwrap_or_default();
            let ready = Ready {
                event_id: event.event_id,
                json,
            };
            if !self.enqueue(ready) {
                return;
            }
            if let Some(slot) = self.slots.get_mut(key) {
                slot.unsent -= n;
                slot.last_report = now;
            }
        }
    }

    /// Forgets fingerprints whose window ended and whose count has left.
    fn evict_ended(&mut self, now: u64) {
        let window_ms = self.limits.window_ms;
        let mut freed = 0;
        self.slots.retain(|_, s| {
            let keep = s.unsent > 0 || now < s.window_start.saturating_add(window_ms);
            if !keep {
                freed += s.template_bytes;
            }
            keep
        });
        self.template_bytes -= freed;
    }

    fn enqueue(&mut self, ready: Ready) -> bool {
        if ready.json.is_empty()
            || self.queue.len() >= self.limits.max_queued
            || self.queued_bytes + ready.json.len() > self.limits.max_queued_bytes
        {
            return false;
        }
        self.queued_bytes += ready.json.len();
        self.queue.push_back(ready);
        true
    }
}

/// The first event as the template of counts: other threads (a Go dump's
/// goroutines) are the bulk of a crash and say nothing a count needs.
fn strip_for_template(mut event: Event) -> Event {
    event.extra.remove("threads");
    event
}
