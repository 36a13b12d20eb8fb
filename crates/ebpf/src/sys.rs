//! The two `bpf(2)` map commands aya 0.13 does not offer for hash maps, called
//! directly (attribute layouts from `union bpf_attr` in linux/bpf.h):
//! `BPF_MAP_LOOKUP_BATCH` (Linux 5.6) reads many entries per system call, and
//! `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps since Linux 5.14) reads an entry's last
//! value and removes it in one step. Also the `bind(2)` of a netlink socket to route
//! notification groups, which socket2 has no address type for.
//!
//! The program attaches through TCX links, which need Linux 6.6, so a kernel that
//! loads the fast path has both commands; their callers keep a slower way all the same
//! should one be refused (`FastPath::remove` reads, then removes; the relay's sync
//! reads entry by entry).
//!
//! What it does not: know the map's layout beyond the key and value types it is given
//! (they must match the map's key and value sizes, which the callers' `Pod` types do).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` for the element commands (`map_fd`, `key`, `value`, `flags`).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn fd_of(map: BorrowedFd<'_>) -> u32 {
    u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX)
}

/// # Safety
/// `attr` must be the command's attribute struct, and every pointer in it valid for
/// what the kernel reads or writes through it (the map's key and value sizes).
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    let size = std::mem::size_of::<A>();
    // SAFETY: the caller's contract; `attr` lives for the call and is `size` bytes.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Reads `key`'s value and removes the entry, atomically with respect to the program
/// (a datagram counted before the removal is in the value read; none is counted
/// after). `None`: no such entry.
pub(crate) fn lookup_and_delete<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    key: &K,
) -> io::Result<Option<V>> {
    let mut value = std::mem::MaybeUninit::<V>::zeroed();
    let mut attr = ElemAttr {
        map_fd: fd_of(map),
        key: std::ptr::from_ref(key) as u64,
        value: value.as_mut_ptr() as u64,
        ..ElemAttr::default()
    };
    // SAFETY: key and value point to a K and a V, the map's key and value sizes (the
    // callers' types mirror the map's), alive for the call.
    match unsafe { bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr) } {
        // SAFETY: the kernel wrote a whole value; V is Pod (any byte pattern is valid),
        // and it was zeroed before in any case.
        Ok(_) => Ok(Some(unsafe { value.assume_init() })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where a batch walk of a hash map resumes: the kernel's bucket index.
pub(crate) type BatchToken = u32;

/// One `BPF_MAP_LOOKUP_BATCH` call: fills `keys` and `values` (of equal length) with
/// up to that many entries, starting at `from` (`None`: the map's start). Returns how
/// many were filled and where the next call starts (`None`: the walk is complete).
///
/// A bucket holding more entries than the buffers is refused with `ENOSPC` when
/// nothing was filled: the caller retries with larger buffers.
pub(crate) fn lookup_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    from: Option<BatchToken>,
    keys: &mut [K],
    values: &mut [V],
) -> io::Result<(usize, Option<BatchToken>)> {
    let room = keys.len().min(values.len());
    let in_batch = from.unwrap_or(0);
    let mut out_batch: BatchToken = 0;
    let mut attr = BatchAttr {
        in_batch: if from.is_some() {
            std::ptr::from_ref(&in_batch) as u64
        } else {
            0
        },
        out_batch: std::ptr::from_mut(&mut out_batch) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: u32::try_from(room).unwrap_or(u32::MAX),
        map_fd: fd_of(map),
        ..BatchAttr::default()
    };
    // SAFETY: keys and values hold `count` K and V each (the map's key and value
    // sizes); the tokens are u32, the size the hash map's batch walk reads and
    // writes; all alive for the call.
    let result = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
    // The kernel writes the count filled even when it ends the walk with ENOENT.
    let filled = usize::try_from(attr.count).unwrap_or(0).min(room);
    match result {
        Ok(_) => Ok((filled, Some(out_batch))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((filled, None)),
        Err(e) => Err(e),
    }
}

/// Binds the netlink socket `socket` to the multicast groups `groups` (a mask of
/// `RTMGRP_*`), with a port id the kernel picks.
pub(crate) fn bind_netlink(socket: &socket2::Socket, groups: u32) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain integers; all zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: addr is a sockaddr_nl of `len` bytes, alive for the call.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
