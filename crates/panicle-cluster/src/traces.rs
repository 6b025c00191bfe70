//! A cluster's trace links: each event's own trace and the traces sampled
//! from the panics a storm aggregate folded, distinct and newest first, so
//! storm control never cuts a cluster from the traces of its requests.
//! Pure: the server reads the events and formats what comes back.

use std::collections::HashSet;

use panicle_protocol::storm::StormRecord;
use serde::Serialize;

/// One panic's trace, and the event id the SDK handed out for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceLink {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The panic's event id; a folded one resolves to its aggregate.
    pub event_id: String,
    pub timestamp_ms: i64,
    pub request_id: Option<String>,
    pub route: Option<String>,
    /// The aggregate that holds this panic, when storm control folded it.
    pub folded_into: Option<String>,
}

/// An OpenTelemetry trace id (32 hex digits, not all zero), lowercased;
/// None for anything else, since it ends up in a trace viewer's URL.
pub fn trace_id(raw: &str) -> Option<String> {
    let ok = raw.len() == 32
        && raw.bytes().all(|b| b.is_ascii_hexdigit())
        && raw.bytes().any(|b| b != b'0');
    ok.then(|| raw.to_ascii_lowercase())
}

/// The links of the panics sampled in an aggregate (`aggregate_id`, dated
/// `aggregate_ms`). `sample_ms` reads a sample's RFC 3339 time; a sample it
/// cannot read is dated as its aggregate.
pub fn storm_links(
    aggregate_id: &str,
    aggregate_ms: i64,
    storm: &StormRecord,
    sample_ms: impl Fn(&str) -> Option<i64>,
) -> Vec<TraceLink> {
    storm
        .samples
        .iter()
        .filter_map(|s| {
            Some(TraceLink {
                trace_id: trace_id(&s.trace.as_ref()?.trace_id)?,
                event_id: s.event_id.clone(),
                timestamp_ms: sample_ms(&s.timestamp).unwrap_or(aggregate_ms),
                request_id: s.request_id.clone(),
                route: s.route.clone(),
                folded_into: Some(aggregate_id.to_string()),
            })
        })
        .collect()
}

/// One link per trace, its newest panic's, newest first (ties: by event id,
/// for a stable answer).
pub fn distinct_traces(mut links: Vec<TraceLink>) -> Vec<TraceLink> {
    links.sort_by(|a, b| {
        b.timestamp_ms
            .cmp(&a.timestamp_ms)
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    let mut seen = HashSet::new();
    links.retain(|l| seen.insert(l.trace_id.clone()));
    links
}

/// What an aggregate stands for, as the read API and dashboard show it
/// ("×37, 20 traces").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StormSummary {
    /// Panics the aggregate stands for (its weighted `count`).
    pub count: i64,
    /// Distinct trace ids among its own trace and its samples.
    pub traces: usize,
    /// Distinct request ids among its samples.
    pub request_ids: usize,
    /// Distinct routes among its samples, in first-seen order.
    pub routes: Vec<String>,
    /// Samples kept of the folded panics.
    pub sampled: usize,
    /// Folded event ids the aggregate resolves (`seq_end - seq_start`).
    pub folded_ids: u64,
}

/// The summary of an aggregate of `count` panics whose own trace is `own_trace`.
pub fn storm_summary(storm: &StormRecord, count: i64, own_trace: Option<&str>) -> StormSummary {
    let traces: HashSet<String> = storm
        .samples
        .iter()
        .filter_map(|s| trace_id(&s.trace.as_ref()?.trace_id))
        .chain(own_trace.and_then(trace_id))
        .collect();
    let request_ids: HashSet<&str> = storm
        .samples
        .iter()
        .filter_map(|s| s.request_id.as_deref())
        .collect();
    let mut routes: Vec<String> = Vec::new();
    for r in storm.samples.iter().filter_map(|s| s.route.as_deref()) {
        if !routes.iter().any(|seen| seen == r) {
            routes.push(r.to_string());
        }
    }
    StormSummary {
        count,
        traces: traces.len(),
        request_ids: request_ids.len(),
        routes,
        sampled: storm.samples.len(),
        folded_ids: u64::from(storm.seq_end.saturating_sub(storm.seq_start)),
    }
}

#[cfg(test)]
mod tests {
    use panicle_protocol::event::Trace;
    use panicle_protocol::storm::StormSample;

    use super::*;

    fn trace(n: u32) -> String {
        format!("{n:032x}")
    }

    fn sample(seq: u32, trace_n: Option<u32>, ts: &str) -> StormSample {
        StormSample {
            event_id: format!("11111111-2222-4333-8444-5555{seq:08x}"),
            timestamp: ts.into(),
            trace: trace_n.map(|n| Trace {
                trace_id: trace(n),
                span_id: None,
            }),
            request_id: Some(format!("req-{seq}")),
            route: Some(if seq.is_multiple_of(2) { "/a" } else { "/b" }.into()),
            message: None,
        }
    }

    #[test]
    fn samples_become_links_to_their_aggregate_and_traces_are_distinct() {
        let storm = StormRecord {
            id_prefix: "11111111-2222-4333-8444-5555".into(),
            seq_start: 0,
            seq_end: 37,
            samples: vec![
                sample(1, Some(1), "10"),
                sample(2, Some(2), "20"),
                sample(3, None, "30"),
                sample(4, Some(2), "40"),
                sample(5, Some(5), "not a time"),
            ],
            ..StormRecord::default()
        };
        let links = storm_links("agg", 99, &storm, |t| t.parse().ok());
        assert_eq!(links.len(), 4, "the sample without a trace has no link");
        assert!(
            links
                .iter()
                .all(|l| l.folded_into.as_deref() == Some("agg"))
        );
        assert_eq!(
            links[3].timestamp_ms, 99,
            "an unreadable time: the aggregate's"
        );

        let own = TraceLink {
            trace_id: trace(1),
            event_id: "own".into(),
            timestamp_ms: 50,
            request_id: None,
            route: None,
            folded_into: None,
        };
        let mut all = links;
        all.push(own);
        let distinct = distinct_traces(all);
        let got: Vec<(String, i64)> = distinct
            .iter()
            .map(|l| (l.trace_id.clone(), l.timestamp_ms))
            .collect();
        assert_eq!(
            got,
            vec![(trace(5), 99), (trace(1), 50), (trace(2), 40)],
            "newest first, one per trace: its newest panic"
        );

        let summary = storm_summary(&storm, 37, Some(&trace(9)));
        assert_eq!(summary.count, 37);
        assert_eq!(
            summary.traces, 4,
            "1, 2, 5 sampled and the aggregate's own 9"
        );
        assert_eq!(summary.request_ids, 5);
        assert_eq!(summary.routes, vec!["/b".to_string(), "/a".to_string()]);
        assert_eq!((summary.sampled, summary.folded_ids), (5, 37));
    }

    #[test]
    fn only_real_trace_ids_are_links() {
        assert_eq!(trace_id(&"AB".repeat(16)), Some("ab".repeat(16)));
        assert_eq!(trace_id(&"0".repeat(32)), None);
        assert_eq!(trace_id("abc"), None);
        assert_eq!(trace_id(&format!("{}/x", "a".repeat(30))), None);
    }
}
