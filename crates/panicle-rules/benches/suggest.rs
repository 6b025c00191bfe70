//! Throughput of the matcher: `cargo bench -p panicle-rules --bench suggest`.
//! Plain timing loop (no harness), so it needs no extra dependency.

use std::hint::black_box;
use std::time::Instant;

use panicle_rules::{MatchInput, RuleSet};

fn time<F: FnMut()>(label: &str, iters: u32, mut f: F) {
    f();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed() / iters;
    println!("{label:<48} {per:>10.2?} per call ({iters} calls)");
}

fn main() {
    time("RuleSet::builtin (parse + compile)", 20, || {
        black_box(RuleSet::builtin().ok());
    });
    let rules = RuleSet::builtin().unwrap_or_else(|e| panic!("{e}"));
    let frames: Vec<String> = ["shop::orders::reserve", "shop::api::checkout", "shop::main"]
        .map(String::from)
        .to_vec();
    let messages = [
        "called `Option::unwrap()` on a `None` value",
        "thread 'tokio-runtime-worker' (7) panicked at src/orders.rs:42:17:\nindex out of bounds: the len is 3 but the index is 5",
        "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }",
        "fatal error: concurrent map read and map write",
        "order 1234 rejected: customer has no default address",
    ];
    for m in messages {
        let input = MatchInput {
            platform: None,
            message: m,
            frames: &frames,
        };
        let label: String = m.chars().take(46).collect::<String>().replace('\n', " ");
        time(&label, 100_000, || {
            black_box(rules.suggest(black_box(&input)));
        });
    }
    let mut dump = String::from("fatal error: all goroutines are asleep - deadlock!\n\n");
    for i in 0..2000 {
        dump.push_str(&format!(
            "goroutine {i} [chan receive]:\nmain.worker(0xc000{i:04x})\n\t/app/main.go:42 +0x45\n"
        ));
    }
    let input = MatchInput {
        platform: Some("go"),
        message: &dump,
        frames: &frames,
    };
    time(
        &format!(
            "go deadlock with a {} KiB goroutine dump",
            dump.len() / 1024
        ),
        20_000,
        || {
            black_box(rules.suggest(black_box(&input)));
        },
    );
}
