//! Why two groups were clustered together: what their signatures share.

use std::collections::HashSet;

use crate::Params;
use crate::signature::{GroupSignature, distance};

/// What two signatures share, for the API to explain a merge.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// Frames in both, in the first signature's order (innermost first).
    pub shared_frames: Vec<String>,
    /// Consecutive frame pairs (inner, outer) in both, same order.
    pub shared_bigrams: Vec<(String, String)>,
    /// Both carry the same message template.
    pub same_message: bool,
    /// Their weighted Jaccard distance under the parameters' weights.
    pub distance: f64,
}

/// Explains how close `a` and `b` are and through which frames.
pub fn explain(a: &GroupSignature, b: &GroupSignature, params: &Params) -> Explanation {
    let b_frames: HashSet<&str> = b.frames.iter().map(String::as_str).collect();
    let b_bigrams: HashSet<(&str, &str)> = b
        .frames
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .collect();
    let mut seen = HashSet::new();
    let shared_frames = a
        .frames
        .iter()
        .filter(|f| b_frames.contains(f.as_str()) && seen.insert(f.as_str()))
        .cloned()
        .collect();
    let mut seen = HashSet::new();
    let shared_bigrams = a
        .frames
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .filter(|p| b_bigrams.contains(p) && seen.insert(*p))
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    Explanation {
        shared_frames,
        shared_bigrams,
        same_message: a.message.is_some() && a.message == b.message,
        distance: distance(a, b, params.weighting()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_shared_frames_in_order() {
        let s = |f: &[&str], m: &str| {
            GroupSignature::new(f.iter().map(|x| x.to_string()).collect(), Some(m.into()))
        };
        let a = s(
            &["shop::db::get", "shop::orders::load", "shop::api::v1"],
            "m",
        );
        let b = s(
            &["shop::db::get", "shop::orders::load", "shop::api::v2"],
            "m",
        );
        let e = explain(&a, &b, &Params::default());
        assert_eq!(e.shared_frames, vec!["shop::db::get", "shop::orders::load"]);
        assert_eq!(
            e.shared_bigrams,
            vec![(
                "shop::db::get".to_string(),
                "shop::orders::load".to_string()
            )]
        );
        assert!(e.same_message);
        assert!(e.distance > 0.0 && e.distance < 1.0);
    }
}
