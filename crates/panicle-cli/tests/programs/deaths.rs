// A Rust program without the Panicle SDK that dies without a panic, the way
// the first argument says: `stack-overflow`, `alloc-fail`, `segv`, `kill`.
use std::hint::black_box;

extern "C" {
    fn raise(signal: i32) -> i32;
}

fn recurse(depth: u64, pad: [u8; 1024]) -> u64 {
    let pad = black_box(pad);
    if depth == u64::MAX {
        return pad[0] as u64;
    }
    recurse(depth + 1, pad) + pad[1] as u64
}

fn main() {
    eprintln!("worker started");
    match std::env::args().nth(1).as_deref() {
        Some("stack-overflow") => {
            println!("{}", recurse(0, [1; 1024]));
        }
        Some("alloc-fail") => {
            // 64 TiB: more than any machine has; the allocator says no and
            // std aborts with `memory allocation of N bytes failed`.
            let v: Vec<u8> = Vec::with_capacity(black_box(1usize << 46));
            println!("{}", v.capacity());
        }
        // A real invalid access: std's SIGSEGV handler (there for stack
        // overflows) lets a raised SIGSEGV go, a fault it re-raises.
        // SAFETY: none; the point is to fault.
        Some("segv") => unsafe {
            (black_box(16usize) as *mut u8).write_volatile(1);
        },
        // SAFETY: raise only sends a signal to this process.
        Some("kill") => unsafe {
            raise(9);
        },
        _ => eprintln!("usage: deaths stack-overflow|alloc-fail|segv|kill"),
    }
}
