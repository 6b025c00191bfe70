//! The clustering job: DBSCAN over every project's group signatures, stable
//! cluster ids, and between runs the attaching of new groups to the cluster
//! of a core member within eps. The compute runs off the async runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use panicle_cluster::{GroupLabel, GroupSignature, Params, attach, cluster, stabilize};
use panicle_store::{ClusterChange, GroupAssignment, GroupRow, NewCluster, Store, StoreError};
use serde::Serialize;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("clustering failed: {0}")]
    Cluster(#[from] panicle_cluster::ClusterError),
    #[error("the clustering task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What one run did, for the API and the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// False when another replica held the lock and this one skipped.
    pub ran: bool,
    pub projects: usize,
    pub groups: usize,
    pub clusters: usize,
    pub merges: usize,
    pub splits: usize,
    pub millis: u128,
}

pub struct ClusterJob {
    store: Store,
    params: Params,
    /// One run (or attach) at a time in this process; replicas coordinate
    /// through the store's advisory lock.
    running: Mutex<()>,
    /// Projects with an attach waiting to run: a burst of ingest requests
    /// queues one attach, not one per request.
    attach_pending: std::sync::Mutex<HashSet<i64>>,
}

fn signature(g: &GroupRow) -> GroupSignature {
    GroupSignature::new(g.frames.clone(), Some(g.template.clone()))
}

fn cluster_key(id: u64) -> String {
    id.to_string()
}

impl ClusterJob {
    pub fn new(store: Store, params: Params) -> Arc<ClusterJob> {
        Arc::new(ClusterJob {
            store,
            params,
            running: Mutex::new(()),
            attach_pending: std::sync::Mutex::new(HashSet::new()),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// A full run over every project.
    pub async fn run(&self) -> Result<RunReport, JobError> {
        let started = std::time::Instant::now();
        let _local = self.running.lock().await;
        let Some(lock) = self.store.try_job_lock().await? else {
            return Ok(RunReport::default());
        };
        let result = self.run_locked().await;
        lock.release().await;
        let mut report = result?;
        report.ran = true;
        report.millis = started.elapsed().as_millis();
        tracing::info!(
            groups = report.groups,
            clusters = report.clusters,
            merges = report.merges,
            splits = report.splits,
            millis = report.millis,
            "clustering run done"
        );
        Ok(report)
    }

    async fn run_locked(&self) -> Result<RunReport, JobError> {
        let mut report = RunReport::default();
        for project in self.store.projects().await? {
            let groups = self.store.all_groups(Some(project.id)).await?;
            if groups.is_empty() {
                continue;
            }
            report.projects += 1;
            report.groups += groups.len();
            let sigs: Vec<GroupSignature> = groups.iter().map(signature).collect();
            let counts: Vec<u64> = groups.iter().map(|g| g.count.max(1) as u64).collect();
            let params = self.params;
            let clustering =
                tokio::task::spawn_blocking(move || cluster(&sigs, &counts, &params)).await??;
            let previous: HashMap<String, u64> = groups
                .iter()
                .filter_map(|g| Some((g.id.clone(), g.cluster_id.as_deref()?.parse().ok()?)))
                .collect();
            let labels: Vec<GroupLabel<String>> = groups
                .iter()
                .zip(&clustering.labels)
                .map(|(g, &label)| GroupLabel {
                    group: g.id.clone(),
                    label,
                    count: g.count.max(1) as u64,
                })
                .collect();
            // A block of fresh ids, so an attach on another replica never mints the same one.
            let first_fresh = self.store.reserve_cluster_ids(groups.len() as u64).await?;
            let assigned = stabilize(&previous, &labels, first_fresh);
            let assignments: Vec<GroupAssignment> = groups
                .iter()
                .zip(&assigned.clusters)
                .zip(&clustering.core)
                .map(|((g, &c), &core)| GroupAssignment {
                    group_id: g.id.clone(),
                    cluster_id: cluster_key(c),
                    core,
                })
                .collect();
            let mut changes: Vec<ClusterChange> = assigned
                .merges
                .iter()
                .map(|m| ClusterChange {
                    kind: "merge".into(),
                    cluster_id: cluster_key(m.into),
                    others: m.from.iter().map(|&c| cluster_key(c)).collect(),
                    actor: None,
                    detail: None,
                })
                .collect();
            changes.extend(assigned.splits.iter().map(|s| ClusterChange {
                kind: "split".into(),
                cluster_id: cluster_key(s.from),
                others: s.into.iter().map(|&c| cluster_key(c)).collect(),
                actor: None,
                detail: None,
            }));
            let sources = state_sources(
                groups.iter().map(|g| g.id.as_str()),
                &previous,
                &assigned.clusters,
            );
            let mut distinct: Vec<u64> = assigned.clusters.clone();
            distinct.sort_unstable();
            distinct.dedup();
            report.clusters += distinct.len();
            report.merges += assigned.merges.len();
            report.splits += assigned.splits.len();
            let new_clusters = new_clusters(&groups, &assigned.clusters, &previous);
            self.store
                .save_clustering(
                    project.id,
                    &assignments,
                    assigned.next_id,
                    &changes,
                    &sources,
                    &new_clusters,
                )
                .await?;
        }
        Ok(report)
    }

    /// Marks an attach as wanted for the project; true when the caller should
    /// spawn it (none was waiting yet).
    pub fn schedule_attach(&self, project_id: i64) -> bool {
        match self.attach_pending.lock() {
            Ok(mut pending) => pending.insert(project_id),
            Err(_) => true,
        }
    }

    /// Runs a scheduled attach; new events arriving while it runs schedule
    /// the next one.
    pub async fn attach_scheduled(&self, project_id: i64) -> Result<usize, JobError> {
        let _local = self.running.lock().await;
        if let Ok(mut pending) = self.attach_pending.lock() {
            pending.remove(&project_id);
        }
        self.attach_locked(project_id).await
    }

    /// Puts each group without a cluster into the cluster of its nearest core
    /// member within eps, or into a new cluster of its own: every group is
    /// in exactly one cluster between runs too.
    async fn attach_locked(&self, project_id: i64) -> Result<usize, JobError> {
        let loose = self.store.loose_groups(project_id).await?;
        if loose.is_empty() {
            return Ok(0);
        }
        let cores: Vec<(GroupSignature, String)> = self
            .store
            .core_groups(project_id)
            .await?
            .iter()
            .filter_map(|g| Some((signature(g), g.cluster_id.clone()?)))
            .collect();
        let loose_sigs: Vec<(String, GroupSignature)> =
            loose.iter().map(|g| (g.id.clone(), signature(g))).collect();
        let params = self.params;
        let found = tokio::task::spawn_blocking(move || {
            loose_sigs
                .into_iter()
                .map(|(id, sig)| {
                    let hit = attach(&sig, cores.iter().map(|(s, c)| (s, c.as_str())), &params)?
                        .map(|(c, _)| c.to_string());
                    Ok((id, hit))
                })
                .collect::<Result<Vec<_>, panicle_cluster::ClusterError>>()
        })
        .await??;
        for (group_id, hit) in &found {
            match hit {
                Some(c) => {
                    self.store.set_group_cluster(group_id, c).await?;
                }
                None => {
                    let cluster_id = cluster_key(self.store.reserve_cluster_ids(1).await?);
                    let release = loose
                        .iter()
                        .find(|g| &g.id == group_id)
                        .and_then(|g| g.first_release.clone());
                    let started = NewCluster {
                        cluster_id,
                        group_id: group_id.clone(),
                        release,
                    };
                    self.store.start_cluster(project_id, &started).await?;
                }
            }
        }
        Ok(found.len())
    }

    /// Runs the job every `interval` until the process ends.
    pub fn spawn_interval(self: &Arc<Self>, interval: Duration) {
        let job = Arc::clone(self);
        spawn_every(interval, "clustering", move || {
            let job = Arc::clone(&job);
            async move { job.run().await.map(|_| ()) }
        });
    }
}

/// The clusters of a run whose ids did not exist before and whose groups
/// were all never clustered: new bugs, not a split's new part (a split's
/// groups had a cluster). Each stands for its heaviest group.
fn new_clusters(
    groups: &[GroupRow],
    assigned: &[u64],
    previous: &HashMap<String, u64>,
) -> Vec<NewCluster> {
    let known: HashSet<u64> = previous.values().copied().collect();
    let mut by_cluster: HashMap<u64, (bool, &GroupRow)> = HashMap::new();
    for (g, &c) in groups.iter().zip(assigned) {
        if known.contains(&c) {
            continue;
        }
        let fresh = !previous.contains_key(&g.id);
        let entry = by_cluster.entry(c).or_insert((true, g));
        entry.0 &= fresh;
        if g.count > entry.1.count {
            entry.1 = g;
        }
    }
    let mut out: Vec<NewCluster> = by_cluster
        .into_iter()
        .filter(|(_, (fresh, _))| *fresh)
        .map(|(c, (_, g))| NewCluster {
            cluster_id: cluster_key(c),
            group_id: g.id.clone(),
            release: g.first_release.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.cluster_id.cmp(&b.cluster_id));
    out
}

/// Which previous clusters each of this run's clusters holds groups of
/// (ascending; empty for a cluster of groups that were in none): states
/// follow them through merges and splits (`panicle_store::merge_states`).
fn state_sources<'a>(
    groups: impl Iterator<Item = &'a str>,
    previous: &HashMap<String, u64>,
    now: &[u64],
) -> Vec<(String, Vec<String>)> {
    let mut sources: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (g, &c) in groups.zip(now) {
        let from = sources.entry(c).or_default();
        if let Some(&old) = previous.get(g) {
            from.insert(old);
        }
    }
    sources
        .into_iter()
        .map(|(c, from)| (cluster_key(c), from.into_iter().map(cluster_key).collect()))
        .collect()
}

/// Runs `run` every `interval` until the process ends; a failed run is
/// logged and the next interval tries again.
pub(crate) fn spawn_every<F, Fut, E>(interval: Duration, what: &'static str, mut run: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run().await {
                tracing::warn!(error = %e, "{what} run failed; will retry next interval");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_sources_name_the_previous_clusters_of_each_cluster() {
        // a, b were in 1; c in 2; d in none. Now a, c → 1 (a merge of 1 and
        // 2), b → 5 (split off 1), d → 6 (new).
        let previous: HashMap<String, u64> = [
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("c".to_string(), 2),
        ]
        .into();
        let got = state_sources(["a", "b", "c", "d"].into_iter(), &previous, &[1, 5, 1, 6]);
        let want: Vec<(String, Vec<String>)> = vec![
            ("1".into(), vec!["1".into(), "2".into()]),
            ("5".into(), vec!["1".into()]),
            ("6".into(), vec![]),
        ];
        assert_eq!(got, want);
    }
}
