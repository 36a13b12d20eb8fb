//! The relay's media sockets: binding port pairs from the pools, and the forwarding
//! threads that move packets between them.
//!
//! What it does: [`SocketEnv`] implements [`MediaEnv`] for the call registry. Opening a
//! pair takes a random free pair from the pool of a media address of the wanted family
//! and binds both ports; a port another program holds is set aside and another pair is
//! tried. Starting a stream hands its four sockets to one forwarding thread (streams
//! are spread over the threads; all four sockets of a stream stay on one, so its state
//! lock is never contended). Each thread waits on a level-triggered epoll set, reads
//! every queued datagram of a ready socket with one `recvmmsg`, asks the stream's
//! [`MediaPair`] where each goes (taking its lock once per batch) and sends it from the
//! other leg's socket (symmetric RTP). Closing a pair removes the stream from its
//! thread, which closes the sockets, and puts the ports in quarantine.
//!
//! Why threads and not tokio tasks: at 50 packets/s per socket every wake-up carries
//! one packet, so per-packet costs are what matter; a blocking epoll loop with
//! `recvmmsg` costs about two system calls per forwarded packet (receive, send) and no
//! task scheduling, where a task per socket paid three calls plus a wake-up.
//!
//! What it does not: decide anything about packets (the sans-IO [`MediaPair`] and
//! [`crate::latch`] do), or batch sends: each forwarded datagram leaves from its own
//! port, so `sendmmsg` cannot group them.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mediagate_udp::{Events, Poller, RecvBatch};

use crate::calls::{lock, MediaEnv, OpenError, OpenPair, SharedMedia};
use crate::media::{Component, Forward};
use crate::ng::request::Family;
use crate::ports::{PortPool, Rng};

/// Largest datagram relayed; a longer one is dropped as an error (RTP over UDP stays
/// under the path MTU, and T.38 datagrams are small).
pub const MAX_DATAGRAM: usize = 4096;
/// Bind attempts per address before moving on (ports held by other programs).
const BIND_ATTEMPTS: usize = 32;
/// Datagrams read per `recvmmsg`.
const BATCH: usize = 32;
/// The token of a thread's wake-up socket (stream tokens are `id << 2 | side << 1 | c`).
const WAKER: u64 = u64::MAX;
/// Pause after a wake-up that found fewer ready sockets than this, so the next one
/// finds more (fewer wake-ups and context switches per packet).
const COALESCE_BELOW: usize = 16;

/// One configured media address and its pool.
#[derive(Debug)]
struct MediaAddress {
    local: IpAddr,
    advertised: IpAddr,
    pool: PortPool,
}

/// Relay-wide forwarding counters, updated without locks.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Datagrams forwarded.
    pub forwarded: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub oversized: AtomicU64,
}

/// The sockets of one stream, indexed `[side][component]`.
type StreamSockets = [[UdpSocket; 2]; 2];

enum Command {
    Add {
        id: u64,
        media: SharedMedia,
        sockets: Box<StreamSockets>,
    },
    Remove {
        id: u64,
    },
    Stop,
}

struct Worker {
    commands: mpsc::Sender<Command>,
    waker: UdpSocket,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.send(&[0]);
        }
    }
}

/// Binds, runs and closes the media sockets; see the module docs.
pub struct SocketEnv {
    addresses: Vec<MediaAddress>,
    rng: Rng,
    next_address: usize,
    /// Opened but not started: the bound RTP and RTCP sockets by local RTP address.
    pending: HashMap<SocketAddr, [UdpSocket; 2]>,
    /// Started streams by each leg's local RTP address: (worker, stream id).
    running: HashMap<SocketAddr, (usize, u64)>,
    next_id: u64,
    workers: Vec<Worker>,
    stats: Arc<ForwardStats>,
}

impl std::fmt::Debug for SocketEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketEnv")
            .field("addresses", &self.addresses)
            .field("running", &self.running.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl SocketEnv {
    /// Pools for `addresses` (`(local, advertised)`), each over `low..=high`, and
    /// `threads` forwarding threads (at least one) that pause `coalesce` after a
    /// wake-up with little to do.
    pub fn new(
        addresses: &[(IpAddr, IpAddr)],
        (low, high): (u16, u16),
        quarantine: Duration,
        seed: u64,
        (threads, coalesce): (usize, Duration),
    ) -> io::Result<Self> {
        let stats = Arc::new(ForwardStats::default());
        let workers = (0..threads.max(1))
            .map(|i| spawn_worker(i, Arc::clone(&stats), coalesce))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            addresses: addresses
                .iter()
                .map(|&(local, advertised)| MediaAddress {
                    local,
                    advertised,
                    pool: PortPool::new(low, high, quarantine),
                })
                .collect(),
            rng: Rng::new(seed),
            next_address: 0,
            pending: HashMap::new(),
            running: HashMap::new(),
            next_id: 0,
            workers,
            stats,
        })
    }

    /// The relay-wide counters.
    pub fn stats(&self) -> Arc<ForwardStats> {
        Arc::clone(&self.stats)
    }

    /// Streams with running forwarders.
    pub fn running_streams(&self) -> usize {
        self.running.len() / 2
    }

    /// Free pairs over all addresses.
    pub fn free_pairs(&self) -> usize {
        self.addresses.iter().map(|a| a.pool.free_count()).sum()
    }

    /// Stops the forwarding threads (closing every socket) and waits for them.
    pub fn stop(&mut self) {
        for w in &self.workers {
            w.send(Command::Stop);
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        self.running.clear();
        self.pending.clear();
    }
}

impl Drop for SocketEnv {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> io::Result<[UdpSocket; 2]> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.wrapping_add(1)))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    Ok([rtp, rtcp])
}

impl MediaEnv for SocketEnv {
    fn open_pair(&mut self, family: Family, now: Instant) -> Result<OpenPair, OpenError> {
        let count = self.addresses.len();
        let mut any_of_family = false;
        for k in 0..count {
            let i = (self.next_address + k) % count;
            let Some(addr) = self.addresses.get_mut(i) else {
                continue;
            };
            if Family::of(addr.local) != family {
                continue;
            }
            any_of_family = true;
            for _ in 0..BIND_ATTEMPTS {
                let Some(port) = addr.pool.take(now, &mut self.rng) else {
                    break;
                };
                match bind_pair(addr.local, port) {
                    Ok(sockets) => {
                        let local = SocketAddr::new(addr.local, port);
                        self.pending.insert(local, sockets);
                        self.next_address = (i + 1) % count;
                        return Ok(OpenPair {
                            local,
                            advertised: addr.advertised,
                        });
                    }
                    Err(_) => addr.pool.set_aside(port, now),
                }
            }
        }
        Err(if any_of_family {
            OpenError::Exhausted
        } else {
            OpenError::NoAddress(family)
        })
    }

    fn start(&mut self, media: &SharedMedia) {
        let locals = {
            let m = lock(media);
            [m.legs[0].local, m.legs[1].local]
        };
        let (Some([a0, a1]), Some([b0, b1])) = (
            self.pending.remove(&locals[0]),
            self.pending.remove(&locals[1]),
        ) else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        let worker = usize::try_from(id).unwrap_or(0) % self.workers.len().max(1);
        if let Some(w) = self.workers.get(worker) {
            w.send(Command::Add {
                id,
                media: Arc::clone(media),
                sockets: Box::new([[a0, a1], [b0, b1]]),
            });
        }
        for local in locals {
            self.running.insert(local, (worker, id));
        }
    }

    fn close_pair(&mut self, local: SocketAddr, now: Instant) {
        self.pending.remove(&local);
        if let Some((worker, id)) = self.running.remove(&local) {
            // The other leg's entry points at the same stream; removing twice is
            // harmless for the worker.
            if let Some(w) = self.workers.get(worker) {
                w.send(Command::Remove { id });
            }
        }
        if let Some(addr) = self.addresses.iter_mut().find(|a| a.local == local.ip()) {
            addr.pool.release(local.port(), now);
        }
    }
}

fn spawn_worker(index: usize, stats: Arc<ForwardStats>, coalesce: Duration) -> io::Result<Worker> {
    let poller = Poller::new()?;
    let wake_rx = UdpSocket::bind("127.0.0.1:0")?;
    wake_rx.set_nonblocking(true)?;
    let waker = UdpSocket::bind("127.0.0.1:0")?;
    waker.connect(wake_rx.local_addr()?)?;
    waker.set_nonblocking(true)?;
    poller.add(&wake_rx, WAKER)?;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("relay-fwd-{index}"))
        .spawn(move || {
            let mut w = ForwardLoop {
                coalesce,
                poller,
                wake_rx,
                commands: rx,
                streams: HashMap::new(),
                stats,
            };
            w.run();
        })?;
    Ok(Worker {
        commands: tx,
        waker,
        thread: Some(thread),
    })
}

struct Stream {
    media: SharedMedia,
    sockets: Box<StreamSockets>,
}

struct ForwardLoop {
    coalesce: Duration,
    poller: Poller,
    wake_rx: UdpSocket,
    commands: mpsc::Receiver<Command>,
    streams: HashMap<u64, Stream>,
    stats: Arc<ForwardStats>,
}

fn token(id: u64, side: usize, component: usize) -> u64 {
    id << 2 | (side as u64 & 1) << 1 | (component as u64 & 1)
}

fn component_index(c: Component) -> usize {
    match c {
        Component::Rtp => 0,
        Component::Rtcp => 1,
    }
}

impl ForwardLoop {
    /// Applies queued commands; false once told to stop.
    fn apply_commands(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Add { id, media, sockets } => {
                    for (side, pair) in sockets.iter().enumerate() {
                        for (c, socket) in pair.iter().enumerate() {
                            let _ = self.poller.add(socket, token(id, side, c));
                        }
                    }
                    self.streams.insert(id, Stream { media, sockets });
                }
                // Dropping the sockets closes them, which takes them out of epoll.
                Command::Remove { id } => {
                    self.streams.remove(&id);
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut batch = RecvBatch::new(BATCH, MAX_DATAGRAM);
        let mut forwards: Vec<(usize, Forward)> = Vec::with_capacity(BATCH);
        let mut tokens: Vec<u64> = Vec::with_capacity(1024);
        let mut sink = [0u8; 64];
        loop {
            if self
                .poller
                .wait(&mut events, Duration::from_millis(200))
                .is_err()
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            tokens.clear();
            tokens.extend(events.tokens());
            let woke_for = tokens.len();
            for &t in &tokens {
                if t == WAKER {
                    while self.wake_rx.recv(&mut sink).is_ok() {}
                    if !self.apply_commands() {
                        return;
                    }
                    continue;
                }
                self.serve(t, &mut batch, &mut forwards);
            }
            // Commands queued without a wake-up datagram (it could not be sent).
            if !self.apply_commands() {
                return;
            }
            if !self.coalesce.is_zero() && woke_for > 0 && woke_for < COALESCE_BELOW {
                std::thread::sleep(self.coalesce);
            }
        }
    }

    /// Reads and forwards what is queued on the socket `t` names.
    fn serve(&mut self, t: u64, batch: &mut RecvBatch, forwards: &mut Vec<(usize, Forward)>) {
        let (id, side, c) = (t >> 2, ((t >> 1) & 1) as usize, (t & 1) as usize);
        let component = if c == 0 {
            Component::Rtp
        } else {
            Component::Rtcp
        };
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let Some(socket) = stream.sockets.get(side).and_then(|p| p.get(c)) else {
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
            {
                let mut media = lock(&stream.media);
                for i in 0..n {
                    let Some((data, src, cut)) = batch.datagram(i) else {
                        continue;
                    };
                    if cut {
                        self.stats.oversized.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Some(f) = media.on_datagram(side, component, src, data, now) {
                        forwards.push((i, f));
                    }
                }
            }
            let (mut sent, mut failed) = (0u64, 0u64);
            for &(i, f) in forwards.iter() {
                let out = stream
                    .sockets
                    .get(f.side)
                    .and_then(|p| p.get(component_index(f.component)));
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
            self.stats.forwarded.fetch_add(sent, Ordering::Relaxed);
            if failed > 0 {
                self.stats.send_errors.fetch_add(failed, Ordering::Relaxed);
            }
            if n < BATCH {
                return;
            }
        }
    }
}
