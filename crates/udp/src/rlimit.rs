//! The open-file limit a UDP-heavy process needs: a relay holds four sockets per
//! stream, so the usual soft limit of 1,024 stops it at about 250 streams (RTPproxy's
//! issue #75). What it does: raises the soft `RLIMIT_NOFILE` to the hard limit. What it
//! does not: raise the hard limit (that needs privileges and is the operator's call).
#![allow(unsafe_code)]

use std::io;

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in
/// force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` holds values the kernel just returned, soft raised to hard.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// The soft open-file limit in force (`None` if the kernel will not say).
pub(crate) fn nofile_soft() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_reaches_the_hard_one() {
        let soft = super::raise_nofile_limit().unwrap();
        assert!(soft >= 1024, "{soft}");
        assert_eq!(super::raise_nofile_limit().unwrap(), soft, "idempotent");
    }
}
