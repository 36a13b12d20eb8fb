//! The relay's media sockets: binding port pairs from the pools, and the forwarding
//! threads that move packets between them.
//!
//! What it does: [`SocketEnv`] implements [`MediaEnv`] for the call registry. Opening a
//! pair takes a random free pair from the pool of a media address of the wanted family
//! and binds both ports; a port another program holds is set aside and another pair is
//! tried. Starting a stream hands its four sockets to one forwarding thread
//! ([`super::forward`]); streams are spread over the threads, and all four sockets of a
//! stream stay on one, so its state lock is never contended. Closing a pair removes the
//! stream from its thread, which closes the sockets, and puts the ports in quarantine.
//!
//! What it does not: move packets ([`super::forward`]) or decide anything about them
//! (the sans-IO [`crate::media::MediaPair`] and [`crate::latch`] do).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_config::ThreadScheduling;

use super::forward::{self, Command, ForwardIo, ForwardStats, TwinBudget, Worker};
use super::kernel::KernelPath;
use crate::calls::{lock, MediaEnv, OpenError, OpenPair, SharedMedia};
use mediagate_ng::request::Family;
use mediagate_udp::PortPool;
use rand::rngs::SmallRng;
use rand::SeedableRng as _;

/// Bind attempts per address before moving on (ports held by other programs).
const BIND_ATTEMPTS: usize = 32;
/// One configured media address and its pool.
#[derive(Debug)]
struct MediaAddress {
    local: IpAddr,
    advertised: IpAddr,
    pool: PortPool,
}

/// How packets are moved: threads, their wait strategy and coalescing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ForwardOptions {
    /// Forwarding threads (at least one is started).
    pub threads: usize,
    /// After a wake-up that found little work, wait this long for more (less CPU per
    /// packet, that much more latency). Zero forwards at once.
    pub coalesce: Duration,
    /// io_uring where available, or always epoll.
    pub io: ForwardIo,
    /// The threads' scheduling policy (`[relay] forward_scheduling`).
    pub scheduling: ThreadScheduling,
    /// Receive and send buffer asked for each media socket, in bytes; 0 keeps the
    /// kernel's default (`net.core.rmem_default`).
    pub socket_buffer: usize,
}

/// Binds, runs and closes the media sockets; see the module docs.
pub(super) struct SocketEnv {
    addresses: Vec<MediaAddress>,
    /// Ports of the range the forwarding threads' socket tables were sized for.
    sized_ports: u32,
    rng: SmallRng,
    next_address: usize,
    /// Opened but not started: the bound RTP and RTCP sockets by local RTP address.
    pending: HashMap<SocketAddr, [UdpSocket; 2]>,
    /// Started streams by each leg's local RTP address: (worker, stream id).
    running: HashMap<SocketAddr, (usize, u64)>,
    next_id: u64,
    workers: Vec<Worker>,
    stats: Arc<ForwardStats>,
    /// [`ForwardOptions::socket_buffer`].
    socket_buffer: usize,
    /// The eBPF fast path, when loaded.
    kernel: Option<Arc<KernelPath>>,
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
    /// forwarding threads as `forwarding` says; latched streams go to `kernel` when
    /// given.
    pub(super) fn new(
        addresses: &[(IpAddr, IpAddr)],
        (low, high): (u16, u16),
        quarantine: Duration,
        seed: u64,
        forwarding: ForwardOptions,
        kernel: Option<Arc<KernelPath>>,
    ) -> io::Result<Self> {
        let stats = Arc::new(ForwardStats::default());
        // Every port of the range on every address could end up on one thread.
        let sized_ports = range_ports(low, high);
        let max_sockets =
            sized_ports.saturating_mul(u32::try_from(addresses.len()).unwrap_or(u32::MAX));
        let nofile = mediagate_udp::raise_nofile_limit().unwrap_or(1024);
        let twin_budget = Arc::new(TwinBudget::new(nofile, u64::from(max_sockets)));
        let workers = (0..forwarding.threads.max(1))
            .map(|i| {
                forward::spawn(
                    i,
                    Arc::clone(&stats),
                    &forwarding,
                    max_sockets,
                    Arc::clone(&twin_budget),
                    kernel.clone(),
                )
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            sized_ports,
            addresses: addresses
                .iter()
                .map(|&(local, advertised)| MediaAddress {
                    local,
                    advertised,
                    pool: PortPool::new(low, high, quarantine),
                })
                .collect(),
            rng: SmallRng::seed_from_u64(seed),
            next_address: 0,
            pending: HashMap::new(),
            running: HashMap::new(),
            next_id: 0,
            workers,
            stats,
            socket_buffer: forwarding.socket_buffer,
            kernel,
        })
    }

    /// The eBPF fast path, when loaded.
    pub(super) fn kernel(&self) -> Option<&Arc<KernelPath>> {
        self.kernel.as_ref()
    }

    /// Brings `media`'s kernel entries to what its latches want now (after signalling).
    pub(super) fn refresh_kernel(&self, media: &SharedMedia) {
        let Some(k) = &self.kernel else { return };
        let local = lock(media).legs[0].local;
        if let Some(&(_, id)) = self.running.get(&local) {
            k.update(id, media);
        }
    }

    /// Merges what the kernel forwarded into the streams (see [`KernelPath::sync`]).
    pub(super) fn sync_kernel(&self) {
        if let Some(k) = &self.kernel {
            k.sync();
        }
    }

    /// The relay-wide counters.
    pub(super) fn stats(&self) -> Arc<ForwardStats> {
        Arc::clone(&self.stats)
    }

    /// Forwarding threads running the io_uring loop (the rest run epoll).
    pub(super) fn io_uring_threads(&self) -> usize {
        self.workers.iter().filter(|w| w.uses_io_uring()).count()
    }

    /// Why the forwarding threads could not take their scheduling policy, if they
    /// could not (they then run with the kernel's default).
    pub(super) fn scheduling_refused(&self) -> Option<&str> {
        self.workers.iter().find_map(Worker::scheduling_refused)
    }

    /// Forwarding threads.
    pub(super) fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Streams with running forwarders.
    pub(super) fn running_streams(&self) -> usize {
        self.running.len() / 2
    }

    /// Takes new pairs from `low..=high` on every media address from now on; running
    /// streams keep their ports, which leave for good when released. A range with more
    /// ports than the one the forwarding threads were sized for at start is refused:
    /// their io_uring socket tables cannot grow.
    pub(super) fn set_port_range(&mut self, low: u16, high: u16) -> Result<(), RangeTooLarge> {
        let ports = range_ports(low, high);
        if ports > self.sized_ports {
            return Err(RangeTooLarge {
                ports,
                sized: self.sized_ports,
            });
        }
        for addr in &mut self.addresses {
            addr.pool.set_range(low, high);
        }
        Ok(())
    }

    /// Stops the forwarding threads (closing every socket) and waits for them.
    pub(super) fn stop(&mut self) {
        for w in &self.workers {
            w.send(Command::Stop);
        }
        for w in &mut self.workers {
            w.join();
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

/// Ports in `low..=high`.
fn range_ports(low: u16, high: u16) -> u32 {
    u32::from(high).saturating_sub(u32::from(low)) + 1
}

/// Why [`SocketEnv::set_port_range`] refused a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the new range has {ports} ports and the forwarding threads were sized at start for {sized}; a larger range needs a restart")]
pub struct RangeTooLarge {
    /// Ports in the refused range.
    pub ports: u32,
    /// Ports of the range at start.
    pub sized: u32,
}

fn bind_pair(ip: IpAddr, port: u16, socket_buffer: usize) -> io::Result<[UdpSocket; 2]> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.wrapping_add(1)))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    if socket_buffer > 0 {
        // A refusal leaves the kernel's default: smaller, but still working.
        for s in [&rtp, &rtcp] {
            let _ = mediagate_udp::set_recv_buffer(s, socket_buffer);
            let _ = mediagate_udp::set_send_buffer(s, socket_buffer);
        }
    }
    Ok([rtp, rtcp])
}

impl SocketEnv {
    /// Binds the pair at `local` exactly (its address must be one of the configured
    /// ones and its port free in that address's pool): for a standby balancer that
    /// takes over its peer's relayed pairs.
    pub(crate) fn open_pair_at(&mut self, local: SocketAddr, now: Instant) -> io::Result<()> {
        let Some(addr) = self.addresses.iter_mut().find(|a| a.local == local.ip()) else {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{} is not a media address", local.ip()),
            ));
        };
        if !addr.pool.take_port(local.port(), now) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "port {} is outside the range, in use or resting",
                    local.port()
                ),
            ));
        }
        match bind_pair(local.ip(), local.port(), self.socket_buffer) {
            Ok(sockets) => {
                self.pending.insert(local, sockets);
                Ok(())
            }
            Err(e) => {
                addr.pool.untake(local.port());
                Err(e)
            }
        }
    }

    /// Undoes [`Self::open_pair_at`] for a pair never started: its ports are free at
    /// once.
    pub(crate) fn unbind_pair_at(&mut self, local: SocketAddr) {
        if self.pending.remove(&local).is_some() {
            if let Some(addr) = self.addresses.iter_mut().find(|a| a.local == local.ip()) {
                addr.pool.untake(local.port());
            }
        }
    }
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
                match bind_pair(addr.local, port, self.socket_buffer) {
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
        if let Some(k) = &self.kernel {
            k.register(id, media);
        }
    }

    fn close_pair(&mut self, local: SocketAddr, now: Instant) {
        self.pending.remove(&local);
        if let Some((worker, id)) = self.running.remove(&local) {
            // Before the caller reads the stream's counters for its record.
            if let Some(k) = &self.kernel {
                k.remove_stream(id);
            }
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

#[cfg(test)]
mod buffer_tests {
    use super::*;

    fn rcvbuf(s: &UdpSocket) -> usize {
        socket2::SockRef::from(s).recv_buffer_size().unwrap()
    }

    /// A free even port pair on `ip` (port 0 would make the RTCP port 1).
    fn free_pair(ip: IpAddr) -> u16 {
        (40_000..60_000)
            .step_by(2)
            .find(|&p| UdpSocket::bind((ip, p)).is_ok() && UdpSocket::bind((ip, p + 1)).is_ok())
            .unwrap()
    }

    /// The asked buffer reaches both sockets of a pair (as far as the kernel grants
    /// it: the same as a probe socket gets), and 0 leaves the kernel's default.
    #[test]
    fn a_pair_s_sockets_get_the_asked_buffer() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let probe = UdpSocket::bind((ip, 0)).unwrap();
        let default = rcvbuf(&probe);
        let granted = mediagate_udp::set_recv_buffer(&probe, 1 << 20).unwrap();
        let [rtp, rtcp] = bind_pair(ip, free_pair(ip), 1 << 20).unwrap();
        assert_eq!(rcvbuf(&rtp), granted);
        assert_eq!(rcvbuf(&rtcp), granted);
        let [plain, _] = bind_pair(ip, free_pair(ip), 0).unwrap();
        assert_eq!(rcvbuf(&plain), default);
    }
}
