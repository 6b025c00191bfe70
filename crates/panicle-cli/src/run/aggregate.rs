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
    /// Largest count one event carries, at most the server's bound on the
    /// weight of one event (a count above it would be cut, not stored). A
    /// larger count leaves as several events.
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
            max_count: MAX_COUNT_PER_EVENT,
        }
    }
}

/// The server's bound on one event's count: a larger count leaves as several
/// events, so none is clamped away.
pub const MAX_COUNT_PER_EVENT: u64 = panicle_protocol::decode::MAX_EVENT_COUNT as u64;

/// One event to write to the spool: its id, its JSON and how many crashes
/// it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub event_id: String,
    pub json: Vec<u8>,
    pub weight: u64,
    /// When it was queued (the caller's milliseconds).
    pub queued_at: u64,
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
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Crashes counted and not yet in any queued event.
    pub fn unsent(&self) -> u64 {
        self.slots.values().map(|s| s.unsent).sum()
    }

    /// Distinct fingerprints tracked now.
    #[cfg(test)]
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
        let queued = self.enqueue(Ready {
            event_id,
            json,
            weight: 1,
            queued_at: now,
        });
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
        let queued = self.enqueue(Ready {
            event_id,
            json,
            weight: 1,
            queued_at: now,
        });
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
        self.take_ready_until(u64::MAX)
    }

    /// The events queued at or before `until`, oldest first; younger ones
    /// stay queued.
    pub fn take_ready_until(&mut self, until: u64) -> Vec<Ready> {
        let n = self.queue.partition_point(|r| r.queued_at <= until);
        let taken: Vec<Ready> = self.queue.drain(..n).collect();
        self.queued_bytes -= taken.iter().map(|r| r.json.len()).sum::<usize>();
        taken
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
                weight: n,
                queued_at: now,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(message: &str, id: u64) -> Event {
        let mut event = Event::new(
            format!("id-{id}"),
            "2026-01-02T03:04:05Z".into(),
            message.into(),
        );
        event.extra.insert(
            "threads".into(),
            Value::String("other goroutines".repeat(100)),
        );
        event
    }

    fn limits() -> StormLimits {
        StormLimits {
            window_ms: 60_000,
            report_every_ms: 2_000,
            max_slots: 4,
            max_template_bytes: 1 << 20,
            max_queued: 8,
            max_queued_bytes: 1 << 20,
            max_count: 1_000_000,
        }
    }

    fn stamper() -> impl FnMut() -> (String, String) {
        let mut n = 0;
        move || {
            n += 1;
            (format!("agg-{n}"), "2026-01-02T03:04:06Z".into())
        }
    }

    /// The panics one written event stands for.
    fn weight(ready: &Ready) -> u64 {
        let v: Value = serde_json::from_slice(&ready.json).unwrap_or(Value::Null);
        let weight = v.get("count").and_then(Value::as_u64).unwrap_or(1);
        assert_eq!(weight, ready.weight);
        weight
    }

    #[test]
    fn a_storm_leaves_as_its_first_event_and_counts() {
        let mut agg = Aggregator::new(limits());
        let mut stamp = stamper();
        assert_eq!(agg.observe("fp", crash("boom", 0), 0), Observed::First);
        for i in 1..10_000 {
            assert_eq!(
                agg.observe("fp", crash("boom", i), i / 10),
                Observed::Counted
            );
        }
        let first = agg.take_ready();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].event_id, "id-0");
        agg.tick(1_999, &mut stamp);
        assert!(agg.take_ready().is_empty(), "no report before the interval");
        agg.tick(2_000, &mut stamp);
        let counts = agg.take_ready();
        assert_eq!(counts.len(), 1);
        assert_eq!(weight(&counts[0]), 9_999);
        let event: Value = serde_json::from_slice(&counts[0].json).unwrap_or(Value::Null);
        assert_eq!(event["event_id"], "agg-1");
        assert_eq!(event["message"], "boom");
        assert_eq!(event["tags"]["panicle.storm.first_event_id"], "id-0");
        assert!(
            event.get("threads").is_none(),
            "the template keeps no threads"
        );
        assert_eq!(agg.unsent(), 0);
    }

    #[test]
    fn a_new_window_starts_with_a_first_event_again() {
        let mut agg = Aggregator::new(limits());
        let mut stamp = stamper();
        agg.observe("fp", crash("boom", 0), 0);
        agg.observe("fp", crash("boom", 1), 59_999);
        assert_eq!(agg.observe("fp", crash("boom", 2), 60_000), Observed::First);
        agg.flush(60_001, &mut stamp);
        let ready = agg.take_ready();
        let ids: Vec<&str> = ready.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["id-0", "id-2", "agg-1"]);
        assert_eq!(ready.iter().map(weight).sum::<u64>(), 3);
    }

    #[test]
    fn young_events_can_wait_in_the_queue() {
        let mut agg = Aggregator::new(limits());
        agg.observe("a", crash("a", 0), 10);
        agg.observe("b", crash("b", 1), 20);
        let old = agg.take_ready_until(15);
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].event_id, "id-0");
        assert_eq!(agg.take_ready().len(), 1);
    }

    #[test]
    fn ended_windows_free_their_slots() {
        let mut agg = Aggregator::new(limits());
        let mut stamp = stamper();
        for i in 0..4 {
            agg.observe(&format!("fp{i}"), crash("boom", i), 0);
        }
        assert_eq!(agg.tracked(), 4);
        agg.tick(60_000, &mut stamp);
        assert_eq!(agg.tracked(), 0, "nothing left to report");
        assert_eq!(
            agg.observe("fp9", crash("boom", 9), 60_001),
            Observed::First
        );
    }

    #[test]
    fn every_crash_is_written_counted_or_told_dropped() {
        let mut agg = Aggregator::new(limits());
        let mut stamp = stamper();
        let mut written = Vec::new();
        let mut observed = 0u64;
        for round in 0..50u64 {
            for i in 0..40u64 {
                // Six fingerprints, more than the four slots.
                let key = format!("fp{}", i % 6);
                agg.observe(&key, crash(&key, round * 100 + i), round * 500);
                observed += 1;
            }
            if round % 3 == 0 {
                agg.tick(round * 500, &mut stamp);
                written.extend(agg.take_ready());
            }
        }
        for _ in 0..10 {
            agg.flush(1_000_000, &mut stamp);
            written.extend(agg.take_ready());
        }
        assert!(agg.dropped() > 0, "the small queue overflowed");
        assert_eq!(agg.unsent(), 0);
        assert_eq!(
            written.iter().map(weight).sum::<u64>() + agg.dropped(),
            observed
        );
    }

    #[test]
    fn a_first_that_finds_the_queue_full_leaves_in_the_count() {
        let mut agg = Aggregator::new(StormLimits {
            max_queued: 1,
            ..limits()
        });
        let mut stamp = stamper();
        assert_eq!(agg.observe("a", crash("a", 0), 0), Observed::First);
        assert_eq!(agg.observe("b", crash("b", 1), 0), Observed::Counted);
        assert_eq!(agg.unsent(), 1);
        let mut written = agg.take_ready();
        agg.flush(1, &mut stamp);
        written.extend(agg.take_ready());
        assert_eq!(written.len(), 2);
        assert_eq!(written.iter().map(weight).sum::<u64>(), 2);
        assert_eq!(agg.dropped(), 0);
    }

    #[test]
    fn a_count_above_the_servers_bound_leaves_as_several_events() {
        let mut agg = Aggregator::new(StormLimits {
            max_count: 1_000,
            ..limits()
        });
        let mut stamp = stamper();
        for i in 0..2_501 {
            agg.observe("fp", crash("boom", i), 0);
        }
        agg.flush(1, &mut stamp);
        let weights: Vec<u64> = agg.take_ready().iter().map(weight).collect();
        assert_eq!(weights, [1, 1_000, 1_000, 500]);
    }

    #[test]
    fn template_bytes_bound_what_is_tracked() {
        let big = serde_json::to_vec(&crash("boom", 0)).map_or(0, |j| j.len());
        let mut agg = Aggregator::new(StormLimits {
            max_template_bytes: big * 2,
            ..limits()
        });
        assert_eq!(agg.observe("a", crash("boom", 0), 0), Observed::First);
        assert_eq!(agg.observe("b", crash("boom", 1), 0), Observed::First);
        assert_eq!(agg.observe("c", crash("boom", 2), 0), Observed::Single);
        assert_eq!(agg.tracked(), 2);
    }
}
