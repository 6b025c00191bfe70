//! Why two groups were clustered together: what their signatures share, in
//! the terms a user checks a merge by: the culprit (innermost frame), the
//! panic kind, the error type, and how the payloads differ.

use std::collections::HashSet;

use panicle_protocol::message_parts;

use crate::Params;
use crate::signature::{GroupSignature, distance};

/// What two signatures share, for the API to explain a merge.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// Frames in both, in the first signature's order (innermost first).
    pub shared_frames: Vec<String>,
    /// Consecutive frame pairs (inner, outer) in both, same order.
    pub shared_bigrams: Vec<(String, String)>,
    /// Both have frames and the same innermost one.
    pub same_culprit: bool,
    /// Both carry the same message template.
    pub same_message: bool,
    /// Both messages are of the same panic kind.
    pub same_kind: bool,
    /// The error types of the first and the second message, when either
    /// has one.
    pub error_types: Option<(Option<String>, Option<String>)>,
    /// Payload details only the first has and only the second has, when
    /// the messages' details differ.
    pub payload_differs: Option<(Vec<String>, Vec<String>)>,
    /// Their weighted Jaccard distance under the parameters' weights.
    pub distance: f64,
}

impl Explanation {
    /// True when both messages have an error type and it is the same.
    pub fn same_error_type(&self) -> bool {
        matches!(&self.error_types, Some((Some(a), Some(b))) if a == b)
    }

    /// One line a user reads a merge by, such as `same culprit, same kind,
    /// same error type; payload differs: InvalidDigit / Empty`.
    pub fn summary(&self) -> String {
        let mut said: Vec<String> = Vec::new();
        if self.same_culprit {
            said.push("same culprit".into());
        } else if !self.shared_frames.is_empty() {
            let n = self.shared_frames.len();
            said.push(format!(
                "culprit differs, {n} shared frame{}",
                if n == 1 { "" } else { "s" }
            ));
        } else {
            said.push("no shared frame".into());
        }
        if self.same_message {
            said.push("same message".into());
            return said.join(", ");
        }
        said.push(
            if self.same_kind {
                "same kind"
            } else {
                "kind differs"
            }
            .into(),
        );
        match &self.error_types {
            Some((Some(a), Some(b))) if a == b => said.push("same error type".into()),
            Some((a, b)) => said.push(format!(
                "error type differs: {} / {}",
                a.as_deref().unwrap_or("none"),
                b.as_deref().unwrap_or("none")
            )),
            None => {}
        }
        let mut out = said.join(", ");
        if let Some((a, b)) = &self.payload_differs {
            let side = |d: &[String]| {
                if d.is_empty() {
                    "none".to_string()
                } else {
                    d.join(", ")
                }
            };
            out.push_str(&format!("; payload differs: {} / {}", side(a), side(b)));
        }
        out
    }
}

/// Explains how close `a` and `b` are and through which frames and message
/// parts.
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
    let (mut same_kind, mut error_types, mut payload_differs) = (false, None, None);
    if let (Some(ma), Some(mb)) = (&a.message, &b.message) {
        let (pa, pb) = (message_parts(ma), message_parts(mb));
        same_kind = pa.kind == pb.kind;
        if pa.error_type.is_some() || pb.error_type.is_some() {
            error_types = Some((pa.error_type, pb.error_type));
        }
        let only = |x: &[String], y: &[String]| -> Vec<String> {
            x.iter().filter(|d| !y.contains(d)).cloned().collect()
        };
        let (da, db) = (
            only(&pa.details, &pb.details),
            only(&pb.details, &pa.details),
        );
        if !da.is_empty() || !db.is_empty() {
            payload_differs = Some((da, db));
        }
    }
    Explanation {
        shared_frames,
        shared_bigrams,
        same_culprit: !a.frames.is_empty() && a.frames.first() == b.frames.first(),
        same_message: a.message.is_some() && a.message == b.message,
        same_kind,
        error_types,
        payload_differs,
        distance: distance(a, b, params.weighting()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(frames: &[&str], message: &str) -> GroupSignature {
        GroupSignature::new(
            frames.iter().map(|x| x.to_string()).collect(),
            Some(message.into()),
        )
    }

    #[test]
    fn lists_shared_frames_in_order() {
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
        assert_eq!(e.summary(), "same culprit, same message");
    }

    #[test]
    fn payload_variants_are_explained_by_kind_type_and_payload() {
        let unwrap = "called `Result::unwrap()` on an `Err` value: ";
        let frames = ["shop::qty::parse", "shop::cart::add"];
        let digit = s(
            &frames,
            &format!("{unwrap}ParseIntError {{ kind: InvalidDigit }}"),
        );
        let empty = s(&frames, &format!("{unwrap}ParseIntError {{ kind: Empty }}"));
        let e = explain(&digit, &empty, &Params::default());
        assert!(e.same_culprit && e.same_kind && e.same_error_type());
        assert!(!e.same_message);
        assert_eq!(
            e.payload_differs,
            Some((vec!["InvalidDigit".to_string()], vec!["Empty".to_string()]))
        );
        assert_eq!(
            e.summary(),
            "same culprit, same kind, same error type; payload differs: InvalidDigit / Empty"
        );

        let io = s(
            &["shop::qty::read", "shop::cart::add"],
            &format!("{unwrap}Os {{ code: <n>, kind: NotFound, message: \"<s>\" }}"),
        );
        let e = explain(&io, &digit, &Params::default());
        assert!(!e.same_culprit && e.same_kind && !e.same_error_type());
        assert_eq!(
            e.summary(),
            "culprit differs, 1 shared frame, same kind, error type differs: io::Error / ParseIntError; payload differs: NotFound / InvalidDigit"
        );

        let none = s(&frames, "called `Option::unwrap()` on a `None` value");
        assert_eq!(
            explain(&none, &digit, &Params::default()).summary(),
            "same culprit, kind differs, error type differs: none / ParseIntError; payload differs: none / InvalidDigit"
        );
    }
}
