//! The scheduling policy of the calling thread (sched(7)), for threads whose wake-up
//! latency matters: a media forwarder woken by a packet on a busy machine otherwise
//! waits behind other work for a CPU.
//!
//! What it does: sets and reads the calling thread's policy (`SCHED_OTHER`,
//! `SCHED_BATCH`, `SCHED_IDLE`, `SCHED_FIFO`, `SCHED_RR`) and its priority (the nice
//! value for the first two, the real-time priority for the last two), both in one
//! `sched_setattr(2)` on that thread alone. What it does not:
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

    #[cfg(test)]
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
}

/// `struct sched_attr` of sched_setattr(2), its first version (48 bytes, Linux
/// 3.14); libc has no wrapper for the call.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// `SCHED_FLAG_RESET_ON_FORK`.
const RESET_ON_FORK: u64 = 0x01;

/// Puts the calling thread under `policy` with `priority` (see [`Policy`]), policy
/// and priority in one `sched_setattr(2)`, so on error the thread keeps exactly what
/// it had. The thread also gets reset-on-fork, so nothing it starts inherits a raised
/// priority by accident.
pub fn set_thread_scheduling(policy: Policy, priority: i32) -> io::Result<()> {
    let (nice, rt_priority) = match policy {
        Policy::Fifo | Policy::RoundRobin => (0, u32::try_from(priority).unwrap_or(0)),
        Policy::Normal | Policy::Batch => (priority, 0),
        Policy::Idle => (0, 0),
    };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy.raw() as u32,
        flags: RESET_ON_FORK,
        nice,
        priority: rt_priority,
        runtime: 0,
        deadline: 0,
        period: 0,
    };
    // SAFETY: pid 0 is the calling thread; `attr` is a valid, initialised sched_attr
    // whose `size` field says how much of it the kernel may read; flags 0.
    let result =
        unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::from_ref(&attr), 0u32) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value.
pub fn thread_nice() -> io::Result<i32> {
    // getpriority may rightly return -1, so errors show only through errno.
    // SAFETY: errno is thread-local; gettid and getpriority take integers.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(nice)
    }
}

/// The calling thread's policy and priority (nice value for `Normal`/`Batch`, 0 for
/// `Idle`, the real-time priority for `Fifo`/`RoundRobin`).
#[cfg(test)]
fn thread_scheduling() -> io::Result<(Policy, i32)> {
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
        Policy::Normal | Policy::Batch => thread_nice()?,
    };
    Ok((policy, priority))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the kernel lets this process make a thread `SCHED_FIFO` at `priority`,
    /// asked with the plain `sched_setscheduler` on a throwaway thread: capabilities
    /// alone do not say (`RLIMIT_RTPRIO`, user namespaces, real-time cgroup budgets).
    pub(crate) fn realtime_allowed(priority: i32) -> bool {
        std::thread::spawn(move || {
            let param = libc::sched_param {
                sched_priority: priority,
            };
            // SAFETY: pid 0 is this throwaway thread; `param` is valid for the call.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_thread_takes_each_policy_and_reads_it_back() {
        let allowed = realtime_allowed(3);
        // Its own thread, so the test harness's threads keep their scheduling.
        std::thread::spawn(move || {
            // A nice value above the current one needs no privilege.
            let nice = (thread_nice().unwrap() + 2).min(19);
            set_thread_scheduling(Policy::Batch, nice).unwrap();
            assert_eq!(thread_scheduling().unwrap(), (Policy::Batch, nice));
            let fifo = set_thread_scheduling(Policy::Fifo, 3);
            if allowed {
                fifo.unwrap();
                assert_eq!(thread_scheduling().unwrap(), (Policy::Fifo, 3));
                set_thread_scheduling(Policy::RoundRobin, 2).unwrap();
                assert_eq!(thread_scheduling().unwrap(), (Policy::RoundRobin, 2));
                // Back to normal: allowed, since the flag stays set.
                set_thread_scheduling(Policy::Normal, nice).unwrap();
                assert_eq!(thread_scheduling().unwrap(), (Policy::Normal, nice));
            } else {
                let e = fifo.unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(thread_scheduling().unwrap(), (Policy::Batch, nice));
            }
            set_thread_scheduling(Policy::Idle, 0).unwrap();
            assert_eq!(thread_scheduling().unwrap(), (Policy::Idle, 0));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_refused_change_leaves_the_thread_as_it_was() {
        std::thread::spawn(|| {
            let before = thread_scheduling().unwrap();
            let e = set_thread_scheduling(Policy::Fifo, 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            let e = set_thread_scheduling(Policy::RoundRobin, 100).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
            assert_eq!(thread_scheduling().unwrap(), before);
            // A policy the thread may take with a nice value it may not: neither
            // applies (two separate calls would leave the policy changed).
            if !realtime_allowed(1) && before.1 > -20 {
                let e = set_thread_scheduling(Policy::Batch, -20).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(thread_scheduling().unwrap(), before);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn children_of_a_real_time_thread_start_normal() {
        let allowed = realtime_allowed(2);
        std::thread::spawn(move || {
            let child_policy = || {
                std::thread::spawn(|| thread_scheduling().unwrap().0)
                    .join()
                    .unwrap()
            };
            // A thread is a fork to the kernel. Reset-on-fork covers real-time policies
            // and negative nice values only: a batch thread's child is batch too.
            let nice = (thread_nice().unwrap() + 1).min(19);
            set_thread_scheduling(Policy::Batch, nice).unwrap();
            assert_eq!(child_policy(), Policy::Batch);
            if allowed {
                set_thread_scheduling(Policy::Fifo, 2).unwrap();
                assert_eq!(child_policy(), Policy::Normal);
            }
        })
        .join()
        .unwrap();
    }
}
