//! Batched UDP sending for mediagate's hot paths.
//!
//! What it does: sends many datagrams with few system calls. `sendmmsg(2)` carries one
//! message per destination and run of packets; where the kernel allows, each message
//! uses UDP generic segmentation offload (`UDP_SEGMENT`, Linux ≥ 4.18) so a whole video
//! frame's packets to one viewer cost one message. When the kernel refuses GSO (old
//! kernel, or a device without checksum offload answers `EIO`), the sender notices at
//! run time and falls back to one message per datagram, for good.
//!
//! What it does not: receive, or own sockets. It writes on a non-blocking socket the
//! caller owns and reports how far it got, so an async shell can wait for writability
//! and resume.
//!
//! Why: on loopback the kernel charges each datagram's receive path to the sender, so
//! a fan-out to 1,000 viewers is dominated by per-datagram kernel cost; GSO turns N
//! datagrams into one trip down the stack until the segmentation point.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

mod poll;
mod recv;
mod rlimit;
mod sys;

pub use poll::{Events, Poller};
pub use recv::RecvBatch;
pub use rlimit::raise_nofile_limit;

/// The kernel's limit on segments in one GSO send (`UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Largest GSO super-datagram payload we build (must stay below the 64 KiB IP limit).
pub const MAX_GSO_BYTES: usize = 65_000;

/// Splits a run of datagram sizes into groups one GSO message can carry: equal sizes,
/// optionally ending with one shorter datagram, at most [`MAX_GSO_SEGMENTS`] and
/// [`MAX_GSO_BYTES`]. Returns `(start, end)` index ranges covering every datagram in
/// order.
pub fn gso_runs(sizes: &[usize]) -> Vec<(usize, usize)> {
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
                    end += 1; // a shorter datagram may close the run
                }
                break;
            }
        }
        runs.push((i, end));
        i = end;
    }
    runs
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
            .finish()
    }
}

impl BatchSender {
    pub fn new(gso: GsoMode) -> Self {
        let gso = if gso == GsoMode::Auto && sys::gso_supported() {
            GsoMode::Auto
        } else {
            GsoMode::Off
        };
        Self {
            gso,
            scratch: sys::Scratch::default(),
        }
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
        let mut report = SendReport::default();
        if packets.is_empty() {
            return Ok((report, (dests.len(), 0)));
        }
        let sizes: Vec<usize> = packets.iter().map(|p| p.len()).collect();
        let (mut d, mut p) = resume;
        while d < dests.len() {
            let runs = if self.gso_enabled() {
                gso_runs(&sizes)
            } else {
                (0..packets.len()).map(|i| (i, i + 1)).collect()
            };
            self.fill_batch(&runs, &sizes, packets, dests, (d, p));
            let (sent, errno) = self.scratch.send(socket.as_raw_fd());
            report.syscalls += 1;
            for i in 0..sent {
                let (end, n, _) = self.scratch.meta(i);
                report.datagrams += n;
                (d, p) = advance(end, packets.len(), d);
            }
            let Some(e) = errno else {
                // All sent, or a partial send whose error the next call reports.
                continue;
            };
            let (end, n, used_gso) = self.scratch.meta(0);
            match e {
                libc::EINTR => {}
                libc::EAGAIN => {
                    report.would_block = true;
                    return Ok((report, (d, p)));
                }
                libc::EIO | libc::EINVAL if used_gso => {
                    // The kernel or device does not do GSO here: never try again.
                    self.gso = GsoMode::Off;
                }
                e if is_per_destination_error(e) => {
                    report.refused += n;
                    (d, p) = advance(end, packets.len(), d);
                }
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        Ok((report, (dests.len(), 0)))
    }

    /// Queues messages from position `(d, p)` until the batch is full or every
    /// destination is covered.
    fn fill_batch(
        &mut self,
        runs: &[(usize, usize)],
        sizes: &[usize],
        packets: &[&[u8]],
        dests: &[SocketAddr],
        (mut d, mut p): (usize, usize),
    ) {
        self.scratch.clear();
        while d < dests.len() {
            for &(start, end) in runs.iter().filter(|r| r.1 > p) {
                if self.scratch.len() >= sys::MAX_BATCH {
                    return;
                }
                let start = start.max(p);
                let segment = (end - start > 1).then_some(sizes[start]);
                self.scratch
                    .push(dests[d], &packets[start..end], segment, end);
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
            for (dest, payload) in items[at..].iter().take(sys::MAX_BATCH) {
                self.scratch
                    .push(*dest, std::slice::from_ref(payload), None, 1);
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

/// Where `(dest, packet)` stands after a message that ended at packet `end`.
fn advance(end: usize, packets: usize, d: usize) -> (usize, usize) {
    if end >= packets {
        (d + 1, 0)
    } else {
        (d, end)
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
}
