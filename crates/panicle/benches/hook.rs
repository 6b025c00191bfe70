//! The panic hook's cost on a 30-frame-deep stack (capture + symbolize +
//! build the event), next to `std::backtrace::Backtrace::force_capture()`
//! formatted to a string on the same stack.
//!
//! Criterion measures the warm costs (and the cold one: debug info loaded
//! for the call). "One second after init" needs a fresh process each time,
//! so it is measured in child processes of this binary and printed after,
//! next to std's own first capture one second after its warm-up: a first
//! capture meets cold CPU caches whoever symbolizes.
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
const CHILD_RUNS: usize = 11;

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

/// Nanoseconds `f` took.
fn time(f: &mut dyn FnMut() -> usize) -> f64 {
    let t = Instant::now();
    black_box(f());
    t.elapsed().as_nanos() as f64
}

/// The fastest of 20 more runs of `f`: the warm cost.
fn warm(f: &mut dyn FnMut() -> usize) -> f64 {
    (0..20).map(|_| time(f)).fold(f64::INFINITY, f64::min)
}

/// In a child: init's warm-up, one second's sleep, then the first capture's
/// cost and a warm one's, printed as one line of nanoseconds.
fn child(mode: &str) {
    let options = Options::default();
    // `…-server`: the same with `symbolize = Server` (addresses only).
    let (mode, server) = match mode.strip_suffix("-server") {
        Some(m) => (m, true),
        None => (mode, false),
    };
    if server {
        hook_bench::set_symbolize(panicle::Symbolize::Server);
    }
    if mode == "std" {
        // std's own warm-up: its first capture loads the debug info.
        black_box(std::backtrace::Backtrace::force_capture().to_string());
    } else {
        hook_bench::warm_up();
    }
    std::thread::sleep(Duration::from_secs(1));
    if mode != "std" && !hook_bench::is_warm() {
        eprintln!("warm-up still running after 1 s");
    }
    let (first, warm_cost) = match mode {
        "std" => (time(&mut std_backtrace), warm(&mut std_backtrace)),
        "panic" => real_panics(&options),
        _ => {
            if std::env::var_os("PANICLE_HOOK_BENCH_PHASES").is_some() {
                let a = deep(DEPTH, &mut || hook_bench::phases(&options));
                let b = deep(DEPTH, &mut || hook_bench::phases(&options));
                eprintln!("phases first {a:?} then {b:?}");
            }
            let mut event = || panicle_event(&options);
            (time(&mut event), warm(&mut event))
        }
    };
    // std's first capture with no warm-up: what the first panic would pay.
    let std_cold = if mode == "panicle" {
        time(&mut std_backtrace)
    } else {
        f64::NAN
    };
    println!("{first} {warm_cost} {std_cold}");
}

/// Real panics 30 frames deep, the hook's work (capture, symbolize, build)
/// timed inside the panic hook: the first, and the fastest of 20 more.
fn real_panics(options: &Options) -> (f64, f64) {
    hook_bench::install_timed_hook(options.clone());
    for i in 0..21usize {
        let _ = std::panic::catch_unwind(|| {
            deep(DEPTH, &mut || -> usize {
                panic!("bench panic {}", black_box(i))
            })
        });
    }
    let _ = std::panic::take_hook();
    let times = hook_bench::hook_times();
    let first = times.first().copied().unwrap_or(f64::NAN);
    let warm = times.iter().skip(1).copied().fold(f64::INFINITY, f64::min);
    (first, warm)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Medians over fresh child processes of (first, warm, std cold), and how
/// many children answered.
fn children(exe: &std::path::Path, mode: &str) -> ([f64; 3], usize) {
    let mut rows: Vec<[f64; 3]> = Vec::new();
    for _ in 0..CHILD_RUNS {
        let Ok(out) = Command::new(exe).env(CHILD_ENV, mode).output() else {
            continue;
        };
        let nums: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [a, b, c] = nums[..] {
            rows.push([a, b, c]);
        }
    }
    let medians = [0, 1, 2].map(|i| median(rows.iter().map(|r| r[i]).collect()));
    (medians, rows.len())
}

fn after_init_report() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let ([first, warm, std_cold], a) = children(&exe, "panicle");
    let ([panic_first, panic_warm, _], b) = children(&exe, "panic");
    let ([std_first, std_warm, _], c) = children(&exe, "std");
    let ([server_first, server_warm, _], d) = children(&exe, "panicle-server");
    let ([server_panic_first, server_panic_warm, _], e) = children(&exe, "panic-server");
    println!(
        "\nfresh processes, first capture 1 s after warm-up ({a}, {b}, {c}, {d} and {e} of {CHILD_RUNS} runs answered; medians, {DEPTH} frames):"
    );
    println!("                                       first        warm   first/warm");
    let row = |name: &str, first: f64, warm: f64| {
        println!(
            "  {name:<32} {:>8.1} µs {:>8.1} µs {:>8.2}x",
            first / 1e3,
            warm / 1e3,
            first / warm
        )
    };
    row("panicle, capture+symbolize+build", first, warm);
    row("panicle, real panic in the hook", panic_first, panic_warm);
    row("std force_capture, own warm-up", std_first, std_warm);
    row("server mode, capture+build", server_first, server_warm);
    row(
        "server mode, real panic in hook",
        server_panic_first,
        server_panic_warm,
    );
    println!(
        "  panicle / std: first {:.2}x, warm {:.2}x; std's first capture without warm-up: {:.1} ms",
        first / std_first,
        warm / std_warm,
        std_cold / 1e6
    );
    println!(
        "  server mode / std: first {:.2}x, warm {:.2}x",
        server_panic_first / std_first,
        server_panic_warm / std_warm
    );
}

fn main() {
    if let Some(mode) = std::env::var_os(CHILD_ENV) {
        child(&mode.to_string_lossy());
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
