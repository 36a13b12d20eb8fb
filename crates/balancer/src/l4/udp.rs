//! The L4 UDP service: datagrams to one listening socket, grouped into flows by the
//! client's address (with the listening address, the 4-tuple).
//!
//! Each flow gets its own socket connected to its back end, so the back end's replies
//! arrive on that socket and go back to the right client from the listening address.
//! A flow is forgotten after `idle_timeout` without a datagram either way; the table
//! holds at most `max_flows` (datagrams that would start another are dropped and
//! counted). [`UdpFlows::remove_backend`] drops a back end's flows at once, so a dead
//! back end's clients are re-picked on their next datagram instead of black-holed
//! until a timeout (the IPVS default the issue warns about). An ICMP port-unreachable
//! from a back end is reported as a failed connect for passive health.
//!
//! PROXY v2 over UDP: the spec's `DGRAM` transport; the header precedes the payload
//! inside the datagram and is parsed per datagram, so it is sent either on every
//! datagram (what dnsdist's receivers expect) or, for receivers that keep per-flow
//! state, on the first one only ([`UdpProxyV2`]).
//!
//! Not here: batched `recvmmsg`/`sendmmsg` (crates/udp): flows have a socket each and
//! tokio readiness per socket; batching would pay off for the listening socket under
//! high packet rates and is the next step if the relay-mode benchmark asks for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::table::FlowTable;
use super::{lock, BackendCounters, BackendPort, Picker, ServiceCounters, ServiceHandle, StopRx};
use crate::backend::BackendId;
use crate::proxy_v2::{Header, Transport};

/// When a UDP flow carries a PROXY v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpProxyV2 {
    #[default]
    Off,
    /// Prefixed to the flow's first datagram only.
    FirstDatagram,
    /// Prefixed to every datagram to the back end.
    EveryDatagram,
}

/// How one UDP service behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpConfig {
    /// A flow without a datagram either way this long is forgotten.
    pub idle_timeout: Duration,
    /// Flows held at once.
    pub max_flows: usize,
    pub proxy_v2: UdpProxyV2,
    pub backend_port: BackendPort,
}

impl Default for UdpConfig {
    /// 60 s idle (media keeps flows busy; RTCP alone sends every 5 s), 10,000 flows.
    fn default() -> UdpConfig {
        UdpConfig {
            idle_timeout: Duration::from_secs(60),
            max_flows: 10_000,
            proxy_v2: UdpProxyV2::Off,
            backend_port: BackendPort::FromPicker,
        }
    }
}

/// Room kept before each received payload for a PROXY v2 header (52 bytes for IPv6).
const HEADER_ROOM: usize = 64;
/// How often replies refresh their flow's idle timer at most (not per datagram: it
/// takes a lock the receive loop also takes); a quarter of the idle timeout if less.
const REPLY_TOUCH_EVERY: Duration = Duration::from_millis(500);

/// Where a flow's datagrams go; shared by the flow's table entry, the receive loop
/// (one reference count per datagram) and the flow's reply task.
struct Route {
    id: BackendId,
    sock: UdpSocket,
    counters: Arc<BackendCounters>,
    /// An ICMP port unreachable was reported for passive health (once per flow).
    refused: AtomicBool,
    /// The flow's PROXY v2 header, encoded once when the service sends one (it names
    /// the flow's client and our address, which never change).
    header: Option<Box<[u8]>>,
}

impl Route {
    /// Nothing listens at the back end: the kernel reports the ICMP error on the next
    /// send or receive of the connected socket, whichever comes first.
    fn refused(&self, picker: &dyn Picker) {
        if !self.refused.swap(true, Relaxed) {
            self.counters.connect_failures.fetch_add(1, Relaxed);
            picker.connect_failed(self.id);
        }
    }
}

struct Flow {
    route: Arc<Route>,
    replies: AbortHandle,
}

type Table = Arc<Mutex<FlowTable<SocketAddr, Flow>>>;

/// A running UDP service's flows, for health to act on.
#[derive(Clone)]
pub struct UdpFlows {
    table: Table,
    picker: Arc<dyn Picker>,
}

impl UdpFlows {
    /// Flows held now.
    pub fn len(&self) -> usize {
        lock(&self.table).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every flow of back end `id` (it went down): the clients' next datagrams
    /// start new flows on other back ends. Returns how many were dropped.
    pub fn remove_backend(&self, id: BackendId) -> usize {
        let gone = lock(&self.table).remove_where(|f| f.route.id == id);
        let n = gone.len();
        for (client, flow) in gone {
            end_flow(client, flow, &*self.picker);
        }
        n
    }
}

fn end_flow(client: SocketAddr, flow: Flow, picker: &dyn Picker) {
    flow.replies.abort();
    flow.route.counters.flow_ended();
    picker.flow_ended(client.ip(), flow.route.id);
}

/// Starts the service on `socket` (already bound). Must be called inside a tokio
/// runtime.
pub fn spawn(
    socket: UdpSocket,
    config: UdpConfig,
    picker: Arc<dyn Picker>,
    counters: Arc<ServiceCounters>,
) -> io::Result<(ServiceHandle, UdpFlows)> {
    let local = socket.local_addr()?;
    let table: Table = Arc::new(Mutex::new(FlowTable::new(
        config.max_flows,
        config.idle_timeout,
    )));
    let flows = UdpFlows {
        table: table.clone(),
        picker: picker.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(None);
    let service = Service {
        listen: Arc::new(socket),
        local,
        config,
        picker,
        counters: counters.clone(),
        table,
    };
    let task = tokio::spawn(service.run(stop_rx));
    Ok((ServiceHandle::new(local, counters, stop_tx, task), flows))
}

struct Service {
    listen: Arc<UdpSocket>,
    local: SocketAddr,
    config: UdpConfig,
    picker: Arc<dyn Picker>,
    counters: Arc<ServiceCounters>,
    table: Table,
}

impl Service {
    async fn run(self, mut stop: StopRx) {
        let mut buf = vec![0u8; HEADER_ROOM + 65_536];
        let sweep_every = (self.config.idle_timeout / 4).max(Duration::from_millis(20));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Once stopping: no new flows; running ones go on until this instant.
        let mut stop_at: Option<Instant> = None;
        loop {
            tokio::select! {
                r = self.listen.recv_from(&mut buf[HEADER_ROOM..]) => {
                    if let Ok((n, client)) = r {
                        self.forward(&mut buf, n, client, stop_at.is_some()).await;
                    }
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    let expired = lock(&self.table).expire(now);
                    self.counters.idle_closed.fetch_add(expired.len() as u64, Relaxed);
                    for (client, flow) in expired {
                        end_flow(client, flow, &*self.picker);
                    }
                    if stop_at.is_some() && lock(&self.table).is_empty() {
                        break;
                    }
                }
                _ = sleep_until_opt(stop_at), if stop_at.is_some() => break,
                r = stop.changed(), if stop_at.is_none() => {
                    let grace = if r.is_ok() { stop.borrow().unwrap_or_default() } else { Duration::ZERO };
                    stop_at = Some(Instant::now() + grace);
                }
            }
        }
        let all = lock(&self.table).remove_where(|_| true);
        for (client, flow) in all {
            end_flow(client, flow, &*self.picker);
        }
    }

    /// Forwards the datagram at `buf[HEADER_ROOM..HEADER_ROOM + n]` from `client`.
    async fn forward(&self, buf: &mut [u8], n: usize, client: SocketAddr, stopping: bool) {
        let now = Instant::now();
        let found = {
            let mut t = lock(&self.table);
            t.touch(&client, now).map(|f| (Arc::clone(&f.route), false))
        };
        let (route, first) = match found {
            Some(f) => f,
            None if stopping => return,
            None => match self.new_flow(client, now).await {
                Some(f) => f,
                None => return,
            },
        };
        let with_header = match self.config.proxy_v2 {
            UdpProxyV2::Off => false,
            UdpProxyV2::FirstDatagram => first,
            UdpProxyV2::EveryDatagram => true,
        };
        let mut start = HEADER_ROOM;
        if let Some(h) = route.header.as_deref().filter(|_| with_header) {
            start = HEADER_ROOM - h.len();
            buf[start..HEADER_ROOM].copy_from_slice(h);
        }
        let datagram = &buf[start..HEADER_ROOM + n];
        let sent = match route.sock.send(datagram).await {
            // The error was an earlier datagram's; this one may still get through.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                route.refused(&*self.picker);
                route.sock.send(datagram).await
            }
            r => r,
        };
        if sent.is_ok() {
            route.counters.packets_to_backend.fetch_add(1, Relaxed);
            route.counters.bytes_to_backend.fetch_add(n as u64, Relaxed);
        }
    }

    async fn new_flow(&self, client: SocketAddr, now: Instant) -> Option<(Arc<Route>, bool)> {
        let Some((id, addr)) = self.picker.pick(client.ip(), None) else {
            self.counters.no_backend.fetch_add(1, Relaxed);
            return None;
        };
        let addr = self.config.backend_port.apply(addr, self.local);
        let sock = match backend_socket(addr).await {
            Ok(s) => s,
            Err(_) => {
                self.picker.flow_ended(client.ip(), id);
                self.counters.no_backend.fetch_add(1, Relaxed);
                return None;
            }
        };
        let header = match self.config.proxy_v2 {
            UdpProxyV2::Off => None,
            UdpProxyV2::FirstDatagram | UdpProxyV2::EveryDatagram => {
                Header::proxy(Transport::Dgram, client, self.local)
                    .to_bytes()
                    .ok()
                    .map(Vec::into_boxed_slice)
            }
        };
        let route = Arc::new(Route {
            id,
            sock,
            counters: self.counters.backend(id),
            refused: AtomicBool::new(false),
            header,
        });
        let replies = tokio::spawn(
            Replies {
                route: Arc::clone(&route),
                listen: self.listen.clone(),
                client,
                table: self.table.clone(),
                picker: self.picker.clone(),
                touch_every: REPLY_TOUCH_EVERY.min(self.config.idle_timeout / 4),
            }
            .run(),
        )
        .abort_handle();
        let flow = Flow {
            route: Arc::clone(&route),
            replies,
        };
        match lock(&self.table).insert(client, flow, now) {
            Ok(_) => {}
            Err((_, flow)) => {
                flow.replies.abort();
                self.picker.flow_ended(client.ip(), id);
                self.counters.refused_full.fetch_add(1, Relaxed);
                return None;
            }
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        route.counters.flow_started();
        Some((route, true))
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t.into()).await;
    }
}

/// A socket of the back end's family on an ephemeral port, connected to it so only
/// its datagrams are received there.
async fn backend_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let any: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((any, 0)).await?;
    sock.connect(addr).await?;
    Ok(sock)
}

/// A flow's back-end socket: replies go to the client from the listening socket.
struct Replies {
    route: Arc<Route>,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    table: Table,
    picker: Arc<dyn Picker>,
    touch_every: Duration,
}

impl Replies {
    async fn run(self) {
        let Replies {
            route,
            listen,
            client,
            table,
            picker,
            touch_every,
        } = self;
        let mut buf = vec![0u8; 65_536];
        let mut touched = Instant::now();
        let bc = &route.counters;
        loop {
            let n = match route.sock.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    route.refused(&*picker);
                    continue;
                }
                Err(_) => return,
            };
            if listen.send_to(&buf[..n], client).await.is_ok() {
                bc.packets_to_client.fetch_add(1, Relaxed);
                bc.bytes_to_client.fetch_add(n as u64, Relaxed);
            }
            let now = Instant::now();
            if now.duration_since(touched) >= touch_every {
                touched = now;
                lock(&table).touch(&client, now);
            }
        }
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
