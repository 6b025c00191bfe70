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
/// answered with a server error, how often each failed sent alone, and
/// whether the server took anything since. Kept by the caller from one batch
/// to the next. Only errors that may come from the events themselves count
/// (see [`PostOutcome::Retry`]): a 503 or a gateway error is an outage, and
/// an outage never sets an event aside.
#[derive(Debug, Default)]
pub(crate) struct ServerErrors {
    /// Event id → its record.
    strikes: HashMap<String, Strikes>,
    /// Events the server took, ever: proof that it is healthy for others.
    acks: u64,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    /// Failures of the event sent alone.
    alone: u32,
    /// `acks` when the event was first in a failing batch.
    acks_then: u64,
}

/// Ids remembered at most; past it the memory starts over (a strike count
/// only ever delays setting an event aside, it never loses one).
const MAX_REMEMBERED: usize = 10_000;

impl ServerErrors {
    /// Records that `id` was in a batch answered with a server error.
    fn failed(&mut self, id: &str, alone: bool) {
        if self.strikes.len() >= MAX_REMEMBERED && !self.strikes.contains_key(id) {
            self.strikes.clear();
        }
        let acks = self.acks;
        let s = self.strikes.entry(id.to_string()).or_insert(Strikes {
            alone: 0,
            acks_then: acks,
        });
        if alone {
            s.alone = s.alone.saturating_add(1);
        }
    }

    fn failed_before(&self, id: &str) -> bool {
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
            .is_some_and(|s| s.alone >= POISON_STRIKES && self.acks > s.acks_then)
    }
}

/// The same event id whatever its spelling (case, hyphens, braces): the
/// server answers in lower-case hyphenated form.
fn same_id(answered: &str, ours: &str) -> bool {
    match (uuid::Uuid::parse_str(answered), uuid::Uuid::parse_str(ours)) {
        (Ok(a), Ok(b)) => a == b,
        _ => answered.eq_ignore_ascii_case(ours),
    }
}

type Batch = Vec<(SpoolEntry, Vec<u8>)>;

/// What one batch attempt resolved.
#[derive(Debug, Default)]
pub(crate) struct BatchResult {
    pub acked: Vec<SpoolEntry>,
    pub rejected: Vec<SpoolEntry>,
    pub unsent: Batch,
    pub retry_after: Option<Duration>,
    pub error: Option<String>,
    /// The round ended because the server could not be connected to.
    pub unreachable: bool,
}

/// Posts a batch; deletes what the server took, moves what it refused for
/// good to `rejected/` (splitting a refused batch to find the culprit, and
/// narrowing down a server error that repeats for the same events), and
/// returns the rest unsent.
pub(crate) fn send_batch(
    t: &HttpTransport,
    spool: &Spool,
    batch: Batch,
    errors: &mut ServerErrors,
) -> BatchResult {
    // Each split costs requests: a bound keeps a bad day cheap.
    let mut round = Round {
        out: BatchResult::default(),
        requests_left: 2 * (usize::BITS - batch.len().leading_zeros()) as usize + 2,
    };
    if let Sent::ServerError {
        batch,
        repeat,
        retry_after,
        reason,
    } = round.send(t, spool, batch, errors)
    {
        if repeat && batch.len() > 1 {
            round.narrow(t, spool, batch, errors, retry_after, &reason);
        } else {
            round.alone_or_unsent(spool, batch, errors, retry_after, &reason);
        }
    }
    if !round.out.rejected.is_empty() {
        eprintln!(
            "panicle: the server refused {} event(s) for good; kept with the reason in {}",
            round.out.rejected.len(),
            spool.dir().join(crate::spool::REJECTED_DIR).display()
        );
    }
    round.out
}

struct Round {
    out: BatchResult,
    requests_left: usize,
}

/// How one post went.
enum Sent {
    /// Every event is acked, rejected or set aside as unsent for a reason
    /// that ends the round.
    Done,
    /// A server error that may come from an event of `batch`: the caller
    /// decides whether to narrow it down. `repeat`: some of these events
    /// failed like this before.
    ServerError {
        batch: Batch,
        repeat: bool,
        retry_after: Option<Duration>,
        reason: String,
    },
}

impl Round {
    /// Posts `batch` once (a 4xx refusal is split to find its culprit).
    fn send(
        &mut self,
        t: &HttpTransport,
        spool: &Spool,
        batch: Batch,
        errors: &mut ServerErrors,
    ) -> Sent {
        if batch.is_empty() {
            return Sent::Done;
        }
        if self.out.error.is_some() || self.requests_left == 0 {
            self.out.unsent.extend(batch);
            return Sent::Done;
        }
        self.requests_left -= 1;
        let bodies: Vec<&[u8]> = batch.iter().map(|(_, j)| j.as_slice()).collect();
        match t.post(&bodies) {
            PostOutcome::Accepted { ids, rejected } => {
                for (i, (entry, json)) in batch.into_iter().enumerate() {
                    let refusal = rejected.iter().find(|r| {
                        r.index == Some(i)
                            || r.event_id
                                .as_deref()
                                .is_some_and(|id| same_id(id, &entry.event_id))
                    });
                    let taken = ids
                        .as_ref()
                        .is_none_or(|ids| ids.iter().any(|id| same_id(id, &entry.event_id)));
                    if let Some(r) = refusal {
                        self.reject(spool, entry, &json, &r.reason);
                    } else if taken {
                        errors.acked(&entry.event_id);
                        spool.remove(&entry);
                        self.out.acked.push(entry);
                    } else {
                        // A 2xx that names neither way: keep it for the next try.
                        self.out.unsent.push((entry, json));
                    }
                }
                Sent::Done
            }
            PostOutcome::Refused { status, reason } => {
                if batch.len() == 1 {
                    for (e, json) in batch {
                        self.reject(spool, e, &json, &format!("HTTP {status} {reason}"));
                    }
                } else {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    for half in [first, second] {
                        if let Sent::ServerError { batch, .. } = self.send(t, spool, half, errors) {
                            self.out.unsent.extend(batch);
                        }
                    }
                }
                Sent::Done
            }
            PostOutcome::Retry {
                retry_after,
                reason,
                server_error: Some(_),
                ..
            } => {
                let repeat = batch.iter().any(|(e, _)| errors.failed_before(&e.event_id));
                let alone = batch.len() == 1;
                for (e, _) in &batch {
                    errors.failed(&e.event_id, alone);
                }
                Sent::ServerError {
                    batch,
                    repeat,
                    retry_after,
                    reason,
                }
            }
            PostOutcome::Retry {
                retry_after,
                reason,
                server_error: None,
                unreachable,
            } => {
                self.out.retry_after = retry_after;
                self.out.unreachable = unreachable;
                self.out.error = Some(reason);
                self.out.unsent.extend(batch);
                Sent::Done
            }
        }
    }

    /// `batch` failed with a server error again: post both halves; when both
    /// fail the server fails, not one event (stop); else go down the half
    /// that failed. Costs two requests a level.
    fn narrow(
        &mut self,
        t: &HttpTransport,
        spool: &Spool,
        mut batch: Batch,
        errors: &mut ServerErrors,
        retry_after: Option<Duration>,
        reason: &str,
    ) {
        let second = batch.split_off(batch.len() / 2);
        let a = self.send(t, spool, batch, errors);
        let b = self.send(t, spool, second, errors);
        match (a, b) {
            (Sent::ServerError { batch: a, .. }, Sent::ServerError { batch: b, .. }) => {
                self.out.unsent.extend(a);
                self.out.unsent.extend(b);
                self.out.retry_after = self.out.retry_after.or(retry_after);
                self.out.error = Some(reason.to_string());
            }
            (
                Sent::ServerError {
                    batch,
                    reason,
                    retry_after,
                    ..
                },
                Sent::Done,
            )
            | (
                Sent::Done,
                Sent::ServerError {
                    batch,
                    reason,
                    retry_after,
                    ..
                },
            ) => {
                if batch.len() > 1 {
                    self.narrow(t, spool, batch, errors, retry_after, &reason);
                } else {
                    self.alone_or_unsent(spool, batch, errors, retry_after, &reason);
                }
            }
            (Sent::Done, Sent::Done) => {}
        }
    }

    /// A batch the server failed: one event that keeps failing alone while
    /// others go through is set aside; everything else waits for a retry.
    fn alone_or_unsent(
        &mut self,
        spool: &Spool,
        batch: Batch,
        errors: &ServerErrors,
        retry_after: Option<Duration>,
        reason: &str,
    ) {
        if let [(entry, _)] = batch.as_slice()
            && errors.is_poison(&entry.event_id)
        {
            let why = format!(
                "sent alone, it failed {POISON_STRIKES} times ({reason}) while the server took other events"
            );
            for (e, json) in batch {
                self.reject(spool, e, &json, &why);
            }
            return;
        }
        self.out.retry_after = self.out.retry_after.or(retry_after);
        self.out.error.get_or_insert_with(|| reason.to_string());
        self.out.unsent.extend(batch);
    }

    fn reject(&mut self, spool: &Spool, entry: SpoolEntry, json: &[u8], reason: &str) {
        spool.reject(&entry, json, reason);
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
    // Events a killed process kept only in its hook journal, and storm
    // counts it kept only in its ledger.
    crate::spool::journal::recover(&spool);
    crate::sender::recover_storm_ledgers(&spool);
    // Crash records a signal handler left: made events first. This process
    // is not the one that crashed, so their frames go unsymbolized unless
    // the build-ids match (the server symbolizes by build-id and offset).
    crate::signals::recover_dir(
        dir,
        &crate::Options::default(),
        &crate::context::Resource::default(),
        // The record is deleted only once its event is in the spool.
        |event| match serde_json::to_vec(&event) {
            Ok(json) => match spool.write(&event.event_id, &json) {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("panicle: {e}");
                    false
                }
            },
            Err(e) => {
                eprintln!("panicle: a crash record's event: {e}");
                false
            }
        },
    );
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
    fn an_event_is_poison_only_after_failing_alone_while_others_got_through() {
        let mut e = ServerErrors::default();
        for _ in 0..POISON_STRIKES {
            e.failed("p", true);
        }
        // The server took nothing since: an outage, not a poison event.
        assert!(!e.is_poison("p"));
        let mut e = ServerErrors::default();
        e.failed("p", false);
        e.acked("good");
        for _ in 0..5 {
            e.failed("p", false);
        }
        assert!(!e.is_poison("p"), "failures in batches do not count");
        e.failed("p", true);
        e.failed("p", true);
        assert!(!e.is_poison("p"), "two failures alone are not enough");
        e.failed("p", true);
        assert!(e.is_poison("p"));
        e.acked("p");
        assert!(!e.failed_before("p"));
    }

    #[test]
    fn ids_match_whatever_their_spelling() {
        let id = "0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f";
        assert!(same_id(id, "0B9A4F8E7C1D4E2A9F3B1A2B3C4D5E6F"));
        assert!(same_id(id, "{0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f}"));
        assert!(!same_id(id, "0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e60"));
        assert!(same_id("x-1", "X-1"));
    }

    /// A loopback HTTP server whose answers a test scripts: `answer(n, ids)`
    /// gets the request's number and the event ids in its batch. Real HTTP,
    /// so the transport's parsing is exercised too.
    struct Scripted {
        dsn: Dsn,
        requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    fn scripted(
        answer: impl Fn(usize, &[String]) -> (u16, String) + Send + Sync + 'static,
    ) -> Scripted {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let answer = std::sync::Arc::new(answer);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counter = counter.clone();
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let mut json = String::new();
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_string(&mut json)
                            .unwrap();
                        let events: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
                        let ids: Vec<String> = events
                            .iter()
                            .map(|e| e["event_id"].as_str().unwrap().to_string())
                            .collect();
                        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let (status, text) = answer(n, &ids);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            text.len()
                        );
                        if conn.write_all(head.as_bytes()).is_err()
                            || conn.write_all(text.as_bytes()).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            dsn: format!("http://key@127.0.0.1:{port}/1").parse().unwrap(),
            requests,
        }
    }

    fn accepted(ids: &[String]) -> (u16, String) {
        (
            202,
            serde_json::json!({"accepted": ids, "stored": ids.len(), "rejected": []}).to_string(),
        )
    }

    fn error(status: u16) -> (u16, String) {
        (
            status,
            r#"{"error":{"code":"e","message":"m"}}"#.to_string(),
        )
    }

    /// A spool with `n` events; returns it with the batch to send.
    fn spool_of(dir: &Path, n: usize) -> (Spool, Batch) {
        let spool = Spool::open(dir, false, u64::MAX / 4, u64::MAX / 4).unwrap();
        let batch = (0..n)
            .map(|i| {
                let id = uuid::Uuid::new_v4().to_string();
                let json = format!(r#"{{"event_id":"{id}","n":{i}}}"#).into_bytes();
                (spool.write(&id, &json).unwrap(), json)
            })
            .collect();
        (spool, batch)
    }

    /// Sends like the background sender: each round takes what is unsent.
    fn rounds(s: &Scripted, spool: &Spool, mut batch: Batch, max: usize) -> (usize, usize, Batch) {
        let t = HttpTransport::new(&s.dsn, Duration::from_secs(5));
        let mut errors = ServerErrors::default();
        let (mut acked, mut rejected) = (0, 0);
        for _ in 0..max {
            if batch.is_empty() {
                break;
            }
            let r = send_batch(&t, spool, batch, &mut errors);
            acked += r.acked.len();
            rejected += r.rejected.len();
            batch = r.unsent;
        }
        (acked, rejected, batch)
    }

    #[test]
    fn an_outage_costs_one_request_a_round_and_sets_nothing_aside() {
        for status in [502, 503, 504] {
            let s = scripted(move |_, _| error(status));
            let dir = tempfile::tempdir().unwrap();
            let (spool, batch) = spool_of(dir.path(), 40);
            let (acked, rejected, left) = rounds(&s, &spool, batch, 6);
            assert_eq!((acked, rejected, left.len()), (0, 0, 40));
            assert_eq!(
                s.requests.load(std::sync::atomic::Ordering::SeqCst),
                6,
                "HTTP {status}"
            );
        }
    }

    #[test]
    fn a_database_that_comes_and_goes_never_sets_an_event_aside() {
        // 503, 503, 202, 503, 503, 202, …: a failover, a restart, a lock.
        let s = scripted(|n, ids| {
            if n % 3 == 2 {
                accepted(ids)
            } else {
                error(503)
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut batch) = spool_of(dir.path(), 200);
        let t = HttpTransport::new(&s.dsn, Duration::from_secs(5));
        let mut errors = ServerErrors::default();
        let mut acked = 0;
        // In batches of 10, as a sender with a small batch size would.
        for _ in 0..100 {
            if batch.is_empty() {
                break;
            }
            let rest = batch.split_off(batch.len().min(10));
            let r = send_batch(&t, &spool, batch, &mut errors);
            assert!(r.rejected.is_empty(), "set aside: {:?}", r.rejected);
            acked += r.acked.len();
            batch = r.unsent;
            batch.extend(rest);
        }
        assert_eq!(acked, 200);
        assert!(!dir.path().join(crate::spool::REJECTED_DIR).exists());
    }

    #[test]
    fn a_server_error_on_every_request_costs_three_requests_a_round() {
        let s = scripted(|_, _| error(500));
        let dir = tempfile::tempdir().unwrap();
        let (spool, batch) = spool_of(dir.path(), 100);
        // Round one: the batch fails. Every later round: it and its two
        // halves fail, which is not one event: stop.
        let (acked, rejected, left) = rounds(&s, &spool, batch, 4);
        assert_eq!((acked, rejected, left.len()), (0, 0, 100));
        assert_eq!(
            s.requests.load(std::sync::atomic::Ordering::SeqCst),
            1 + 3 * 3
        );
    }

    #[test]
    fn one_event_that_fails_the_server_is_found_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, batch) = spool_of(dir.path(), 21);
        let poison = batch[7].0.event_id.clone();
        let p = poison.clone();
        let s = scripted(move |_, ids| {
            if ids.contains(&p) {
                error(500)
            } else {
                accepted(ids)
            }
        });
        let (acked, rejected, left) = rounds(&s, &spool, batch, 10);
        assert_eq!((acked, rejected, left.len()), (20, 1, 0));
        let reasons: Vec<_> = std::fs::read_dir(dir.path().join(crate::spool::REJECTED_DIR))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("HTTP 500"), "{reasons:?}");
        let requests = s.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            requests <= 25,
            "{requests} requests to find one event among 21"
        );
    }
}
