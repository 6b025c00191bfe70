//! The debug-info warm-up, once the debug info is loaded, runs in Linux's
//! idle scheduling class: what it does then (resolving one address of every
//! function) only makes later panics cheaper, and at normal priority it took
//! a core from a panicking thread for whole scheduler ticks (4 ms, seen with
//! `perf sched`) in the first few hundred milliseconds of a process.
//!
//! Only that thread: nothing waits for it without a bound (a panic that
//! needs the loader it holds gives up after a deadline). The sender and
//! crash-record recovery keep their priority: the exit waits for them, and
//! an idle-class thread on a machine with other work does not run for
//! hundreds of milliseconds (measured: exits of 140–250 ms instead of 7).

/// Moves the calling thread to the idle scheduling class (`SCHED_IDLE`),
/// else lowers its nice level by 10 (at most to 19). Linux only: elsewhere,
/// and when both calls fail, the thread keeps its priority.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls about this thread only: on Linux, pid 0
    // for `sched_setscheduler` and a tid for `setpriority` name one thread.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 {
            return;
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            return;
        }
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, (nice + 10).min(19));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_lowered_thread_leaves_the_cores_to_the_service() {
        // SAFETY: queries about the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let parent = policy();
        let child = std::thread::spawn(move || {
            super::lower_priority();
            policy()
        })
        .join()
        .unwrap();
        assert_eq!(child, libc::SCHED_IDLE);
        assert_eq!(policy(), parent, "the caller's thread only");
    }
}
