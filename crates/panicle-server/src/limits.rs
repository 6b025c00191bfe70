//! Per-project rate limits and quotas: refuse (429 + `Retry-After`) before
//! anything is accepted.
//!
//! The order in an ingest handler:
//! 1. [`Limits::precheck`] right after the key, before the body is read or
//!    decompressed: the project's quota is not known to be used up and its
//!    bucket holds at least one token (nothing is taken). A flood is thus
//!    refused at the cost of a hash lookup.
//! 2. [`Limits::admit`] once the body is decoded and the number of events
//!    `n` is known: takes `n` tokens (a batch of 50 costs 50). A batch that
//!    does not fit is refused whole.
//! 3. [`Limits::insert`] stores the batch, counting new events in the
//!    project's daily and monthly usage in the same transaction; a batch
//!    that would take a count over its quota is rolled back whole and
//!    refused (its tokens are given back).
//!
//! Rates are per server process (in memory; N replicas admit up to N times
//! the rate). Quotas are counted in the database, so they hold across
//! restarts and replicas. A project's settings are re-read every
//! [`SETTINGS_TTL`], so `panicle project update` takes effect without a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use panicle_store::{
    InsertLimits, InsertOutcome, NewEvent, Project, ProjectLimits, QuotaPeriod, Store, StoreError,
    UsagePeriods,
};

use crate::ApiError;
use crate::commit::Committer;
use crate::metrics::Metrics;
use crate::token_bucket::TokenBucket;

/// How long a project's limits are cached before they are read again.
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

/// Server-wide defaults; a project's own setting wins. 0: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDefaults {
    /// Events per second per project.
    pub rate: u64,
    /// Events a project may send at once above the rate (0: the rate).
    pub burst: u64,
    pub daily_quota: u64,
    pub monthly_quota: u64,
    /// Events a group keeps in full before further ones are sampled.
    pub group_event_cap: u64,
}

impl Default for LimitDefaults {
    /// No rate or quota; groups keep 10,000 events in full.
    fn default() -> Self {
        LimitDefaults {
            rate: 0,
            burst: 0,
            daily_quota: 0,
            monthly_quota: 0,
            group_event_cap: 10_000,
        }
    }
}

/// A project's limits after defaults are applied. 0: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub rate: u64,
    pub burst: u64,
    pub daily_quota: u64,
    pub monthly_quota: u64,
    /// The project's own retention in days (0: forever); `None`: the server's.
    pub retention_days: Option<u64>,
}

impl Effective {
    fn resolve(own: &ProjectLimits, d: &LimitDefaults) -> Effective {
        let pick = |own: Option<i64>, default: u64| own.map(|v| v.max(0) as u64).unwrap_or(default);
        let rate = pick(own.rate, d.rate);
        let burst = match pick(own.burst, d.burst) {
            0 => rate,
            b => b,
        };
        Effective {
            rate,
            burst,
            daily_quota: pick(own.daily_quota, d.daily_quota),
            monthly_quota: pick(own.monthly_quota, d.monthly_quota),
            retention_days: own.retention_days.map(|v| v.max(0) as u64),
        }
    }
}

struct Settings {
    read_at: Option<Instant>,
    by_project: HashMap<i64, ProjectLimits>,
}

/// A quota found used up, until its period ends.
#[derive(Clone, Copy)]
struct Exhausted {
    period: QuotaPeriod,
    limit: u64,
    until_ms: i64,
}

pub struct Limits {
    defaults: LimitDefaults,
    settings: Mutex<Settings>,
    /// Serializes re-reading the settings; a request finding it busy uses
    /// the cached ones.
    refreshing: tokio::sync::Mutex<()>,
    buckets: Mutex<HashMap<i64, TokenBucket>>,
    exhausted: Mutex<HashMap<i64, Exhausted>>,
}

/// `2026-12-03T00:00:00Z` from epoch milliseconds.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
fn retry_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

fn quota_error(period: QuotaPeriod, limit: u64, used: u64, now: i64) -> ApiError {
    let periods = UsagePeriods::at(now);
    let ends = match period {
        QuotaPeriod::Daily => periods.day_ends_ms,
        QuotaPeriod::Monthly => periods.month_ends_ms,
    };
    ApiError::Limited {
        code: "quota_exceeded",
        limit: match period {
            QuotaPeriod::Daily => "daily_quota",
            QuotaPeriod::Monthly => "monthly_quota",
        },
        message: format!(
            "the project's {period} quota of {limit} events does not take this batch ({used} used); it resets at {}",
            rfc3339(ends)
        ),
        retry_after: retry_secs(Duration::from_millis((ends - now).max(0) as u64)),
    }
}

fn rate_error(e: &Effective, n: u64, wait: Duration) -> ApiError {
    ApiError::Limited {
        code: "rate_limited",
        limit: "rate",
        message: format!(
            "the project's rate limit of {} events/s (burst {}) does not take {n} more events now; retry in {} s",
            e.rate,
            e.burst,
            retry_secs(wait)
        ),
        retry_after: retry_secs(wait),
    }
}

impl Limits {
    pub fn new(defaults: LimitDefaults) -> Limits {
        Limits {
            defaults,
            settings: Mutex::new(Settings {
                read_at: None,
                by_project: HashMap::new(),
            }),
            refreshing: tokio::sync::Mutex::new(()),
            buckets: Mutex::new(HashMap::new()),
            exhausted: Mutex::new(HashMap::new()),
        }
    }

    pub fn defaults(&self) -> &LimitDefaults {
        &self.defaults
    }

    /// The project's limits, re-read from the store when stale (or when the
    /// project is new to this process).
    pub async fn effective(&self, store: &Store, project_id: i64) -> Effective {
        let (fresh, known) = match self.settings.lock() {
            Ok(s) => (
                s.read_at.is_some_and(|t| t.elapsed() < SETTINGS_TTL),
                s.by_project.get(&project_id).copied(),
            ),
            Err(_) => (false, None),
        };
        if let Some(own) = known.filter(|_| fresh) {
            return Effective::resolve(&own, &self.defaults);
        }
        // Stale or unknown: one request re-reads, the others go on with
        // what is cached (an unknown project waits for the read).
        let guard = match known {
            Some(_) => self.refreshing.try_lock().ok(),
            None => Some(self.refreshing.lock().await),
        };
        if let Some(_guard) = guard {
            match store.project_limits().await {
                Ok(all) => {
                    if let Ok(mut s) = self.settings.lock() {
                        s.by_project = all.into_iter().collect();
                        s.read_at = Some(Instant::now());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read project limits; using the cached ones")
                }
            }
        }
        let own = self
            .settings
            .lock()
            .ok()
            .and_then(|s| s.by_project.get(&project_id).copied())
            .unwrap_or_default();
        Effective::resolve(&own, &self.defaults)
    }

    /// Before the body is read: refuses a project whose quota is known to
    /// be used up or whose bucket has not one token. Takes nothing.
    pub async fn precheck(
        &self,
        store: &Store,
        metrics: &Metrics,
        project: &Project,
    ) -> Result<Effective, ApiError> {
        let e = self.effective(store, project.id).await;
        let now = crate::now_ms();
        let exhausted = self
            .exhausted
            .lock()
            .ok()
            .and_then(|m| m.get(&project.id).copied());
        if let Some(x) = exhausted
            && x.until_ms > now
        {
            let limit_now = match x.period {
                QuotaPeriod::Daily => e.daily_quota,
                QuotaPeriod::Monthly => e.monthly_quota,
            };
            // Still the same quota (not raised or lifted since).
            if limit_now == x.limit {
                let err = quota_error(x.period, x.limit, x.limit, now);
                metrics.limited(&project.name, err.code());
                return Err(err);
            }
        }
        if e.rate > 0 {
            let wait = self.with_bucket(project.id, &e, |b, now| b.wait_for(1, now));
            if !wait.is_zero() {
                let err = rate_error(&e, 1, wait);
                metrics.limited(&project.name, err.code());
                return Err(err);
            }
        }
        Ok(e)
    }

    /// Once the events are counted: takes `n` tokens or refuses the batch whole.
    pub fn admit(
        &self,
        metrics: &Metrics,
        project: &Project,
        e: &Effective,
        n: usize,
    ) -> Result<(), ApiError> {
        if e.rate == 0 || n == 0 {
            return Ok(());
        }
        let n = n as u64;
        match self.with_bucket(project.id, e, |b, now| b.take(n, now)) {
            Ok(()) => Ok(()),
            Err(wait) => {
                let err = rate_error(e, n, wait);
                metrics.limited(&project.name, err.code());
                Err(err)
            }
        }
    }

    /// Stores an admitted batch within the project's quotas; hands the
    /// events back.
    pub async fn insert(
        &self,
        committer: &Committer,
        metrics: &Metrics,
        project: &Project,
        e: &Effective,
        events: Vec<NewEvent>,
    ) -> (Vec<NewEvent>, Result<InsertOutcome, ApiError>) {
        let limits = InsertLimits {
            daily_quota: e.daily_quota.min(i64::MAX as u64) as i64,
            monthly_quota: e.monthly_quota.min(i64::MAX as u64) as i64,
            group_cap: self.defaults.group_event_cap.min(i64::MAX as u64) as i64,
        };
        let n = events.len() as u64;
        let (events, stored) = committer.insert(project.id, events, &limits).await;
        (events, self.judge(stored, metrics, project, e, n))
    }

    /// A store outcome as ingest answers it: a quota refusal is remembered
    /// (later requests are refused before their body is read) and its rate
    /// tokens (`n`) are given back.
    fn judge(
        &self,
        stored: Result<InsertOutcome, StoreError>,
        metrics: &Metrics,
        project: &Project,
        e: &Effective,
        n: u64,
    ) -> Result<InsertOutcome, ApiError> {
        match stored {
            Ok(outcome) => Ok(outcome),
            Err(StoreError::QuotaExceeded {
                period,
                limit,
                used,
            }) => {
                let (limit, used) = (limit.max(0) as u64, used.max(0) as u64);
                let now = crate::now_ms();
                if used >= limit {
                    let periods = UsagePeriods::at(now);
                    let until_ms = match period {
                        QuotaPeriod::Daily => periods.day_ends_ms,
                        QuotaPeriod::Monthly => periods.month_ends_ms,
                    };
                    if let Ok(mut m) = self.exhausted.lock() {
                        m.insert(
                            project.id,
                            Exhausted {
                                period,
                                limit,
                                until_ms,
                            },
                        );
                    }
                }
                if e.rate > 0 {
                    self.with_bucket(project.id, e, |b, _| b.refund(n));
                }
                let err = quota_error(period, limit, used, now);
                metrics.limited(&project.name, err.code());
                Err(err)
            }
            Err(other) => Err(other.into()),
        }
    }

    fn with_bucket<T>(
        &self,
        project_id: i64,
        e: &Effective,
        f: impl FnOnce(&mut TokenBucket, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let mut fallback;
        let mut guard = self.buckets.lock();
        let bucket = match guard.as_mut() {
            Ok(map) => {
                let b = map
                    .entry(project_id)
                    .or_insert_with(|| TokenBucket::new(e.rate, e.burst, now));
                if !b.same_settings(e.rate, e.burst) {
                    b.reconfigure(e.rate, e.burst, now);
                }
                b
            }
            // A poisoned map: admit as if full rather than refuse everyone.
            Err(_) => {
                fallback = TokenBucket::new(e.rate, e.burst, now);
                &mut fallback
            }
        };
        f(bucket, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_settings_win_over_defaults_and_zero_is_unlimited() {
        let d = LimitDefaults {
            rate: 100,
            burst: 0,
            daily_quota: 1000,
            monthly_quota: 0,
            group_event_cap: 5,
        };
        let none = Effective::resolve(&ProjectLimits::default(), &d);
        assert_eq!(
            (none.rate, none.burst, none.daily_quota),
            (100, 100, 1000),
            "burst 0: the rate"
        );
        let own = ProjectLimits {
            rate: Some(0),
            burst: Some(7),
            daily_quota: Some(0),
            monthly_quota: Some(50),
            retention_days: None,
        };
        let e = Effective::resolve(&own, &d);
        assert_eq!(
            e,
            Effective {
                rate: 0,
                burst: 7,
                daily_quota: 0,
                monthly_quota: 50,
                retention_days: None,
            }
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_secs(Duration::from_secs(3)), 3);
    }
}
