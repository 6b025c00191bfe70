//! Sending spooled events in batches, shared by the background sender and
//! `panicle spool send` (and so `panicle run`): what a server's answer means
//! for each event, how a bad event is set aside without holding back the
//! others, and how long to wait before the next try.
//!
//! MUST: an event leaves the spool only when the server took it (2xx naming
//! it, or naming nothing) or refused it for good (then it moves to
//! `rejected/` with the reason). One event the server cannot take never
//! blocks the rest: a refusal names it (or a split finds it), and a 5xx that
//! repeats for the same events is narrowed down by splitting the batch.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use panicle_protocol::Dsn;

use crate::spool::{Spool, SpoolEntry, SpoolError};
use crate::transport::{HttpTransport, PostOutcome};

/// Events per HTTP request.
pub const DEFAULT_BATCH_EVENTS: usize = 100;

/// 5xx answers to an event sent alone, while the server took other events,
/// after which the event is taken for one the server will never store.
pub const POISON_STRIKES: u32 = 3;

/// Exponential backoff with jitter: 250 ms doubling to 30 s, each wait drawn
/// from [half, full]; a server's `Retry-After` wins (up to ten minutes).
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Backoff {
            attempt: 0,
            seed: nanos ^ u64::from(std::process::id()).rotate_left(32) | 1,
        }
    }
}

impl Backoff {
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self.attempt.min(7);
        self.attempt = self.attempt.saturating_add(1);
        if let Some(ra) = retry_after {
            return ra.min(Duration::from_secs(600));
        }
        let full = (250u64 << exp).min(30_000);
        // xorshift64: jitter needs spread, not cryptography.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = full / 2;
        Duration::from_millis(half + self.seed % (full - half + 1))
    }
}

/// Memory of server errors across attempts: which events were in batches
/// answered 5xx, and whether the server took anything since. Kept by the
/// caller from one batch to the next.
#[derive(Debug, Default)]
pub struct ServerErrors {
    /// Event id → (5xx answers seen, `acks` when the first one came).
    strikes: HashMap<String, (u32, u64)>,
    /// Events the server took, ever: proof that it is healthy for others.
    acks: u64,
}

/// Ids remembered at most; past it the memory starts over (a strike count
/// only ever delays setting an event aside, it never loses one).
const MAX_REMEMBERED: usize = 10_000;

impl ServerErrors {
    fn strike(&mut self, id: &str) -> u32 {
        if self.strikes.len() >= MAX_REMEMBERED && !self.strikes.contains_key(id) {
            self.strikes.clear();
        }
        let acks = self.acks;
        let s = self.strikes.entry(id.to_string()).or_insert((0, acks));
        s.0 = s.0.saturating_add(1);
        s.0
    }

    fn struck_before(&self, id: &str) -> bool {
        self.strikes.contains_key(id)
    }

    fn acked(&mut self, id: &str) {
        self.acks += 1;
        self.strikes.remove(id);
    }

    /// Failed alone often enough while the server took other events.
    fn is_poison(&self, id: &str) -> bool {
        self.strikes
            .get(id)
            .is_some_and(|&(n, acks_then)| n >= POISON_STRIKES && self.acks > acks_then)
    }
}

/// What one batch attempt resolved.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub acked: Vec<SpoolEntry>,
    pub rejected: Vec<SpoolEntry>,
    pub unsent: Vec<(SpoolEntry, Vec<u8>)>,
    pub retry_after: Option<Duration>,
    pub error: Option<String>,
}

/// Posts a batch; deletes what the server took, moves what it refused for
/// good to `rejected/` (splitting a refused batch to find the culprit), and
/// returns the rest unsent.
pub fn send_batch(
    t: &HttpTransport,
    spool: &Spool,
    batch: Vec<(SpoolEntry, Vec<u8>)>,
    errors: &mut ServerErrors,
) -> BatchResult {
    // Each split costs a request: a bound keeps an outage cheap.
    let mut round = Round {
        out: BatchResult::default(),
        requests_left: 2 * (usize::BITS - batch.len().leading_zeros()) as usize + 2,
    };
    round.send(t, spool, batch, errors);
    round.out
}

struct Round {
    out: BatchResult,
    requests_left: usize,
}

/// How a sub-batch went, for the caller deciding whether to go on.
#[derive(PartialEq, Eq)]
enum Sent {
    Resolved,
    ServerError,
    Stopped,
}

impl Round {
    fn send(
        &mut self,
        t: &HttpTransport,
        spool: &Spool,
        batch: Vec<(SpoolEntry, Vec<u8>)>,
        errors: &mut ServerErrors,
    ) -> Sent {
        if batch.is_empty() {
            return Sent::Resolved;
        }
        if self.out.error.is_some() || self.requests_left == 0 {
            self.out.unsent.extend(batch);
            return Sent::Stopped;
        }
        self.requests_left -= 1;
        let bodies: Vec<&[u8]> = batch.iter().map(|(_, j)| j.as_slice()).collect();
        match t.post(&bodies) {
            PostOutcome::Accepted { ids, rejected } => {
                for (i, (entry, json)) in batch.into_iter().enumerate() {
                    let refusal = rejected.iter().find(|r| {
                        r.index == Some(i) || r.event_id.as_deref() == Some(&entry.event_id)
                    });
                    let taken = ids.as_ref().is_none_or(|ids| ids.contains(&entry.event_id));
                    if let Some(r) = refusal {
                        self.reject(spool, entry, &r.reason);
                    } else if taken {
                        errors.acked(&entry.event_id);
                        spool.remove(&entry);
                        self.out.acked.push(entry);
                    } else {
                        // A 2xx that names neither way: keep it for the next try.
                        self.out.unsent.push((entry, json));
                    }
                }
                Sent::Resolved
            }
            PostOutcome::Refused { status, reason } => {
                if batch.len() == 1 {
                    for (e, _) in batch {
                        self.reject(spool, e, &format!("HTTP {status}: {reason}"));
                    }
                    Sent::Resolved
                } else {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    self.send(t, spool, first, errors);
                    self.send(t, spool, second, errors)
                }
            }
            PostOutcome::Retry {
                retry_after,
                reason,
                server_error: Some(status),
            } => {
                let repeat = batch.iter().any(|(e, _)| errors.struck_before(&e.event_id));
                for (e, _) in &batch {
                    errors.strike(&e.event_id);
                }
                if batch.len() == 1 {
                    let id = &batch[0].0.event_id;
                    if errors.is_poison(id) {
                        let reason = format!(
                            "the server answered HTTP {status} ({reason}) {POISON_STRIKES} times for this event sent alone, while it took other events"
                        );
                        for (e, _) in batch {
                            self.reject(spool, e, &reason);
                        }
                        return Sent::Resolved;
                    }
                }
                if !repeat || batch.len() == 1 {
                    self.out.retry_after = self.out.retry_after.or(retry_after);
                    self.out.unsent.extend(batch);
                    return Sent::ServerError;
                }
                // The same events failed before: narrow down which one.
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                let a = self.send(t, spool, first, errors);
                if a == Sent::Stopped {
                    self.out.unsent.extend(second);
                    return Sent::Stopped;
                }
                let b = self.send(t, spool, second, errors);
                if a == Sent::ServerError && b == Sent::ServerError {
                    // Both halves fail: not one event, the server. Stop here.
                    self.out.error = Some(format!("HTTP {status}: {reason}"));
                    self.out.retry_after = self.out.retry_after.or(retry_after);
                    return Sent::Stopped;
                }
                b
            }
            PostOutcome::Retry {
                retry_after,
                reason,
                server_error: None,
            } => {
                self.out.retry_after = retry_after;
                self.out.error = Some(reason);
                self.out.unsent.extend(batch);
                Sent::Stopped
            }
        }
    }

    fn reject(&mut self, spool: &Spool, entry: SpoolEntry, reason: &str) {
        eprintln!(
            "panicle: server refused event {} for good ({reason}); kept in {}",
            entry.event_id,
            spool.dir().join(crate::spool::REJECTED_DIR).display()
        );
        spool.reject(&entry, reason);
        self.out.rejected.push(entry);
    }
}

/// What [`send_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Events the server acknowledged (and that were deleted).
    pub sent: usize,
    /// Events the server refused for good, moved to `rejected/`.
    pub rejected: usize,
    /// Events still in the spool (server unreachable until the deadline).
    pub remaining: usize,
}

/// Drains a spool directory to the server of `dsn`, retrying with backoff
/// until everything is acknowledged or refused for good, or `timeout` has
/// passed. This is what `panicle spool send DIR` runs, e.g. in a sidecar
/// shipping what a dead pod left; resending is safe because the server dedups
/// by event id.
pub fn send_dir(dir: &Path, dsn: &Dsn, timeout: Duration) -> Result<SendReport, SpoolError> {
    let spool = Spool::open(dir, false, u64::MAX / 4, u64::MAX / 4)?;
    let transport = HttpTransport::new(
        dsn,
        Duration::from_secs(10).min(timeout.max(Duration::from_secs(1))),
    );
    let deadline = Instant::now() + timeout;
    let mut report = SendReport::default();
    let mut backoff = Backoff::default();
    let mut errors = ServerErrors::default();
    loop {
        let entries = spool.list()?;
        if entries.is_empty() {
            return Ok(report);
        }
        let mut progress = false;
        let mut retry_after = None;
        for chunk in entries.chunks(DEFAULT_BATCH_EVENTS) {
            let batch: Vec<(SpoolEntry, Vec<u8>)> = chunk
                .iter()
                .filter_map(|e| fs::read(&e.path).ok().map(|b| (e.clone(), b)))
                .collect();
            let result = send_batch(&transport, &spool, batch, &mut errors);
            report.sent += result.acked.len();
            report.rejected += result.rejected.len();
            progress |= !result.acked.is_empty() || !result.rejected.is_empty();
            if !result.unsent.is_empty() {
                retry_after = Some(result.retry_after);
                break;
            }
        }
        if progress {
            backoff.reset();
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            report.remaining = spool.list()?.len();
            return Ok(report);
        }
        let wait = backoff.next(retry_after.flatten()).min(deadline - now);
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let mut b = Backoff::default();
        let first = b.next(None);
        assert!(first >= Duration::from_millis(125) && first <= Duration::from_millis(250));
        for _ in 0..10 {
            b.next(None);
        }
        let late = b.next(None);
        assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
        assert_eq!(b.next(Some(Duration::from_secs(7))), Duration::from_secs(7));
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(250));
    }

    #[test]
    fn an_event_is_poison_only_after_strikes_while_others_got_through() {
        let mut e = ServerErrors::default();
        for _ in 0..POISON_STRIKES {
            e.strike("p");
        }
        // The server took nothing since: an outage, not a poison event.
        assert!(!e.is_poison("p"));
        let mut e = ServerErrors::default();
        e.strike("p");
        e.acked("good");
        e.strike("p");
        assert!(!e.is_poison("p"), "two strikes are not enough");
        e.strike("p");
        assert!(e.is_poison("p"));
        e.acked("p");
        assert!(!e.struck_before("p"));
    }
}
