//! Port groups: the classic LVS firewall-mark recipe without iptables. One TCP port
//! and UDP port ranges form a group; every flow from one client IP, whichever port it
//! reaches, goes to one back end, and stays pinned there while the client has flows
//! and for the persistence timeout after (600 s by default, the recipe's value). For
//! protocols the balancer does not parse (a TCP control port that negotiates UDP ports
//! in its own syntax: MMS on 1755, legacy streaming servers).
//!
//! Flows reach the back end on the port they reached the balancer on
//! ([`BackendPort::SameAsListener`]): the back end serves the same ports as the group.
//! A pinned back end that no longer takes new flows (down, drained) is replaced at the
//! client's next flow.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};

use super::table::Affinity;
use super::tcp::{self, TcpConfig};
use super::udp::{self, UdpConfig, UdpFlows};
use super::{lock, BackendPort, Picker, ServiceCounters, ServiceHandle};
use crate::backend::BackendId;

/// Most UDP ports one group may listen on (a socket and a task each).
pub const MAX_GROUP_UDP_PORTS: usize = 4096;

/// One port group.
#[derive(Debug, Clone, PartialEq)]
pub struct PortGroupConfig {
    /// The TCP port (with the address to listen on), if the group has one.
    pub tcp: Option<SocketAddr>,
    /// The address the UDP ports are bound on.
    pub udp_ip: IpAddr,
    pub udp_ports: Vec<RangeInclusive<u16>>,
    /// How long a client stays pinned after its last flow ended.
    pub persistence: Duration,
    /// Clients pinned at once; beyond, new clients are scheduled without a pin.
    pub max_clients: usize,
    /// Per-service settings; their `backend_port` is overridden.
    pub tcp_config: TcpConfig,
    pub udp_config: UdpConfig,
}

impl PortGroupConfig {
    /// A group with the defaults: 600 s persistence, 100,000 pinned clients.
    pub fn new(
        tcp: Option<SocketAddr>,
        udp_ip: IpAddr,
        udp_ports: Vec<RangeInclusive<u16>>,
    ) -> Self {
        PortGroupConfig {
            tcp,
            udp_ip,
            udp_ports,
            persistence: Duration::from_secs(600),
            max_clients: 100_000,
            tcp_config: TcpConfig::default(),
            udp_config: UdpConfig::default(),
        }
    }
}

/// A [`Picker`] that pins each client IP to the back end its first flow got.
pub struct GroupPicker {
    inner: Arc<dyn Picker>,
    pins: Mutex<Affinity>,
}

impl GroupPicker {
    pub fn new(inner: Arc<dyn Picker>, max_clients: usize, persistence: Duration) -> GroupPicker {
        GroupPicker {
            inner,
            pins: Mutex::new(Affinity::new(max_clients, persistence)),
        }
    }

    /// The back end `client` is pinned to now.
    pub fn pinned(&self, client: IpAddr) -> Option<BackendId> {
        lock(&self.pins).lookup(client, Instant::now())
    }
}

impl Picker for GroupPicker {
    fn pick(&self, client: IpAddr, avoid: Option<BackendId>) -> Option<(BackendId, SocketAddr)> {
        let now = Instant::now();
        let mut pins = lock(&self.pins);
        if let Some(id) = pins.lookup(client, now).filter(|id| Some(*id) != avoid) {
            if let Some(addr) = self.inner.resolve(id) {
                let _ = pins.flow_started(client, id, now);
                return Some((id, addr));
            }
        }
        let (id, addr) = self.inner.pick(client, avoid)?;
        // A full table schedules this client without a pin rather than refusing it.
        let _ = pins.flow_started(client, id, now);
        Some((id, addr))
    }

    fn resolve(&self, id: BackendId) -> Option<SocketAddr> {
        self.inner.resolve(id)
    }

    fn connect_failed(&self, id: BackendId) {
        self.inner.connect_failed(id)
    }

    fn flow_ended(&self, client: IpAddr, id: BackendId) {
        lock(&self.pins).flow_ended(client, id, Instant::now());
        self.inner.flow_ended(client, id);
    }
}

/// A running port group.
pub struct PortGroup {
    picker: Arc<GroupPicker>,
    tcp: Option<ServiceHandle>,
    udp: Vec<(ServiceHandle, UdpFlows)>,
}

impl PortGroup {
    /// Binds every port and starts the services; counters are shared by all of them.
    /// Fails (with nothing left running) if a port cannot be bound.
    pub async fn start(
        config: PortGroupConfig,
        inner: Arc<dyn Picker>,
        counters: Arc<ServiceCounters>,
    ) -> io::Result<PortGroup> {
        let ports: usize = config.udp_ports.iter().map(|r| r.clone().count()).sum();
        if ports > MAX_GROUP_UDP_PORTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("port group has {ports} UDP ports; at most {MAX_GROUP_UDP_PORTS}"),
            ));
        }
        let picker = Arc::new(GroupPicker::new(
            inner,
            config.max_clients,
            config.persistence,
        ));
        let mut group = PortGroup {
            picker: picker.clone(),
            tcp: None,
            udp: Vec::new(),
        };
        let shared: Arc<dyn Picker> = picker;
        let started = async {
            if let Some(addr) = config.tcp {
                let listener = TcpListener::bind(addr).await?;
                let cfg = TcpConfig {
                    backend_port: BackendPort::SameAsListener,
                    ..config.tcp_config.clone()
                };
                group.tcp = Some(tcp::spawn(listener, cfg, shared.clone(), counters.clone())?);
            }
            for port in config.udp_ports.iter().flat_map(|r| r.clone()) {
                let socket = UdpSocket::bind((config.udp_ip, port)).await?;
                let cfg = UdpConfig {
                    backend_port: BackendPort::SameAsListener,
                    ..config.udp_config.clone()
                };
                group
                    .udp
                    .push(udp::spawn(socket, cfg, shared.clone(), counters.clone())?);
            }
            Ok::<(), io::Error>(())
        }
        .await;
        match started {
            Ok(()) => Ok(group),
            Err(e) => {
                group.stop(Duration::ZERO).await;
                Err(e)
            }
        }
    }

    pub fn picker(&self) -> &Arc<GroupPicker> {
        &self.picker
    }

    /// The TCP listener's address, if the group has one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|h| h.local_addr())
    }

    /// Drops the UDP flows of back end `id` (it went down); returns how many.
    pub fn remove_backend(&self, id: BackendId) -> usize {
        self.udp.iter().map(|(_, f)| f.remove_backend(id)).sum()
    }

    /// Stops every service of the group, with `grace` for running flows.
    pub async fn stop(self, grace: Duration) {
        let mut stops = Vec::new();
        if let Some(t) = self.tcp {
            stops.push(tokio::spawn(t.stop(grace)));
        }
        for (h, _) in self.udp {
            stops.push(tokio::spawn(h.stop(grace)));
        }
        for s in stops {
            let _ = s.await;
        }
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
