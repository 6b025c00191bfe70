//! The wrapper's own messages. They share stderr with the child, so they
//! must never flood it: the first failure of each kind is told at once, the
//! rest only counted, and the end prints one line per kind with its count.

/// A kind of failure of the wrapper itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The spool directory could not be opened: crash events are not kept.
    SpoolUnavailable,
    /// One crash event could not be written to the spool.
    SpoolWrite,
    /// The queue of events to write was full (the spool too slow to keep up).
    QueueFull,
}

const KINDS: [Failure; 3] = [
    Failure::SpoolUnavailable,
    Failure::SpoolWrite,
    Failure::QueueFull,
];

impl Failure {
    fn index(self) -> usize {
        match self {
            Failure::SpoolUnavailable => 0,
            Failure::SpoolWrite => 1,
            Failure::QueueFull => 2,
        }
    }

    /// What the crash events of this kind suffered.
    fn what(self) -> &'static str {
        match self {
            Failure::SpoolUnavailable => "not kept: spool unavailable",
            Failure::SpoolWrite => "could not be spooled",
            Failure::QueueFull => "dropped: the spool writer could not keep up",
        }
    }
}

/// Counts per kind with the first error seen of each, in fixed memory
/// (an error text is kept once and cut to a bounded length).
#[derive(Debug, Default)]
pub struct Notices {
    counts: [u64; 3],
    first: [Option<String>; 3],
}

/// Longest error text kept for a notice.
const MAX_DETAIL_BYTES: usize = 512;

impl Notices {
    /// Records `n` crashes hit by `kind`; the line to print now when it
    /// is the first of its kind.
    pub fn record(&mut self, kind: Failure, n: u64, detail: &str) -> Option<String> {
        let i = kind.index();
        self.counts[i] = self.counts[i].saturating_add(n);
        if self.first[i].is_some() {
            return None;
        }
        let detail = panicle_protocol::truncate_str(detail, MAX_DETAIL_BYTES);
        self.first[i] = Some(detail.to_string());
        Some(format!(
            "panicle: crash {} ({detail}); further failures are counted and reported at exit",
            kind.what()
        ))
    }

    #[cfg(test)]
    pub fn count(&self, kind: Failure) -> u64 {
        self.counts[kind.index()]
    }

    /// One line per kind that happened, with its count.
    pub fn summary(&self) -> Vec<String> {
        KINDS
            .iter()
            .filter(|k| self.counts[k.index()] > 0)
            .map(|&k| {
                let detail = self.first[k.index()].as_deref().unwrap_or("");
                format!(
                    "panicle: {} crash(es) {} (first error: {detail})",
                    self.counts[k.index()],
                    k.what()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_kind_is_told_and_the_rest_counted() {
        let mut notices = Notices::default();
        assert!(
            notices
                .record(Failure::SpoolWrite, 1, "disk full")
                .is_some()
        );
        for _ in 0..100_000 {
            assert!(
                notices
                    .record(Failure::SpoolWrite, 1, "disk full")
                    .is_none()
            );
        }
        assert!(notices.record(Failure::QueueFull, 3, "").is_some());
        let summary = notices.summary();
        assert_eq!(summary.len(), 2, "{summary:?}");
        assert!(summary[0].contains("100001 crash(es) could not be spooled"));
        assert!(summary[0].contains("disk full"));
        assert!(summary[1].starts_with("panicle: 3 crash(es) dropped"));
        assert_eq!(notices.count(Failure::SpoolUnavailable), 0);
    }

    #[test]
    fn a_long_error_is_cut_on_a_char_boundary() {
        let mut notices = Notices::default();
        let long = "é".repeat(1000);
        let line = notices
            .record(Failure::SpoolUnavailable, 1, &long)
            .unwrap_or_default();
        assert!(line.len() < 700, "{}", line.len());
    }
}
