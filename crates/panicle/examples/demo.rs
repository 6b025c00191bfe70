//! A tiny service that panics the way its first argument says:
//! `unwrap-none`, `index`, `refcell`, `overflow`, `thread`.
//!
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example demo -- unwrap-none
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;

fn main() {
    let _guard = panicle::init(panicle::Options::from_env().with_release(panicle::release_name!()));
    let mode = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "unwrap-none".to_string());
    match mode.as_str() {
        "unwrap-none" => orders::reserve(black_box(42)),
        "index" => orders::pick(black_box(7)),
        "refcell" => orders::double_borrow(),
        "overflow" => orders::total(black_box(u8::MAX)),
        "thread" => {
            let worker = std::thread::Builder::new()
                .name("worker-1".into())
                .spawn(|| orders::reserve(black_box(7)));
            let _ = worker.map(|w| w.join());
        }
        other => {
            eprintln!("unknown mode {other}: use unwrap-none, index, refcell, overflow or thread");
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

    #[inline(never)]
    pub fn pick(i: usize) {
        let items = black_box(vec![1, 2, 3]);
        println!("{}", items[i]);
    }

    #[inline(never)]
    pub fn double_borrow() {
        let cell = RefCell::new(1);
        let _a = cell.borrow_mut();
        let _b = black_box(&cell).borrow_mut();
    }

    #[inline(never)]
    #[allow(clippy::arithmetic_side_effects)]
    pub fn total(x: u8) {
        // `strict_add` panics on overflow in every profile (a plain `+` only
        // where overflow checks are on, not in a release build), with the
        // same message.
        let sum = x.strict_add(black_box(1));
        println!("{sum}");
    }
}
