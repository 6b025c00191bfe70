//! Benchmark: clusters synthetic group signatures and reports times and peak
//! memory. Signatures (~20 frames) are noisy variants of shared base stacks;
//! every stack also carries outer frames from a small shared pool (main,
//! router, middleware), and the vocabulary grows with n.
//!
//! ```text
//! cluster-bench [--n 10000,100000] [--eps 0.5] [--decay 1] [--message-weight 1]
//!               [--min-samples 5] [--threads 2] [--write-jsonl FILE] [--labels-out FILE]
//! ```
//! `--write-jsonl` writes the input of the first n in the offline JSONL
//! format (for `bench/cluster/bench.py`); `--labels-out` writes its labels,
//! one per line.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use panicle_cluster::{GroupSignature, NeighbourGraph, Params, SignatureSet, dbscan_graph};

/// splitmix64: a small, seeded generator; the bench needs no crate for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const OUTER: &[&str] = &[
    "svc::main::{closure}",
    "svc::main",
    "svc::http::router::dispatch",
    "svc::http::router::route",
    "svc::middleware::auth::{closure}",
    "svc::middleware::trace::{closure}",
    "svc::middleware::timeout::{closure}",
    "svc::jobs::runner::run",
];

/// `n` groups: signatures and event counts.
fn generate(n: usize, seed: u64) -> (Vec<GroupSignature>, Vec<u64>) {
    let mut rng = Rng(seed);
    let bases = (n / 20).max(1);
    let pool = (n / 2).max(1000);
    let frame = |k: usize| format!("app{}::mod{}::func{}", k % 97, k % 1013, k);
    let base_stacks: Vec<(Vec<String>, String)> = (0..bases)
        .map(|_| {
            let mut frames: Vec<String> = (0..17).map(|_| frame(rng.below(pool))).collect();
            // Outer frames: router, one or two middlewares, main.
            frames.push(OUTER[4 + rng.below(3)].to_string());
            frames.push(OUTER[2 + rng.below(2)].to_string());
            frames.push(OUTER[rng.below(2)].to_string());
            let message = format!("panic template {}", rng.below(200));
            (frames, message)
        })
        .collect();
    let mut sigs = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        let (base, message) = &base_stacks[rng.below(bases)];
        let mut frames = Vec::with_capacity(base.len() + 1);
        for f in base {
            if rng.chance(0.05) {
                continue; // inlined or cut
            }
            if rng.chance(0.1) {
                frames.push(frame(rng.below(pool))); // renamed or moved
            } else {
                frames.push(f.clone());
            }
            if rng.chance(0.03) {
                frames.push(frame(rng.below(pool))); // an extra wrapper
            }
        }
        let message = if rng.chance(0.9) {
            message.clone()
        } else {
            format!("panic template {}", rng.below(200))
        };
        sigs.push(GroupSignature::new(frames, Some(message)));
        // Heavy-tailed event counts: most groups are rare.
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        counts.push((1.0 / (1.0 - u).max(1e-6)).min(10_000.0) as u64);
    }
    (sigs, counts)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes = vec![10_000usize, 100_000];
    let mut params = Params {
        eps: 0.5,
        min_samples: 5,
        decay: 1.0,
        leaf_weight: 0.0,
        message_weight: 1.0,
        error_type_weight: 0.0,
        detail_weight: 0.0,
        threads: 2,
    };
    let mut write_jsonl: Option<String> = None;
    let mut labels_out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--n" => sizes = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--eps" => params.eps = value.parse()?,
            "--decay" => params.decay = value.parse()?,
            "--leaf-weight" => params.leaf_weight = value.parse()?,
            "--message-weight" => params.message_weight = value.parse()?,
            "--error-type-weight" => params.error_type_weight = value.parse()?,
            "--detail-weight" => params.detail_weight = value.parse()?,
            "--min-samples" => params.min_samples = value.parse()?,
            "--threads" => params.threads = value.parse()?,
            "--write-jsonl" => write_jsonl = Some(value),
            "--labels-out" => labels_out = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    params.validate()?;
    println!(
        "params: eps {} min_samples {} decay {} message_weight {} threads {}",
        params.eps, params.min_samples, params.decay, params.message_weight, params.threads
    );
    for (k, &n) in sizes.iter().enumerate() {
        let (sigs, counts) = generate(n, 42 + n as u64);
        let frames: usize = sigs.iter().map(|s| s.frames.len()).sum();
        if k == 0
            && let Some(path) = &write_jsonl
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            for (i, (s, c)) in sigs.iter().zip(&counts).enumerate() {
                let line = serde_json::json!({
                    "id": format!("g{i}"), "frames": s.frames, "count": c, "message": s.message,
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
        let t0 = Instant::now();
        let set = SignatureSet::build(&sigs, params.weighting());
        let t1 = Instant::now();
        let graph = NeighbourGraph::build(&set, params.eps, params.threads);
        let t2 = Instant::now();
        let result = dbscan_graph(Arc::new(graph), &counts, params.min_samples);
        let t3 = Instant::now();
        let noise = result.labels.iter().filter(|&&l| l < 0).count();
        println!(
            "n {n}: {:.1} frames/sig, vocabulary {} tokens; signatures {:.3} s, \
             neighbour graph {:.3} s ({} edges), dbscan {:.3} s; total {:.3} s; \
             {} clusters, {} noise groups",
            frames as f64 / n as f64,
            set.vocabulary(),
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            result.edges,
            (t3 - t2).as_secs_f64(),
            (t3 - t0).as_secs_f64(),
            result.clusters,
            noise,
        );
        if k == 0
            && let Some(path) = &labels_out
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            for l in &result.labels {
                writeln!(out, "{l}")?;
            }
            out.flush()?;
        }
    }
    if let Some(mib) = peak_rss_mib() {
        println!("peak RSS {mib:.0} MiB");
    }
    Ok(())
}
