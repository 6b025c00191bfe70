//! The retention job: deletes events older than each project's retention in
//! small batches (one short transaction each, a pause between them, so
//! ingest never waits long for the write lock), keeping group counts true
//! (see `panicle_store::PurgeReport` and the store's retention module).

use std::sync::Arc;
use std::time::Duration;

use panicle_store::{PurgeReport, Store, StoreError};

use crate::metrics::Metrics;

const DAY_MS: i64 = 86_400_000;

/// Days of daily usage counters kept (quotas only read today's).
const USAGE_KEEP_DAYS: i64 = 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Days events are kept unless a project says otherwise; 0: forever.
    pub days: u64,
    /// Rows deleted per transaction.
    pub batch: u64,
    /// Pause between two batches, for ingest to get the write lock.
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            days: 90,
            batch: 500,
            pause: Duration::from_millis(20),
        }
    }
}

pub struct RetentionJob {
    store: Store,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
}

impl RetentionJob {
    pub fn new(store: Store, config: RetentionConfig, metrics: Arc<Metrics>) -> Arc<RetentionJob> {
        Arc::new(RetentionJob {
            store,
            config,
            metrics,
        })
    }

    /// One pass over every project, until nothing older than its retention
    /// is left. `now_ms` is the time retention counts back from.
    pub async fn run(&self, now_ms: i64) -> Result<PurgeReport, StoreError> {
        let mut total = PurgeReport::default();
        for (project_id, own) in self.store.project_limits().await? {
            let days = own
                .retention_days
                .map(|d| d.max(0) as u64)
                .unwrap_or(self.config.days);
            if days == 0 {
                continue;
            }
            let cutoff = now_ms.saturating_sub((days as i64).saturating_mul(DAY_MS));
            let batch = self.config.batch.clamp(1, 100_000) as i64;
            loop {
                let done = self.store.purge_batch(project_id, cutoff, batch).await?;
                self.metrics.events_purged.inc_by(done.rows());
                total.add(&done);
                if done.events < batch as u64 && done.sampled < batch as u64 {
                    break;
                }
                tokio::time::sleep(self.config.pause).await;
            }
        }
        self.store.prune_usage(now_ms, USAGE_KEEP_DAYS).await?;
        if total.rows() > 0 {
            tracing::info!(
                events = total.events,
                sampled = total.sampled,
                groups = total.groups,
                "retention purged old events"
            );
        }
        Ok(total)
    }

    /// Runs every `interval` until the process ends.
    pub fn spawn_interval(self: &Arc<Self>, interval: Duration) {
        let job = Arc::clone(self);
        crate::jobs::spawn_every(interval, "retention", move || {
            let job = Arc::clone(&job);
            async move { job.run(crate::now_ms()).await.map(|_| ()) }
        });
    }
}
