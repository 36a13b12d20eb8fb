//! Receiving from thousands of UDP sockets on a couple of threads.
//!
//! What it does: a [`SocketSet`] is one epoll set plus the sockets in it, each named by
//! a dense token (its index). [`SocketSet::drain_until`] waits for readable sockets and
//! empties each with `recvmmsg`, so a burst of datagrams (a video frame) costs one
//! system call, and hands every datagram with its token and arrival time to the
//! caller. A benchmark runs one set per receiver thread; the load generator must cost
//! far less per packet than the server it measures, or it measures itself.
//!
//! What it does not: parse datagrams, allocate per datagram, or stop on its own
//! beyond the deadline and stop flag it is given.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mediagate_udp::{Events, Poller, RecvBatch};

use crate::sys;

/// Datagrams read per `recvmmsg` call.
pub const BATCH: usize = 64;
/// Largest datagram kept whole; longer ones are counted as truncated. RTP over
/// Ethernet-sized paths stays well below this.
pub const SLOT_SIZE: usize = 2048;
/// How long one `epoll_wait` may sleep before the stop flag is checked again.
const POLL: Duration = Duration::from_millis(20);
/// `recvmmsg` calls per ready socket per wake-up at most, so one flooded socket cannot
/// starve the others (epoll is level-triggered: what is left is reported again).
const MAX_ROUNDS_PER_WAKE: usize = 4;

/// What a receiver thread did, for judging whether it kept up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Datagrams handed to the caller.
    pub datagrams: u64,
    /// Of those, how many were longer than [`SLOT_SIZE`] and cut.
    pub truncated: u64,
    /// `recvmmsg` calls made.
    pub recv_calls: u64,
    /// `epoll_wait` returns that had work.
    pub wakeups: u64,
    /// Receive errors other than "nothing queued" (each skips that socket once).
    pub errors: u64,
    /// CPU time the thread used while draining.
    pub cpu: Duration,
}

impl DrainReport {
    /// Adds another thread's figures.
    pub fn merge(&mut self, other: &DrainReport) {
        self.datagrams = self.datagrams.saturating_add(other.datagrams);
        self.truncated = self.truncated.saturating_add(other.truncated);
        self.recv_calls = self.recv_calls.saturating_add(other.recv_calls);
        self.wakeups = self.wakeups.saturating_add(other.wakeups);
        self.errors = self.errors.saturating_add(other.errors);
        self.cpu = self.cpu.saturating_add(other.cpu);
    }
}

/// Sockets drained together by one thread.
#[derive(Debug)]
pub struct SocketSet {
    poller: Poller,
    sockets: Vec<UdpSocket>,
    coalesce: Duration,
}

impl SocketSet {
    /// An empty set.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            poller: Poller::new()?,
            sockets: Vec::new(),
            coalesce: Duration::ZERO,
        })
    }

    /// After each wake-up that found datagrams, sleep this long before waiting again,
    /// so that the next wake-up finds more queued per socket and one `recvmmsg`
    /// carries several. Costs up to this much extra delay on arrival times; zero (the
    /// default) for latency measurements.
    pub fn set_coalesce(&mut self, pause: Duration) {
        self.coalesce = pause;
    }

    /// Adds `socket`; its datagrams will carry the returned token.
    pub fn add(&mut self, socket: UdpSocket) -> io::Result<usize> {
        let token = self.sockets.len();
        self.poller.add(&socket, token as u64)?;
        self.sockets.push(socket);
        Ok(token)
    }

    /// Receives until `stop` is set or `deadline` passes, calling
    /// `on_datagram(token, bytes, arrival)` for each datagram. `arrival` is taken once
    /// per wake-up: datagrams read together share it. `counter` is bumped once per
    /// wake-up by the number of datagrams for which `on_datagram` returned `true` (the
    /// ones the caller wants in its live progress figure).
    pub fn drain_until<F>(
        &self,
        stop: &AtomicBool,
        deadline: Instant,
        counter: &AtomicU64,
        mut on_datagram: F,
    ) -> io::Result<DrainReport>
    where
        F: FnMut(usize, &[u8], Instant) -> bool,
    {
        let cpu_start = sys::thread_cpu_time();
        let mut report = DrainReport::default();
        // The viewers know who sends to them: skip source addresses, one copy less per
        // datagram for the kernel.
        let mut batch = RecvBatch::new(BATCH, SLOT_SIZE).without_sources();
        let mut events = Events::with_capacity(512);
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || now >= deadline {
                break;
            }
            let wait = POLL.min(deadline.saturating_duration_since(now));
            if self.poller.wait(&mut events, wait)? == 0 {
                continue;
            }
            report.wakeups += 1;
            let arrival = Instant::now();
            let mut counted = 0u64;
            for token in events.tokens() {
                let Some(socket) = usize::try_from(token)
                    .ok()
                    .and_then(|t| self.sockets.get(t))
                else {
                    continue;
                };
                let token = token as usize;
                for _ in 0..MAX_ROUNDS_PER_WAKE {
                    report.recv_calls += 1;
                    let n = match batch.recv(socket) {
                        Ok(n) => n,
                        Err(_) => {
                            report.errors += 1;
                            break;
                        }
                    };
                    for i in 0..n {
                        if let Some((bytes, cut)) = batch.payload(i) {
                            report.datagrams += 1;
                            report.truncated += u64::from(cut);
                            counted += u64::from(on_datagram(token, bytes, arrival));
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
            }
            counter.fetch_add(counted, Ordering::Relaxed);
            if !self.coalesce.is_zero() {
                std::thread::sleep(self.coalesce);
            }
        }
        report.cpu = sys::thread_cpu_time().saturating_sub(cpu_start);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn every_datagram_reaches_the_callback_with_its_token() {
        let mut set = SocketSet::new().unwrap();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            addrs.push(s.local_addr().unwrap());
            set.add(s).unwrap();
        }
        assert_eq!(set.sockets.len(), 3);
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        // 150 datagrams to socket 1: more than one batch and more than one round.
        for i in 0..150u8 {
            tx.send_to(&[i], addrs[1]).unwrap();
        }
        tx.send_to(b"zz", addrs[2]).unwrap();
        let stop = AtomicBool::new(false);
        let counter = AtomicU64::new(0);
        let mut got: Vec<(usize, Vec<u8>)> = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(300);
        let report = set
            .drain_until(&stop, deadline, &counter, |t, b, _| {
                got.push((t, b.to_vec()));
                t == 1
            })
            .unwrap();
        assert_eq!(report.datagrams, 151);
        assert_eq!(counter.load(Ordering::Relaxed), 150, "only token 1 counts");
        assert_eq!(report.truncated, 0);
        let to_one: Vec<u8> = got
            .iter()
            .filter(|(t, _)| *t == 1)
            .map(|(_, b)| b[0])
            .collect();
        assert_eq!(to_one, (0..150u8).collect::<Vec<_>>());
        assert_eq!(
            got.iter()
                .filter(|(t, _)| *t == 2)
                .map(|(_, b)| b.clone())
                .collect::<Vec<_>>(),
            vec![b"zz".to_vec()]
        );
        assert!(report.recv_calls >= 3, "150 datagrams need 3 batches");
    }

    #[test]
    fn stop_flag_ends_the_loop_before_the_deadline() {
        let set = SocketSet::new().unwrap();
        let stop = AtomicBool::new(true);
        let t0 = Instant::now();
        let r = set
            .drain_until(
                &stop,
                t0 + Duration::from_secs(30),
                &AtomicU64::new(0),
                |_, _, _| true,
            )
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(r.datagrams, 0);
    }
}

/// How the UDP receive side runs (shared by `fanout` and `floor`, so both measure
/// with the same receiver).
#[derive(Debug, Clone, clap::Args)]
pub struct RxArgs {
    /// UDP receiver threads.
    #[arg(long, default_value_t = 2)]
    pub rx_threads: usize,
    /// Receive buffer per socket, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub rcvbuf: usize,
    /// Receiver pause after each busy wake-up, in microseconds: batches more datagrams
    /// per recvmmsg at the price of up to this much delay on arrival times (and so on
    /// time to first keyframe); 0 reads as soon as anything arrives.
    #[arg(long, default_value_t = 1000)]
    pub rx_coalesce_us: u64,
}
