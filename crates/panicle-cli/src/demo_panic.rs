//! `panicle demo-panic MODE`: panics once with the SDK's hook installed, so a
//! newcomer sees an event arrive without building anything else (the SDK's
//! `examples/demo.rs` does the same from a service's point of view).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;

use anyhow::{Context, Result, bail};

/// The ways to panic: each is a panic the rule base explains.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    /// `Option::unwrap()` on `None` (a missing map entry).
    UnwrapNone,
    /// Index out of bounds.
    Index,
    /// `RefCell` borrowed mutably twice.
    Refcell,
    /// Arithmetic overflow (in every profile, not only with overflow checks).
    Overflow,
    /// `unwrap()` on `None` in a named worker thread; the process exits 0.
    Thread,
}

/// Installs the hook and panics as `mode` says. Returns only for
/// [`Mode::Thread`], after the worker's panic was shipped.
pub fn run(dsn: Option<String>, mode: Mode) -> Result<()> {
    let Some(dsn) = dsn else {
        bail!(
            "no DSN: pass --dsn or set PANICLE_DSN to the one `panicle serve` printed \
             (`panicle project list` shows every project's)"
        );
    };
    let dsn = dsn
        .parse::<panicle_protocol::Dsn>()
        .context("invalid --dsn / PANICLE_DSN")?;
    let mut options = panicle::Options::from_env()
        .with_dsn(dsn)
        .with_release(panicle::release_name!());
    options.service_name.get_or_insert_with(|| "demo".into());
    let _guard = panicle::init(options);
    match mode {
        Mode::UnwrapNone => orders::reserve(black_box(42)),
        Mode::Index => orders::pick(black_box(7)),
        Mode::Refcell => orders::double_borrow(),
        Mode::Overflow => orders::total(black_box(u8::MAX)),
        Mode::Thread => {
            let worker = std::thread::Builder::new()
                .name("worker-1".into())
                .spawn(|| orders::reserve(black_box(7)))
                .context("cannot start the worker thread")?;
            let _ = worker.join();
        }
    }
    Ok(())
}

/// Code a shop might have: the frames the event names as in-app.
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
    pub fn total(x: u8) {
        // `strict_add` panics on overflow in every profile, with the message
        // a plain `+` has where overflow checks are on.
        let sum = x.strict_add(black_box(1));
        println!("{sum}");
    }
}
