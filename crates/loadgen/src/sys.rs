//! The load generator's own system calls: the calling thread's CPU time and the
//! kernel's clock tick rate (the unit of `/proc/PID/stat` times).
//!
//! What it does not: sockets. Batched UDP (`recvmmsg`, `sendmmsg` with GSO, epoll,
//! receive buffers, the open-file limit) comes from `mediagate-udp`, the one copy of
//! that code the edge and the relay use too.
#![allow(unsafe_code)]

use std::time::Duration;

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

/// The clock tick rate `/proc/PID/stat` times are counted in (`sysconf(_SC_CLK_TCK)`),
/// or `None` if the kernel will not say.
pub(crate) fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&t| t > 0)
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
    fn clock_ticks_are_the_usual_hundred() {
        // Linux reports USER_HZ, 100 on every architecture it runs on today.
        assert_eq!(clock_ticks_per_second(), Some(100));
    }
}
