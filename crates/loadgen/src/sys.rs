//! The load generator's own system calls: the calling thread's CPU time and its
//! involuntary context switches, the kernel's clock tick rate (the unit of
//! `/proc/PID/stat` times), CPU affinity (the CPUs this process may run on; pinning
//! the calling thread to one of them), and the calling thread's timer slack (how late
//! the kernel may wake its sleeps).
//!
//! What it does not: sockets. Batched UDP (`recvmmsg`, `sendmmsg` with GSO, epoll,
//! receive buffers, the open-file limit) comes from `mediagate-udp`, the one copy of
//! that code the edge and the relay use too.
#![allow(unsafe_code)]

use std::time::Duration;

/// How many times the kernel's scheduler has taken the CPU from this thread to run
/// another task (`getrusage(RUSAGE_THREAD)`'s `ru_nivcsw`); `None` if the call fails.
pub(crate) fn thread_involuntary_switches() -> Option<u64> {
    // SAFETY: all-zero is a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writing for the duration of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (rc == 0).then(|| u64::try_from(usage.ru_nivcsw).unwrap_or(0))
}

/// CPU time (user + system) the calling thread has used.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writing for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`): how much later than
/// asked the kernel may end its sleeps (50 µs by default). Best effort: a refusal
/// leaves the default, which only makes the sleeps coarser.
pub(crate) fn set_timer_slack_ns(ns: u64) {
    let ns = libc::c_ulong::try_from(ns.max(1)).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
}

/// The clock tick rate `/proc/PID/stat` times are counted in (`sysconf(_SC_CLK_TCK)`),
/// or `None` if the kernel will not say.
pub(crate) fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&t| t > 0)
}

/// The CPUs the calling thread may run on (`sched_getaffinity`), in ascending order;
/// called from `main` before any pinning, the CPUs the process was given.
pub(crate) fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writing `size_of::<cpu_set_t>()` bytes for the call.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let setsize = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    // SAFETY: CPU_ISSET reads `set` in bounds (the index is below CPU_SETSIZE).
    Ok((0..setsize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpu` alone (`sched_setaffinity` on thread id 0).
pub(crate) fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    let setsize = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    if cpu >= setsize {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE, checked above, so the write is in bounds.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_counts_this_threads_work_only() {
        let t0 = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        let busy = thread_cpu_time().saturating_sub(t0);
        assert!(busy > Duration::ZERO);
        // A sleeping thread uses (almost) no CPU: wall time is not CPU time.
        let t1 = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu_time().saturating_sub(t1) < Duration::from_millis(25));
    }

    #[test]
    fn a_thread_pinned_to_an_allowed_cpu_runs_there() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![last]);
            // SAFETY: sched_getcpu has no memory effects.
            let now_on = unsafe { libc::sched_getcpu() };
            assert_eq!(usize::try_from(now_on).ok(), Some(last));
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(1 << 20).is_err());
    }

    #[test]
    fn clock_ticks_are_the_usual_hundred() {
        // Linux reports USER_HZ, 100 on every architecture it runs on today.
        assert_eq!(clock_ticks_per_second(), Some(100));
    }
}
