//! The panic hook's cost on a 30-frame-deep stack (capture + symbolize +
//! build the event), next to `std::backtrace::Backtrace::force_capture()`
//! formatted to a string on the same stack.
//!
//! Criterion measures the warm costs (and the cold one: debug info loaded
//! for the call). "One second after init" needs a fresh process each time,
//! so it is measured in child processes of this binary and printed after.
//!
//! `cargo bench -p panicle --bench hook -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use panicle::Options;
use panicle::hook_bench;

const DEPTH: usize = 30;
const CHILD_ENV: &str = "PANICLE_HOOK_BENCH_CHILD";
const CHILD_RUNS: usize = 7;

/// Calls `f` under `depth` frames of its own (not inlined, not a tail call).
#[inline(never)]
fn deep<R>(depth: usize, f: &mut dyn FnMut() -> R) -> R {
    if depth == 0 {
        return f();
    }
    let r = deep(black_box(depth - 1), f);
    black_box(depth);
    r
}

fn panicle_event(options: &Options) -> usize {
    deep(DEPTH, &mut || {
        hook_bench::capture_event(options).frames.len()
    })
}

fn std_backtrace() -> usize {
    deep(DEPTH, &mut || {
        std::backtrace::Backtrace::force_capture().to_string().len()
    })
}

fn wait_warm() {
    hook_bench::warm_up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hook_bench::is_warm() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn criterion_benches(c: &mut Criterion) {
    let options = Options::default();
    wait_warm();
    let mut group = c.benchmark_group("hook_30_frames");
    group.bench_function("panicle_warm", |b| b.iter(|| panicle_event(&options)));
    group.bench_function("std_force_capture_to_string_warm", |b| {
        b.iter(std_backtrace)
    });
    group.bench_function("panicle_uncached_addresses", |b| {
        b.iter_batched(
            hook_bench::clear_cache,
            |_| panicle_event(&options),
            BatchSize::PerIteration,
        )
    });
    group.sample_size(10);
    group.bench_function("panicle_cold_debug_info_load", |b| {
        b.iter(|| {
            deep(DEPTH, &mut || {
                hook_bench::capture_event_cold(&options).frames.len()
            })
        })
    });
    group.finish();
}

/// In a child: init-like warm-up, one second's sleep, then the first panic's
/// cost, a warm one, and std's first and warm cost; one line of nanoseconds.
fn child() {
    let options = Options::default();
    hook_bench::warm_up();
    std::thread::sleep(Duration::from_secs(1));
    if !hook_bench::is_warm() {
        eprintln!("warm-up still running after 1 s");
    }
    let time = |f: &mut dyn FnMut() -> usize| {
        let t = Instant::now();
        black_box(f());
        t.elapsed().as_nanos()
    };
    if std::env::var_os("PANICLE_HOOK_BENCH_PHASES").is_some() {
        let a = deep(DEPTH, &mut || hook_bench::phases(&options));
        let b = deep(DEPTH, &mut || hook_bench::phases(&options));
        eprintln!("phases first {a:?} then {b:?}");
    }
    let first = time(&mut || panicle_event(&options));
    let warm = (0..20)
        .map(|_| time(&mut || panicle_event(&options)))
        .min()
        .unwrap_or(0);
    let std_first = time(&mut std_backtrace);
    let std_warm = (0..20).map(|_| time(&mut std_backtrace)).min().unwrap_or(0);
    println!("{first} {warm} {std_first} {std_warm}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn after_init_report() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut rows: Vec<[f64; 4]> = Vec::new();
    for _ in 0..CHILD_RUNS {
        let Ok(out) = Command::new(&exe).env(CHILD_ENV, "1").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<f64> = text
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [a, b, c, d] = nums[..] {
            rows.push([a, b, c, d]);
        }
    }
    let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
    let (first, warm, std_first, std_warm) = (col(0), col(1), col(2), col(3));
    println!(
        "\nfresh process, warm-up at init, first panic 1 s later ({} runs, medians, 30 frames):",
        rows.len()
    );
    println!("  panicle first panic: {:>10.1} µs", first / 1e3);
    println!("  panicle warm panic:  {:>10.1} µs", warm / 1e3);
    println!("  std first capture:   {:>10.1} µs", std_first / 1e3);
    println!("  std warm capture:    {:>10.1} µs", std_warm / 1e3);
    println!(
        "  first/warm (panicle): {:.2}x   panicle warm / std warm: {:.2}x",
        first / warm,
        warm / std_warm
    );
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    // `cargo test --benches` runs this binary in test mode: no child runs then.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        after_init_report();
    }
}
