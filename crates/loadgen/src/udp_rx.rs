//! Receiving from thousands of UDP sockets on a couple of threads.
//!
//! What it does: a [`SocketSet`] is one epoll set plus the sockets in it, each named by
//! a dense token (its index). [`SocketSet::drain_until`] waits for readable sockets and
//! empties each with `recvmmsg`, so a burst of datagrams (a video frame) costs one
//! system call, and hands every datagram with its token and arrival time to the
//! caller. A benchmark runs one set per receiver thread; the load generator must cost
//! far less per packet than the server it measures, or it measures itself.
//!
//! Arrival time comes in two kinds. By default it is the moment the thread woke up,
//! shared by every datagram read in that wake-up: it includes the receiver's own
//! scheduling delay and any [`SocketSet::set_coalesce`] pause. With
//! [`SocketSet::enable_kernel_timestamps`] each datagram also carries the kernel's
//! receive time (`SO_TIMESTAMPNS`), taken before any reader runs, which
//! [`SocketSet::drain_stamped_until`] hands over in an [`Arrival`].
//!
//! What it does not: parse datagrams, allocate per datagram, or stop on its own
//! beyond the deadline and stop flag it is given.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mediagate_udp::{enable_timestamps, Events, Poller, RecvBatch};

use crate::sys;

/// Datagrams read per `recvmmsg` call.
pub(crate) const BATCH: usize = 64;
/// Largest datagram kept whole; longer ones are counted as truncated. RTP over
/// Ethernet-sized paths stays well below this.
pub(crate) const SLOT_SIZE: usize = 2048;
/// How long one `epoll_wait` may sleep before the stop flag is checked again.
const POLL: Duration = Duration::from_millis(20);
/// `recvmmsg` calls per ready socket per wake-up at most, so one flooded socket cannot
/// starve the others (epoll is level-triggered: what is left is reported again).
const MAX_ROUNDS_PER_WAKE: usize = 4;

/// What a receiver thread did, for judging whether it kept up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DrainReport {
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
    /// Datagrams that came with the kernel's receive time (0 unless the set has
    /// kernel timestamps enabled).
    pub kernel_stamped: u64,
    /// CPU time the thread used while draining.
    pub cpu: Duration,
}

impl DrainReport {
    /// Adds another thread's figures.
    pub(crate) fn merge(&mut self, other: &DrainReport) {
        self.datagrams = self.datagrams.saturating_add(other.datagrams);
        self.truncated = self.truncated.saturating_add(other.truncated);
        self.recv_calls = self.recv_calls.saturating_add(other.recv_calls);
        self.wakeups = self.wakeups.saturating_add(other.wakeups);
        self.errors = self.errors.saturating_add(other.errors);
        self.kernel_stamped = self.kernel_stamped.saturating_add(other.kernel_stamped);
        self.cpu = self.cpu.saturating_add(other.cpu);
    }
}

/// When one datagram arrived, as well as the receiver can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    /// When the receiver thread woke up and read it (shared by the datagrams of one
    /// wake-up).
    pub woke: Instant,
    /// The same moment on the wall clock (`CLOCK_REALTIME`), comparable with
    /// [`kernel`](Self::kernel) and with send times taken from [`SystemTime`].
    pub woke_wall: SystemTime,
    /// The kernel's receive time (`CLOCK_REALTIME`), when kernel timestamps are
    /// enabled on the set and the kernel sent one with this datagram.
    pub kernel: Option<SystemTime>,
}

impl Arrival {
    /// The best wall-clock arrival time known: the kernel's, else the wake-up's.
    pub(crate) fn wall(&self) -> SystemTime {
        self.kernel.unwrap_or(self.woke_wall)
    }
}

/// Sockets drained together by one thread.
#[derive(Debug)]
pub(crate) struct SocketSet {
    poller: Poller,
    sockets: Vec<UdpSocket>,
    coalesce: Duration,
    timestamps: bool,
}

impl SocketSet {
    /// An empty set.
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            poller: Poller::new()?,
            sockets: Vec::new(),
            coalesce: Duration::ZERO,
            timestamps: false,
        })
    }

    /// After each wake-up that found datagrams, sleep this long before waiting again,
    /// so that the next wake-up finds more queued per socket and one `recvmmsg`
    /// carries several. Costs up to this much extra delay on wake-up arrival times;
    /// zero (the default) for latency measurements that use them. Kernel receive
    /// times are not delayed: with kernel timestamps on, the pause is skipped after a
    /// wake-up that read a datagram without one, so a fallback to wake-up times stays
    /// as prompt as without a pause.
    pub(crate) fn set_coalesce(&mut self, pause: Duration) {
        self.coalesce = pause;
    }

    /// Asks the kernel to stamp every datagram of every socket in the set, now and
    /// added later, with its receive time (`SO_TIMESTAMPNS`), handed over as
    /// [`Arrival::kernel`]. Fails, leaving the set as it was for later sockets, when
    /// the kernel refuses the option on one of them.
    pub(crate) fn enable_kernel_timestamps(&mut self) -> io::Result<()> {
        for s in &self.sockets {
            enable_timestamps(s)?;
        }
        self.timestamps = true;
        Ok(())
    }

    /// Adds `socket`; its datagrams will carry the returned token.
    pub(crate) fn add(&mut self, socket: UdpSocket) -> io::Result<usize> {
        if self.timestamps {
            enable_timestamps(&socket)?;
        }
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
    pub(crate) fn drain_until<F>(
        &self,
        stop: &AtomicBool,
        deadline: Instant,
        counter: &AtomicU64,
        mut on_datagram: F,
    ) -> io::Result<DrainReport>
    where
        F: FnMut(usize, &[u8], Instant) -> bool,
    {
        self.drain_stamped_until(stop, deadline, counter, |token, bytes, arrival| {
            on_datagram(token, bytes, arrival.woke)
        })
    }

    /// [`drain_until`](Self::drain_until), handing each datagram's full [`Arrival`]:
    /// the wake-up time and, with kernel timestamps enabled, the kernel's receive
    /// time.
    pub(crate) fn drain_stamped_until<F>(
        &self,
        stop: &AtomicBool,
        deadline: Instant,
        counter: &AtomicU64,
        mut on_datagram: F,
    ) -> io::Result<DrainReport>
    where
        F: FnMut(usize, &[u8], Arrival) -> bool,
    {
        let cpu_start = sys::thread_cpu_time();
        let mut report = DrainReport::default();
        // The viewers know who sends to them: skip source addresses, one copy less per
        // datagram for the kernel.
        let mut batch = RecvBatch::new(BATCH, SLOT_SIZE).without_sources();
        if self.timestamps {
            batch = batch.with_timestamps();
        }
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
            let woke = Instant::now();
            let woke_wall = SystemTime::now();
            let mut counted = 0u64;
            let mut unstamped = false;
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
                            let kernel = batch.timestamp(i);
                            report.kernel_stamped += u64::from(kernel.is_some());
                            unstamped |= kernel.is_none();
                            let arrival = Arrival {
                                woke,
                                woke_wall,
                                kernel,
                            };
                            counted += u64::from(on_datagram(token, bytes, arrival));
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
            }
            counter.fetch_add(counted, Ordering::Relaxed);
            let falling_back = self.timestamps && unstamped;
            if !self.coalesce.is_zero() && !falling_back {
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
    fn kernel_times_come_with_every_datagram_when_enabled() {
        let mut set = SocketSet::new().unwrap();
        let early = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let early_addr = early.local_addr().unwrap();
        set.add(early).unwrap();
        set.enable_kernel_timestamps().unwrap();
        // Added after enabling: must be stamped too.
        let late = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let late_addr = late.local_addr().unwrap();
        set.add(late).unwrap();
        // A pause far longer than the gap between the sends: the stamps must not see it.
        set.set_coalesce(Duration::from_millis(50));
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let sent = SystemTime::now();
        for i in 0..70u8 {
            tx.send_to(&[i], if i % 2 == 0 { early_addr } else { late_addr })
                .unwrap();
        }
        let stop = AtomicBool::new(false);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(300);
        let report = set
            .drain_stamped_until(&stop, deadline, &AtomicU64::new(0), |t, b, a| {
                got.push((t, b[0], a));
                true
            })
            .unwrap();
        assert_eq!((report.datagrams, report.kernel_stamped), (70, 70));
        assert_eq!(got.len(), 70);
        for (token, byte, a) in &got {
            assert_eq!(*token, usize::from(byte % 2), "datagram {byte}");
            let kernel = a.kernel.expect("kernel time");
            assert_eq!(a.wall(), kernel);
            assert!(kernel >= sent, "stamped before it was sent");
            // The kernel stamped it when it arrived, not when the thread read it. Not
            // exactly before the wake-up: on a loaded machine loopback delivery can be
            // deferred to ksoftirqd and run on the other CPU while this thread wakes.
            assert!(
                kernel <= a.woke_wall + Duration::from_millis(10),
                "{kernel:?} long after {:?}",
                a.woke_wall
            );
        }
    }

    #[test]
    fn without_kernel_timestamps_arrival_is_the_wake_up() {
        let mut set = SocketSet::new().unwrap();
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = s.local_addr().unwrap();
        set.add(s).unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        tx.send_to(b"a", addr).unwrap();
        tx.send_to(b"b", addr).unwrap();
        let mut got = Vec::new();
        let report = set
            .drain_stamped_until(
                &AtomicBool::new(false),
                Instant::now() + Duration::from_millis(100),
                &AtomicU64::new(0),
                |_, _, a| {
                    got.push(a);
                    true
                },
            )
            .unwrap();
        assert_eq!((report.datagrams, report.kernel_stamped), (2, 0));
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|a| a.kernel.is_none() && a.wall() == a.woke_wall));
        assert_eq!(got[0], got[1], "read in one wake-up, one stamp");
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
pub(crate) struct RxArgs {
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
