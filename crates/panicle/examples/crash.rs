//! A service that dies by a signal the way its first argument says, with the
//! SDK's signal handlers on: `stack-overflow` (recursion on the main thread),
//! `thread-overflow` (the same on a spawned thread), `segv` (`raise(SIGSEGV)`),
//! `null` (a write through a bad pointer); `start` only starts (and ships what
//! an earlier run left in the spool) and exits.
//!
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example crash -- segv
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example crash -- start
//! ```

use std::hint::black_box;
use std::time::Duration;

fn main() {
    let _guard = panicle::init(panicle::Options::from_env().with_release(panicle::release_name!()));
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "stack-overflow" => println!("{}", worker::recurse(0, [1; 512])),
        "thread-overflow" => {
            let worker = std::thread::Builder::new()
                .name("overflower".into())
                .spawn(|| worker::recurse(0, [2; 512]));
            let _ = worker.map(|w| w.join());
        }
        "segv" => worker::raise_segv(),
        "null" => worker::write_null(black_box(16)),
        "start" => {
            // The records of earlier runs are recovered on a background
            // thread; a service would keep running, this one waits for them.
            panicle::flush(Duration::from_secs(20));
        }
        other => {
            eprintln!(
                "unknown mode {other:?}: use stack-overflow, thread-overflow, segv, null or start"
            );
            std::process::exit(2);
        }
    }
}

mod worker {
    use super::*;

    #[inline(never)]
    pub fn recurse(depth: u64, pad: [u8; 512]) -> u64 {
        let pad = black_box(pad);
        if depth == u64::MAX {
            return u64::from(pad[0]);
        }
        recurse(depth + 1, pad) + u64::from(pad[1])
    }

    #[inline(never)]
    pub fn raise_segv() {
        // SAFETY: raise only sends this thread a signal.
        unsafe { libc::raise(libc::SIGSEGV) };
        // std's handler lets a raised SIGSEGV go; the SDK's does not.
        eprintln!("still alive after raise(SIGSEGV)");
    }

    #[inline(never)]
    pub fn write_null(addr: usize) {
        // SAFETY: none; the point is to fault.
        unsafe { (addr as *mut u8).write_volatile(1) };
    }
}
