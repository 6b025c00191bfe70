//! DBSCAN with event weights over the exact neighbour graph.
//!
//! Semantics: two points are neighbours when `distance <= eps` (inclusive);
//! a point is core when the events of its neighbourhood, itself included,
//! add up to at least `min_samples`; noise is labelled `-1`.
//!
//! Border tie rule: clusters are discovered in ascending point order (a
//! cluster is numbered by the rank of its lowest-indexed core point), and a
//! border point within eps of cores of several clusters joins the one
//! discovered first. Cluster labels are therefore 0, 1, 2, … in order of
//! each cluster's lowest core point.
//!
//! Why linfa only does the expansion: linfa-clustering's `Dbscan` tests
//! `dist < eps` (strict) and counts points, not events, and its built-in
//! searches are O(n²·d) over dense rows. So the neighbourhoods and the core
//! test are ours ([`NeighbourGraph`] plus the event weights), and linfa runs
//! its expansion over them through [`PrecomputedNeighbours`], a
//! `linfa_nn::NearestNeighbour` whose points are ids into the signature
//! table. Its `within_range` ignores the radius it is given (the graph was
//! built with `<= eps`) and answers with the full neighbourhood for a core
//! point (padded to at least two entries) and with the point alone for a
//! non-core one; with linfa's `min_points = 2` that makes linfa's core test
//! exactly ours, and linfa's expansion assigns borders by the rule above.
//! [`dbscan_brute_force`] is an independent textbook implementation that
//! the tests compare against.

use linfa::ParamGuard;
use linfa::traits::Transformer;
use linfa_clustering::Dbscan;
use linfa_nn::distance::{Distance, L2Dist};
use linfa_nn::{BuildError, NearestNeighbour, NearestNeighbourIndex, NnError};

/// What `NearestNeighbour::from_batch_with_leaf_size` returns (private in linfa-nn).
type NearestNeighbourBox<'a, F> = Box<dyn 'a + Send + Sync + NearestNeighbourIndex<F>>;
use std::sync::Arc;

use ndarray::{Array2, ArrayBase, ArrayView2, Data, Ix2};

use crate::index::NeighbourGraph;
use crate::signature::SignatureSet;

/// The label of noise.
pub const NOISE: i64 = -1;

/// The result of one DBSCAN run, aligned with the input points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clustering {
    /// Cluster label per point, `0..clusters`, or [`NOISE`].
    pub labels: Vec<i64>,
    /// True for core points (the only ones [`crate::attach`] attaches to).
    pub core: Vec<bool>,
    /// Number of clusters.
    pub clusters: usize,
    /// Number of neighbour pairs within eps.
    pub edges: usize,
}

/// Which points are core: the events within eps, the point's own included,
/// reach `min_samples`.
pub fn core_points(graph: &NeighbourGraph, counts: &[u64], min_samples: u64) -> Vec<bool> {
    (0..graph.len())
        .map(|i| {
            let mut total = counts[i];
            for &j in graph.neighbours(i) {
                if total >= min_samples {
                    break;
                }
                total = total.saturating_add(counts[j as usize]);
            }
            total >= min_samples
        })
        .collect()
}

/// DBSCAN over a precomputed exact graph: the core test is ours, the
/// expansion linfa's. `counts` are the event weights, one per point.
pub fn dbscan_graph(graph: Arc<NeighbourGraph>, counts: &[u64], min_samples: u64) -> Clustering {
    let n = graph.len();
    let edges = graph.edges();
    let core = Arc::new(core_points(&graph, counts, min_samples));
    if n == 0 {
        return Clustering {
            labels: Vec::new(),
            core: Vec::new(),
            clusters: 0,
            edges: 0,
        };
    }
    let ids = Array2::from_shape_fn((n, 1), |(i, _)| i as f64);
    let nn = PrecomputedNeighbours::new(graph, Arc::clone(&core));
    // The tolerance must be positive for linfa but is not consulted.
    let memberships = match Dbscan::params_with(2, L2Dist, nn).tolerance(1.0).check() {
        Ok(params) => params.transform(&ids),
        // Unreachable with min_points 2 and tolerance 1; fall back to all noise.
        Err(_) => ndarray::Array1::from_elem(n, None),
    };
    let labels: Vec<i64> = memberships
        .iter()
        .map(|m| m.map_or(NOISE, |c| c as i64))
        .collect();
    let clusters = labels.iter().copied().max().map_or(0, |m| (m + 1) as usize);
    // linfa's params hold the last other reference; unwrap it without a copy.
    let core = Arc::try_unwrap(core).unwrap_or_else(|shared| shared.as_ref().clone());
    Clustering {
        labels,
        core,
        clusters,
        edges,
    }
}

/// Textbook DBSCAN comparing every pair: the reference the fast path must
/// equal, label for label.
pub fn dbscan_brute_force(
    set: &SignatureSet,
    counts: &[u64],
    eps: f64,
    min_samples: u64,
) -> Clustering {
    let n = set.len();
    let region =
        |i: usize| -> Vec<usize> { (0..n).filter(|&j| set.distance(i, j) <= eps).collect() };
    let core: Vec<bool> = (0..n)
        .map(|i| {
            region(i)
                .iter()
                .fold(0u64, |acc, &j| acc.saturating_add(counts[j]))
                >= min_samples
        })
        .collect();
    let mut labels = vec![NOISE; n];
    let mut next = 0i64;
    for i in 0..n {
        if labels[i] != NOISE || !core[i] {
            continue;
        }
        labels[i] = next;
        let mut queue = std::collections::VecDeque::from([i]);
        while let Some(p) = queue.pop_front() {
            for q in region(p) {
                if labels[q] == NOISE {
                    labels[q] = next;
                    if core[q] {
                        queue.push_back(q);
                    }
                }
            }
        }
        next += 1;
    }
    let mut edges = 0;
    for i in 0..n {
        for j in 0..i {
            if set.distance(i, j) <= eps {
                edges += 1;
            }
        }
    }
    Clustering {
        labels,
        core,
        clusters: next as usize,
        edges,
    }
}

/// A `linfa_nn::NearestNeighbour` over a precomputed graph; see the module
/// docs. Rows of the batch must be `[id]`.
#[derive(Debug, Clone)]
pub struct PrecomputedNeighbours {
    graph: Arc<NeighbourGraph>,
    core: Arc<Vec<bool>>,
}

impl PrecomputedNeighbours {
    /// Neighbourhoods from `graph`, core flags from `core`.
    pub fn new(graph: Arc<NeighbourGraph>, core: Arc<Vec<bool>>) -> Self {
        Self { graph, core }
    }
}

impl NearestNeighbour for PrecomputedNeighbours {
    fn from_batch_with_leaf_size<'a, F: linfa::Float, DT: Data<Elem = F>, D: 'a + Distance<F>>(
        &self,
        batch: &'a ArrayBase<DT, Ix2>,
        _leaf_size: usize,
        _dist_fn: D,
    ) -> Result<NearestNeighbourBox<'a, F>, BuildError> {
        if batch.ncols() == 0 {
            return Err(BuildError::ZeroDimension);
        }
        Ok(Box::new(IdIndex {
            batch: batch.view(),
            graph: Arc::clone(&self.graph),
            core: Arc::clone(&self.core),
        }))
    }
}

/// The index linfa queries: answers by id, not by coordinates.
struct IdIndex<'a, F> {
    batch: ArrayView2<'a, F>,
    graph: Arc<NeighbourGraph>,
    core: Arc<Vec<bool>>,
}

impl<F: linfa::Float> NearestNeighbourIndex<F> for IdIndex<'_, F> {
    fn k_nearest(
        &self,
        point: ndarray::ArrayView1<'_, F>,
        k: usize,
    ) -> Result<Vec<(ndarray::ArrayView1<'_, F>, usize)>, NnError> {
        let mut all = self.within_range(point, F::one())?;
        all.truncate(k);
        Ok(all)
    }

    fn within_range(
        &self,
        point: ndarray::ArrayView1<'_, F>,
        _range: F,
    ) -> Result<Vec<(ndarray::ArrayView1<'_, F>, usize)>, NnError> {
        if point.len() != 1 {
            return Err(NnError::WrongDimension);
        }
        let id: usize = point[0].as_();
        if id >= self.core.len() {
            return Err(NnError::WrongDimension);
        }
        let me = (self.batch.row(id), id);
        if !self.core[id] {
            return Ok(vec![me]);
        }
        let list = self.graph.neighbours(id);
        let mut out = Vec::with_capacity(list.len() + 2);
        out.push(me);
        out.extend(
            list.iter()
                .map(|&j| (self.batch.row(j as usize), j as usize)),
        );
        if out.len() < 2 {
            // A core point alone in its radius: count it twice so linfa's
            // `min_points = 2` sees it as core.
            out.push((self.batch.row(id), id));
        }
        Ok(out)
    }
}
