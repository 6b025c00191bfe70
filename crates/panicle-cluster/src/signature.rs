//! Group signatures: weighted token sets and their weighted Jaccard distance.
//!
//! A signature holds a group's frame tokens, each frame's leaf name (its
//! last two path segments, which survive moving code to another module),
//! the bigrams of consecutive frames (so order matters) and its message template read as parts
//! ([`panicle_protocol::message_parts`]): the panic kind, the error type and
//! each payload detail are tokens of their own. The frame at depth `i`
//! (0 = innermost) weighs `decay^i`, its leaf `leaf_weight` times that, a
//! bigram `(f_i, f_i+1)` weighs as `f_i`, a repeated token keeps its largest
//! weight; the kind weighs
//! `message_weight`, the error type `error_type_weight`, each detail
//! `detail_weight`. So `ParseIntError { kind: InvalidDigit }` and `{ kind:
//! Empty }` at one culprit differ by two light detail tokens, while
//! `Option::unwrap()` and `index out of bounds` share no message token at
//! all. Distance is `1 − Σmin/Σmax` over the union of tokens.

use std::collections::HashMap;

use panicle_protocol::{MessageParts, message_parts};
use serde::{Deserialize, Serialize};

/// One group as the clusterer sees it: plain tokens, so the server and the
/// CLI can feed it without knowing about events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSignature {
    /// Normalized frame tokens, innermost first.
    pub frames: Vec<String>,
    /// The message template, read as kind, error type and details;
    /// `None` leaves it out.
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
    /// Weight of a frame's leaf name relative to the frame's own; 0 leaves
    /// leaves out.
    pub leaf_weight: f64,
    /// Weight of the message's panic kind; 0 ignores the message entirely.
    pub message_weight: f64,
    /// Weight of the message's error type (`ParseIntError`, `io::Error`).
    pub error_type_weight: f64,
    /// Weight of each payload detail (`InvalidDigit`, `NotFound`).
    pub detail_weight: f64,
}

impl Weighting {
    /// The message tokens of a template with their weights, parts of zero
    /// weight left out.
    fn message_tokens(&self, template: &str) -> Vec<(Token, f64)> {
        if self.message_weight <= 0.0 {
            return Vec::new();
        }
        let MessageParts {
            kind,
            error_type,
            details,
        } = message_parts(template);
        let mut out = vec![(Token::Kind(kind), self.message_weight)];
        if self.error_type_weight > 0.0
            && let Some(t) = error_type
        {
            out.push((Token::ErrorType(t), self.error_type_weight));
        }
        if self.detail_weight > 0.0 {
            out.extend(
                details
                    .into_iter()
                    .map(|d| (Token::Detail(d), self.detail_weight)),
            );
        }
        out
    }
}

/// A function's last two path segments, what survives moving it to another
/// module or package: `orders::pricing::line_total` and
/// `orders::quote::pricing::line_total` are both `pricing::line_total`;
/// `github.com/acme/fleet/internal/routes.avgStop` is `routes.avgStop`.
/// Anonymous bodies (`::{closure}`) stay on the name they belong to.
pub fn leaf_name(function: &str) -> &str {
    if function.contains("::") {
        let mut body = function;
        while let Some(rest) = body.strip_suffix("::{closure}") {
            body = rest;
        }
        let mut cut = body.len();
        for _ in 0..2 {
            match body[..cut].rfind("::") {
                Some(at) => cut = at,
                None => return function,
            }
        }
        &function[cut + 2..]
    } else {
        function.rsplit_once('/').map_or(function, |(_, leaf)| leaf)
    }
}

/// The kind of a token, kept apart so a frame never equals a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// A frame token.
    Frame(String),
    /// Two consecutive frames, inner then outer.
    Bigram(String, String),
    /// A frame's [`leaf_name`].
    Leaf(String),
    /// The message's panic kind.
    Kind(String),
    /// The type of the message's error value.
    ErrorType(String),
    /// One detail of the message's payload.
    Detail(String),
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
        if w.leaf_weight > 0.0 {
            put(
                Token::Leaf(leaf_name(f).to_string()),
                weight * w.leaf_weight,
            );
        }
        if let Some(next) = sig.frames.get(i + 1) {
            put(Token::Bigram(f.clone(), next.clone()), weight);
        }
        weight *= w.decay;
    }
    if let Some(m) = &sig.message {
        for (t, weight) in w.message_tokens(m) {
            put(t, weight);
        }
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
        // A frame's id and its leaf's id.
        let mut frames: HashMap<&'a str, (u32, u32)> = HashMap::new();
        let mut leaves: HashMap<&'a str, u32> = HashMap::new();
        // A template is parsed once; its tokens' ids and weights are reused.
        let mut messages: HashMap<&'a str, Vec<(u32, f64)>> = HashMap::new();
        let mut message_tokens: HashMap<Token, u32> = HashMap::new();
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
        let mut frame_ids: Vec<(u32, u32)> = Vec::new();
        let mut bigram_ids: Vec<u32> = Vec::new();
        let pair_key = |a: u32, b: u32| (u64::from(a) << 32) | u64::from(b);
        for sig in sigs {
            row.clear();
            frame_ids.clear();
            for f in &sig.frames {
                let ids = *frames.entry(f.as_str()).or_insert_with(|| {
                    let id = fresh(&mut next);
                    let leaf = *leaves
                        .entry(leaf_name(f))
                        .or_insert_with(|| fresh(&mut next));
                    (id, leaf)
                });
                frame_ids.push(ids);
            }
            bigram_ids.clear();
            for pair in frame_ids.windows(2) {
                let id = *bigrams
                    .entry(pair_key(pair[0].0, pair[1].0))
                    .or_insert_with(|| fresh(&mut next));
                bigram_ids.push(id);
            }
            let mut weight = 1.0;
            let leaf_weight = w.leaf_weight;
            for (i, &(f, leaf)) in frame_ids.iter().enumerate() {
                row.push((f, weight));
                if leaf_weight > 0.0 {
                    row.push((leaf, weight * leaf_weight));
                }
                if let Some(&b) = bigram_ids.get(i) {
                    row.push((b, weight));
                }
                weight *= w.decay;
            }
            if let Some(m) = &sig.message {
                let ids = messages.entry(m.as_str()).or_insert_with(|| {
                    w.message_tokens(m)
                        .into_iter()
                        .map(|(t, weight)| {
                            let id = *message_tokens.entry(t).or_insert_with(|| fresh(&mut next));
                            (id, weight)
                        })
                        .collect()
                });
                row.extend_from_slice(ids);
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
        leaf_weight: 0.0,
        message_weight: 1.0,
        error_type_weight: 1.0,
        detail_weight: 1.0,
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
            leaf_weight: 0.0,
            message_weight: 0.0,
            error_type_weight: 1.0,
            detail_weight: 1.0,
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
            leaf_weight: 0.5,
            message_weight: 2.0,
            error_type_weight: 1.0,
            detail_weight: 0.5,
        };
        let empty = "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: Empty }";
        let digit =
            "called `Result::unwrap()` on an `Err` value: ParseIntError { kind: InvalidDigit }";
        let sigs = [
            sig(&["a", "b", "c", "d"], Some("m")),
            sig(&["q", "b", "c", "a", "b"], Some("m")),
            sig(&["a", "b"], Some("n")),
            sig(&[], None),
            sig(&[], None),
            sig(&[], Some("m")),
            sig(&["a", "b"], Some(empty)),
            sig(&["a", "c"], Some(digit)),
            // A frame named like a message part stays a frame.
            sig(&["ParseIntError", "Empty"], Some(empty)),
            // Moved: the same leaves under another module.
            sig(&["app::a::b", "app::x::c::d"], None),
            sig(&["app::m::a::b", "app::x::c::d::{closure}"], None),
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

    #[test]
    fn payload_variants_are_close_and_kinds_far() {
        let w = Weighting {
            decay: 0.2,
            leaf_weight: 0.0,
            message_weight: 2.0,
            error_type_weight: 1.0,
            detail_weight: 0.5,
        };
        let frames = ["shop::qty::parse", "shop::cart::add"];
        let unwrap = |payload: &str| {
            sig(
                &frames,
                Some(&format!(
                    "called `Result::unwrap()` on an `Err` value: {payload}"
                )),
            )
        };
        let digit = unwrap("ParseIntError { kind: InvalidDigit }");
        let empty = unwrap("ParseIntError { kind: Empty }");
        let io = unwrap("Os { code: <n>, kind: NotFound, message: \"<s>\" }");
        let none = sig(&frames, Some("called `Option::unwrap()` on a `None` value"));
        // Shared: frames (1 + 0.2 + bigram 1), kind 2, type 1; each side's
        // detail 0.5 is its own.
        let shared = 1.0 + 0.2 + 1.0 + 2.0 + 1.0;
        let d = distance(&digit, &empty, w);
        assert!((d - (1.0 - shared / (shared + 1.0))).abs() < 1e-12, "{d}");
        assert!(d < distance(&digit, &io, w));
        assert!(distance(&digit, &io, w) < distance(&digit, &none, w));
        // No message part in common: only the frames are shared.
        let frames_only = 1.0 + 0.2 + 1.0;
        let far = distance(&digit, &none, w);
        assert!((far - (1.0 - frames_only / (frames_only + 3.5 + 2.0))).abs() < 1e-12);
    }

    /// The worked example of ARCHITECTURE.md, with the defaults.
    #[test]
    fn architecture_worked_example() {
        let w = crate::Params::default().weighting();
        let none = Some("called `Option::unwrap()` on a `None` value");
        let a1 = sig(
            &["shop::orders::reserve", "shop::api::checkout", "shop::main"],
            none,
        );
        let a2 = sig(
            &["shop::orders::reserve", "shop::jobs::batch", "shop::main"],
            none,
        );
        let b = sig(
            &["shop::cart::total", "shop::api::checkout", "shop::main"],
            Some("index out of bounds: the len is <n> but the index is <n>"),
        );
        let (smin, smax) = (6.36, 6.36 + 2.0 * 2.5);
        assert!((distance(&a1, &a2, w) - (1.0 - smin / smax)).abs() < 1e-9);
        let (smin, smax) = (1.86, 2.0 * 8.86 - 1.86);
        assert!((distance(&a1, &b, w) - (1.0 - smin / smax)).abs() < 1e-9);
    }

    #[test]
    fn leaves_survive_a_move() {
        for (f, leaf) in [
            ("orders::pricing::line_total", "pricing::line_total"),
            ("orders::quote::pricing::line_total", "pricing::line_total"),
            (
                "orders::api::add::{closure}::{closure}",
                "api::add::{closure}::{closure}",
            ),
            ("main", "main"),
            ("shop::main", "shop::main"),
            (
                "github.com/acme/fleet/internal/routes.avgStop",
                "routes.avgStop",
            ),
            ("github.com/acme/x/api.(*S).handle", "api.(*S).handle"),
            ("main.worker.func", "main.worker.func"),
        ] {
            assert_eq!(leaf_name(f), leaf, "{f}");
        }
        let w = Weighting {
            decay: 0.5,
            leaf_weight: 1.0,
            message_weight: 0.0,
            error_type_weight: 0.0,
            detail_weight: 0.0,
        };
        let a = sig(&["orders::pricing::line_total", "orders::api::show"], None);
        let moved = sig(
            &["orders::quote::pricing::line_total", "orders::api::show"],
            None,
        );
        let other = sig(&["orders::pricing::discount", "orders::api::show"], None);
        assert!(distance(&a, &moved, w) < distance(&a, &other, w));
        let no_leaves = Weighting {
            leaf_weight: 0.0,
            ..w
        };
        assert_eq!(
            distance(&a, &moved, no_leaves),
            distance(&a, &other, no_leaves)
        );
    }

    #[test]
    fn zero_message_weight_ignores_the_message() {
        let w = Weighting {
            decay: 1.0,
            leaf_weight: 1.0,
            message_weight: 0.0,
            error_type_weight: 1.0,
            detail_weight: 1.0,
        };
        let a = sig(&["x"], Some("already mutably borrowed: BorrowError"));
        let b = sig(&["x"], Some("attempt to add with overflow"));
        assert_eq!(distance(&a, &b, w), 0.0);
    }
}
