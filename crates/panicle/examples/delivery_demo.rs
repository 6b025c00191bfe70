//! The ways a process dies after a panic, for the delivery tests (and to try
//! by hand). Every mode reads `PANICLE_DSN` and `PANICLE_SPOOL_DIR`.
//!
//! - `ok`: no panic; ships what earlier runs left in the spool, then exits.
//! - `main`: a panic in `main` (exit code 101; with a `panic = "abort"` build: abort).
//! - `exit`: a caught panic, then `std::process::exit(3)` at once (no guard drop).
//! - `hang`: a caught panic, prints `PANICKED`, then sleeps until killed (kill -9).
//! - `storm N`: the same panic N times in a tight loop (caught), then a normal
//!   exit; prints what each panic took (median, p99, max), and with
//!   `DEMO_SLOWEST` set the six slowest panics and their place in the loop.
//! - `nul N`: a panic whose message holds a NUL byte, then `storm N`.
//! - `storm-hang N`: `storm N`, prints `PANICKED`, then sleeps until killed.
//!
//! `DEMO_SEND_TIMEOUT_MS` sets the sender's request timeout (the delivery
//! tests make a hung server outlast the exit's flush with it).
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example delivery_demo -- storm 1000
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;

fn main() {
    let mut options = panicle::Options::from_env().with_release(panicle::release_name!());
    // Tests: a send that outlasts the exit's flush (a server that hangs).
    if let Some(ms) = std::env::var("DEMO_SEND_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.send_timeout = std::time::Duration::from_millis(ms);
    }
    let _guard = panicle::init(options);
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "ok".to_string());
    match mode.as_str() {
        "ok" => {}
        "main" => orders::reserve(black_box(42)),
        "exit" => {
            let _ = std::panic::catch_unwind(|| orders::reserve(black_box(7)));
            std::process::exit(3);
        }
        "hang" => {
            let _ = std::panic::catch_unwind(|| orders::reserve(black_box(7)));
            println!("PANICKED");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        "storm-hang" => {
            let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
            for i in 0..n {
                let _ = std::panic::catch_unwind(|| orders::reserve(black_box(i)));
            }
            println!("PANICKED");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        "storm" | "nul" => {
            if mode == "nul" {
                let _ = std::panic::catch_unwind(|| panic!("bad\0byte"));
            }
            let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
            let mut took = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = std::time::Instant::now();
                let _ = std::panic::catch_unwind(|| orders::reserve(black_box(i)));
                took.push(t.elapsed().as_micros());
            }
            if std::env::var_os("DEMO_SLOWEST").is_some() {
                let mut slowest: Vec<(usize, u128)> = took.iter().copied().enumerate().collect();
                slowest.sort_unstable_by_key(|&(_, t)| std::cmp::Reverse(t));
                println!(
                    "slowest (panic, µs): {:?}",
                    &slowest[..slowest.len().min(6)]
                );
            }
            took.sort_unstable();
            let at = |q: f64| {
                took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0)
            };
            println!(
                "per panic (µs): median {} p99 {} max {}",
                at(0.5),
                at(0.99),
                at(1.0)
            );
            println!("stats {:?}", panicle::delivery_stats());
        }
        other => {
            eprintln!(
                "unknown mode {other}: use ok, main, exit, hang, storm N, storm-hang N or nul N"
            );
            std::process::exit(2);
        }
    }
}

mod orders {
    use super::*;

    #[inline(never)]
    pub fn reserve(id: u32) {
        let stock: HashMap<u32, u32> = HashMap::new();
        let left = stock.get(&id).copied().unwrap();
        println!("{left}");
    }
}
