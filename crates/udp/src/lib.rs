//! Batched UDP I/O for mediagate's hot paths: few system calls for many datagrams.
//!
//! What it does: sends with `sendmmsg(2)`, one message per destination and run of
//! packets; where the kernel allows, each message uses UDP generic segmentation offload
//! (`UDP_SEGMENT`, Linux ≥ 4.18) so a whole video frame's packets to one viewer cost one
//! message. When the kernel refuses GSO (old kernel, or a device without checksum
//! offload answers `EIO`), the sender notices at run time and falls back to one message
//! per datagram, for good. Around it: [`RecvBatch`] (`recvmmsg(2)` with source
//! addresses and, opt-in, kernel receive timestamps: [`enable_timestamps`]),
//! [`Poller`] (level-triggered `epoll(7)`), [`set_recv_buffer`] and
//! [`raise_nofile_limit`]. This crate is the one home of those system calls: the edge,
//! the relay and the load generator all use it. It also holds the one pool of RTP/RTCP
//! port pairs ([`PortPool`], random with quarantine; sans-IO) that the edge and the
//! relay bind their media sockets from.
//!
//! The modules are private; the crate root re-exports what the edge, the relay and the
//! load generator call, and nothing else.
//!
//! What it does not: own sockets. It writes on a non-blocking socket the caller owns
//! and reports how far it got, so an async shell can wait for writability and resume.
//!
//! Why: on loopback the kernel charges each datagram's receive path to the sender, so
//! a fan-out to 1,000 viewers is dominated by per-datagram kernel cost; GSO turns N
//! datagrams into one trip down the stack until the segmentation point.

#![warn(unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

mod pktinfo;
mod poll;
mod port_pool;
mod recv;
mod rlimit;
mod sched;
mod sockbuf;
mod sys;
#[cfg(test)]
mod test_env;
mod timestamp;
mod twin;
mod uring;

pub use pktinfo::{enable_pktinfo, recv_pktinfo, send_pktinfo, LocalDest, Received};
pub use poll::{Events, Poller};
pub use port_pool::PortPool;
pub use recv::RecvBatch;
pub use rlimit::raise_nofile_limit;
pub use sched::{set_thread_scheduling, thread_nice, Policy};
pub use sockbuf::{set_recv_buffer, set_send_buffer};
pub use sys::KERNEL_MAX_BATCH;
pub use timestamp::enable_timestamps;
pub use twin::connected_twin;
pub use uring::{
    Drained, Event as RingEvent, RingOptions, Slot as RingSlot, UdpRing,
    MAX_TOKEN as RING_MAX_TOKEN,
};

/// The kernel's limit on segments in one GSO send (`UDP_MAX_SEGMENTS`).
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;
/// Largest GSO super-datagram payload we build (must stay below the 64 KiB IP limit).
pub(crate) const MAX_GSO_BYTES: usize = 65_000;

/// Splits a run of datagram sizes into groups one GSO message can carry: equal sizes,
/// optionally ending with one shorter datagram, at most [`MAX_GSO_SEGMENTS`] and
/// [`MAX_GSO_BYTES`]. Returns `(start, end)` index ranges covering every datagram in
/// order.
#[cfg(test)]
fn gso_runs(sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < sizes.len() {
        let end = gso_run_end(sizes, |&s| s, i);
        runs.push((i, end));
        i = end;
    }
    runs
}

/// Where the GSO group that starts at `items[start]` ends (exclusive), by the rules of
/// [`gso_runs`]; `start` itself when there is no such item. Generic over the items so
/// the sender can group packets without first collecting their sizes.
fn gso_run_end<T>(items: &[T], size: impl Fn(&T) -> usize, start: usize) -> usize {
    let Some(seg) = items.get(start).map(&size) else {
        return start;
    };
    let mut end = start + 1;
    let mut total = seg;
    while let Some(next) = items.get(end).map(&size) {
        if end - start >= MAX_GSO_SEGMENTS || seg == 0 || total.saturating_add(next) > MAX_GSO_BYTES
        {
            break;
        }
        if next != seg {
            if next < seg && next > 0 {
                end += 1; // a shorter datagram may close the run
            }
            break;
        }
        total += next;
        end += 1;
    }
    end
}

/// What one batch send achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Datagrams handed to the kernel.
    pub datagrams: usize,
    /// System calls made.
    pub syscalls: usize,
    /// Datagrams dropped because the kernel refused that destination (e.g. network
    /// unreachable); the rest of the batch still went out.
    pub refused: usize,
    /// The socket's buffer was full before everything went out: the caller waits for
    /// writability and calls again with what is left.
    pub would_block: bool,
}

/// Whether GSO is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoMode {
    /// Try GSO; switch to `Off` the first time the kernel refuses it.
    Auto,
    Off,
}

/// A reusable batch sender. Holds scratch buffers so steady-state sends do not
/// allocate; not shared between threads.
pub struct BatchSender {
    gso: GsoMode,
    max_batch: usize,
    scratch: sys::Scratch,
}

impl Default for BatchSender {
    fn default() -> Self {
        Self::new(GsoMode::Auto)
    }
}

impl std::fmt::Debug for BatchSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSender")
            .field("gso", &self.gso)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl BatchSender {
    /// A sender with `gso` asked for (`Auto` becomes `Off` at once when this kernel
    /// does not know `UDP_SEGMENT`), sending up to 512 messages per call.
    pub fn new(gso: GsoMode) -> Self {
        let gso = if gso == GsoMode::Auto && sys::gso_supported() {
            GsoMode::Auto
        } else {
            GsoMode::Off
        };
        Self {
            gso,
            max_batch: sys::MAX_BATCH,
            scratch: sys::Scratch::default(),
        }
    }

    /// Sends up to `messages` messages per `sendmmsg` call (clamped to 1 ..=
    /// [`KERNEL_MAX_BATCH`]) instead of 512. Fewer calls, but each one keeps the
    /// socket (and, on loopback, the receivers) busy for longer.
    pub fn with_max_batch(mut self, messages: usize) -> Self {
        self.max_batch = messages.clamp(1, sys::KERNEL_MAX_BATCH);
        self
    }

    /// Whether GSO is (still) in use.
    pub fn gso_enabled(&self) -> bool {
        self.gso == GsoMode::Auto
    }

    /// Sends every packet of `packets`, in order, to every destination in `dests`
    /// (a frame to all viewers). `resume` says where a previous call stopped:
    /// destinations before `resume.0` are done, and of destination `resume.0` the first
    /// `resume.1` packets. Returns the report and the new resume point
    /// (`(dests.len(), 0)` when finished).
    pub fn send_to_many<S: AsRawFd>(
        &mut self,
        socket: &S,
        packets: &[&[u8]],
        dests: &[SocketAddr],
        resume: (usize, usize),
    ) -> io::Result<(SendReport, (usize, usize))> {
        self.send_runs(
            socket,
            dests.len(),
            |d| Some((*dests.get(d)?, packets)),
            resume,
        )
    }

    /// Sends each `(destination, packets)` item its own packets, in order (a load
    /// generator's per-viewer numbered packets): grouped into GSO messages like
    /// [`send_to_many`](Self::send_to_many) while GSO is on, one message per datagram
    /// otherwise. Items with no packets are skipped. `resume` says where a previous call
    /// stopped: items before `resume.0` are done, and of item `resume.0` the first
    /// `resume.1` packets. Returns the report and the new resume point
    /// (`(items.len(), 0)` when finished).
    pub fn send_each_run<S: AsRawFd>(
        &mut self,
        socket: &S,
        items: &[(SocketAddr, &[&[u8]])],
        resume: (usize, usize),
    ) -> io::Result<(SendReport, (usize, usize))> {
        self.send_runs(socket, items.len(), |d| items.get(d).copied(), resume)
    }

    /// The loop behind [`send_to_many`](Self::send_to_many) and
    /// [`send_each_run`](Self::send_each_run): `item(d)` is destination `d` (of `count`)
    /// and the packets it is due.
    fn send_runs<'p, S: AsRawFd>(
        &mut self,
        socket: &S,
        count: usize,
        item: impl Fn(usize) -> Option<(SocketAddr, &'p [&'p [u8]])>,
        resume: (usize, usize),
    ) -> io::Result<(SendReport, (usize, usize))> {
        let mut report = SendReport::default();
        let mut at = resume;
        loop {
            self.fill_batch(count, &item, at);
            if self.scratch.is_empty() {
                break; // nothing left to send from `at` on
            }
            let (sent, errno) = self.scratch.send(socket.as_raw_fd());
            report.syscalls += 1;
            for i in 0..sent {
                let (after, n, _) = self.scratch.meta(i);
                report.datagrams += n;
                at = after;
            }
            let Some(e) = errno else {
                // All sent, or a partial send whose error the next call reports.
                continue;
            };
            let (after, n, used_gso) = self.scratch.meta(0);
            match e {
                libc::EINTR => {}
                libc::EAGAIN => {
                    report.would_block = true;
                    return Ok((report, at));
                }
                libc::EIO | libc::EINVAL if used_gso => {
                    // The kernel or device does not do GSO here: never try again.
                    self.gso = GsoMode::Off;
                }
                e if is_per_destination_error(e) => {
                    report.refused += n;
                    at = after;
                }
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        Ok((report, (count, 0)))
    }

    /// Queues messages from position `(d, p)` until the batch is full or every
    /// destination is covered. Each message records the position after it, so a
    /// partial send resumes exactly where the kernel stopped.
    fn fill_batch<'p>(
        &mut self,
        count: usize,
        item: &impl Fn(usize) -> Option<(SocketAddr, &'p [&'p [u8]])>,
        (mut d, mut p): (usize, usize),
    ) {
        self.scratch.clear();
        while d < count {
            let Some((dest, packets)) = item(d) else {
                return;
            };
            while let Some(first) = packets.get(p) {
                if self.scratch.len() >= self.max_batch {
                    return;
                }
                let end = if self.gso_enabled() {
                    gso_run_end(packets, |pk| pk.len(), p)
                } else {
                    p + 1
                };
                let segment = (end - p > 1).then_some(first.len());
                let after = if end >= packets.len() {
                    (d + 1, 0)
                } else {
                    (d, end)
                };
                self.scratch.push(
                    dest,
                    packets.get(p..end).unwrap_or_default(),
                    segment,
                    after,
                );
                p = end;
            }
            d += 1;
            p = 0;
        }
    }

    /// Sends one datagram to each `(destination, payload)` pair (a relay's batch), in
    /// order. `resume` is the index to start from. Returns the report and the index
    /// reached (`items.len()` when finished).
    pub fn send_each<S: AsRawFd>(
        &mut self,
        socket: &S,
        items: &[(SocketAddr, &[u8])],
        resume: usize,
    ) -> io::Result<(SendReport, usize)> {
        let mut report = SendReport::default();
        let mut at = resume;
        while at < items.len() {
            self.scratch.clear();
            for (i, (dest, payload)) in items[at..].iter().take(self.max_batch).enumerate() {
                self.scratch
                    .push(*dest, std::slice::from_ref(payload), None, (at + i + 1, 0));
            }
            let total = self.scratch.len();
            let (sent, errno) = self.scratch.send(socket.as_raw_fd());
            report.syscalls += 1;
            report.datagrams += sent;
            at += sent;
            if sent == total {
                continue;
            }
            match errno {
                Some(libc::EAGAIN) => {
                    report.would_block = true;
                    return Ok((report, at));
                }
                Some(libc::EINTR) | None => {}
                Some(e) if is_per_destination_error(e) => {
                    report.refused += 1;
                    at += 1;
                }
                Some(e) => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        Ok((report, items.len()))
    }
}

/// Errors that concern one destination, not the socket: skip and go on.
fn is_per_destination_error(e: i32) -> bool {
    matches!(
        e,
        libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::ECONNREFUSED
            | libc::EACCES
            | libc::EPERM
            | libc::EMSGSIZE
            | libc::EADDRNOTAVAIL
            | libc::EAFNOSUPPORT
            | libc::EINVAL
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn runs_group_equal_sizes_and_a_shorter_tail() {
        assert_eq!(gso_runs(&[]), vec![]);
        assert_eq!(gso_runs(&[100]), vec![(0, 1)]);
        assert_eq!(
            gso_runs(&[50, 1400, 1400, 1400, 700, 30]),
            vec![(0, 1), (1, 5), (5, 6)]
        );
        // A bigger datagram after smaller ones starts a new run.
        assert_eq!(gso_runs(&[100, 100, 200]), vec![(0, 2), (2, 3)]);
        // Segment and byte caps.
        let many = vec![10usize; 150];
        assert_eq!(gso_runs(&many), vec![(0, 64), (64, 128), (128, 150)]);
        let big = vec![1400usize; 60];
        let runs = gso_runs(&big);
        assert_eq!(runs[0], (0, 46)); // 46 * 1400 = 64,400 <= 65,000
        assert_eq!(runs[1], (46, 60));
    }

    fn receivers(n: usize) -> (Vec<UdpSocket>, Vec<SocketAddr>) {
        let socks: Vec<UdpSocket> = (0..n)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s
            })
            .collect();
        let addrs = socks.iter().map(|s| s.local_addr().unwrap()).collect();
        (socks, addrs)
    }

    fn frame() -> Vec<Vec<u8>> {
        // SPS-like small packet, three equal fragments, a short last fragment.
        let mut f = vec![vec![1u8; 20]];
        for i in 0..3u8 {
            f.push(vec![10 + i; 1200]);
        }
        f.push(vec![99u8; 333]);
        f
    }

    fn check_delivery(mode: GsoMode) -> (SendReport, bool) {
        let (rx, dests) = receivers(5);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let f = frame();
        let pkts: Vec<&[u8]> = f.iter().map(|p| p.as_slice()).collect();
        let mut s = BatchSender::new(mode);
        let (report, at) = s.send_to_many(&tx, &pkts, &dests, (0, 0)).unwrap();
        assert_eq!(at, (5, 0));
        assert_eq!(report.datagrams, 25);
        let mut buf = [0u8; 2000];
        for r in &rx {
            for want in &f {
                let n = r.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], want.as_slice());
            }
        }
        (report, s.gso_enabled())
    }

    #[test]
    fn fan_out_delivers_every_datagram_in_order_with_gso() {
        let (r, gso_still_on) = check_delivery(GsoMode::Auto);
        assert_eq!(r.syscalls, 1);
        // Loopback supports GSO wherever the kernel knows the option: no fallback.
        assert_eq!(gso_still_on, sys::gso_supported());
    }

    #[test]
    fn fan_out_delivers_every_datagram_in_order_without_gso() {
        let (r, gso) = check_delivery(GsoMode::Off);
        assert_eq!(r.syscalls, 1);
        assert!(!gso);
    }

    #[test]
    fn send_each_reaches_each_destination() {
        let (rx, dests) = receivers(3);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let items: Vec<(SocketAddr, &[u8])> = dests
            .iter()
            .zip([b"a".as_slice(), b"bb", b"ccc"])
            .map(|(d, p)| (*d, p))
            .collect();
        let (rep, at) = BatchSender::default().send_each(&tx, &items, 0).unwrap();
        assert_eq!((rep.datagrams, at), (3, 3));
        let mut buf = [0u8; 16];
        for (r, want) in rx.iter().zip([b"a".as_slice(), b"bb", b"ccc"]) {
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn large_fan_out_spans_several_calls_and_resumes() {
        let (rx, dests) = receivers(700); // > MAX_BATCH messages
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let pkts: Vec<&[u8]> = vec![b"xyz"];
        let mut s = BatchSender::default();
        let mut at = (0, 0);
        let mut sent = 0;
        while at.0 < dests.len() {
            let (rep, next) = s.send_to_many(&tx, &pkts, &dests, at).unwrap();
            sent += rep.datagrams;
            at = next;
            if rep.would_block {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(sent, 700);
        let mut buf = [0u8; 8];
        for r in &rx {
            assert_eq!(r.recv(&mut buf).unwrap(), 3);
        }
    }

    /// The grouping as first written (one pass over collected sizes): the refactored
    /// `gso_runs` must agree with it on every input, or the edge's messages change.
    fn reference_runs(sizes: &[usize]) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < sizes.len() {
            let seg = sizes[i];
            let mut end = i + 1;
            let mut total = seg;
            while end < sizes.len()
                && end - i < MAX_GSO_SEGMENTS
                && seg > 0
                && total + sizes[end] <= MAX_GSO_BYTES
            {
                let next = sizes[end];
                if next == seg {
                    total += next;
                    end += 1;
                } else {
                    if next < seg && next > 0 {
                        end += 1;
                    }
                    break;
                }
            }
            runs.push((i, end));
            i = end;
        }
        runs
    }

    #[test]
    fn gso_runs_match_the_reference_grouping() {
        // Every sequence of up to 6 sizes from a small alphabet (equal, shorter, longer,
        // zero)...
        let alphabet = [0usize, 1, 50, 100, 1400];
        let mut checked = 0;
        for len in 0..=6u32 {
            for code in 0..alphabet.len().pow(len) {
                let mut c = code;
                let sizes: Vec<usize> = (0..len)
                    .map(|_| {
                        let s = alphabet[c % alphabet.len()];
                        c /= alphabet.len();
                        s
                    })
                    .collect();
                assert_eq!(gso_runs(&sizes), reference_runs(&sizes), "{sizes:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 19_531);
        // ...and long pseudo-random ones that reach the segment and byte caps.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = (x >> 33) as usize % 300;
            let sizes: Vec<usize> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Mostly runs of one size, sometimes another: like real frames.
                    match (x >> 40) % 16 {
                        0 => 700,
                        1 => 20,
                        2 => 0,
                        3 => 1500,
                        _ => 1400,
                    }
                })
                .collect();
            assert_eq!(gso_runs(&sizes), reference_runs(&sizes), "{sizes:?}");
        }
    }

    #[test]
    fn an_empty_frame_costs_no_system_call() {
        let (_rx, dests) = receivers(3);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (rep, at) = BatchSender::default()
            .send_to_many(&tx, &[], &dests, (0, 0))
            .unwrap();
        assert_eq!((rep, at), (SendReport::default(), (3, 0)));
    }

    #[test]
    fn a_bigger_batch_takes_fewer_calls_and_is_clamped() {
        assert_eq!(BatchSender::default().max_batch, 512);
        assert_eq!(BatchSender::default().with_max_batch(0).max_batch, 1);
        assert_eq!(
            BatchSender::default().with_max_batch(5_000).max_batch,
            KERNEL_MAX_BATCH
        );
        let (rx, dests) = receivers(700);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let pkts: Vec<&[u8]> = vec![b"xyz"];
        let mut s = BatchSender::default().with_max_batch(1024);
        let (rep, at) = s.send_to_many(&tx, &pkts, &dests, (0, 0)).unwrap();
        assert_eq!((rep.datagrams, rep.syscalls, at), (700, 1, (700, 0)));
        let mut buf = [0u8; 8];
        for r in &rx {
            assert_eq!(r.recv(&mut buf).unwrap(), 3);
        }
    }

    /// Per-destination packets: a frame with a short tail, nothing, one packet, and a
    /// bigger packet after a smaller one.
    fn own_runs() -> Vec<Vec<Vec<u8>>> {
        vec![
            vec![vec![1; 1200], vec![2; 1200], vec![3; 1200], vec![4; 333]],
            vec![],
            vec![vec![5; 20]],
            vec![vec![6; 100], vec![7; 200]],
        ]
    }

    /// Sends [`own_runs`] one message per call, so the call count is the message
    /// count, and checks each receiver got exactly its own packets in order.
    fn send_own_runs(mode: GsoMode) -> (SendReport, bool) {
        let (rx, dests) = receivers(4);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let runs = own_runs();
        let slices: Vec<Vec<&[u8]>> = runs
            .iter()
            .map(|r| r.iter().map(|p| p.as_slice()).collect())
            .collect();
        let items: Vec<(SocketAddr, &[&[u8]])> = dests
            .iter()
            .zip(&slices)
            .map(|(d, s)| (*d, s.as_slice()))
            .collect();
        let mut s = BatchSender::new(mode).with_max_batch(1);
        let (report, at) = s.send_each_run(&tx, &items, (0, 0)).unwrap();
        assert_eq!(at, (4, 0));
        let mut buf = [0u8; 2000];
        for (r, want) in rx.iter().zip(&runs) {
            for p in want {
                let n = r.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], p.as_slice());
            }
            r.set_nonblocking(true).unwrap();
            let extra = r.recv(&mut buf).map_err(|e| e.kind());
            assert_eq!(extra, Err(std::io::ErrorKind::WouldBlock));
        }
        (report, s.gso_enabled())
    }

    #[test]
    fn each_run_reaches_its_own_destination_with_gso() {
        let (r, gso) = send_own_runs(GsoMode::Auto);
        assert_eq!(r.datagrams, 7);
        assert_eq!(gso, sys::gso_supported());
        // GSO: the frame is one message, then the single packet, then 100 and 200
        // apart (a bigger datagram cannot join a run).
        let messages = if gso { 4 } else { 7 };
        assert_eq!(r.syscalls, messages);
    }

    #[test]
    fn each_run_reaches_its_own_destination_without_gso() {
        let (r, gso) = send_own_runs(GsoMode::Off);
        assert_eq!((r.datagrams, r.syscalls, gso), (7, 7, false));
    }

    #[test]
    fn each_run_resumes_inside_a_destination() {
        let (rx, dests) = receivers(2);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let a: Vec<&[u8]> = vec![b"a0", b"a1", b"a2"];
        let b: Vec<&[u8]> = vec![b"b0"];
        let items = [(dests[0], a.as_slice()), (dests[1], b.as_slice())];
        let mut s = BatchSender::new(GsoMode::Off);
        let (rep, at) = s.send_each_run(&tx, &items, (0, 2)).unwrap();
        assert_eq!((rep.datagrams, rep.syscalls, at), (2, 1, (2, 0)));
        let mut buf = [0u8; 8];
        let n = rx[0].recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a2");
        let n = rx[1].recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"b0");
    }
}
