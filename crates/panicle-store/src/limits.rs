//! Per-project limits as stored (rate, burst, quotas, retention), the usage
//! counters quotas are checked against, and the per-group sampling rule.
//!
//! A stored limit of `None` means "the server's default"; `Some(0)` means
//! unlimited (for retention: keep forever).

use sqlx::Row;

use crate::{Result, Store, StoreError};

/// What a project has set; `None` falls back to the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectLimits {
    /// Events per second.
    pub rate: Option<i64>,
    /// Events that may arrive at once above the rate.
    pub burst: Option<i64>,
    /// Events per UTC day.
    pub daily_quota: Option<i64>,
    /// Events per UTC month.
    pub monthly_quota: Option<i64>,
    /// Days events are kept.
    pub retention_days: Option<i64>,
}

/// A change to a project's limits: `None` leaves a field as it is,
/// `Some(None)` returns it to the server's default, `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    pub rate: Option<Option<i64>>,
    pub burst: Option<Option<i64>>,
    pub daily_quota: Option<Option<i64>>,
    pub monthly_quota: Option<Option<i64>>,
    pub retention_days: Option<Option<i64>>,
}

/// Which quota a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Daily,
    Monthly,
}

impl std::fmt::Display for QuotaPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaPeriod::Daily => "daily",
            QuotaPeriod::Monthly => "monthly",
        })
    }
}

/// The effective limits of one insert (0: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertLimits {
    pub daily_quota: i64,
    pub monthly_quota: i64,
    /// Events a group keeps in full; beyond it new events are sampled.
    pub group_cap: i64,
}

/// The UTC day and month an instant falls in, as usage keys, and when each ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePeriods {
    /// `d2026-12-02`
    pub day: String,
    /// `m2026-12`
    pub month: String,
    pub day_ends_ms: i64,
    pub month_ends_ms: i64,
}

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl UsagePeriods {
    pub fn at(ms: i64) -> UsagePeriods {
        let days = ms.div_euclid(DAY_MS);
        let (y, m, d) = civil_from_days(days);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        UsagePeriods {
            day: format!("d{y:04}-{m:02}-{d:02}"),
            month: format!("m{y:04}-{m:02}"),
            day_ends_ms: (days + 1) * DAY_MS,
            month_ends_ms: days_from_civil(ny, nm, 1) * DAY_MS,
        }
    }

    /// The key of the day `days_back` days before this one (for pruning).
    pub fn day_key_before(ms: i64, days_back: i64) -> String {
        let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS) - days_back);
        format!("d{y:04}-{m:02}-{d:02}")
    }
}

/// Whether a group that already has `stored` events in full and `arrived`
/// events in all (stored + sampled) keeps the next one in full.
///
/// Up to `cap` every event is kept. Beyond it the `k`-th arrival is kept
/// when `k` is a multiple of `k / cap + 1`: one in two up to 2·cap, one in
/// three up to 3·cap, … Storage grows like `cap · ln(arrivals/cap)` (10,000
/// → about 52,000 at a million arrivals) while new events keep being seen (a
/// release that changes the stack still shows up), retention bounds it over
/// time, and the decision needs nothing but two counters.
pub fn keep_sampled(stored: i64, arrived: i64, cap: i64) -> bool {
    if cap <= 0 || stored < cap {
        return true;
    }
    let k = arrived.saturating_add(1);
    let every = k / cap + 1;
    k % every == 0
}

fn limits_from_row(row: &sqlx::any::AnyRow) -> Result<ProjectLimits> {
    Ok(ProjectLimits {
        rate: row.try_get("rate_limit")?,
        burst: row.try_get("rate_burst")?,
        daily_quota: row.try_get("daily_quota")?,
        monthly_quota: row.try_get("monthly_quota")?,
        retention_days: row.try_get("retention_days")?,
    })
}

const LIMIT_COLUMNS: &str =
    "id, rate_limit, rate_burst, daily_quota, monthly_quota, retention_days";

impl Store {
    /// The limits every project has set, by project id.
    pub async fn project_limits(&self) -> Result<Vec<(i64, ProjectLimits)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIMIT_COLUMNS} FROM projects ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, limits_from_row(r)?)))
            .collect()
    }

    /// Changes a project's limits; returns them as they are now.
    pub async fn update_project_limits(
        &self,
        name: &str,
        update: &LimitsUpdate,
    ) -> Result<ProjectLimits> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LIMIT_COLUMNS} FROM projects WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NoSuchProject(name.to_string()))?;
        let id: i64 = row.try_get("id")?;
        let old = limits_from_row(&row)?;
        let new = ProjectLimits {
            rate: update.rate.unwrap_or(old.rate),
            burst: update.burst.unwrap_or(old.burst),
            daily_quota: update.daily_quota.unwrap_or(old.daily_quota),
            monthly_quota: update.monthly_quota.unwrap_or(old.monthly_quota),
            retention_days: update.retention_days.unwrap_or(old.retention_days),
        };
        sqlx::query(
            "UPDATE projects SET rate_limit = $1, rate_burst = $2, daily_quota = $3, \
             monthly_quota = $4, retention_days = $5 WHERE id = $6",
        )
        .bind(new.rate)
        .bind(new.burst)
        .bind(new.daily_quota)
        .bind(new.monthly_quota)
        .bind(new.retention_days)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Events counted against the project's quotas in the day and month of
    /// `periods`: (day, month).
    pub async fn usage(&self, project_id: i64, periods: &UsagePeriods) -> Result<(i64, i64)> {
        let rows = sqlx::query(
            "SELECT period, count FROM project_usage WHERE project_id = $1 AND period IN ($2, $3)",
        )
        .bind(project_id)
        .bind(&periods.day)
        .bind(&periods.month)
        .fetch_all(&self.pool)
        .await?;
        let (mut day, mut month) = (0, 0);
        for r in rows {
            let period: String = r.try_get("period")?;
            let count: i64 = r.try_get("count")?;
            if period == periods.day {
                day = count;
            } else {
                month = count;
            }
        }
        Ok((day, month))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-12-02T12:13:55Z
        let p = UsagePeriods::at(1_796_213_635_000);
        assert_eq!(p.day, "d2026-12-02");
        assert_eq!(p.month, "m2026-12");
        assert_eq!(p.day_ends_ms, 1_796_256_000_000); // 2026-12-03T00:00:00Z
        assert_eq!(p.month_ends_ms, 1_798_761_600_000); // 2027-01-01T00:00:00Z
        let leap = UsagePeriods::at(days_from_civil(2028, 2, 29) * DAY_MS + 1);
        assert_eq!(
            (leap.day.as_str(), leap.month.as_str()),
            ("d2028-02-29", "m2028-02")
        );
        assert_eq!(leap.month_ends_ms, days_from_civil(2028, 3, 1) * DAY_MS);
        assert_eq!(UsagePeriods::day_key_before(0, 1), "d1969-12-31");
        for days in [-800_000, -1, 0, 1, 19_000, 20_454, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn sampling_keeps_everything_up_to_the_cap_then_thins_out() {
        assert!(keep_sampled(5, 5, 0), "0 is no cap");
        let cap = 100;
        let (mut stored, mut arrived) = (0i64, 0i64);
        for _ in 0..10_000 {
            if keep_sampled(stored, arrived, cap) {
                stored += 1;
            }
            arrived += 1;
        }
        // cap · (1 + ln 100) ≈ 560
        assert!((400..=700).contains(&stored), "{stored}");
        let (mut stored2, mut arrived2) = (0i64, 0i64);
        for _ in 0..150 {
            if keep_sampled(stored2, arrived2, cap) {
                stored2 += 1;
            }
            arrived2 += 1;
        }
        assert!((100..150).contains(&stored2), "{stored2}");
    }
}
