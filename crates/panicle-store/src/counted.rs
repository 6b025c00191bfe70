//! Every panic a group counts, as one row source for the read views.
//!
//! A group's `event_count` is `Σ events.weight + Σ sampled_events.weight`
//! (see `retention.rs`): storm aggregates stand for `weight` panics, and a
//! group over its cap keeps only the id, time and weight of some events.
//! A view that summed `events` alone, or counted rows instead of weights,
//! told another number than the cluster's header (issue 16: `where`
//! summing to 8 of 12). Every count a view shows is therefore a weighted
//! sum over this source, so they all add up to the same total.
//!
//! A sampled row has no service, release, pod, route, trace or depth: those
//! columns are NULL, so a filter on them leaves it out (it is not known to
//! match) and a distribution puts it in the "not recorded" bucket. Its kind
//! and platform are its group's, which the fingerprint fixes.

/// The rows of `events` and `sampled_events` with the columns the views
/// filter, count and list on, aliased by the caller (`FROM {COUNTED} e`).
/// `sampled` is 1 for a row whose details were not kept.
pub(crate) const COUNTED: &str = "(SELECT project_id, event_id, group_id, ts, received_at, platform, kind, \
     message, service, environment, release, trace_id, pod, node, route, depth, weight, CAST(0 AS BIGINT) AS sampled \
     FROM events \
     UNION ALL \
     SELECT s.project_id, s.event_id, s.group_id, s.ts, s.ts AS received_at, g.platform, g.kind, \
     g.template AS message, CAST(NULL AS TEXT) AS service, CAST(NULL AS TEXT) AS environment, \
     CAST(NULL AS TEXT) AS release, CAST(NULL AS TEXT) AS trace_id, CAST(NULL AS TEXT) AS pod, \
     CAST(NULL AS TEXT) AS node, CAST(NULL AS TEXT) AS route, CAST(NULL AS BIGINT) AS depth, \
     s.weight, CAST(1 AS BIGINT) AS sampled \
     FROM sampled_events s JOIN event_groups g ON g.id = s.group_id)";
