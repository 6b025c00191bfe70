//! A token bucket that counts events, not requests. Pure: the caller passes
//! the time.
//!
//! A batch of `n` events is admitted when the bucket holds `min(n, burst)`
//! tokens; it then takes all `n`, which may leave the bucket in debt. A batch
//! larger than the burst is thus admitted once the bucket is full instead of
//! never, and the debt holds the average to the rate.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens the bucket holds.
    burst: f64,
    /// May be negative: debt from a batch larger than what was there.
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// Same bucket under new settings (a project's limits changed); the
    /// tokens it holds are kept, capped at the new burst.
    pub fn reconfigure(&mut self, rate: u64, burst: u64, now: Instant) {
        self.refill(now);
        self.rate = rate.max(1) as f64;
        self.burst = burst.max(1) as f64;
        self.tokens = self.tokens.min(self.burst);
    }

    pub fn same_settings(&self, rate: u64, burst: u64) -> bool {
        self.rate == rate.max(1) as f64 && self.burst == burst.max(1) as f64
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
    }

    /// How long until `n` events would be admitted; zero when now. Takes nothing.
    pub fn wait_for(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = (n as f64).min(self.burst);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }

    /// Admits `n` events (taking `n` tokens), or says how long to wait.
    pub fn take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        let wait = self.wait_for(n, now);
        if wait.is_zero() {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Gives back what an admitted batch did not use (it was refused later).
    pub fn refund(&mut self, n: u64) {
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Equal within a microsecond (the bucket computes in f64 seconds).
    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    #[test]
    fn counts_events_and_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 50, t0);
        assert_eq!(b.take(50, t0), Ok(()), "a full burst at once");
        let wait = b.take(1, t0).unwrap_err();
        assert!(
            close(wait, 100 * MS),
            "one token comes every 100 ms: {wait:?}"
        );
        assert!(b.take(1, t0 + 99 * MS).is_err());
        assert_eq!(b.take(1, t0 + 100 * MS), Ok(()));
        // 20 events need 2 s of refill.
        assert!(close(b.wait_for(20, t0 + 100 * MS), Duration::from_secs(2)));
        assert_eq!(b.take(20, t0 + 2100 * MS), Ok(()));
    }

    #[test]
    fn a_batch_over_the_burst_waits_for_a_full_bucket_then_leaves_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert_eq!(b.take(5, t0), Ok(()));
        assert!(
            close(b.take(100, t0).unwrap_err(), 500 * MS),
            "until 20 are there"
        );
        assert_eq!(b.take(100, t0 + 500 * MS), Ok(()));
        // 80 in debt plus 1: 8.1 s at 10/s.
        assert!(close(
            b.wait_for(1, t0 + 500 * MS),
            Duration::from_millis(8100)
        ));
    }

    #[test]
    fn refund_and_reconfigure_stay_within_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 10, t0);
        assert_eq!(b.take(10, t0), Ok(()));
        b.refund(100);
        assert_eq!(b.take(10, t0), Ok(()), "refund fills up to the burst only");
        assert!(b.take(11, t0).is_err());
        b.reconfigure(100, 5, t0);
        assert!(b.same_settings(100, 5));
        assert!(close(b.wait_for(5, t0), 50 * MS));
        // A clock that goes backwards adds nothing.
        let earlier = t0.checked_sub(Duration::from_secs(1)).unwrap_or(t0);
        assert!(close(b.wait_for(5, earlier), 50 * MS));
    }
}
