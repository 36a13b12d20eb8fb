//! Sending from many sockets in one system call (Linux `io_uring`): each item is one
//! socket's run of datagrams to one destination, and a whole list of items goes to the
//! kernel with one `io_uring_enter`.
//!
//! What it does: [`ManySender::send`] turns every item into `sendmsg` requests, one per
//! message, grouped into UDP GSO messages by the rules of [`crate::BatchSender`] while
//! the kernel takes GSO; an item's requests are linked, so they go out in order and a
//! failure (a full socket buffer: `EAGAIN`, as every request is `MSG_DONTWAIT`) cancels
//! the rest of that item and no other. It sends from the caller's buffers, copies no
//! payload, and returns with every request completed, so the buffers are free again.
//! It reports per item how many datagrams went out in order ([`ItemSent`]); the caller
//! resumes an item that stopped early with [`crate::BatchSender`] once its socket is
//! writable.
//!
//! Why: a cache playout group sends each batch to each viewer from the viewer's own
//! socket (the port its SETUP answer named, which a NAT may filter on), so `sendmmsg`
//! cannot carry more than one viewer; with this, a batch to every viewer costs one
//! system call instead of one per viewer and track.
//!
//! What it does not: own the sockets, wait for writability, or run on kernels older
//! than 6.1; [`ManySender::new`] fails there (or where io_uring is disabled) and the
//! caller falls back to a `sendmmsg` per item.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types::Fd, IoUring};

use crate::sys::sockaddr;
use crate::{gso_run_end, is_per_destination_error, sys};

/// Submission queue entries: requests per `io_uring_enter`, at most.
const ENTRIES: u32 = 512;

/// One item: `packets`, in order, to `dest` from the socket `fd`.
#[derive(Debug, Clone, Copy)]
pub struct SendItem<'a> {
    pub fd: RawFd,
    pub dest: SocketAddr,
    pub packets: &'a [&'a [u8]],
}

/// What became of one item.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ItemSent {
    /// Datagrams of the item that went out, counted from its first (all of them when
    /// nothing failed).
    pub datagrams: usize,
    /// Its socket's buffer was full: the caller waits for writability and resumes the
    /// item at `datagrams`.
    pub would_block: bool,
    /// The kernel refused the destination (unreachable and the like) for this many
    /// datagrams; they are dropped, not to be resent.
    pub refused: usize,
}

/// One request as built: plain data until [`ManySender::flush`] wires the pointers.
struct Req {
    item: usize,
    fd: RawFd,
    addr: usize,
    iov_start: usize,
    iov_len: usize,
    segment: Option<u16>,
    /// Datagrams in this request.
    datagrams: usize,
    /// More requests of the same item follow (linked).
    linked: bool,
}

/// Space for one `UDP_SEGMENT` control message, 8-byte aligned as cmsghdr needs.
type CmsgBuf = [u64; 4];

/// A ring for sending; not shared between threads (keep one per thread).
pub struct ManySender {
    // Dropped first: every request has completed by the time `send` returns, so the
    // scratch below is never referenced by the kernel after that.
    ring: IoUring,
    gso: bool,
    reqs: Vec<Req>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    cmsgs: Vec<CmsgBuf>,
    hdrs: Vec<libc::msghdr>,
    /// Per item: a request of it failed (its later ones were cancelled).
    stopped: Vec<bool>,
    /// System calls made so far (for tests and reports).
    syscalls: u64,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` are written and used only inside
// `flush`, which borrows the payloads and returns after every request completed;
// between calls they are stale data that nothing reads.
unsafe impl Send for ManySender {}

impl std::fmt::Debug for ManySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManySender")
            .field("gso", &self.gso)
            .field("syscalls", &self.syscalls)
            .finish()
    }
}

impl ManySender {
    /// A sender for this thread. Fails where io_uring is unavailable (disabled,
    /// filtered by seccomp, or a kernel older than 6.1); callers fall back to one
    /// `sendmmsg` per item.
    pub fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_submit_all()
            .setup_coop_taskrun()
            .setup_cqsize(ENTRIES * 2)
            .build(ENTRIES)?;
        Ok(Self {
            ring,
            gso: sys::gso_supported(),
            reqs: Vec::new(),
            iovs: Vec::new(),
            addrs: Vec::new(),
            cmsgs: Vec::new(),
            hdrs: Vec::new(),
            stopped: Vec::new(),
            syscalls: 0,
        })
    }

    /// `io_uring_enter` calls made so far.
    pub fn syscalls(&self) -> u64 {
        self.syscalls
    }

    /// Sends every item, each from its own socket; `sent` gets one entry per item
    /// (cleared first). Errors only when the ring itself fails; what happens to one
    /// item is in its entry.
    pub fn send(&mut self, items: &[SendItem<'_>], sent: &mut Vec<ItemSent>) -> io::Result<()> {
        sent.clear();
        sent.resize(items.len(), ItemSent::default());
        self.clear();
        for (k, item) in items.iter().enumerate() {
            let msgs = self.messages_of(item.packets);
            if msgs > ENTRIES as usize {
                // Longer than one submission: never expected from a batch of
                // at most a few hundred packets; sent as far as one submission goes.
                sent[k].would_block = true;
            }
            if self.reqs.len() + msgs.min(ENTRIES as usize) > ENTRIES as usize {
                self.flush(sent)?;
            }
            self.push_item(k, item);
        }
        self.flush(sent)
    }

    /// Messages `packets` take (GSO runs while GSO is on).
    fn messages_of(&self, packets: &[&[u8]]) -> usize {
        if !self.gso {
            return packets.len();
        }
        let (mut p, mut n) = (0, 0);
        while p < packets.len() {
            p = gso_run_end(packets, |pk| pk.len(), p);
            n += 1;
        }
        n
    }

    fn clear(&mut self) {
        self.reqs.clear();
        self.iovs.clear();
        self.addrs.clear();
    }

    /// Queues the requests of item `k` (at most one submission's worth).
    fn push_item(&mut self, k: usize, item: &SendItem<'_>) {
        if item.packets.is_empty() {
            return;
        }
        let (sa, len) = sockaddr(item.dest);
        self.addrs.push((sa, len));
        let addr = self.addrs.len() - 1;
        let first = self.reqs.len();
        let mut p = 0;
        while p < item.packets.len() && self.reqs.len() < ENTRIES as usize {
            let end = if self.gso {
                gso_run_end(item.packets, |pk| pk.len(), p)
            } else {
                p + 1
            };
            let iov_start = self.iovs.len();
            for pk in &item.packets[p..end] {
                self.iovs.push(libc::iovec {
                    iov_base: pk.as_ptr() as *mut libc::c_void,
                    iov_len: pk.len(),
                });
            }
            let segment = (end - p > 1)
                .then(|| u16::try_from(item.packets[p].len()).ok())
                .flatten();
            self.reqs.push(Req {
                item: k,
                fd: item.fd,
                addr,
                iov_start,
                iov_len: end - p,
                segment,
                datagrams: end - p,
                linked: true,
            });
            p = end;
        }
        if let Some(last) = self.reqs.last_mut() {
            last.linked = false;
        }
        debug_assert!(self.reqs.len() > first);
    }

    /// Submits the queued requests, waits for all of them to complete and adds the
    /// results to `sent`.
    fn flush(&mut self, sent: &mut [ItemSent]) -> io::Result<()> {
        if self.reqs.is_empty() {
            return Ok(());
        }
        let n = self.reqs.len();
        if self.cmsgs.len() < n {
            self.cmsgs.resize(n, [0; 4]);
        }
        self.hdrs.clear();
        for (i, r) in self.reqs.iter().enumerate() {
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            let (ref addr, addr_len) = self.addrs[r.addr];
            h.msg_name = addr as *const _ as *mut libc::c_void;
            h.msg_namelen = addr_len;
            // SAFETY: iov_start..iov_start+iov_len is within `iovs` (pushed together).
            h.msg_iov = unsafe { self.iovs.as_mut_ptr().add(r.iov_start) };
            h.msg_iovlen = r.iov_len;
            if let Some(seg) = r.segment {
                let buf = &mut self.cmsgs[i];
                h.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
                // SAFETY: CMSG_SPACE only computes a size.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: msg_control points at `buf`, 32 bytes >= CMSG_SPACE(2) (24),
                // 8-byte aligned, so the first header and its 2 data bytes fit.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
                }
            }
            self.hdrs.push(h);
        }
        {
            let mut sq = self.ring.submission();
            for (i, r) in self.reqs.iter().enumerate() {
                let mut flags = squeue::Flags::empty();
                if r.linked {
                    flags |= squeue::Flags::IO_LINK;
                }
                let entry = opcode::SendMsg::new(Fd(r.fd), &self.hdrs[i])
                    .flags(libc::MSG_DONTWAIT as u32)
                    .build()
                    .flags(flags)
                    .user_data(i as u64);
                // SAFETY: every pointer the entry carries (`hdrs[i]` and through it
                // `addrs`, `iovs`, `cmsgs` and the caller's payloads) stays valid and
                // unmoved until every completion is reaped below.
                if unsafe { sq.push(&entry) }.is_err() {
                    // Cannot happen: at most ENTRIES requests are queued per flush.
                    return Err(io::Error::other("io_uring submission queue full"));
                }
            }
        }
        let mut done = 0;
        self.stopped.clear();
        self.stopped.resize(sent.len(), false);
        while done < n {
            match self.ring.submit_and_wait(n - done) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    // The kernel may still own requests: do not let the scratch go
                    // while it could read it. Waiting once more without submitting
                    // anything new collects what completes.
                    self.drain_after_error(n - done);
                    return Err(e);
                }
            }
            self.syscalls += 1;
            for cqe in self.ring.completion() {
                done += 1;
                let Some(r) = self.reqs.get(cqe.user_data() as usize) else {
                    continue;
                };
                let out = &mut sent[r.item];
                let res = cqe.result();
                if res >= 0 {
                    out.datagrams += r.datagrams;
                    continue;
                }
                let e = -res;
                if e == libc::ECANCELED || self.stopped[r.item] {
                    continue;
                }
                self.stopped[r.item] = true;
                if (e == libc::EIO || e == libc::EINVAL) && r.segment.is_some() {
                    // The kernel or device does not do GSO here: never again, and the
                    // caller resends the rest without it.
                    self.gso = false;
                    out.would_block = true;
                } else if e == libc::EAGAIN || e == libc::ENOBUFS {
                    out.would_block = true;
                } else if is_per_destination_error(e) {
                    // The destination is refused: the rest of the item is dropped.
                    out.refused += self.reqs[cqe.user_data() as usize..]
                        .iter()
                        .filter(|q| q.item == r.item)
                        .map(|q| q.datagrams)
                        .sum::<usize>();
                } else {
                    out.would_block = true;
                }
            }
        }
        self.clear();
        Ok(())
    }

    /// After a failed `io_uring_enter`: waits (bounded) for requests that went in.
    fn drain_after_error(&mut self, left: usize) {
        let mut left = left;
        for _ in 0..100 {
            if left == 0 {
                return;
            }
            let _ = self.ring.submitter().submit_and_wait(1);
            left = left.saturating_sub(self.ring.completion().count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// A sender, or a failure naming why this host cannot run these tests.
    fn sender() -> ManySender {
        ManySender::new().unwrap_or_else(|e| {
            panic!(
                "the io_uring send tests need io_uring and it is unavailable here: {e}; \
                 check /proc/sys/kernel/io_uring_disabled is 0 and that no seccomp filter \
                 refuses io_uring_setup"
            )
        })
    }

    fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s
    }

    /// Every datagram `r` holds now: (payload, source).
    fn received(r: &UdpSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        (0..want)
            .map(|_| {
                let (n, from) = r.recv_from(&mut buf).unwrap();
                (buf[..n].to_vec(), from)
            })
            .collect()
    }

    #[test]
    fn each_item_leaves_from_its_own_socket_in_order_with_one_call() {
        let mut s = sender();
        let socks: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let viewers: Vec<UdpSocket> = (0..3).map(|_| receiver()).collect();
        // A frame of equal-size packets and a shorter last one (one GSO message while
        // GSO is on), then packets of other sizes.
        let data: Vec<Vec<u8>> = (0..8u8)
            .map(|i| vec![i; if i < 4 { 1000 } else { 200 + usize::from(i) }])
            .collect();
        let packets: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let items: Vec<SendItem<'_>> = socks
            .iter()
            .zip(&viewers)
            .map(|(s, v)| SendItem {
                fd: s.as_raw_fd(),
                dest: v.local_addr().unwrap(),
                packets: &packets,
            })
            .collect();
        let mut sent = Vec::new();
        let before = s.syscalls();
        s.send(&items, &mut sent).unwrap();
        assert_eq!(s.syscalls() - before, 1, "one system call for every item");
        for (k, out) in sent.iter().enumerate() {
            assert_eq!(
                *out,
                ItemSent {
                    datagrams: 8,
                    would_block: false,
                    refused: 0
                },
                "item {k}"
            );
        }
        for (sock, v) in socks.iter().zip(&viewers) {
            let got = received(v, 8);
            for (i, (payload, from)) in got.iter().enumerate() {
                assert_eq!(*from, sock.local_addr().unwrap(), "from the item's socket");
                assert_eq!(payload, &data[i], "datagram {i} in order, whole");
            }
        }
    }

    #[test]
    fn a_refused_datagram_stops_only_its_own_item_and_drops_the_rest_of_it() {
        let mut s = sender();
        let (sa, sb) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let (a, b) = (receiver(), receiver());
        // Sizes all differ (one message each); the third is too large for UDP.
        let sizes = [300, 301, 70_000, 302, 303];
        let data: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![n as u8; n]).collect();
        let bad: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let good: Vec<&[u8]> = [&data[0], &data[1], &data[3]]
            .map(|d| d.as_slice())
            .to_vec();
        let items = [
            SendItem {
                fd: sa.as_raw_fd(),
                dest: a.local_addr().unwrap(),
                packets: &bad,
            },
            SendItem {
                fd: sb.as_raw_fd(),
                dest: b.local_addr().unwrap(),
                packets: &good,
            },
        ];
        let mut sent = Vec::new();
        s.send(&items, &mut sent).unwrap();
        assert_eq!(
            sent,
            vec![
                ItemSent {
                    datagrams: 2,
                    would_block: false,
                    refused: 3
                },
                ItemSent {
                    datagrams: 3,
                    would_block: false,
                    refused: 0
                }
            ]
        );
        let got = received(&a, 2);
        assert_eq!(got[0].0, data[0]);
        assert_eq!(got[1].0, data[1]);
        let mut buf = [0u8; 2048];
        a.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            a.recv_from(&mut buf).is_err(),
            "nothing after the refused datagram went out"
        );
        assert_eq!(received(&b, 3).len(), 3);
    }
}
