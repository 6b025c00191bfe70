//! The SDK's background threads (the sender, crash-record recovery) run in
//! Linux's idle scheduling class: on a busy machine a panicking thread that
//! shares the cores with them must not wait a scheduler slice (4 ms and
//! more, measured with `perf sched`) behind the SDK's own work, which can
//! always wait. An idle-class thread still runs when a core is free and,
//! on a machine saturated by the service, gets a small share (its weight is
//! 3 against a normal thread's 1024): the spool holds events meanwhile.

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
    fn a_background_thread_leaves_the_cores_to_the_service() {
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
