//! The offline contract behind `panicle cluster`: JSON lines in, JSON lines
//! out (see DESIGN.md).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::signature::{GroupSignature, SignatureSet};
use crate::{ClusterError, Params, cluster_set};

/// One input line: `{"id": "…", "frames": ["…"], "count": 1, "message": "…"}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct InputLine {
    /// The group's id, echoed in the output.
    pub id: String,
    /// Normalized frame tokens, innermost first.
    #[serde(default)]
    pub frames: Vec<String>,
    /// Events of the group (default 1), what `min_samples` counts.
    #[serde(default = "one")]
    pub count: u64,
    /// Optional message template, read as panic kind, error type and
    /// payload details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn one() -> u64 {
    1
}

/// One output line: `{"id": "…", "cluster": 3}`, `-1` for noise.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct OutputLine {
    /// The group's id.
    pub id: String,
    /// DBSCAN label, `-1` for noise.
    pub cluster: i64,
}

/// What a JSONL run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Groups read.
    pub groups: usize,
    /// Events over all groups.
    pub events: u64,
    /// Clusters found.
    pub clusters: usize,
    /// Groups labelled noise.
    pub noise_groups: usize,
    /// Neighbour pairs within eps.
    pub edges: usize,
}

/// Lines read between two progress calls.
const PROGRESS_EVERY: usize = 10_000;

/// Reads groups as JSON lines, clusters them and writes one output line per
/// input line, in input order. Blank lines are skipped. `progress` gets the
/// number of groups read so far, every 10 000 lines and once at the end of
/// the input.
pub fn cluster_jsonl(
    input: impl BufRead,
    mut output: impl Write,
    params: &Params,
    mut progress: impl FnMut(usize),
) -> Result<Summary, ClusterError> {
    params.validate()?;
    let mut ids = Vec::new();
    let mut sigs = Vec::new();
    let mut counts = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let g: InputLine = serde_json::from_str(&line).map_err(|source| ClusterError::Json {
            line: n + 1,
            source,
        })?;
        ids.push(g.id);
        sigs.push(GroupSignature::new(g.frames, g.message));
        counts.push(g.count);
        if ids.len() % PROGRESS_EVERY == 0 {
            progress(ids.len());
        }
    }
    progress(ids.len());
    let set = SignatureSet::build(&sigs, params.weighting());
    drop(sigs);
    let result = cluster_set(&set, &counts, params);
    for (id, &cluster) in ids.into_iter().zip(&result.labels) {
        serde_json::to_writer(&mut output, &OutputLine { id, cluster })
            .map_err(std::io::Error::from)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(Summary {
        groups: result.labels.len(),
        events: counts.iter().fold(0u64, |a, &c| a.saturating_add(c)),
        clusters: result.clusters,
        noise_groups: result.labels.iter().filter(|&&l| l == crate::NOISE).count(),
        edges: result.edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_defaults_and_noise() {
        let input = r#"{"id": "a", "frames": ["x", "y", "z"], "count": 40}
{"id": "b", "frames": ["x", "y", "z", "w"]}

{"id": "c", "frames": ["q"], "message": "boom"}
"#;
        let params = Params {
            eps: 0.5,
            min_samples: 40,
            decay: 1.0,
            ..Params::default()
        };
        let mut out = Vec::new();
        let mut calls = Vec::new();
        let s = cluster_jsonl(input.as_bytes(), &mut out, &params, |n| calls.push(n)).unwrap();
        let lines: Vec<OutputLine> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // "a" alone holds 40 events: a core point; "b" (1 event) is its border.
        let got: Vec<(&str, i64)> = lines.iter().map(|l| (l.id.as_str(), l.cluster)).collect();
        assert_eq!(got, vec![("a", 0), ("b", 0), ("c", -1)]);
        assert_eq!(s.groups, 3);
        assert_eq!(s.events, 42);
        assert_eq!(s.clusters, 1);
        assert_eq!(s.noise_groups, 1);
        assert_eq!(calls, vec![3]);
    }

    #[test]
    fn bad_line_names_its_number() {
        let input = "{\"id\": \"a\", \"frames\": []}\n{\"frames\": [1]}\n";
        let err = cluster_jsonl(input.as_bytes(), Vec::new(), &Params::default(), |_| {});
        assert!(
            matches!(err, Err(ClusterError::Json { line: 2, .. })),
            "{err:?}"
        );
    }
}
