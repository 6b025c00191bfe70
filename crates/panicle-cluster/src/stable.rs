//! Stable cluster ids across runs, and attaching a new group between runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use crate::dbscan::NOISE;
use crate::signature::{GroupSignature, SignatureSet};
use crate::{ClusterError, Params};

/// One group's outcome of a run, as [`stabilize`] takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLabel<G> {
    /// The group's id in the service.
    pub group: G,
    /// DBSCAN label, or [`NOISE`].
    pub label: i64,
    /// Events of the group; what "most of a cluster" is measured in.
    pub count: u64,
}

/// Groups of several previous clusters now together in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// The id the merged cluster carries now.
    pub into: u64,
    /// The previous ids it holds groups of, ascending (may include `into`).
    pub from: Vec<u64>,
}

/// Groups of one previous cluster now spread over several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The previous id.
    pub from: u64,
    /// The ids its groups carry now, ascending (may include `from`).
    pub into: Vec<u64>,
}

/// Stable ids for one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StableAssignment {
    /// Cluster id per input group, aligned with the input.
    pub clusters: Vec<u64>,
    /// New clusters holding groups of several previous ones.
    pub merges: Vec<Merge>,
    /// Previous clusters whose groups are now in several.
    pub splits: Vec<Split>,
    /// The first id not used; pass it to the next run.
    pub next_id: u64,
}

/// Gives this run's clusters stable ids.
///
/// Every DBSCAN cluster is one cluster, and every noise group a cluster of
/// its own. A new cluster keeps a previous id `k` when it holds more than
/// half of the events that `k`'s groups have in this run; if it could keep
/// several, it keeps the one it holds most events of (ties: the lower id),
/// and the others are retired. Any other cluster gets a fresh id, minted
/// from `next_id` (raised past every previous id) in order of each cluster's
/// first group in the input. Groups absent from `previous` count for no
/// previous cluster. Pure: the same input gives the same output.
pub fn stabilize<G: Eq + Hash>(
    previous: &HashMap<G, u64>,
    groups: &[GroupLabel<G>],
    next_id: u64,
) -> StableAssignment {
    // New cluster key per group: the DBSCAN label, or a singleton for noise.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    enum Key {
        Cluster(i64),
        Alone(usize),
    }
    let key = |i: usize, g: &GroupLabel<G>| {
        if g.label == NOISE {
            Key::Alone(i)
        } else {
            Key::Cluster(g.label)
        }
    };
    let weight = |g: &GroupLabel<G>| g.count.max(1);
    let mut old_total: HashMap<u64, u64> = HashMap::new();
    let mut overlap: HashMap<Key, BTreeMap<u64, u64>> = HashMap::new();
    let mut first_seen: Vec<Key> = Vec::new();
    let mut seen: HashMap<Key, ()> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        let k = key(i, g);
        if seen.insert(k, ()).is_none() {
            first_seen.push(k);
        }
        if let Some(&old) = previous.get(&g.group) {
            *old_total.entry(old).or_default() += weight(g);
            *overlap.entry(k).or_default().entry(old).or_default() += weight(g);
        }
    }
    let mut next = next_id.max(previous.values().max().map_or(0, |m| m + 1));
    let mut id_of: HashMap<Key, u64> = HashMap::new();
    let mut merges = Vec::new();
    for &k in &first_seen {
        let olds = overlap.get(&k);
        let kept = olds.and_then(|olds| {
            olds.iter()
                .filter(|&(old, &o)| 2 * o > old_total[old])
                // Most events first, then the lower id (BTreeMap order).
                .fold(None, |best: Option<(u64, u64)>, (&old, &o)| match best {
                    Some((_, bo)) if bo >= o => best,
                    _ => Some((old, o)),
                })
                .map(|(old, _)| old)
        });
        let id = kept.unwrap_or_else(|| {
            let id = next;
            next += 1;
            id
        });
        id_of.insert(k, id);
        if let Some(olds) = olds
            && olds.len() > 1
        {
            merges.push(Merge {
                into: id,
                from: olds.keys().copied().collect(),
            });
        }
    }
    let clusters: Vec<u64> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| id_of[&key(i, g)])
        .collect();
    let mut spread: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (g, &now) in groups.iter().zip(&clusters) {
        if let Some(&old) = previous.get(&g.group) {
            spread.entry(old).or_default().insert(now);
        }
    }
    let splits = spread
        .into_iter()
        .filter(|(_, into)| into.len() > 1)
        .map(|(from, into)| Split {
            from,
            into: into.into_iter().collect(),
        })
        .collect();
    StableAssignment {
        clusters,
        merges,
        splits,
        next_id: next,
    }
}

/// Attaches a new group between runs: the cluster of the nearest core member
/// within eps (`distance <= eps`), ties to the first such member given, or
/// `None` (the group then starts a cluster of its own). Returns the cluster
/// and the distance.
pub fn attach<'a, C: Copy>(
    candidate: &GroupSignature,
    cores: impl IntoIterator<Item = (&'a GroupSignature, C)>,
    params: &Params,
) -> Result<Option<(C, f64)>, ClusterError> {
    params.validate()?;
    let (sigs, ids): (Vec<&GroupSignature>, Vec<C>) = cores.into_iter().unzip();
    let set = SignatureSet::build(std::iter::once(candidate).chain(sigs), params.weighting());
    let mut best: Option<(C, f64)> = None;
    for (k, &id) in ids.iter().enumerate() {
        let d = set.distance(0, k + 1);
        if d <= params.eps && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((id, d));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gl(group: &str, label: i64, count: u64) -> GroupLabel<String> {
        GroupLabel {
            group: group.into(),
            label,
            count,
        }
    }

    fn prev(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|&(g, c)| (g.to_string(), c)).collect()
    }

    #[test]
    fn first_run_mints_in_input_order() {
        let a = stabilize(
            &HashMap::new(),
            &[gl("a", 1, 1), gl("b", 0, 1), gl("c", 1, 1), gl("d", -1, 1)],
            10,
        );
        assert_eq!(a.clusters, vec![10, 11, 10, 12]);
        assert_eq!(a.next_id, 13);
        assert!(a.merges.is_empty() && a.splits.is_empty());
    }

    #[test]
    fn ids_survive_relabeling_and_new_groups() {
        let p = prev(&[("a", 5), ("b", 5), ("c", 7)]);
        // DBSCAN numbers the clusters the other way round this time.
        let a = stabilize(
            &p,
            &[gl("c", 0, 3), gl("a", 1, 2), gl("b", 1, 2), gl("new", 1, 1)],
            8,
        );
        assert_eq!(a.clusters, vec![7, 5, 5, 5]);
        assert_eq!(a.next_id, 8);
    }

    #[test]
    fn merge_keeps_the_larger_and_reports() {
        let p = prev(&[("a", 1), ("b", 2), ("c", 2)]);
        let a = stabilize(&p, &[gl("a", 0, 1), gl("b", 0, 5), gl("c", 0, 5)], 3);
        assert_eq!(a.clusters, vec![2, 2, 2]);
        assert_eq!(
            a.merges,
            vec![Merge {
                into: 2,
                from: vec![1, 2]
            }]
        );
        assert!(a.splits.is_empty());
    }

    #[test]
    fn split_keeps_id_with_majority_else_mints() {
        let p = prev(&[("a", 4), ("b", 4), ("c", 4)]);
        let a = stabilize(&p, &[gl("a", 0, 10), gl("b", 1, 1), gl("c", -1, 1)], 5);
        assert_eq!(a.clusters, vec![4, 5, 6]);
        assert_eq!(
            a.splits,
            vec![Split {
                from: 4,
                into: vec![4, 5, 6]
            }]
        );
        // An even split: nobody holds most of the events, all get new ids.
        let b = stabilize(&p, &[gl("a", 0, 1), gl("b", 1, 1)], 5);
        assert_eq!(b.clusters, vec![5, 6]);
    }

    #[test]
    fn attach_takes_nearest_core_within_eps() {
        let s = |f: &[&str]| GroupSignature::new(f.iter().map(|x| x.to_string()).collect(), None);
        let params = Params {
            eps: 0.5,
            decay: 1.0,
            ..Params::default()
        };
        let near = s(&["a", "b", "c"]);
        let nearer = s(&["a", "b", "c", "d"]);
        let far = s(&["x", "y"]);
        let cand = s(&["a", "b", "c", "d", "e"]);
        let got = attach(&cand, [(&far, 1), (&near, 2), (&nearer, 3)], &params).unwrap();
        assert_eq!(got.map(|g| g.0), Some(3));
        let none = attach(&cand, [(&far, 1)], &params).unwrap();
        assert_eq!(none, None);
    }
}
