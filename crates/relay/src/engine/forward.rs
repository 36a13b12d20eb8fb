//! The forwarding threads: each owns a share of the streams' sockets and moves their
//! packets (symmetric RTP: a packet received on one leg's port leaves from the other
//! leg's port), asking each stream's [`crate::media::MediaPair`] what to do.
//!
//! What it does: [`spawn`] starts a thread that takes [`Command`]s (add a stream's
//! four sockets, remove them, stop) and runs one of two loops:
//! - **io_uring** (the default where the kernel allows it): a multishot receive per
//!   socket and sends queued from the receive buffers, so one `io_uring_enter` covers
//!   a whole batch of packets in both directions ([`mediagate_udp::UdpRing`]).
//! - **epoll**: a level-triggered `epoll` set, one `recvmmsg` per ready socket and one
//!   `sendto` per forward: about two system calls per packet. Used when io_uring is
//!   unavailable (old kernel, seccomp filter, `io_uring_disabled`) or when configured.
//!
//! Both may linger after a wake-up that found little work (`forward_coalesce`) so the
//! next one finds more: less CPU per packet for that much more latency.
//!
//! Latency, sampled: one forwarding round in [`LATENCY_SAMPLE_EVERY`] per thread (the
//! first one included) records how long its datagrams stayed in the thread, from the
//! moment it held the received batch to the moment their forwards were handed to the
//! kernel (epoll: `sendto` returned; io_uring: the sends are in the submission ring,
//! submitted by the `io_uring_enter` that starts the next round). The kernel's receive
//! timestamp (`SO_TIMESTAMPNS`, which `mediagate_udp` reads for the load generator) is
//! not used: the io_uring multishot receive hands datagrams out without control
//! messages, and in the epoll loop it would cost a control message per datagram. So the
//! time a datagram waits in its socket's receive queue before the thread wakes is not
//! in the figure.
//!
//! What it does not: bind or choose ports ([`super::sockets`]) or decide anything about
//! packets (the sans-IO media and latch modules do).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mediagate_config::ThreadScheduling;
use mediagate_ops::metrics::{exponential_buckets, Histogram};
use mediagate_udp::{
    connected_twin, set_thread_scheduling, Events, Policy, Poller, RecvBatch, RingEvent,
    RingOptions, RingSlot, UdpRing, RING_MAX_TOKEN,
};

use super::kernel::{self, KernelPath, LatchView};
use super::sockets::ForwardOptions;
use crate::calls::{lock, SharedMedia};
use crate::media::{Component, Forward};

/// Largest datagram relayed; a longer one is dropped as an error (RTP over UDP stays
/// under the path MTU, and T.38 datagrams are small).
pub(super) const MAX_DATAGRAM: usize = 4096;
/// Datagrams read per `recvmmsg` (epoll loop).
const BATCH: usize = 32;
/// The token of a thread's wake-up socket (stream tokens are
/// `id << 3 | twin << 2 | side << 1 | c`).
const WAKER: u64 = RING_MAX_TOKEN;
/// Pause after a wake-up that found fewer ready sockets than this (epoll loop), or
/// wait for this many completions (io_uring loop), when coalescing.
const COALESCE_BELOW: usize = 16;
/// Receive buffers per io_uring thread: enough for the datagrams of a few busy
/// wake-ups (a buffer returns to the kernel as soon as its forward is sent), few
/// enough to stay in cache; more sit idle and cost memory.
const RING_BUFFERS: u16 = 512;
/// How often a socket's connected twin may follow its destination to a new address
/// before the socket goes back to plain sends for good (a destination that keeps
/// changing would cost a `connect` per change and save nothing).
const MAX_TWIN_MOVES: u8 = 8;
/// Twins made or moved per io_uring round at most.
const TWINS_PER_ROUND: usize = 16;
/// How long a thread sleeps at most before looking at its command queue.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// How media is forwarded (`[relay] forward_io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardIo {
    /// Latched streams in the kernel (the eBPF fast path) where it loads; the threads
    /// use io_uring where the kernel allows it, else epoll.
    #[default]
    Auto,
    /// As `Auto`, but the relay does not start without the eBPF fast path.
    Ebpf,
    /// No eBPF; io_uring where the kernel allows it, else epoll.
    IoUring,
    /// No eBPF; always epoll.
    Epoll,
}

impl ForwardIo {
    /// Whether the threads try io_uring.
    fn ring(self) -> bool {
        self != ForwardIo::Epoll
    }
}

/// One forwarding round in this many, per thread, is timed for the latency histogram.
pub(super) const LATENCY_SAMPLE_EVERY: u32 = 64;

/// Relay-wide forwarding counters, updated without locks.
#[derive(Debug)]
pub(super) struct ForwardStats {
    /// Datagrams forwarded.
    pub forwarded: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub oversized: AtomicU64,
    /// Sampled time in the forwarding thread, seconds (see the module docs).
    pub latency: Histogram,
}

impl Default for ForwardStats {
    fn default() -> Self {
        Self {
            forwarded: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            // 1 µs to ~16 ms.
            latency: Histogram::new(exponential_buckets(1e-6, 2.0, 15)),
        }
    }
}

/// Picks the rounds a thread times: the first that forwards, then every
/// [`LATENCY_SAMPLE_EVERY`]th.
#[derive(Debug, Default)]
struct LatencySampler {
    rounds: u32,
}

impl LatencySampler {
    /// Call once per round that forwarded something.
    fn due(&mut self) -> bool {
        let due = self.rounds == 0;
        self.rounds = (self.rounds + 1) % LATENCY_SAMPLE_EVERY;
        due
    }
}

/// Descriptors the forwarding threads may spend on connected twins: what the open-file
/// limit leaves once every port of the range has its own socket, less a reserve. Twins
/// are an optimisation and must never cost a call its ports.
#[derive(Debug)]
pub(super) struct TwinBudget(AtomicU64);

impl TwinBudget {
    /// Descriptors kept for everything else (`ng` sockets, stores, threads' wake-ups).
    const RESERVE: u64 = 512;

    /// The budget under an open-file limit of `nofile` with `sockets` relay ports.
    pub(super) fn new(nofile: u64, sockets: u64) -> Self {
        Self(AtomicU64::new(
            nofile.saturating_sub(sockets).saturating_sub(Self::RESERVE),
        ))
    }

    fn available(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn give(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sockets of one stream, indexed `[side][component]`.
pub(super) type StreamSockets = [[UdpSocket; 2]; 2];

/// What a forwarding thread is told.
pub(super) enum Command {
    /// Start forwarding a stream.
    Add {
        /// The stream's id, unique for the life of the relay.
        id: u64,
        /// Its state.
        media: SharedMedia,
        /// Its sockets.
        sockets: Box<StreamSockets>,
    },
    /// Stop forwarding a stream and close its sockets.
    Remove {
        /// The stream's id.
        id: u64,
    },
    /// End the thread.
    Stop,
}

/// A running forwarding thread.
pub(super) struct Worker {
    commands: mpsc::Sender<Command>,
    waker: UdpSocket,
    thread: Option<JoinHandle<()>>,
    uses_io_uring: bool,
    scheduling_refused: Option<String>,
}

impl Worker {
    /// Queues a command and wakes the thread.
    pub(super) fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.send(&[0]);
        }
    }

    /// Whether the thread runs the io_uring loop (else epoll).
    pub(super) fn uses_io_uring(&self) -> bool {
        self.uses_io_uring
    }

    /// Why the thread runs without its configured scheduling policy, if it does.
    pub(super) fn scheduling_refused(&self) -> Option<&str> {
        self.scheduling_refused.as_deref()
    }

    /// Waits for the thread to end (after [`Command::Stop`]).
    pub(super) fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts forwarding thread `index`.
pub(super) fn spawn(
    index: usize,
    stats: Arc<ForwardStats>,
    options: &ForwardOptions,
    max_sockets: u32,
    twin_budget: Arc<TwinBudget>,
    kernel: Option<Arc<KernelPath>>,
) -> io::Result<Worker> {
    let ForwardOptions {
        coalesce,
        io,
        scheduling,
        ..
    } = *options;
    let wake_rx = UdpSocket::bind("127.0.0.1:0")?;
    wake_rx.set_nonblocking(true)?;
    let waker = UdpSocket::bind("127.0.0.1:0")?;
    waker.connect(wake_rx.local_addr()?)?;
    waker.set_nonblocking(true)?;
    // The epoll set is made here so that a failure is reported to the caller.
    let poller = Poller::new()?;
    poller.add(&wake_rx, WAKER)?;
    let (tx, rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(format!("relay-fwd-{index}"))
        .spawn(move || {
            let refused = apply_scheduling(scheduling).err();
            let mut streams = Streams {
                commands: rx,
                streams: HashMap::default(),
                stats,
                twin_budget,
                kernel,
            };
            // The ring must be made on the thread that uses it (single issuer).
            let ring = if io.ring() {
                UdpRing::new(RingOptions {
                    max_datagram: MAX_DATAGRAM,
                    // Its own wake-up socket too.
                    // Each socket may get a connected twin; plus the wake-up socket.
                    sockets: max_sockets.saturating_mul(2).saturating_add(1),
                    buffers: RING_BUFFERS,
                    ..RingOptions::default()
                })
                .ok()
            } else {
                None
            };
            let _ = started_tx.send((ring.is_some(), refused));
            match ring {
                Some(ring) => {
                    drop(poller);
                    run_ring(ring, &wake_rx, &mut streams, coalesce);
                }
                None => run_epoll(&poller, &wake_rx, &mut streams, coalesce),
            }
        })?;
    let (uses_io_uring, scheduling_refused) = started_rx.recv().unwrap_or((false, None));
    Ok(Worker {
        commands: tx,
        waker,
        thread: Some(thread),
        uses_io_uring,
        scheduling_refused,
    })
}

/// Puts the calling thread under `scheduling` (a config's `*_scheduling` key); the
/// error says what was refused and what would allow it.
pub fn apply_scheduling(scheduling: ThreadScheduling) -> Result<(), String> {
    let (policy, priority) = match scheduling {
        // The kernel's default: leave the thread exactly as it started.
        ThreadScheduling::Normal { nice: 0 } => return Ok(()),
        ThreadScheduling::Normal { nice } => (Policy::Normal, i32::from(nice)),
        ThreadScheduling::Batch { nice } => (Policy::Batch, i32::from(nice)),
        ThreadScheduling::Idle => (Policy::Idle, 0),
        ThreadScheduling::Fifo { priority } => (Policy::Fifo, i32::from(priority)),
        ThreadScheduling::RoundRobin { priority } => (Policy::RoundRobin, i32::from(priority)),
    };
    set_thread_scheduling(policy, priority).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) if scheduling.is_realtime() => format!(
                " (needs CAP_SYS_NICE in the host's namespace or an RLIMIT_RTPRIO of at least {priority}, and a real-time budget in the cgroup)"
            ),
            Some(libc::EPERM) => format!(
                " (a nice value below the current {} needs CAP_SYS_NICE or RLIMIT_NICE)",
                mediagate_udp::thread_nice().unwrap_or(0)
            ),
            _ => String::new(),
        };
        format!("cannot use scheduling {scheduling}: {e}{hint}")
    })
}

struct Stream {
    media: SharedMedia,
    sockets: Box<StreamSockets>,
    /// The sockets' io_uring registrations, `[side][component]` (io_uring loop only).
    slots: [[Option<RingSlot>; 2]; 2],
    /// Each socket's connected twin, `[side][component]` (io_uring loop only).
    twins: [[Twin; 2]; 2],
    /// Each side's RTP latch as its kernel entries were last made from
    /// ([`kernel::latch_view`]).
    kernel_seen: std::cell::Cell<[LatchView; 2]>,
}

/// A socket's connected twin ([`mediagate_udp::connected_twin`]): forwards to the
/// socket's destination leave from it without a route lookup, and datagrams from that
/// destination arrive on it; the decisions about them stay the same.
#[derive(Default)]
enum Twin {
    /// None yet.
    #[default]
    None,
    /// Connected to `peer` and registered under `slot`.
    Up {
        socket: UdpSocket,
        slot: RingSlot,
        peer: std::net::SocketAddr,
        moves: u8,
    },
    /// Could not be made for this destination (no route, out of descriptors); tried
    /// again when the destination changes.
    Failed(std::net::SocketAddr),
    /// Moved too often, or saw an error: this socket sends plainly from now on.
    Retired,
}

impl Twin {
    /// Nothing to make or move for forwards to `to`.
    fn settled(&self, to: SocketAddr) -> bool {
        match self {
            Twin::Up { peer, .. } => *peer == to,
            Twin::Failed(failed) => *failed == to,
            Twin::Retired => true,
            Twin::None => false,
        }
    }
}

impl Stream {
    fn socket(&self, side: usize, component: usize) -> Option<&UdpSocket> {
        self.sockets.get(side).and_then(|p| p.get(component))
    }

    fn slot(&self, side: usize, component: usize) -> Option<RingSlot> {
        self.slots
            .get(side)
            .and_then(|p| p.get(component))
            .copied()
            .flatten()
    }

    fn twin(&self, side: usize, component: usize) -> Option<&Twin> {
        self.twins.get(side).and_then(|p| p.get(component))
    }

    /// The ring slot a receive token names: the socket's or its twin's.
    fn slot_of(&self, t: u64) -> Option<RingSlot> {
        let (_, side, c) = split(t);
        if is_twin(t) {
            match self.twin(side, c)? {
                Twin::Up { slot, .. } => Some(*slot),
                _ => None,
            }
        } else {
            self.slot(side, c)
        }
    }

    /// Makes (or moves) the twin of socket `[side][c]` so it is connected to `to`;
    /// false if there was nothing to do.
    fn point_twin(
        &mut self,
        ring: &mut UdpRing,
        budget: &TwinBudget,
        (id, side, c): (u64, usize, usize),
        to: SocketAddr,
    ) -> bool {
        let Some(twin) = self.twins.get_mut(side).and_then(|p| p.get_mut(c)) else {
            return false;
        };
        if twin.settled(to) {
            return false;
        }
        if let Twin::Up {
            socket,
            peer,
            moves,
            ..
        } = twin
        {
            // Forwards already queued for the old peer leave before the move.
            if *moves < MAX_TWIN_MOVES && ring.submit().is_ok() && socket.connect(to).is_ok() {
                *peer = to;
                *moves += 1;
            } else {
                self.retire_twin(ring, budget, side, c);
            }
            return true;
        }
        let Some(original) = self.sockets.get(side).and_then(|p| p.get(c)) else {
            return false;
        };
        if !budget.take() {
            return false;
        }
        *twin = match connected_twin(original, to) {
            Ok(socket) => match ring.add(socket.as_raw_fd(), twin_token(id, side, c)) {
                Ok(slot) => Twin::Up {
                    socket,
                    slot,
                    peer: to,
                    moves: 0,
                },
                // The socket table is full: stop asking.
                Err(_) => Twin::Retired,
            },
            Err(_) => Twin::Failed(to),
        };
        if !matches!(twin, Twin::Up { .. }) {
            budget.give();
        }
        true
    }

    /// Sends from socket `[side][c]` plainly from now on.
    fn retire_twin(&mut self, ring: &mut UdpRing, budget: &TwinBudget, side: usize, c: usize) {
        let Some(twin) = self.twins.get_mut(side).and_then(|p| p.get_mut(c)) else {
            return;
        };
        if let Twin::Up { slot, .. } = twin {
            // Unregistered before the socket closes (when `twin` is replaced).
            let _ = ring.cancel(*slot);
            budget.give();
        }
        *twin = Twin::Retired;
    }

    fn sockets(&self) -> impl Iterator<Item = (usize, usize, &UdpSocket)> {
        self.sockets.iter().enumerate().flat_map(|(side, pair)| {
            pair.iter()
                .enumerate()
                .map(move |(c, socket)| (side, c, socket))
        })
    }
}

/// What [`Streams::apply`] asks its caller to do about a socket.
enum Watch<'a> {
    /// Start watching this socket, reported with this token; returns its ring slot.
    Add(&'a UdpSocket, u64),
    /// Stop watching a socket (closed right after), registered under this slot.
    Remove(Option<RingSlot>),
}

/// Hashes the thread's own sequential stream ids: one multiplication instead of
/// SipHash on every packet (the ids are not chosen by peers, so flooding is moot).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A thread's streams and its command queue.
struct Streams {
    commands: mpsc::Receiver<Command>,
    streams: IdMap<Stream>,
    stats: Arc<ForwardStats>,
    twin_budget: Arc<TwinBudget>,
    kernel: Option<Arc<KernelPath>>,
}

impl Streams {
    /// After datagrams that arrived on `side` were judged with `media` locked:
    /// whether `stream`'s kernel entries may be out of date (that side's latch
    /// confirmed, moved or saw a new SSRC). Per datagram, so it compares two small
    /// values instead of building the entries: a datagram changes nothing else the
    /// entries depend on ([`kernel::LatchView`]).
    fn kernel_stale(&self, stream: &Stream, media: &crate::media::MediaPair, side: usize) -> bool {
        self.kernel.is_some()
            && stream.kernel_seen.get().get(side) != Some(&kernel::latch_view(media, side))
    }

    /// Brings stream `id`'s kernel entries up to date (media lock not held).
    fn refresh_kernel(&self, id: u64, stream: &Stream) {
        if let Some(k) = &self.kernel {
            stream.kernel_seen.set(k.update(id, &stream.media));
        }
    }

    /// Applies queued commands, telling `watch` which sockets to start or stop
    /// watching; false once told to stop.
    fn apply(&mut self, mut watch: impl FnMut(Watch<'_>) -> Option<RingSlot>) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Add { id, media, sockets } => {
                    let mut stream = Stream {
                        media,
                        sockets,
                        slots: [[None; 2]; 2],
                        twins: Default::default(),
                        kernel_seen: Default::default(),
                    };
                    let mut slots = [[None; 2]; 2];
                    for (side, c, socket) in stream.sockets() {
                        if let Some(slot) = slots.get_mut(side).and_then(|p| p.get_mut(c)) {
                            *slot = watch(Watch::Add(socket, token(id, side, c)));
                        }
                    }
                    stream.slots = slots;
                    self.streams.insert(id, stream);
                }
                Command::Remove { id } => {
                    if let Some(stream) = self.streams.remove(&id) {
                        for (side, c, _) in stream.sockets() {
                            watch(Watch::Remove(stream.slot(side, c)));
                            if let Some(Twin::Up { slot, .. }) = stream.twin(side, c) {
                                watch(Watch::Remove(Some(*slot)));
                                self.twin_budget.give();
                            }
                        }
                    }
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Where the packet that arrived on `t` goes: the ring slot of the socket to send
    /// it from and the destination (`None`: the slot is a twin connected to it), or
    /// `None` to drop it (io_uring loop). A forward that could leave from a twin but
    /// has none yet is noted in `want_twin` as `(id, side, component, destination)`.
    fn route(
        &self,
        t: u64,
        src: SocketAddr,
        data: &[u8],
        now: Instant,
        want_twin: &mut Vec<(u64, usize, usize, SocketAddr)>,
    ) -> Option<(RingSlot, Option<SocketAddr>)> {
        let (id, side, c) = split(t);
        let stream = self.streams.get(&id)?;
        let (f, stale) = {
            let mut media = lock(&stream.media);
            let f = media.on_datagram(side, component(c), src, data, now)?;
            (f, self.kernel_stale(stream, &media, side))
        };
        if stale {
            self.refresh_kernel(id, stream);
        }
        let out = component_index(f.component);
        let twin = stream.twin(f.side, out)?;
        match twin {
            Twin::Up { slot, peer, .. } if *peer == f.to => return Some((*slot, None)),
            // Moving needs no new descriptor; making one does.
            Twin::Up { .. } => want_twin.push((id, f.side, out, f.to)),
            _ if !twin.settled(f.to) && self.twin_budget.available() => {
                want_twin.push((id, f.side, out, f.to));
            }
            _ => {}
        }
        Some((stream.slot(f.side, out)?, Some(f.to)))
    }
}

const TWIN: u64 = 1 << 2;

fn token(id: u64, side: usize, component: usize) -> u64 {
    id << 3 | (side as u64 & 1) << 1 | (component as u64 & 1)
}

fn twin_token(id: u64, side: usize, component: usize) -> u64 {
    token(id, side, component) | TWIN
}

fn is_twin(t: u64) -> bool {
    t & TWIN != 0
}

/// `(id, side, component)`; a socket and its twin route alike.
fn split(t: u64) -> (u64, usize, usize) {
    (t >> 3, ((t >> 1) & 1) as usize, (t & 1) as usize)
}

fn component(c: usize) -> Component {
    if c == 0 {
        Component::Rtp
    } else {
        Component::Rtcp
    }
}

fn component_index(c: Component) -> usize {
    match c {
        Component::Rtp => 0,
        Component::Rtcp => 1,
    }
}

/// The io_uring loop; see the module docs.
fn run_ring(mut ring: UdpRing, wake_rx: &UdpSocket, s: &mut Streams, coalesce: Duration) {
    let Ok(wake_slot) = ring.add(wake_rx.as_raw_fd(), WAKER) else {
        return;
    };
    let mut rearm: Vec<u64> = Vec::new();
    let mut want_twin = Vec::new();
    let mut retire: Vec<u64> = Vec::new();
    let mut sampler = LatencySampler::default();
    loop {
        if ring.wait(IDLE_WAIT, COALESCE_BELOW, coalesce).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let now = Instant::now();
        rearm.clear();
        retire.clear();
        let streams = &*s;
        let drained = ring.drain(|event| match event {
            RingEvent::Datagram {
                token,
                data,
                from,
                truncated,
            } => {
                if token == WAKER {
                    return None;
                }
                if truncated {
                    streams.stats.oversized.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                streams.route(token, from, data, now, &mut want_twin)
            }
            // A connected twin reports ICMP errors (an unconnected socket ignores
            // them), and one spoofed "port unreachable" would cost a forward each: a
            // twin that sees any error goes back to plain sends for good.
            RingEvent::SendFailed { token, .. } => {
                if is_twin(token) {
                    retire.push(token);
                }
                None
            }
            RingEvent::Stopped { token, errno } => {
                // Out of buffers or a socket error: receive again. Cancelled: the
                // stream is gone.
                if is_twin(token) && errno != libc::ENOBUFS && errno != libc::ECANCELED {
                    retire.push(token);
                } else if errno != libc::ECANCELED {
                    rearm.push(token);
                }
                None
            }
        });
        match drained {
            Ok(d) => {
                if d.sent > 0 && sampler.due() {
                    s.stats.latency.observe(now.elapsed().as_secs_f64());
                }
                s.stats.forwarded.fetch_add(d.sent, Ordering::Relaxed);
                if d.send_errors > 0 {
                    s.stats
                        .send_errors
                        .fetch_add(d.send_errors, Ordering::Relaxed);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        for &t in &rearm {
            let slot = if t == WAKER {
                Some(wake_slot)
            } else {
                s.streams.get(&split(t).0).and_then(|st| st.slot_of(t))
            };
            if let Some(slot) = slot {
                ring.rearm(slot, t);
            }
        }
        for &t in &retire {
            let (id, side, c) = split(t);
            if let Some(stream) = s.streams.get_mut(&id) {
                stream.retire_twin(&mut ring, &s.twin_budget, side, c);
            }
        }
        // A bounded number per round: at the start of a load every stream wants its
        // twins at once, and a few system calls each would hold up every forward behind
        // them. The rest are asked for again by their next packets.
        let mut made = 0;
        for (id, side, c, to) in want_twin.drain(..) {
            if made == TWINS_PER_ROUND {
                break;
            }
            if let Some(stream) = s.streams.get_mut(&id) {
                made +=
                    usize::from(stream.point_twin(&mut ring, &s.twin_budget, (id, side, c), to));
            }
        }
        let running = s.apply(|watch| match watch {
            Watch::Add(socket, t) => ring.add(socket.as_raw_fd(), t).ok(),
            Watch::Remove(slot) => {
                // Submitted and unregistered before the socket closes.
                if let Some(slot) = slot {
                    let _ = ring.cancel(slot);
                }
                None
            }
        });
        if !running {
            return;
        }
    }
}

/// The epoll loop; see the module docs.
fn run_epoll(poller: &Poller, wake_rx: &UdpSocket, s: &mut Streams, coalesce: Duration) {
    let mut events = Events::with_capacity(1024);
    let mut batch = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut forwards: Vec<(usize, Forward)> = Vec::with_capacity(BATCH);
    let mut tokens: Vec<u64> = Vec::with_capacity(1024);
    let mut sink = [0u8; 64];
    let mut sampler = LatencySampler::default();
    loop {
        if poller.wait(&mut events, IDLE_WAIT).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        tokens.clear();
        tokens.extend(events.tokens());
        let woke_for = tokens.len();
        for &t in &tokens {
            if t == WAKER {
                while wake_rx.recv(&mut sink).is_ok() {}
                continue;
            }
            serve_epoll(s, t, &mut batch, &mut forwards, &mut sampler);
        }
        // Closing a socket takes it out of the epoll set; nothing else to undo.
        let running = s.apply(|watch| {
            if let Watch::Add(socket, t) = watch {
                let _ = poller.add(socket, t);
            }
            None
        });
        if !running {
            return;
        }
        if !coalesce.is_zero() && woke_for > 0 && woke_for < COALESCE_BELOW {
            std::thread::sleep(coalesce);
        }
    }
}

/// Reads and forwards what is queued on the socket `t` names (epoll loop).
fn serve_epoll(
    s: &Streams,
    t: u64,
    batch: &mut RecvBatch,
    forwards: &mut Vec<(usize, Forward)>,
    sampler: &mut LatencySampler,
) {
    let (id, side, c) = split(t);
    let Some(stream) = s.streams.get(&id) else {
        return;
    };
    let Some(socket) = stream.socket(side, c) else {
        return;
    };
    // A bounded number of batches per wake-up; level-triggered epoll reports the
    // socket again if more is queued, so one flooded port cannot starve the rest.
    for _ in 0..4 {
        let n = match batch.recv(socket) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        forwards.clear();
        let stale = {
            let mut media = lock(&stream.media);
            for i in 0..n {
                let Some((data, src, cut)) = batch.datagram(i) else {
                    continue;
                };
                if cut {
                    s.stats.oversized.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(f) = media.on_datagram(side, component(c), src, data, now) {
                    forwards.push((i, f));
                }
            }
            !forwards.is_empty() && s.kernel_stale(stream, &media, side)
        };
        if stale {
            s.refresh_kernel(id, stream);
        }
        let (mut sent, mut failed) = (0u64, 0u64);
        for &(i, f) in forwards.iter() {
            let out = stream.socket(f.side, component_index(f.component));
            let ok = match (out, batch.datagram(i)) {
                (Some(out), Some((data, _, _))) => out.send_to(data, f.to).is_ok(),
                _ => false,
            };
            if ok {
                sent += 1;
            } else {
                failed += 1;
            }
        }
        if sent > 0 && sampler.due() {
            s.stats.latency.observe(now.elapsed().as_secs_f64());
        }
        s.stats.forwarded.fetch_add(sent, Ordering::Relaxed);
        if failed > 0 {
            s.stats.send_errors.fetch_add(failed, Ordering::Relaxed);
        }
        if n < BATCH {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_forwarding_round_and_then_every_nth_is_timed() {
        let mut s = LatencySampler::default();
        let due: Vec<u32> = (0..LATENCY_SAMPLE_EVERY * 3).filter(|_| s.due()).collect();
        assert_eq!(
            due,
            [0, LATENCY_SAMPLE_EVERY, 2 * LATENCY_SAMPLE_EVERY],
            "one in {LATENCY_SAMPLE_EVERY}, starting with the first"
        );
    }

    #[test]
    fn twins_get_what_the_file_limit_leaves_after_every_port() {
        let budget = TwinBudget::new(20_000, 10_000);
        assert_eq!(budget.0.load(Ordering::Relaxed), 20_000 - 10_000 - 512);
        // A limit that only covers the ports leaves nothing for twins.
        let none = TwinBudget::new(4_096, 10_000);
        assert!(!none.take());
        let two = TwinBudget::new(514, 0);
        assert!(two.take() && two.take() && !two.take());
        two.give();
        assert!(two.take());
    }

    #[test]
    fn a_socket_and_its_twin_route_alike() {
        let t = token(12345, 1, 0);
        assert_eq!(split(t), (12345, 1, 0));
        assert_eq!(split(twin_token(12345, 1, 0)), (12345, 1, 0));
        assert!(is_twin(twin_token(12345, 1, 0)) && !is_twin(t));
    }
}
