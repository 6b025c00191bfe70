//! The signal handler (Linux). Everything here runs inside a handler for a
//! crashing process, so it only makes async-signal-safe calls (`openat`,
//! `write`, `renameat`, `unlinkat`, `sigaction`, `raise`, `pthread_sigmask`,
//! `clock_gettime`, `prctl`, `nanosleep`) and touches nothing that allocates
//! or locks. All it needs was prepared at init: the spool directory, already
//! open, and the record's static lines.
//!
//! One exception to strict async-signal-safety, chosen knowingly: the stack
//! is walked with `_Unwind_Backtrace` (libgcc, through
//! `backtrace::trace_unsynchronized`), which is what most crash reporters
//! do. It allocates nothing once warmed up (init walks a stack first), but it
//! finds unwind tables through `dl_iterate_phdr` on glibc older than 2.35,
//! which takes the dynamic loader's lock: a crash inside `dlopen` on another
//! thread can hang the walk. A frame-pointer walk would be safe but Rust
//! omits frame pointers by default, so it would find nothing. The
//! interrupted `pc` is written before the walk, so even a walk that dies
//! leaves the crashing instruction on record.
//!
//! The order of events:
//! 1. The first thread to take a signal writes the head of the record (the
//!    signal, `pc`, pid, tid, time) as `.signal-<pid>-<tid>.tmp`, renames it
//!    `signal-<time>-<pid>-<tid>.crash` at once, then writes the stack walk
//!    and the static lines through the same descriptor, ending with `end`.
//!    A second fault while handling (the same signal is blocked, so the
//!    kernel kills the process outright) leaves a record without `end`
//!    under its final name, which recovery ships as far as it goes.
//! 2. SIGABRT gets its previous disposition back, then the handler installed
//!    before ours runs (std's prints `thread 'x' has overflowed its stack`
//!    and aborts for an overflow, or restores the default and returns). Its
//!    abort then ends the process at once, on std's small alternate stack,
//!    without a second handler frame on it.
//! 3. If that handler returned without taking its registration back, for a
//!    fault the kernel raised, it dealt with the fault (a JIT, a GC's write
//!    barrier): the record is deleted, SIGABRT is ours again, the thread
//!    resumes.
//! 4. Otherwise the default disposition is restored and the signal raised
//!    again (and unblocked): the process dies by it, as the shell and the
//!    orchestrator expect. A signal taken while handling another (a fault in
//!    a chained handler) ends the process by the first one.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use libc::{c_int, c_void, siginfo_t};

use super::record::{self, Dynamic, Sink};

/// The signals that end a process without a panic.
pub const SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Most return addresses a record keeps (the handler's few frames included).
pub const MAX_FRAMES: usize = 128;

/// Size of the alternate signal stack given to the thread calling `init`
/// when it has none or a smaller one. std gives each thread it starts
/// `max(SIGSTKSZ, AT_MINSIGSTKSZ)` (8 KiB on x86_64), of which the kernel's
/// signal frame takes up to 3.5 KiB with AVX-512 state: the walk fits, with
/// less room than here.
const ALT_STACK_SIZE: usize = 64 * 1024;

struct Installed {
    /// The spool directory, opened at init (`openat` needs no path).
    dir_fd: c_int,
    /// The record's lines known at init (executable, modules, resource).
    static_part: Box<[u8]>,
    /// The dispositions found at install time, per entry of `SIGNALS`.
    previous: [libc::sigaction; SIGNALS.len()],
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
/// The thread writing a record (0: none).
static HANDLING_TID: AtomicI32 = AtomicI32::new(0);
/// A record is written under its temporary name and not yet renamed.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The signal the writing thread took first: a nested one (a fault inside
/// the handler chain) still ends the process by this one.
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// A record of this handling is in place under its final name.
static FINAL: AtomicBool = AtomicBool::new(false);
static PENDING_NANOS: AtomicU64 = AtomicU64::new(0);

/// Installs the handlers; the record goes to `dir`. Returns false (and
/// installs nothing) when the directory cannot be opened or handlers were
/// installed before.
pub fn install(dir: &Path, static_part: Vec<u8>) -> io::Result<bool> {
    if INSTALLED.get().is_some() {
        return Ok(false);
    }
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated path; the descriptor is kept for the life of
    // the process (close-on-exec).
    let dir_fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir_fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed `sigaction`s are valid; `sigaction` with a null new
    // action only reads the current one.
    let mut previous: [libc::sigaction; SIGNALS.len()] = unsafe { std::mem::zeroed() };
    for (sig, old) in SIGNALS.iter().zip(previous.iter_mut()) {
        unsafe { libc::sigaction(*sig, std::ptr::null(), old) };
    }
    let installed = Installed {
        dir_fd,
        static_part: static_part.into_boxed_slice(),
        previous,
    };
    if INSTALLED.set(installed).is_err() {
        // SAFETY: our own descriptor, unused.
        unsafe { libc::close(dir_fd) };
        return Ok(false);
    }
    ensure_alt_stack();
    warm_unwinder();
    let action = our_action();
    for sig in SIGNALS {
        // SAFETY: installs our handler.
        unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
    }
    Ok(true)
}

/// Gives this thread (the one calling `init`, usually `main`) an alternate
/// signal stack of `ALT_STACK_SIZE` unless it has one at least that large.
/// The mapping is leaked on purpose: the stack must outlive every signal.
fn ensure_alt_stack() {
    // SAFETY: sigaltstack with a null new stack only reads; the new stack is
    // a fresh private mapping with a guard page below it.
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut current) != 0 {
            return;
        }
        let enabled = current.ss_flags & libc::SS_DISABLE == 0;
        if (enabled && current.ss_size >= ALT_STACK_SIZE)
            || current.ss_flags & libc::SS_ONSTACK != 0
        {
            return;
        }
        let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
        let map = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_SIZE + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if map == libc::MAP_FAILED {
            return;
        }
        libc::mprotect(map, page, libc::PROT_NONE);
        let stack = libc::stack_t {
            ss_sp: map.cast::<u8>().add(page).cast(),
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        libc::sigaltstack(&stack, std::ptr::null_mut());
    }
}

/// Walks a stack once so the unwinder's one-time setup (its lookup caches)
/// happens here, not inside the handler.
fn warm_unwinder() {
    let mut n = 0usize;
    // SAFETY: see `capture_addresses` in `symbolize`.
    unsafe {
        backtrace::trace_unsynchronized(|_| {
            n += 1;
            n < 8
        })
    };
    std::hint::black_box(n);
}

fn gettid() -> i32 {
    // SAFETY: a syscall without arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Writes to a raw descriptor through a small stack buffer.
struct FdSink {
    fd: c_int,
    buf: [u8; 256],
    len: usize,
}

impl FdSink {
    fn flush(&mut self) {
        let mut at = 0;
        while at < self.len {
            // SAFETY: the initialized part of our buffer.
            let n = unsafe {
                libc::write(
                    self.fd,
                    self.buf[at..self.len].as_ptr().cast(),
                    self.len - at,
                )
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n <= 0 {
                break;
            }
            at += n as usize;
        }
        self.len = 0;
    }
}

impl Sink for FdSink {
    fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }
}

/// A file name in a stack buffer, NUL-terminated for `openat`/`renameat`.
struct Name {
    buf: [u8; 96],
    len: usize,
}

impl Name {
    fn new() -> Name {
        Name {
            buf: [0; 96],
            len: 0,
        }
    }
    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        // Leaves room for the NUL; the parts are bounded, so nothing is cut.
        let n = bytes.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }
    fn num(&mut self, n: i64) -> &mut Self {
        let mut b = [0u8; 20];
        self.push(record::dec(n, &mut b))
    }
    fn ptr(&mut self) -> *const libc::c_char {
        self.buf[self.len] = 0;
        self.buf.as_ptr().cast()
    }
}

fn tmp_name(pid: i32, tid: i32) -> Name {
    let mut name = Name::new();
    name.push(b".signal-")
        .num(pid.into())
        .push(b"-")
        .num(tid.into())
        .push(b".tmp");
    name
}

fn final_name(nanos: u64, pid: i32, tid: i32) -> Name {
    let mut name = Name::new();
    name.push(super::RECORD_PREFIX.as_bytes())
        .num(nanos as i64)
        .push(b"-")
        .num(pid.into())
        .push(b"-")
        .num(tid.into())
        .push(super::RECORD_SUFFIX.as_bytes());
    name
}

fn now_ns() -> u64 {
    // SAFETY: clock_gettime into a local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The interrupted thread's program counter and stack pointer.
///
/// # Safety
/// `ctx` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
unsafe fn pc_sp(ctx: *mut c_void) -> (usize, usize) {
    if ctx.is_null() {
        return (0, 0);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: per the contract, a valid ucontext_t.
        let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
        let regs = &uc.uc_mcontext.gregs;
        (
            regs[libc::REG_RIP as usize] as usize,
            regs[libc::REG_RSP as usize] as usize,
        )
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: per the contract, a valid ucontext_t.
        let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
        (uc.uc_mcontext.pc as usize, uc.uc_mcontext.sp as usize)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        (0, 0)
    }
}

/// Writes the record: its head under the temporary name, renamed to the
/// final one before the stack walk, the rest appended. Its own (never inlined)
/// frame, so its buffers are off the stack before the previous handler
/// runs on the same small alternate stack.
#[inline(never)]
fn write_record(inst: &Installed, sig: c_int, info: *mut siginfo_t, ctx: *mut c_void, tid: i32) {
    // SAFETY: getpid has no preconditions; the kernel hands valid `info`.
    let pid = unsafe { libc::getpid() };
    let (code, fault_address) = if info.is_null() {
        (0, 0)
    } else {
        // SAFETY: a valid siginfo_t from the kernel.
        unsafe { ((*info).si_code, (*info).si_addr() as usize) }
    };
    // SAFETY: ctx is the handler's third argument.
    let (pc, sp) = unsafe { pc_sp(ctx) };
    let time_ns = now_ns();
    let mut tmp = tmp_name(pid, tid);
    // SAFETY: a NUL-terminated name relative to our open directory.
    let fd = unsafe {
        libc::openat(
            inst.dir_fd,
            tmp.ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return;
    }
    PENDING_NANOS.store(time_ns, Ordering::SeqCst);
    PENDING.store(true, Ordering::SeqCst);
    let mut thread = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL-terminated.
    unsafe { libc::prctl(libc::PR_GET_NAME, thread.as_mut_ptr()) };
    let thread_len = thread.iter().position(|&b| b == 0).unwrap_or(16);
    let mut sink = FdSink {
        fd,
        buf: [0; 256],
        len: 0,
    };
    // The signal and the interrupted pc on disk first, in case the walk
    // below dies.
    record::write_head(
        &mut sink,
        &Dynamic {
            signal: sig,
            code,
            fault_address,
            pc,
            sp,
            pid,
            tid,
            thread: &thread[..thread_len],
            time_ns,
        },
    );
    sink.flush();
    // From here the record is the spool's: a fault in the walk below (or
    // anything after it) leaves it under its final name, cut short.
    finalize(inst, tid);
    let mut frames = [0usize; MAX_FRAMES];
    let mut n = 0usize;
    // SAFETY: see the module's notes on `_Unwind_Backtrace`.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            frames[n] = frame.ip() as usize;
            n += 1;
            n < MAX_FRAMES
        })
    };
    record::write_frames(&mut sink, &frames[..n]);
    sink.put(&inst.static_part);
    sink.put(record::END);
    sink.flush();
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
}

/// Gives the pending record its final name (a no-op once it has it): from
/// now on the next start ships it, complete or not.
fn finalize(inst: &Installed, tid: i32) {
    if !PENDING.swap(false, Ordering::SeqCst) {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut from = tmp_name(pid, tid);
    let mut to = final_name(PENDING_NANOS.load(Ordering::SeqCst), pid, tid);
    // SAFETY: NUL-terminated names relative to our open directory.
    if unsafe { libc::renameat(inst.dir_fd, from.ptr(), inst.dir_fd, to.ptr()) } == 0 {
        FINAL.store(true, Ordering::SeqCst);
    }
}

/// Deletes the record: the previous handler dealt with the fault.
fn discard(inst: &Installed, tid: i32) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if PENDING.swap(false, Ordering::SeqCst) {
        let mut name = tmp_name(pid, tid);
        // SAFETY: a NUL-terminated name relative to our open directory.
        unsafe { libc::unlinkat(inst.dir_fd, name.ptr(), 0) };
    }
    if FINAL.swap(false, Ordering::SeqCst) {
        let mut name = final_name(PENDING_NANOS.load(Ordering::SeqCst), pid, tid);
        // SAFETY: as above.
        unsafe { libc::unlinkat(inst.dir_fd, name.ptr(), 0) };
    }
}

/// Sets SIGABRT's disposition: the one found at install, or ours.
fn set_abort_disposition(inst: &Installed, ours: bool) {
    let Some(i) = SIGNALS.iter().position(|&s| s == libc::SIGABRT) else {
        return;
    };
    // SAFETY: a disposition read by `sigaction` at install, or ours as
    // installed.
    unsafe {
        if ours {
            libc::sigaction(libc::SIGABRT, &our_action(), std::ptr::null_mut());
        } else {
            libc::sigaction(libc::SIGABRT, &inst.previous[i], std::ptr::null_mut());
        }
    }
}

/// Our handler's disposition: SA_SIGINFO for its signature, SA_ONSTACK so
/// a stack overflow still has a stack.
fn our_action() -> libc::sigaction {
    // SAFETY: a zeroed sigaction is valid; the mask is emptied.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        action
    }
}

/// Restores the default disposition, raises the signal again and unblocks
/// it: the process dies by it here. (Waiting for the handler to return is
/// not enough when `sig` is not the signal being handled: a nested handler
/// returns into the outer one, where `sig` is still blocked.)
fn die_by(sig: c_int) {
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; the set is
    // a local.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
        libc::raise(sig);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Calls the handler installed before ours, if it is a function. True
/// when it returned and left our handler registered: it took care of the
/// signal (std's overflow handler instead aborts, or restores the default).
fn chain(inst: &Installed, sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) -> bool {
    let Some(i) = SIGNALS.iter().position(|&s| s == sig) else {
        return false;
    };
    let previous = &inst.previous[i];
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return false;
    }
    // SAFETY: the previous disposition was a handler function of the kind
    // its flags say; we call it the way the kernel would have.
    unsafe {
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) = std::mem::transmute(handler);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(c_int) = std::mem::transmute(handler);
            f(sig);
        }
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut now);
        now.sa_sigaction == on_signal as *const () as usize
    }
}

extern "C" fn on_signal(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: errno is thread-local; restored so the interrupted code (if
    // it resumes) sees its own.
    let errno = unsafe { *libc::__errno_location() };
    handle(sig, info, ctx);
    unsafe { *libc::__errno_location() = errno };
}

/// What this thread is to the record being written.
enum Role {
    /// Writes it.
    First,
    /// Came back while writing it (a second signal on the same thread).
    Reentered,
    /// Another thread writes it.
    Other,
}

fn handle(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    let Some(inst) = INSTALLED.get() else {
        die_by(sig);
        return;
    };
    let tid = gettid();
    // Another thread recording the process's death: wait for it (bounded;
    // it ends the process), then go on without a record.
    let mut role = Role::Other;
    for _ in 0..300 {
        match HANDLING_TID.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                role = Role::First;
                break;
            }
            Err(t) if t == tid => {
                role = Role::Reentered;
                break;
            }
            Err(_) => {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                // SAFETY: sleeps; nothing is written (null remainder).
                unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
            }
        }
    }
    match role {
        Role::First => FIRST_SIGNAL.store(sig, Ordering::SeqCst),
        Role::Reentered => {
            // Another signal while this thread handles one (the same one is
            // blocked: the kernel kills at once): a fault in the stack walk
            // or in a chained handler, e.g. inside the SIGABRT handler found
            // at install. What was written is the record; the process dies
            // by the signal it took first, as the shell would have seen it.
            finalize(inst, tid);
            if !chain(inst, sig, info, ctx) {
                let first = FIRST_SIGNAL.load(Ordering::SeqCst);
                die_by(if first != 0 { first } else { sig });
            }
            return;
        }
        Role::Other => {
            if !chain(inst, sig, info, ctx) {
                die_by(sig);
            }
            return;
        }
    }
    // An abort on a thread that is panicking is the end of that panic
    // (`panic = "abort"`, a panic while panicking): the hook sent it.
    let of_a_panic = sig == libc::SIGABRT && std::thread::panicking();
    if !of_a_panic {
        write_record(inst, sig, info, ctx, tid);
        finalize(inst, tid);
    }
    if sig != libc::SIGABRT {
        set_abort_disposition(inst, false);
    }
    // SAFETY: a valid siginfo_t from the kernel when not null.
    let by_kernel = !info.is_null() && unsafe { (*info).si_code } > 0;
    if chain(inst, sig, info, ctx) && by_kernel && sig != libc::SIGABRT {
        discard(inst, tid);
        set_abort_disposition(inst, true);
        FIRST_SIGNAL.store(0, Ordering::SeqCst);
        HANDLING_TID.store(0, Ordering::SeqCst);
        return;
    }
    die_by(sig);
}
