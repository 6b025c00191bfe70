//! What a panic costs the panicking thread, per delivery strategy, on a
//! 30-frame-deep stack. Every case is a real `panic!` caught by
//! `catch_unwind`, so unwinding is included (the `unwind_only` case shows it):
//!
//! - `panicle_spool`: the installed panicle hook (capture, symbolize through
//!   the warm cache, spool write, hand-off to the sender); the sender ships
//!   to a loopback server in the background meanwhile.
//! - `sync_http_send`: the same capture, then a synchronous HTTP POST of the
//!   event to the same loopback server from the hook (what sentry-rust does).
//! - `capture_only`: the capture alone (no delivery): `panicle_spool` minus
//!   this is what the spool and hand-off add.
//! - `std_force_capture_format`: `Backtrace::force_capture()` formatted to a
//!   string, what std's default hook does with `RUST_BACKTRACE=1`.
//!
//! `cargo bench -p panicle --bench delivery -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use criterion::Criterion;
use panicle::{Options, hook_bench};

const DEPTH: usize = 30;

#[inline(never)]
fn deep(depth: usize, f: &mut dyn FnMut()) {
    if depth == 0 {
        return f();
    }
    deep(black_box(depth - 1), f);
    black_box(depth);
}

fn one_panic() {
    let r = std::panic::catch_unwind(|| {
        deep(DEPTH, &mut || {
            let v: Option<u32> = black_box(None);
            black_box(v.unwrap());
        })
    });
    black_box(r.is_err());
}

/// A loopback HTTP/1.1 server that answers every request 202 at once
/// (keep-alive), so the HTTP cases measure the client side, not a database.
fn loopback_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"accepted\":[],\"stored\":0}  ";
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let port = loopback_server();
    let dsn = format!("http://benchkey@127.0.0.1:{port}/1");
    let spool = std::env::temp_dir().join(format!("panicle-bench-spool-{}", std::process::id()));

    std::panic::set_hook(Box::new(|_| {}));
    let mut group = c.benchmark_group("panic_30_frames");
    group.bench_function("unwind_only", |b| b.iter(one_panic));

    let mut options = Options::default()
        .with_dsn(dsn.parse().unwrap())
        .with_spool_dir(&spool);
    // Every panic here is the same: without this, all but the first would
    // take the (cheaper) storm-counting path.
    options.delivery.storm_threshold_per_sec = 0;
    let guard = panicle::init(options);
    hook_bench::warm_up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hook_bench::is_warm() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    group.bench_function("panicle_spool", |b| b.iter(one_panic));
    panicle::flush(Duration::from_secs(10));
    let panicle_hook = std::panic::take_hook();

    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build(),
    );
    let url = format!("http://127.0.0.1:{port}/api/v1/events");
    let hook_options = Options::default();
    std::panic::set_hook(Box::new(move |_| {
        let event = hook_bench::capture_event(&hook_options);
        if let Ok(body) = serde_json::to_vec(&event) {
            let _ = agent
                .post(&url)
                .header("X-Panicle-Key", "benchkey")
                .header("Content-Type", "application/json")
                .send(&body[..]);
        }
    }));
    group.bench_function("sync_http_send", |b| b.iter(one_panic));

    let capture_options = Options::default();
    std::panic::set_hook(Box::new(move |_| {
        black_box(hook_bench::capture_event(&capture_options));
    }));
    group.bench_function("capture_only", |b| b.iter(one_panic));

    std::panic::set_hook(Box::new(|_| {
        black_box(std::backtrace::Backtrace::force_capture().to_string());
    }));
    group.bench_function("std_force_capture_format", |b| b.iter(one_panic));

    // Parts of the hook's delivery step, outside a panic.
    let event = hook_bench::capture_event(&Options::default());
    group.bench_function("part_fingerprint", |b| {
        b.iter(|| panicle::protocol::fingerprint(black_box(&event)))
    });
    group.bench_function("part_serialize", |b| {
        b.iter(|| serde_json::to_vec(black_box(&event)).map(|v| v.len()))
    });
    let json = serde_json::to_vec(&event).unwrap();
    let part_dir = spool.join("parts");
    let part = panicle::spool::Spool::open(&part_dir, false, u64::MAX / 4, u64::MAX / 4).unwrap();
    group.bench_function("part_spool_write_and_remove", |b| {
        b.iter(|| {
            let e = part
                .write("0b9a4f8e-7c1d-4e2a-9f3b-1a2b3c4d5e6f", &json)
                .unwrap();
            part.remove(&e);
        })
    });
    group.finish();

    std::panic::set_hook(panicle_hook);
    drop(guard);
    let _ = std::fs::remove_dir_all(&spool);
    println!("delivery stats: {:?}", panicle::delivery_stats());
    c.final_summary();
}
