//! Group commit: ingest requests hand their events to a few writers, each of
//! which stores whatever has arrived since its last transaction as one
//! ([`Store::insert_jobs`]) and then answers every request in it. A 202
//! still means committed; what a transaction costs (a commit, an fsync on
//! PostgreSQL, an upsert per group and per usage period) is paid once for
//! all the requests in it instead of once each.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use panicle_store::{InsertJob, InsertLimits, InsertOutcome, NewEvent, Store, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::metrics::Metrics;

/// How ingest transactions are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Writers, each with a transaction open at a time; 0: every request
    /// commits its own transaction (what group commit is measured against).
    pub writers: usize,
    /// A writer stops taking requests into a transaction at this many events.
    pub max_events: usize,
    /// How long a writer waits for more requests after the first before it
    /// commits. 0: it takes only what is already waiting, so a lone request
    /// waits for nothing, and under load the requests that arrive during a
    /// commit form the next one.
    pub window: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            writers: 2,
            max_events: 2_000,
            window: Duration::ZERO,
        }
    }
}

/// Requests of a failed shared transaction stored alone at once.
const SPLIT_CONCURRENCY: usize = 4;

/// Requests waiting for a writer at most; past it a request waits to hand
/// its events over (the admission gate bounds what waits in memory).
const QUEUE_CAPACITY: usize = 4_096;

struct Job {
    project_id: i64,
    events: Vec<NewEvent>,
    limits: InsertLimits,
    handed: Instant,
    /// The events go back with the answer: a request that must store them
    /// one by one after all (the poison fallback) has them without a copy.
    reply: oneshot::Sender<(Vec<NewEvent>, Result<InsertOutcome, StoreError>)>,
}

/// The ingest side of group commit: [`Committer::insert`] is
/// [`Store::insert_events_with`] with the transaction shared.
pub struct Committer {
    store: Store,
    metrics: Arc<Metrics>,
    config: GroupCommit,
    /// Started at the first insert, inside the runtime that serves.
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Committer {
    pub fn new(store: Store, metrics: Arc<Metrics>, config: GroupCommit) -> Committer {
        Committer {
            store,
            metrics,
            config,
            queue: OnceLock::new(),
        }
    }

    /// Stores one request's events, committed (alone or with others) when
    /// it returns, and hands them back. The outcome and errors are those of
    /// storing them alone: a transaction that fails is run again one
    /// request each.
    pub async fn insert(
        &self,
        project_id: i64,
        events: Vec<NewEvent>,
        limits: &InsertLimits,
    ) -> (Vec<NewEvent>, Result<InsertOutcome, StoreError>) {
        if self.config.writers == 0 {
            let result = self
                .store
                .insert_events_with(project_id, &events, limits)
                .await;
            return (events, result);
        }
        let queue = self.queue.get_or_init(|| self.start());
        let (reply, answer) = oneshot::channel();
        let job = Job {
            project_id,
            events,
            limits: *limits,
            handed: Instant::now(),
            reply,
        };
        match queue.send(job).await {
            Ok(()) => {
                let waiting = queue.max_capacity() - queue.capacity();
                self.metrics.commit_queue_depth.set(waiting as i64);
            }
            // The writers are gone (the runtime is shutting down): store it here.
            Err(mpsc::error::SendError(job)) => {
                let result = self
                    .store
                    .insert_events_with(project_id, &job.events, limits)
                    .await;
                return (job.events, result);
            }
        }
        match answer.await {
            Ok(answered) => answered,
            // A writer dropped it mid-transaction (a panic rolled that back):
            // nothing of it is stored, and the client's resend is safe.
            Err(_) => (Vec::new(), Err(StoreError::Db(sqlx::Error::WorkerCrashed))),
        }
    }

    fn start(&self) -> mpsc::Sender<Job> {
        let (send, receive) = mpsc::channel(QUEUE_CAPACITY);
        let receive = Arc::new(Mutex::new(receive));
        for _ in 0..self.config.writers {
            let writer = Writer {
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                config: self.config,
                queue: receive.clone(),
            };
            tokio::spawn(Arc::new(writer).run());
        }
        send
    }
}

struct Writer {
    store: Store,
    metrics: Arc<Metrics>,
    config: GroupCommit,
    /// Shared by the writers: the one holding it gathers the next
    /// transaction while the others commit theirs.
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl Writer {
    async fn run(self: Arc<Self>) {
        while let Some(jobs) = self.gather().await {
            // A panic inside a transaction fails its requests (their answers
            // are dropped: 503, nothing stored), not the writer.
            let writer = self.clone();
            if let Err(e) = tokio::spawn(async move { writer.commit(jobs).await }).await {
                tracing::error!(error = %e, "a group commit panicked; its requests were answered 503");
            }
        }
    }

    /// The next transaction's requests: the first to arrive, then whatever
    /// else arrives within the window, up to `max_events`. None when every
    /// sender is gone.
    async fn gather(&self) -> Option<Vec<Job>> {
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        let deadline = tokio::time::Instant::now() + self.config.window;
        let mut events = first.events.len();
        let mut jobs = vec![first];
        while events < self.config.max_events {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !self.config.window.is_zero() => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            events += job.events.len();
            jobs.push(job);
        }
        self.metrics.commit_queue_depth.set(queue.len() as i64);
        Some(jobs)
    }

    async fn commit(&self, jobs: Vec<Job>) {
        let events: usize = jobs.iter().map(|j| j.events.len()).sum();
        self.metrics.commit_batch_events.observe(events as f64);
        self.metrics
            .commit_batch_requests
            .observe(jobs.len() as f64);
        let started = Instant::now();
        let result = {
            let batch: Vec<InsertJob<'_>> = jobs
                .iter()
                .map(|j| InsertJob {
                    project_id: j.project_id,
                    events: &j.events,
                    limits: j.limits,
                })
                .collect();
            self.store.insert_jobs(&batch).await
        };
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    job.answer(&self.metrics, Ok(outcome));
                }
            }
            Err(e) if jobs.len() == 1 => {
                if let Some(job) = jobs.into_iter().next() {
                    job.answer(&self.metrics, Err(e));
                }
            }
            Err(e) => {
                // A quota the sum crossed, an event the database refuses or
                // an outage: each request gets its own answer, as if alone.
                // Several at once (an outage costs each one connection
                // timeout), not all: a big transaction's requests must not
                // take every connection of the pool.
                tracing::debug!(error = %e, requests = jobs.len(), "a group commit failed; storing its requests one by one");
                self.metrics.commit_split.inc();
                let mut alone = tokio::task::JoinSet::new();
                let permits = Arc::new(tokio::sync::Semaphore::new(SPLIT_CONCURRENCY));
                for job in jobs {
                    let store = self.store.clone();
                    let metrics = self.metrics.clone();
                    let permits = permits.clone();
                    alone.spawn(async move {
                        // Held until answered; a closed semaphore cannot happen here.
                        let _permit = permits.acquire_owned().await.ok();
                        let result = store
                            .insert_events_with(job.project_id, &job.events, &job.limits)
                            .await;
                        job.answer(&metrics, result);
                    });
                }
                while alone.join_next().await.is_some() {}
            }
        }
    }
}

impl Job {
    /// Answers the request, handing its events back.
    fn answer(self, metrics: &Metrics, result: Result<InsertOutcome, StoreError>) {
        metrics
            .commit_wait_seconds
            .observe(self.handed.elapsed().as_secs_f64());
        // The request may be gone (its client hung up): what was committed stays.
        let _ = self.reply.send((self.events, result));
    }
}
