//! A service that dies by a signal the way its first argument says, with the
//! SDK's signal handlers on: `stack-overflow` (recursion on the main thread),
//! `thread-overflow` (the same on a spawned thread), `segv` (`raise(SIGSEGV)`),
//! `null` (a write through a bad pointer), `abort` (`std::process::abort`),
//! `handled-fault` (a fault that a
//! handler installed before `init` resolves, as a GC's write barrier does:
//! the process lives on), `panic-in-drop` (a panic while unwinding: std
//! aborts, and the panic's own event is the report), `fault-in-abort-handler`
//! (an abort whose handler, installed before `init`, faults: the process
//! still dies by SIGABRT); `start` only starts (and ships what an earlier run
//! left in the spool) and exits.
//!
//! ```sh
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example crash -- segv
//! PANICLE_DSN=http://KEY@127.0.0.1:8471/1 cargo run -p panicle --example crash -- start
//! ```

use std::hint::black_box;
use std::time::Duration;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "handled-fault" {
        barrier::install();
    }
    if mode == "fault-in-abort-handler" {
        faulty_abort_handler::install();
    }
    let _guard = panicle::init(panicle::Options::from_env().with_release(panicle::release_name!()));
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
        "panic-in-drop" => worker::panic_in_drop(),
        "abort" | "fault-in-abort-handler" => worker::give_up(),
        "handled-fault" => {
            let value = barrier::write_protected(black_box(42));
            println!("resumed after the handled fault: {value}");
        }
        "start" => {
            // The records of earlier runs are recovered on a background
            // thread; a service would keep running, this one waits for them.
            panicle::flush(Duration::from_secs(20));
        }
        other => {
            eprintln!(
                "unknown mode {other:?}: use stack-overflow, thread-overflow, segv, null, abort, panic-in-drop, handled-fault, fault-in-abort-handler or start"
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
    pub fn give_up() {
        std::process::abort();
    }

    struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            panic!("cleanup failed while unwinding");
        }
    }

    #[inline(never)]
    pub fn panic_in_drop() {
        let _guard = Guard;
        panic!("order 17 is corrupt");
    }

    #[inline(never)]
    pub fn write_null(addr: usize) {
        // SAFETY: none; the point is to fault.
        unsafe { (addr as *mut u8).write_volatile(1) };
    }
}

/// A SIGABRT handler that itself faults (a buggy cleanup hook): the SDK's
/// handler chains to it and takes the nested SIGSEGV.
mod faulty_abort_handler {
    extern "C" fn on_abort(_: libc::c_int) {
        super::worker::write_null(std::hint::black_box(16));
    }

    pub fn install() {
        // SAFETY: a handler of the right kind.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_abort as *const () as usize;
            libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
        }
    }
}

/// A write barrier as a GC has one: a page kept read-only, and a SIGSEGV
/// handler that makes it writable and lets the faulting write run again.
mod barrier {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static PAGE: AtomicUsize = AtomicUsize::new(0);
    const SIZE: usize = 4096;

    extern "C" fn on_fault(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let page = PAGE.load(Ordering::SeqCst);
        // SAFETY: the kernel's siginfo; mprotect on our own mapping.
        let addr = unsafe { (*info).si_addr() } as usize;
        if addr >= page && addr < page + SIZE {
            unsafe {
                libc::mprotect(
                    page as *mut libc::c_void,
                    SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
        } else {
            // Not ours: die the default way.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            }
        }
    }

    /// Maps the read-only page and installs the handler (before `init`).
    pub fn install() {
        // SAFETY: a fresh anonymous mapping and a handler of the right kind.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            PAGE.store(page as usize, Ordering::SeqCst);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
        }
    }

    /// Writes into the protected page: faults once, then succeeds.
    #[inline(never)]
    pub fn write_protected(value: u8) -> u8 {
        let page = PAGE.load(Ordering::SeqCst) as *mut u8;
        // SAFETY: our mapping; the first write faults and the handler
        // makes the page writable.
        unsafe {
            page.write_volatile(value);
            page.read_volatile()
        }
    }
}
