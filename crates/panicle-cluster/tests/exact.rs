//! The fast path (prefix-filter index + linfa expansion) equals brute-force
//! DBSCAN, label for label, on random inputs.

use std::sync::Arc;

use panicle_cluster::{
    GroupSignature, NeighbourGraph, Params, SignatureSet, Weighting, cluster_set,
    dbscan_brute_force, dbscan_graph,
};
use proptest::prelude::*;

/// Messages whose parts overlap: shared kinds, shared error types, payload
/// variants, and no payload at all.
const MESSAGES: &[&str] = &[
    "message 0",
    "message 1",
    "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }",
    "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: Empty }",
    "called `Result::unwrap()` on an `Err` value: Os { code: <n>, kind: NotFound, message: \"<s>\" }",
    "load config: ParseIntError { kind: Empty }",
    "load config: open <path>: permission denied",
];

fn signature() -> impl Strategy<Value = GroupSignature> {
    // A small vocabulary so that pairs overlap often; stacks of 0..8 frames.
    (
        prop::collection::vec(0u8..10, 0..8),
        prop::option::of(0..MESSAGES.len()),
    )
        .prop_map(|(frames, msg)| {
            GroupSignature::new(
                // Two modules, so leaves are shared across frames too.
                frames
                    .iter()
                    .map(|f| format!("app::m{}::f{}", f % 2, f / 2))
                    .collect(),
                msg.map(|m| MESSAGES[m].to_string()),
            )
        })
}

#[derive(Debug, Clone)]
struct Case {
    sigs: Vec<GroupSignature>,
    counts: Vec<u64>,
    decay: f64,
    leaf_weight: f64,
    message_weight: f64,
    error_type_weight: f64,
    detail_weight: f64,
    eps_pick: EpsPick,
    min_samples: u64,
}

#[derive(Debug, Clone)]
enum EpsPick {
    /// A free value in [0, 1].
    Free(f64),
    /// Exactly the distance of the pair (i, j) mod n: probes the `<=` edge.
    Pair(usize, usize),
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(signature(), n),
            prop_oneof![
                Just(vec![1u64; n]),
                prop::collection::vec(1u64..6, n),
                prop::collection::vec(prop_oneof![Just(1u64), Just(40u64)], n),
            ],
            prop_oneof![Just(1.0f64), 0.3f64..1.0],
            prop_oneof![Just(1.0f64), Just(0.0f64), 0.0f64..3.0],
            (
                prop_oneof![Just(0.0f64), 0.0f64..2.0],
                prop_oneof![Just(0.0f64), 0.0f64..1.0],
                prop_oneof![Just(0.0f64), Just(1.0f64), 0.0f64..1.0],
            ),
            prop_oneof![
                (0.0f64..=1.0).prop_map(EpsPick::Free),
                (0usize..100, 0usize..100).prop_map(|(i, j)| EpsPick::Pair(i, j)),
            ],
            1u64..8,
        )
            .prop_map(
                |(
                    sigs,
                    counts,
                    decay,
                    message_weight,
                    (error_type_weight, detail_weight, leaf_weight),
                    eps_pick,
                    min_samples,
                )| Case {
                    sigs,
                    counts,
                    decay,
                    leaf_weight,
                    message_weight,
                    error_type_weight,
                    detail_weight,
                    eps_pick,
                    min_samples,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fast_equals_brute_force(c in case()) {
        let w = Weighting {
            decay: c.decay,
            leaf_weight: c.leaf_weight,
            message_weight: c.message_weight,
            error_type_weight: c.error_type_weight,
            detail_weight: c.detail_weight,
        };
        let set = SignatureSet::build(&c.sigs, w);
        let n = set.len();
        let eps = match c.eps_pick {
            EpsPick::Free(e) => e,
            EpsPick::Pair(i, j) => set.distance(i % n, j % n),
        };
        let reference = dbscan_brute_force(&set, &c.counts, eps, c.min_samples);
        let graph = NeighbourGraph::build(&set, eps, 1);
        prop_assert_eq!(&graph, &NeighbourGraph::brute_force(&set, eps));
        prop_assert_eq!(&NeighbourGraph::build(&set, eps, 2), &graph);
        let fast = dbscan_graph(Arc::new(graph), &c.counts, c.min_samples);
        // Same tie rule on both sides: equal labels, not only up to renaming.
        prop_assert_eq!(&fast, &reference);
        let params = Params {
            eps,
            min_samples: c.min_samples,
            decay: c.decay,
            leaf_weight: c.leaf_weight,
            message_weight: c.message_weight,
            error_type_weight: c.error_type_weight,
            detail_weight: c.detail_weight,
            threads: 2,
        };
        prop_assert_eq!(&cluster_set(&set, &c.counts, &params), &reference);
    }
}

/// Frames `w{p}..w{p+5}`: the distance grows with the shift between two
/// positions, which lays points on a line.
fn window(p: usize) -> GroupSignature {
    GroupSignature::new((p..p + 6).map(|k| format!("w{k}")).collect(), None)
}

const PLAIN: Weighting = Weighting {
    decay: 1.0,
    leaf_weight: 0.0,
    message_weight: 1.0,
    error_type_weight: 1.0,
    detail_weight: 1.0,
};

#[test]
fn heavy_group_alone_is_a_core_point_and_eps_is_inclusive() {
    let sigs = [window(0), window(2), window(10)];
    let set = SignatureSet::build(&sigs, PLAIN);
    let eps = set.distance(0, 1);
    let params = Params {
        eps,
        min_samples: 40,
        decay: 1.0,
        ..Params::default()
    };
    // One group of 40 events is dense on its own; the other is its border.
    let r = cluster_set(&set, &[40, 1, 1], &params);
    assert_eq!(r.labels, vec![0, 0, -1]);
    assert_eq!(r.core, vec![true, true, false]);
    let r = cluster_set(&set, &[39, 1, 1], &params);
    assert_eq!(r.core, vec![true, true, false]);
    let r = cluster_set(&set, &[38, 1, 1], &params);
    assert_eq!(r.labels, vec![-1, -1, -1]);
    // The radius is inclusive: a hair smaller and the pair falls apart.
    let tighter = Params {
        eps: eps - 1e-12,
        ..params
    };
    let r = cluster_set(&set, &[40, 1, 1], &tighter);
    assert_eq!(r.labels, vec![0, -1, -1]);
}

#[test]
fn border_between_two_clusters_goes_to_the_first_discovered() {
    // Positions on a line; eps reaches two steps. Cores: 2 and 6 (4 points
    // each in reach); 4 is a border of both.
    let positions = [0, 1, 2, 4, 6, 7, 8];
    let sigs: Vec<_> = positions.iter().map(|&p| window(p)).collect();
    let set = SignatureSet::build(&sigs, PLAIN);
    let params = Params {
        eps: set.distance(0, 2),
        min_samples: 4,
        decay: 1.0,
        ..Params::default()
    };
    let r = cluster_set(&set, &[1; 7], &params);
    assert_eq!(r.core, vec![false, false, true, false, true, false, false]);
    assert_eq!(r.labels, vec![0, 0, 0, 0, 1, 1, 1]);
    // Reversed input: the other cluster is discovered first and takes it.
    let rev: Vec<_> = sigs.iter().rev().cloned().collect();
    let set = SignatureSet::build(&rev, PLAIN);
    let r = cluster_set(&set, &[1; 7], &params);
    assert_eq!(r.labels, vec![0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(r.core, vec![false, false, true, false, true, false, false]);
    assert_eq!(dbscan_brute_force(&set, &[1; 7], params.eps, 4), r);
}
