//! Group signatures: weighted token sets and their weighted Jaccard distance.
//!
//! A signature holds a group's frame tokens, the bigrams of consecutive frames
//! (so order matters) and the message template as one token. The frame at
//! depth `i` (0 = innermost) weighs `decay^i`, a bigram `(f_i, f_i+1)` weighs as
//! `f_i`, a repeated token keeps its largest weight, and the message token
//! weighs `message_weight`. Distance is `1 − Σmin/Σmax` over the union of
//! tokens.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One group as the clusterer sees it: plain tokens, so the server and the
/// CLI can feed it without knowing about events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSignature {
    /// Normalized frame tokens, innermost first.
    pub frames: Vec<String>,
    /// The message template, one token; `None` leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl GroupSignature {
    /// A signature from frames and an optional message template.
    pub fn new(frames: Vec<String>, message: Option<String>) -> Self {
        Self { frames, message }
    }
}

/// Weights that shape a signature; part of [`crate::Params`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weighting {
    /// Weight ratio between a frame and the one inside it, in (0, 1].
    pub decay: f64,
    /// Weight of the message token; 0 ignores the message.
    pub message_weight: f64,
}

/// The kind of a token, kept apart so a frame never equals a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// A frame token.
    Frame(String),
    /// Two consecutive frames, inner then outer.
    Bigram(String, String),
    /// The message template.
    Message(String),
}

/// The weighted tokens of one signature as a map, built the obvious way.
/// The reference that [`SignatureSet`] is checked against, and what
/// [`crate::explain`] reads.
pub fn weighted_tokens(sig: &GroupSignature, w: Weighting) -> HashMap<Token, f64> {
    let mut out: HashMap<Token, f64> = HashMap::new();
    let mut put = |t: Token, weight: f64| {
        let e = out.entry(t).or_insert(weight);
        if weight > *e {
            *e = weight;
        }
    };
    let mut weight = 1.0;
    for (i, f) in sig.frames.iter().enumerate() {
        put(Token::Frame(f.clone()), weight);
        if let Some(next) = sig.frames.get(i + 1) {
            put(Token::Bigram(f.clone(), next.clone()), weight);
        }
        weight *= w.decay;
    }
    if let Some(m) = &sig.message
        && w.message_weight > 0.0
    {
        put(Token::Message(m.clone()), w.message_weight);
    }
    out
}

/// Weighted Jaccard distance computed from two token maps; the slow,
/// obviously-right definition (empty against empty is distance 0).
pub fn reference_distance(a: &HashMap<Token, f64>, b: &HashMap<Token, f64>) -> f64 {
    let (mut smin, mut smax) = (0.0, 0.0);
    for (t, &wa) in a {
        let wb = b.get(t).copied().unwrap_or(0.0);
        smin += wa.min(wb);
        smax += wa.max(wb);
    }
    for (t, &wb) in b {
        if !a.contains_key(t) {
            smax += wb;
        }
    }
    if smax == 0.0 { 0.0 } else { 1.0 - smin / smax }
}

/// Weighted Jaccard distance between two signatures.
pub fn distance(a: &GroupSignature, b: &GroupSignature, w: Weighting) -> f64 {
    let set = SignatureSet::build([a, b], w);
    set.distance(0, 1)
}

/// Interned signatures in one flat table, tokens of each sorted by a global
/// rank (rarest first), which is the order prefix filtering needs.
#[derive(Clone, Debug, Default)]
pub struct SignatureSet {
    offsets: Vec<usize>,
    tokens: Vec<u32>,
    weights: Vec<f64>,
    norms: Vec<f64>,
    vocabulary: usize,
}

/// Stands in for a signature with no tokens, so two empty signatures are at
/// distance 0 and an empty one is at distance 1 from any other.
const EMPTY_TOKEN: u32 = 0;

impl SignatureSet {
    /// Interns and weighs the signatures, in order; point `i` is the `i`-th.
    pub fn build<'a>(sigs: impl IntoIterator<Item = &'a GroupSignature>, w: Weighting) -> Self {
        let mut frames: HashMap<&'a str, u32> = HashMap::new();
        let mut messages: HashMap<&'a str, u32> = HashMap::new();
        let mut bigrams: HashMap<u64, u32> = HashMap::new();
        // Id 0 is the empty marker; real tokens start at 1.
        let mut next: u32 = 1;
        fn fresh(next: &mut u32) -> u32 {
            let id = *next;
            *next += 1;
            id
        }
        let mut offsets = vec![0usize];
        let mut tokens: Vec<u32> = Vec::new();
        let mut weights: Vec<f64> = Vec::new();
        let mut row: Vec<(u32, f64)> = Vec::new();
        let mut frame_ids: Vec<u32> = Vec::new();
        let mut bigram_ids: Vec<u32> = Vec::new();
        for sig in sigs {
            row.clear();
            frame_ids.clear();
            for f in &sig.frames {
                let id = *frames.entry(f.as_str()).or_insert_with(|| fresh(&mut next));
                frame_ids.push(id);
            }
            bigram_ids.clear();
            for pair in frame_ids.windows(2) {
                let key = (u64::from(pair[0]) << 32) | u64::from(pair[1]);
                let id = *bigrams.entry(key).or_insert_with(|| fresh(&mut next));
                bigram_ids.push(id);
            }
            let mut weight = 1.0;
            for (i, &f) in frame_ids.iter().enumerate() {
                row.push((f, weight));
                if let Some(&b) = bigram_ids.get(i) {
                    row.push((b, weight));
                }
                weight *= w.decay;
            }
            if let Some(m) = &sig.message
                && w.message_weight > 0.0
            {
                let id = *messages
                    .entry(m.as_str())
                    .or_insert_with(|| fresh(&mut next));
                row.push((id, w.message_weight));
            }
            if row.is_empty() {
                row.push((EMPTY_TOKEN, 1.0));
            }
            // A repeated token keeps its largest weight.
            row.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
            row.dedup_by_key(|e| e.0);
            for &(t, wt) in &row {
                tokens.push(t);
                weights.push(wt);
            }
            offsets.push(tokens.len());
        }
        let mut set = SignatureSet {
            offsets,
            tokens,
            weights,
            norms: Vec::new(),
            vocabulary: 0,
        };
        set.rank_tokens();
        set
    }

    /// Renames tokens by document frequency (rarest first, ties by old id)
    /// and sorts every row by the new ids; computes the norms.
    fn rank_tokens(&mut self) {
        let max = self
            .tokens
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut df = vec![0u32; max];
        for &t in &self.tokens {
            df[t as usize] += 1;
        }
        let mut order: Vec<u32> = (0..max as u32).filter(|&t| df[t as usize] > 0).collect();
        order.sort_unstable_by_key(|&t| (df[t as usize], t));
        let mut rank = vec![u32::MAX; max];
        for (r, &t) in order.iter().enumerate() {
            rank[t as usize] = r as u32;
        }
        self.vocabulary = order.len();
        let mut row: Vec<(u32, f64)> = Vec::new();
        self.norms = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let (s, e) = (self.offsets[i], self.offsets[i + 1]);
            row.clear();
            row.extend((s..e).map(|k| (rank[self.tokens[k] as usize], self.weights[k])));
            row.sort_unstable_by_key(|e| e.0);
            let mut norm = 0.0;
            for (k, &(t, w)) in (s..e).zip(&row) {
                self.tokens[k] = t;
                self.weights[k] = w;
                norm += w;
            }
            self.norms.push(norm);
        }
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there is no signature.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct tokens over all signatures.
    pub fn vocabulary(&self) -> usize {
        self.vocabulary
    }

    /// Total weight of signature `i`.
    pub fn norm(&self, i: usize) -> f64 {
        self.norms[i]
    }

    /// Ranked tokens and weights of signature `i`, rarest token first.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (s, e) = (self.offsets[i], self.offsets[i + 1]);
        (&self.tokens[s..e], &self.weights[s..e])
    }

    /// Weighted Jaccard distance between signatures `i` and `j`. Both the
    /// fast index and the brute-force reference decide `<= eps` with this
    /// one function, so they agree to the last bit.
    pub fn distance(&self, i: usize, j: usize) -> f64 {
        let (ta, wa) = self.row(i);
        let (tb, wb) = self.row(j);
        let (mut x, mut y) = (0, 0);
        let (mut smin, mut smax) = (0.0, 0.0);
        while x < ta.len() && y < tb.len() {
            match ta[x].cmp(&tb[y]) {
                std::cmp::Ordering::Less => {
                    smax += wa[x];
                    x += 1;
                }
                std::cmp::Ordering::Greater => {
                    smax += wb[y];
                    y += 1;
                }
                std::cmp::Ordering::Equal => {
                    smin += wa[x].min(wb[y]);
                    smax += wa[x].max(wb[y]);
                    x += 1;
                    y += 1;
                }
            }
        }
        smax += wa[x..].iter().sum::<f64>() + wb[y..].iter().sum::<f64>();
        if smax == 0.0 { 0.0 } else { 1.0 - smin / smax }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(frames: &[&str], msg: Option<&str>) -> GroupSignature {
        GroupSignature::new(
            frames.iter().map(|s| s.to_string()).collect(),
            msg.map(str::to_string),
        )
    }

    const PLAIN: Weighting = Weighting {
        decay: 1.0,
        message_weight: 1.0,
    };

    #[test]
    fn decay_one_is_plain_jaccard() {
        // a: {x, y, x>y, m}; b: {x, y, z, x>y, y>z, m}: 4 shared of 6.
        let a = sig(&["x", "y"], Some("m"));
        let b = sig(&["x", "y", "z"], Some("m"));
        let d = distance(&a, &b, PLAIN);
        assert!((d - (1.0 - 4.0 / 6.0)).abs() < 1e-12, "{d}");
    }

    #[test]
    fn order_matters_through_bigrams() {
        let a = sig(&["x", "y"], None);
        let b = sig(&["y", "x"], None);
        // Shared: x, y; bigrams x>y and y>x differ: 2 of 4.
        assert!((distance(&a, &b, PLAIN) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn repeated_token_keeps_largest_weight() {
        let w = Weighting {
            decay: 0.5,
            message_weight: 0.0,
        };
        let t = weighted_tokens(&sig(&["a", "b", "a"], None), w);
        assert_eq!(t[&Token::Frame("a".into())], 1.0);
        assert_eq!(t[&Token::Frame("b".into())], 0.5);
        assert_eq!(t[&Token::Bigram("b".into(), "a".into())], 0.5);
    }

    #[test]
    fn table_matches_reference() {
        let w = Weighting {
            decay: 0.7,
            message_weight: 2.0,
        };
        let sigs = [
            sig(&["a", "b", "c", "d"], Some("m")),
            sig(&["q", "b", "c", "a", "b"], Some("m")),
            sig(&["a", "b"], Some("n")),
            sig(&[], None),
            sig(&[], None),
            sig(&[], Some("m")),
        ];
        let set = SignatureSet::build(&sigs, w);
        for i in 0..sigs.len() {
            for j in 0..sigs.len() {
                let r = reference_distance(
                    &weighted_tokens(&sigs[i], w),
                    &weighted_tokens(&sigs[j], w),
                );
                let f = set.distance(i, j);
                assert!((r - f).abs() < 1e-12, "{i} {j}: {r} vs {f}");
            }
        }
        assert_eq!(set.distance(3, 4), 0.0);
        assert_eq!(set.distance(3, 0), 1.0);
    }
}
