//! The exact neighbour index: every pair within `eps`, without comparing all
//! pairs.
//!
//! Prefix filtering for weighted Jaccard. Tokens of each signature are sorted
//! by a global order (rarest first). The prefix of `x` is its shortest head
//! whose remaining tail weighs less than `t·|x|`, with `t = 1 − eps` (lowered
//! by 1e-9 so rounding never drops a true pair) and `|x|` the total weight.
//! If `x` and `y` share no token in `x`'s prefix, `Σmin ≤ tail(x) < t·|x| ≤
//! t·Σmax`, so they are farther than `eps`. Hence some shared token lies in
//! `x`'s prefix and some in `y`'s, and the shared token first in the global
//! order lies in both. Only prefix tokens are indexed, and a pair is a
//! candidate when it meets in one inverted list. The size filter adds
//! `|y| ≥ t·|x|` (similarity is at most `|y|/|x|`). The positional filter
//! looks at where a pair first meets, token `o` at position `i` of `x` and
//! `j` of `y`: for a pair within eps that is their first shared token, so
//! nothing before it is shared and `Σmin ≤ min(Rx, Ry)`,
//! `Σmax ≥ Bx + By + max(Rx, Ry)` (B: weight before the position, R: from
//! it on); a pair whose bound is below `t` is dropped unverified. Then the
//! weight shared in both prefixes is summed while probing; with the tokens
//! after the last shared prefix token, it bounds `Σmin`, and since
//! `Σmax = |x| + |y| − Σmin` the similarity too. Every candidate left is then
//! verified with [`SignatureSet::distance`], the very function the
//! brute-force reference uses, so the graph is exact.

use crate::signature::SignatureSet;

/// Slack that keeps the filters conservative under floating-point rounding.
const SLACK: f64 = 1e-9;

/// For every point, the other points within `eps` (`distance <= eps`),
/// in ascending order. A point is never listed as its own neighbour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighbourGraph {
    offsets: Vec<usize>,
    neighbours: Vec<u32>,
}

impl NeighbourGraph {
    /// The exact graph through the prefix-filter index, probing on up to
    /// `threads` threads (0 or 1: the calling thread only).
    pub fn build(set: &SignatureSet, eps: f64, threads: usize) -> Self {
        let n = set.len();
        if eps >= 1.0 {
            // Every distance is at most 1: all pairs are neighbours.
            return Self::from_edges(
                n,
                (0..n as u32)
                    .flat_map(|i| (0..i).map(move |j| (i, j)))
                    .collect(),
            );
        }
        let t = (1.0 - eps) - SLACK;
        // Positions sorted by norm, so a list holds ascending norms.
        let mut by_norm: Vec<u32> = (0..n as u32).collect();
        by_norm.sort_by(|&a, &b| set.norm(a as usize).total_cmp(&set.norm(b as usize)));
        let norms: Vec<f64> = by_norm.iter().map(|&i| set.norm(i as usize)).collect();
        let prefix_len: Vec<usize> = by_norm
            .iter()
            .map(|&i| prefix_len(set, i as usize, t))
            .collect();
        // Weight before each token, per row: the positional filter's B.
        let before = weight_before(set);
        let lists = InvertedLists::new(set, &by_norm, &prefix_len, &before);

        let threads = threads.clamp(1, 64);
        let probe = |part: usize| -> Vec<(u32, u32)> {
            let mut edges = Vec::new();
            let mut stamp = vec![u32::MAX; n];
            let mut acc = vec![0.0f64; n];
            // Per candidate: the last shared token's weight-after in y.
            let mut rest_y = vec![0.0f64; n];
            let mut rest_x = vec![0.0f64; n];
            let mut touched: Vec<u32> = Vec::new();
            for p in (part..n).step_by(threads) {
                let i = by_norm[p] as usize;
                let min_norm = t * norms[p];
                let (tokens, weights) = set.row(i);
                let before_x = before.row(i);
                touched.clear();
                for (pos_x, &tok) in tokens[..prefix_len[p]].iter().enumerate() {
                    let list = lists.list(tok);
                    let start = list.partition_point(|e| norms[e.q as usize] < min_norm);
                    let bx = before_x[pos_x];
                    let wx = weights[pos_x];
                    let rx = norms[p] - bx;
                    for e in &list[start..] {
                        let q = e.q as usize;
                        if q >= p {
                            break;
                        }
                        let ry = norms[q] - e.before;
                        if stamp[q] != p as u32 {
                            stamp[q] = p as u32;
                            // First meeting: the positional filter.
                            if rx.min(ry) < t * (bx + e.before + rx.max(ry)) {
                                acc[q] = f64::NEG_INFINITY;
                                continue;
                            }
                            acc[q] = 0.0;
                            touched.push(e.q);
                        }
                        acc[q] += wx.min(e.weight);
                        rest_x[q] = rx - wx;
                        rest_y[q] = ry - e.weight;
                    }
                }
                // Shared weight so far plus the most the rest can share
                // bounds Σmin; similarity is Σmin / (|x| + |y| − Σmin).
                for &q in &touched {
                    let q = q as usize;
                    let bound = acc[q] + rest_x[q].min(rest_y[q]);
                    if bound < t * (norms[p] + norms[q] - bound) {
                        continue;
                    }
                    let j = by_norm[q] as usize;
                    if set.distance(i, j) <= eps {
                        edges.push((i as u32, j as u32));
                    }
                }
            }
            edges
        };
        let edges = if threads == 1 {
            probe(0)
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads).map(|k| s.spawn(move || probe(k))).collect();
                let mut all = Vec::new();
                for h in handles {
                    match h.join() {
                        Ok(mut e) => all.append(&mut e),
                        Err(payload) => std::panic::resume_unwind(payload),
                    }
                }
                all
            })
        };
        Self::from_edges(n, edges)
    }

    /// The graph by comparing every pair: the reference for tests.
    pub fn brute_force(set: &SignatureSet, eps: f64) -> Self {
        let n = set.len();
        let mut edges = Vec::new();
        for i in 0..n {
            for j in 0..i {
                if set.distance(i, j) <= eps {
                    edges.push((i as u32, j as u32));
                }
            }
        }
        Self::from_edges(n, edges)
    }

    /// Symmetric adjacency from undirected edges, each given once.
    fn from_edges(n: usize, edges: Vec<(u32, u32)>) -> Self {
        let mut degree = vec![0usize; n + 1];
        for &(a, b) in &edges {
            degree[a as usize] += 1;
            degree[b as usize] += 1;
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let mut acc = 0;
        offsets.push(0);
        for d in &degree[..n] {
            acc += d;
            offsets.push(acc);
        }
        let mut fill: Vec<usize> = offsets[..n].to_vec();
        let mut neighbours = vec![0u32; acc];
        for (a, b) in edges {
            neighbours[fill[a as usize]] = b;
            fill[a as usize] += 1;
            neighbours[fill[b as usize]] = a;
            fill[b as usize] += 1;
        }
        for i in 0..n {
            neighbours[offsets[i]..offsets[i + 1]].sort_unstable();
        }
        Self {
            offsets,
            neighbours,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there is no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The points within eps of `i`, ascending, without `i` itself.
    pub fn neighbours(&self, i: usize) -> &[u32] {
        &self.neighbours[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Number of undirected edges.
    pub fn edges(&self) -> usize {
        self.neighbours.len() / 2
    }
}

/// Length of the prefix of signature `i` for similarity threshold `t`.
fn prefix_len(set: &SignatureSet, i: usize, t: f64) -> usize {
    let (_, weights) = set.row(i);
    let bound = t * set.norm(i);
    let mut tail = 0.0;
    let mut p = weights.len();
    while p > 0 && tail + weights[p - 1] < bound {
        tail += weights[p - 1];
        p -= 1;
    }
    p
}

/// Per row, the weight of the tokens before each token.
struct WeightBefore {
    offsets: Vec<usize>,
    before: Vec<f64>,
}

impl WeightBefore {
    fn row(&self, i: usize) -> &[f64] {
        &self.before[self.offsets[i]..self.offsets[i + 1]]
    }
}

fn weight_before(set: &SignatureSet) -> WeightBefore {
    let mut offsets = Vec::with_capacity(set.len() + 1);
    let mut before = Vec::new();
    offsets.push(0);
    for i in 0..set.len() {
        let mut acc = 0.0;
        for &w in set.row(i).1 {
            before.push(acc);
            acc += w;
        }
        offsets.push(before.len());
    }
    WeightBefore { offsets, before }
}

/// One row holding a token in its prefix.
#[derive(Clone, Copy, Default)]
struct Entry {
    /// The row's position in norm order.
    q: u32,
    /// The token's weight in that row.
    weight: f64,
    /// The weight of the row's tokens before this one.
    before: f64,
}

/// Inverted lists over prefix tokens, flat, each in norm order; the entries
/// carry what the filters need so probing reads memory in sequence.
struct InvertedLists {
    offsets: Vec<usize>,
    positions: Vec<Entry>,
}

impl InvertedLists {
    fn new(
        set: &SignatureSet,
        by_norm: &[u32],
        prefix_len: &[usize],
        before: &WeightBefore,
    ) -> Self {
        let vocab = set.vocabulary();
        let mut offsets = vec![0usize; vocab + 1];
        for (p, &i) in by_norm.iter().enumerate() {
            for &t in &set.row(i as usize).0[..prefix_len[p]] {
                offsets[t as usize + 1] += 1;
            }
        }
        for k in 0..vocab {
            offsets[k + 1] += offsets[k];
        }
        let mut fill = offsets.clone();
        let mut positions = vec![Entry::default(); offsets[vocab]];
        for (p, &i) in by_norm.iter().enumerate() {
            let (tokens, weights) = set.row(i as usize);
            let row_before = before.row(i as usize);
            for k in 0..prefix_len[p] {
                let t = tokens[k] as usize;
                positions[fill[t]] = Entry {
                    q: p as u32,
                    weight: weights[k],
                    before: row_before[k],
                };
                fill[t] += 1;
            }
        }
        Self { offsets, positions }
    }

    fn list(&self, token: u32) -> &[Entry] {
        &self.positions[self.offsets[token as usize]..self.offsets[token as usize + 1]]
    }
}
