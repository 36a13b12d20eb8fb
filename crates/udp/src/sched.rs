//! The scheduling policy of the calling thread (sched(7)), for threads whose wake-up
//! latency matters: a media forwarder woken by a packet on a busy machine otherwise
//! waits behind other work for a CPU.
//!
//! What it does: sets and reads the calling thread's policy (`SCHED_OTHER`,
//! `SCHED_BATCH`, `SCHED_IDLE`, `SCHED_FIFO`, `SCHED_RR`) and its priority: the nice
//! value for the first two (`setpriority` on the thread id, which Linux applies to
//! that thread alone), the real-time priority for the last two. What it does not:
//! decide whether a thread should be real-time, or get the privilege for it (raising a
//! priority needs `CAP_SYS_NICE` or `RLIMIT_RTPRIO`/`RLIMIT_NICE`; the error says so).
#![allow(unsafe_code)]

use std::io;

/// A Linux scheduling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`, the default; priority is the nice value (-20 to 19).
    Normal,
    /// `SCHED_BATCH`; priority is the nice value.
    Batch,
    /// `SCHED_IDLE`; no priority.
    Idle,
    /// `SCHED_FIFO`; priority 1 to 99.
    Fifo,
    /// `SCHED_RR`; priority 1 to 99.
    RoundRobin,
}

impl Policy {
    fn raw(self) -> libc::c_int {
        match self {
            Policy::Normal => libc::SCHED_OTHER,
            Policy::Batch => libc::SCHED_BATCH,
            Policy::Idle => libc::SCHED_IDLE,
            Policy::Fifo => libc::SCHED_FIFO,
            Policy::RoundRobin => libc::SCHED_RR,
        }
    }

    fn from_raw(raw: libc::c_int) -> Option<Policy> {
        // Reads may carry SCHED_RESET_ON_FORK; it is not a policy of its own.
        match raw & !libc::SCHED_RESET_ON_FORK {
            libc::SCHED_OTHER => Some(Policy::Normal),
            libc::SCHED_BATCH => Some(Policy::Batch),
            libc::SCHED_IDLE => Some(Policy::Idle),
            libc::SCHED_FIFO => Some(Policy::Fifo),
            libc::SCHED_RR => Some(Policy::RoundRobin),
            _ => None,
        }
    }

    fn is_realtime(self) -> bool {
        matches!(self, Policy::Fifo | Policy::RoundRobin)
    }
}

/// Puts the calling thread under `policy` with `priority` (see [`Policy`]). A
/// real-time thread gets `SCHED_RESET_ON_FORK`, so nothing it starts inherits the
/// policy by accident. On error the thread keeps what it had.
pub fn set_thread_scheduling(policy: Policy, priority: i32) -> io::Result<()> {
    let (param_priority, nice) = if policy.is_realtime() {
        (priority, None)
    } else if policy == Policy::Idle {
        (0, None)
    } else {
        (0, Some(priority))
    };
    let flags = if policy.is_realtime() {
        libc::SCHED_RESET_ON_FORK
    } else {
        0
    };
    let param = libc::sched_param {
        sched_priority: param_priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for the call.
    if unsafe { libc::sched_setscheduler(0, policy.raw() | flags, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(nice) = nice {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // SAFETY: plain integer arguments; PRIO_PROCESS with a thread id is per-thread
        // on Linux.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The calling thread's policy and priority (nice value for `Normal`/`Batch`, 0 for
/// `Idle`, the real-time priority for `Fifo`/`RoundRobin`).
pub fn thread_scheduling() -> io::Result<(Policy, i32)> {
    // SAFETY: pid 0 is the calling thread.
    let raw = unsafe { libc::sched_getscheduler(0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let policy = Policy::from_raw(raw).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("unknown scheduling policy {raw}"),
        )
    })?;
    let priority = match policy {
        Policy::Fifo | Policy::RoundRobin => {
            let mut param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is valid and writable for the call.
            if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
                return Err(io::Error::last_os_error());
            }
            param.sched_priority
        }
        Policy::Idle => 0,
        Policy::Normal | Policy::Batch => {
            // getpriority may rightly return -1, so errors show only through errno.
            // SAFETY: errno is thread-local; gettid and getpriority take integers.
            unsafe {
                *libc::__errno_location() = 0;
                let nice = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
                if nice == -1 && *libc::__errno_location() != 0 {
                    return Err(io::Error::last_os_error());
                }
                nice
            }
        }
    };
    Ok((policy, priority))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process may raise priorities (`CAP_SYS_NICE`, bit 23 of the
    /// effective capabilities).
    fn may_raise_priority() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let caps = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        caps & (1 << 23) != 0
    }

    #[test]
    fn a_thread_takes_each_policy_and_reads_it_back() {
        // Its own thread, so the test harness's threads keep their scheduling.
        std::thread::spawn(|| {
            // Lowering one's own priority needs no privilege.
            set_thread_scheduling(Policy::Batch, 5).unwrap();
            assert_eq!(thread_scheduling().unwrap(), (Policy::Batch, 5));
            let fifo = set_thread_scheduling(Policy::Fifo, 3);
            if may_raise_priority() {
                fifo.unwrap();
                assert_eq!(thread_scheduling().unwrap(), (Policy::Fifo, 3));
                set_thread_scheduling(Policy::RoundRobin, 2).unwrap();
                assert_eq!(thread_scheduling().unwrap(), (Policy::RoundRobin, 2));
                set_thread_scheduling(Policy::Normal, -2).unwrap();
                assert_eq!(thread_scheduling().unwrap(), (Policy::Normal, -2));
            } else {
                let e = fifo.unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(thread_scheduling().unwrap(), (Policy::Batch, 5));
            }
            set_thread_scheduling(Policy::Idle, 0).unwrap();
            assert_eq!(thread_scheduling().unwrap(), (Policy::Idle, 0));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_priority_the_policy_does_not_have_is_refused() {
        std::thread::spawn(|| {
            let before = thread_scheduling().unwrap();
            let e = set_thread_scheduling(Policy::Fifo, 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            let e = set_thread_scheduling(Policy::RoundRobin, 100).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            assert_eq!(thread_scheduling().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
