//! Quality on the labeled corpus (`testdata/cluster-corpus/`): pairwise
//! precision and recall of the defaults against exact-fingerprint and
//! message-only grouping, and the grid search that chose the defaults.
//! Run with `--nocapture` to see the numbers.

use std::collections::HashMap;

use panicle_cluster::{
    DEFAULT_DECAY, DEFAULT_EPS, DEFAULT_MESSAGE_WEIGHT, DEFAULT_MIN_SAMPLES, GroupLabel,
    GroupSignature, Params, cluster, stabilize,
};
use panicle_protocol::{Event, fingerprint, message_template, signature_frames};

/// One captured panic of the corpus, normalized as the server does it.
struct Capture {
    label: String,
    fingerprint: String,
    template: String,
    frames: Vec<String>,
    count: u64,
}

fn load() -> Vec<Capture> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/cluster-corpus/corpus.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let event: Event = serde_json::from_value(serde_json::json!({
                "event_id": v["id"],
                "timestamp": "2026-11-09T00:00:00Z",
                "message": v["message"],
                "platform": v["platform"],
                "release": v["release"],
                "frames": v["frames"],
            }))
            .unwrap();
            Capture {
                label: v["label"].as_str().unwrap().to_string(),
                fingerprint: fingerprint(&event),
                template: message_template(&event.message),
                frames: signature_frames(&event),
                count: v["count"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// Pairwise precision and recall over captures: a pair is predicted
/// together when both land in one cluster, truly together when both share
/// a root cause.
fn pairwise(truth: &[&str], predicted: &[u64]) -> (f64, f64) {
    let (mut tp, mut fp, mut fnn) = (0u64, 0u64, 0u64);
    for i in 0..truth.len() {
        for j in 0..i {
            match (predicted[i] == predicted[j], truth[i] == truth[j]) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fnn += 1,
                (false, false) => {}
            }
        }
    }
    let precision = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let recall = if tp + fnn == 0 {
        1.0
    } else {
        tp as f64 / (tp + fnn) as f64
    };
    (precision, recall)
}

fn f1((p, r): (f64, f64)) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Cluster ids per capture as the service would show them: captures group
/// by fingerprint, groups cluster by DBSCAN, noise groups stand alone.
fn service_clusters(caps: &[Capture], params: &Params) -> Vec<u64> {
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut sigs: Vec<GroupSignature> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for c in caps {
        let g = *group_of.entry(&c.fingerprint).or_insert_with(|| {
            sigs.push(GroupSignature::new(
                c.frames.clone(),
                Some(c.template.clone()),
            ));
            counts.push(0);
            names.push(&c.fingerprint);
            sigs.len() - 1
        });
        counts[g] += c.count;
    }
    let result = cluster(&sigs, &counts, params).unwrap();
    let labels: Vec<GroupLabel<&str>> = names
        .iter()
        .zip(&result.labels)
        .zip(&counts)
        .map(|((&group, &label), &count)| GroupLabel {
            group,
            label,
            count,
        })
        .collect();
    let ids = stabilize(&HashMap::new(), &labels, 1).clusters;
    caps.iter()
        .map(|c| ids[group_of[c.fingerprint.as_str()]])
        .collect()
}

fn ids_by_key(keys: impl Iterator<Item = String>) -> Vec<u64> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    keys.map(|k| {
        let n = seen.len() as u64;
        *seen.entry(k).or_insert(n)
    })
    .collect()
}

/// Prints the root causes split over several clusters and the clusters
/// holding several root causes.
fn report_mixing(caps: &[Capture], ids: &[u64]) {
    let mut by_label: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut by_cluster: HashMap<u64, Vec<&str>> = HashMap::new();
    for (c, &id) in caps.iter().zip(ids) {
        by_label.entry(&c.label).or_default().push(id);
        by_cluster.entry(id).or_default().push(&c.label);
    }
    let mut labels: Vec<_> = by_label.into_iter().collect();
    labels.sort();
    for (label, mut ids) in labels {
        ids.sort();
        ids.dedup();
        if ids.len() > 1 {
            println!("  split: {label} over clusters {ids:?}");
        }
    }
    let mut clusters: Vec<_> = by_cluster.into_iter().collect();
    clusters.sort();
    for (id, mut labels) in clusters {
        labels.sort();
        labels.dedup();
        if labels.len() > 1 {
            println!("  mixed: cluster {id} holds {labels:?}");
        }
    }
}

#[test]
fn defaults_beat_exact_and_message_grouping() {
    let caps = load();
    let truth: Vec<&str> = caps.iter().map(|c| c.label.as_str()).collect();
    let causes = {
        let mut t = truth.clone();
        t.sort();
        t.dedup();
        t.len()
    };
    let groups = ids_by_key(caps.iter().map(|c| c.fingerprint.clone()));
    let n_groups = groups.iter().max().map_or(0, |m| m + 1);
    assert!(
        caps.len() >= 100 && n_groups >= 100 && causes >= 18,
        "corpus too small"
    );

    let exact = pairwise(&truth, &groups);
    let by_message = pairwise(&truth, &ids_by_key(caps.iter().map(|c| c.template.clone())));
    let ours = pairwise(&truth, &service_clusters(&caps, &Params::default()));
    println!(
        "corpus: {} captures, {} groups, {} root causes",
        caps.len(),
        n_groups,
        causes
    );
    println!("method               precision  recall  F1");
    for (name, pr) in [
        ("exact fingerprint", exact),
        ("message template", by_message),
        ("panicle defaults", ours),
    ] {
        println!("{name:<20} {:>9.3}  {:>6.3}  {:.3}", pr.0, pr.1, f1(pr));
    }
    report_mixing(&caps, &service_clusters(&caps, &Params::default()));
    assert!(ours.0 >= 0.95, "precision {}", ours.0);
    assert!(ours.1 >= 0.95, "recall {}", ours.1);
    // The baselines each fail one side, which is why clustering exists.
    assert!(exact.1 < 0.5);
    assert!(by_message.0 < 0.8);
}

/// eps, decay, message weight, min_samples, (precision, recall).
type Row = (f64, f64, f64, u64, (f64, f64));

#[test]
fn grid_search_supports_the_defaults() {
    let caps = load();
    let truth: Vec<&str> = caps.iter().map(|c| c.label.as_str()).collect();
    let mut rows: Vec<Row> = Vec::new();
    for eps20 in 4..=18 {
        let eps = eps20 as f64 * 0.05;
        for decay in [
            1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2,
        ] {
            for message_weight in [0.0, 0.5, 1.0, 1.5, 2.0, 3.0] {
                for min_samples in [1, 2, 3] {
                    let params = Params {
                        eps,
                        min_samples,
                        decay,
                        message_weight,
                        threads: 1,
                    };
                    let pr = pairwise(&truth, &service_clusters(&caps, &params));
                    rows.push((eps, decay, message_weight, min_samples, pr));
                }
            }
        }
    }
    rows.sort_by(|a, b| f1(b.4).total_cmp(&f1(a.4)));
    println!("top settings by F1 (eps, decay, message weight, min_samples: P R F1)");
    for r in rows.iter().take(15) {
        println!(
            "  eps {:.2} decay {:.2} msg {:.1} min {}: {:.3} {:.3} {:.3}",
            r.0,
            r.1,
            r.2,
            r.3,
            r.4.0,
            r.4.1,
            f1(r.4)
        );
    }
    // How wide the good region is around the default decay and weight.
    let near: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.1 == DEFAULT_DECAY && r.2 == DEFAULT_MESSAGE_WEIGHT && r.3 == DEFAULT_MIN_SAMPLES
        })
        .collect();
    println!("eps sweep at the default decay, weight and min_samples:");
    let mut near = near;
    near.sort_by(|a, b| a.0.total_cmp(&b.0));
    for r in &near {
        println!(
            "  eps {:.2}: P {:.3} R {:.3} F1 {:.3}",
            r.0,
            r.4.0,
            r.4.1,
            f1(r.4)
        );
    }
    let best = f1(rows[0].4);
    // Robustness: the worst F1 within one eps step either side; the default
    // should sit in the middle of the plateau, not on its edge.
    let robust = |r: &Row| {
        rows.iter()
            .filter(|o| (o.0 - r.0).abs() < 0.051 && o.1 == r.1 && o.2 == r.2 && o.3 == r.3)
            .map(|o| f1(o.4))
            .fold(f64::INFINITY, f64::min)
    };
    let mut ranked: Vec<_> = rows
        .iter()
        .filter(|r| f1(r.4) >= best - 1e-9)
        .map(|r| (robust(r), r))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.1.total_cmp(&a.1.1)));
    println!("best settings by robustness (worst F1 at eps +-0.05):");
    for (rb, r) in ranked.iter().take(8) {
        println!(
            "  eps {:.2} decay {:.2} msg {:.1} min {}: F1 {:.3}, robust {:.3}",
            r.0,
            r.1,
            r.2,
            r.3,
            f1(r.4),
            rb
        );
    }
    let plateau = rows.iter().filter(|r| f1(r.4) >= best - 1e-9).count();
    println!("{plateau} settings reach the best F1 {best:.3}");
    let b = rows[0];
    report_mixing(
        &caps,
        &service_clusters(
            &caps,
            &Params {
                eps: b.0,
                decay: b.1,
                message_weight: b.2,
                min_samples: b.3,
                threads: 1,
            },
        ),
    );
    let default = rows
        .iter()
        .find(|r| {
            (r.0 - DEFAULT_EPS).abs() < 1e-9
                && r.1 == DEFAULT_DECAY
                && r.2 == DEFAULT_MESSAGE_WEIGHT
                && r.3 == DEFAULT_MIN_SAMPLES
        })
        .map(|r| f1(r.4))
        .unwrap();
    let default_robust = rows
        .iter()
        .find(|r| {
            (r.0 - DEFAULT_EPS).abs() < 1e-9
                && r.1 == DEFAULT_DECAY
                && r.2 == DEFAULT_MESSAGE_WEIGHT
                && r.3 == DEFAULT_MIN_SAMPLES
        })
        .map(robust)
        .unwrap();
    println!(
        "default F1 {default:.3} (robust {default_robust:.3}), best F1 {best:.3} (robust {:.3})",
        ranked[0].0
    );
    assert!(default >= best - 0.01, "default {default} vs best {best}");
    assert!(default_robust >= ranked[0].0 - 0.01);
}
