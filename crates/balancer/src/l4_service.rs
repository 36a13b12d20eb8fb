//! `kind = "tcp"` and `kind = "udp"` services: the L4 slice's TCP proxy and UDP flows
//! ([`crate::l4`]) started from `[[balancer.service]]`, picking through the same
//! [`Service`] as RTSP services (its scheduler, client-IP persistence and health),
//! with running flow counts from the L4 counters.
//!
//! A back end that goes down loses its flows at once: UDP flows are dropped (the
//! client's next datagram is re-picked) and TCP connections are closed.
//!
//! `kind = "port_group"` runs an [`l4::group::PortGroup`] (the listen port, TCP, and
//! `udp_ports`, all of a client IP's flows to one back end) over the same picker.
//!
//! What it does not: reload.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mediagate_config::ServiceKind;
use tokio::net::{TcpListener, UdpSocket};

use crate::backend::BackendId;
use crate::l4::group::{PortGroup, PortGroupConfig};
use crate::l4::udp::UdpFlows;
use crate::l4::{tcp, udp, Picker, ServiceCounters, ServiceHandle};
use crate::service::Service;

/// Picks for L4 flows through the service.
struct ServicePicker {
    svc: Arc<Service>,
    counters: Arc<ServiceCounters>,
}

impl Picker for ServicePicker {
    fn pick(&self, client: IpAddr, avoid: Option<BackendId>) -> Option<(BackendId, SocketAddr)> {
        let b = self
            .svc
            .pick_flow(client, avoid, |id| self.counters.backend(id).active())?;
        Some((b.id, b.addr))
    }

    fn resolve(&self, id: BackendId) -> Option<SocketAddr> {
        self.svc
            .backend(id)
            .filter(|b| b.up() && b.weight() > 0)
            .map(|b| b.addr)
    }

    fn connect_failed(&self, id: BackendId) {
        if let Some(p) = self.svc.backend(id).and_then(|b| b.passive()) {
            p.failure();
        }
    }
}

/// A running L4 service: its listeners and what they count.
pub(crate) struct L4Running {
    pub(crate) counters: Arc<ServiceCounters>,
    handles: Mutex<Vec<ServiceHandle>>,
    udp_flows: Vec<UdpFlows>,
    /// `kind = "port_group"`: the group (taken out when stopped).
    group: Mutex<Option<PortGroup>>,
    kind: ServiceKind,
    pub(crate) bound: Vec<SocketAddr>,
}

/// How long a port group keeps a client pinned after its last flow without
/// `persistence_timeout`: the classic recipe's 600 s.
const GROUP_PERSISTENCE: Duration = Duration::from_secs(600);

impl L4Running {
    /// Binds `svc`'s listeners as its kind says and starts serving.
    pub(crate) async fn start(
        svc: Arc<Service>,
        kind: ServiceKind,
        max_connections: usize,
        udp_ports: &[std::ops::RangeInclusive<u16>],
        persistence: Option<Duration>,
    ) -> Result<L4Running, String> {
        let counters = Arc::new(ServiceCounters::default());
        let picker: Arc<dyn Picker> = Arc::new(ServicePicker {
            svc: Arc::clone(&svc),
            counters: Arc::clone(&counters),
        });
        let mut handles = Vec::new();
        let mut udp_flows = Vec::new();
        let mut bound = Vec::new();
        let mut group = None;
        if kind == ServiceKind::PortGroup {
            let Some(&tcp) = svc.listen.first() else {
                return Err(format!("port group \"{}\" has no listen address", svc.name));
            };
            let mut config = PortGroupConfig::new(Some(tcp), tcp.ip(), udp_ports.to_vec());
            config.persistence = persistence.unwrap_or(GROUP_PERSISTENCE);
            config.tcp_config.proxy_v2 = svc.proxy_protocol;
            config.tcp_config.max_connections = max_connections;
            config.udp_config.max_flows = max_connections;
            let started = PortGroup::start(config, Arc::clone(&picker), Arc::clone(&counters))
                .await
                .map_err(|e| format!("port group \"{}\": cannot listen: {e}", svc.name))?;
            bound.extend(started.tcp_addr());
            tracing::info!(
                "balancer: port group {} on TCP {tcp} and {} UDP ports ({} back ends)",
                svc.name,
                udp_ports.iter().map(|r| r.clone().count()).sum::<usize>(),
                svc.backend_list().len()
            );
            group = Some(started);
        }
        let listen = if kind == ServiceKind::PortGroup {
            &[][..]
        } else {
            &svc.listen[..]
        };
        for addr in listen {
            let cannot = |e: std::io::Error| {
                format!("service \"{}\": cannot listen on {addr}: {e}", svc.name)
            };
            match kind {
                ServiceKind::Tcp => {
                    let listener = TcpListener::bind(addr).await.map_err(cannot)?;
                    let config = tcp::TcpConfig {
                        proxy_v2: svc.proxy_protocol,
                        max_connections,
                        ..tcp::TcpConfig::default()
                    };
                    let handle =
                        tcp::spawn(listener, config, Arc::clone(&picker), Arc::clone(&counters))
                            .map_err(cannot)?;
                    bound.push(handle.local_addr());
                    handles.push(handle);
                }
                ServiceKind::Udp => {
                    let socket = UdpSocket::bind(addr).await.map_err(cannot)?;
                    let config = udp::UdpConfig {
                        max_flows: max_connections,
                        // Each datagram goes alone to the back end, so each carries
                        // the client's address.
                        proxy_v2: if svc.proxy_protocol {
                            udp::UdpProxyV2::EveryDatagram
                        } else {
                            udp::UdpProxyV2::Off
                        },
                        ..udp::UdpConfig::default()
                    };
                    let (handle, flows) =
                        udp::spawn(socket, config, Arc::clone(&picker), Arc::clone(&counters))
                            .map_err(cannot)?;
                    bound.push(handle.local_addr());
                    handles.push(handle);
                    udp_flows.push(flows);
                }
                ServiceKind::Rtsp | ServiceKind::PortGroup => {
                    return Err("not a plain TCP or UDP service".into())
                }
            }
        }
        for addr in bound.iter().filter(|_| group.is_none()) {
            tracing::info!(
                "balancer: service {} listening for {} on {addr} ({} back ends)",
                svc.name,
                match kind {
                    ServiceKind::Udp => "UDP",
                    _ => "TCP",
                },
                svc.backend_list().len()
            );
        }
        Ok(L4Running {
            counters,
            handles: Mutex::new(handles),
            udp_flows,
            group: Mutex::new(group),
            kind,
            bound,
        })
    }

    /// A back end went down: its UDP flows are dropped and its TCP connections
    /// closed, at once; returns how many.
    pub(crate) fn backend_down(&self, id: BackendId) -> usize {
        let udp: usize = self.udp_flows.iter().map(|f| f.remove_backend(id)).sum();
        let group_udp = self
            .group
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |g| g.remove_backend(id));
        if self.kind == ServiceKind::Udp {
            return udp;
        }
        // The counters' active flows are TCP connections and, in a group, its UDP
        // flows too, which `remove_backend` already ended.
        let tcp = self.counters.backend(id).close_connections();
        group_udp + usize::try_from(tcp).unwrap_or(usize::MAX)
    }

    /// Stops accepting; running flows get `grace` to end.
    pub(crate) async fn stop(&self, grace: Duration) {
        let handles: Vec<ServiceHandle> = self
            .handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for h in handles {
            h.stop(grace).await;
        }
        let group = self
            .group
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(g) = group {
            g.stop(grace).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn service(kind: &str, backends: &[SocketAddr]) -> Arc<Service> {
        service_with(kind, backends, "").await
    }

    async fn service_with(kind: &str, backends: &[SocketAddr], extra: &str) -> Arc<Service> {
        let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"l4\"\n\
             kind = \"{kind}\"\nlisten = [\"127.0.0.1:0\"]\nbackends = [{}]\n{extra}",
            list.join(", ")
        );
        let config = mediagate_config::parse_config(&text).unwrap();
        Arc::new(
            Service::resolve(&config.balancer.service[0], &config.balancer)
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_tcp_service_proxies_and_counts_through_the_service() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
        });
        let svc = service("tcp", &[echo_addr]).await;
        let running = L4Running::start(Arc::clone(&svc), ServiceKind::Tcp, 10, &[], None)
            .await
            .unwrap();
        let _ = svc.l4.set(Arc::clone(&running.counters));
        let mut c = TcpStream::connect(running.bound[0]).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"hello");
        let figures = svc.figures();
        assert_eq!(figures[0].1.connections, 1);
        running.stop(Duration::from_millis(100)).await;
    }

    /// A TCP back end whose health check fails (it stops listening) has its running
    /// connections closed at once, though the back end itself keeps them open.
    #[tokio::test]
    async fn tcp_connections_to_a_back_end_that_goes_down_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = listener.local_addr().unwrap();
        let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(b"hi").await.unwrap();
                // Kept open (not read, not closed) for the whole test.
                held_tx.send(s).unwrap();
            }
        });
        let health = "[balancer.service.health]\ncheck = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
        let svc = service_with("tcp", &[backend_addr], health).await;
        let running = Arc::new(
            L4Running::start(Arc::clone(&svc), ServiceKind::Tcp, 10, &[], None)
                .await
                .unwrap(),
        );
        let _ = svc.l4.set(Arc::clone(&running.counters));
        let weak = Arc::downgrade(&running);
        svc.on_backend_down(move |id| weak.upgrade().map_or(0, |r| r.backend_down(id)));
        let watchers = crate::service::watch_health(&svc);
        let mut c = TcpStream::connect(running.bound[0]).await.unwrap();
        let mut buf = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"hi");
        let _backend_side = held.recv().await.unwrap();
        // Still open after several check rounds while the back end is up.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), c.read(&mut one))
                .await
                .is_err(),
            "closed while the back end was up"
        );
        // The back end stops listening: its checks fail, and the connection ends.
        accept.abort();
        let started = std::time::Instant::now();
        let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut one))
            .await
            .expect("the balancer closes the connection within the check interval")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(svc.figures()[0].1.sessions, 0);
        for w in watchers {
            w.abort();
        }
        running.stop(Duration::from_millis(100)).await;
    }

    /// `kind = "port_group"` from the config: each client IP's TCP connection and
    /// UDP datagrams (on every port of `udp_ports`) reach one back end, on the ports
    /// they arrived on, and another client IP is scheduled on its own.
    #[tokio::test]
    async fn a_port_group_from_the_config_keeps_a_client_s_tcp_and_udp_on_one_back_end() {
        use crate::l4::testutil::{at, free_ports, tcp_echo, tcp_from, udp_echo, udp_tag};
        let (tp, up) = free_ports().await;
        for (ip, tag) in [("127.0.0.2", b"A:"), ("127.0.0.3", b"B:")] {
            tcp_echo(at(ip, tp), tag).await;
            udp_echo(at(ip, up), tag).await;
            udp_echo(at(ip, up + 1), tag).await;
        }
        let text = format!(
            "[edge]\nenabled = false\n[balancer]\nenabled = true\n[[balancer.service]]\nname = \"g\"\n\
             kind = \"port_group\"\nlisten = [\"127.0.0.1:{tp}\"]\nudp_ports = [\"{up}-{}\"]\n\
             backends = [\"127.0.0.2:{tp}\", \"127.0.0.3:{tp}\"]\npersistence_timeout = \"1m\"\n",
            up + 1
        );
        let config = mediagate_config::parse_config(&text).unwrap();
        let sc = &config.balancer.service[0];
        let svc = Arc::new(Service::resolve(sc, &config.balancer).await.unwrap());
        let running = L4Running::start(
            Arc::clone(&svc),
            ServiceKind::PortGroup,
            100,
            &[up..=up + 1],
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
        let _ = svc.l4.set(Arc::clone(&running.counters));
        assert_eq!(running.bound, vec![at("127.0.0.1", tp)]);
        let mut tags = Vec::new();
        for client in ["127.0.0.1", "127.0.0.5"] {
            let (_tcp, tag) = tcp_from(client, at("127.0.0.1", tp)).await;
            let u = UdpSocket::bind(at(client, 0)).await.unwrap();
            assert_eq!(udp_tag(&u, at("127.0.0.1", up)).await, tag, "{client}");
            assert_eq!(udp_tag(&u, at("127.0.0.1", up + 1)).await, tag, "{client}");
            // A new UDP source port is a new flow: still pinned.
            let again = UdpSocket::bind(at(client, 0)).await.unwrap();
            assert_eq!(udp_tag(&again, at("127.0.0.1", up)).await, tag, "{client}");
            tags.push(tag);
        }
        assert_ne!(
            tags[0], tags[1],
            "round robin gave the second client the other back end"
        );
        let flows: u64 = svc.figures().iter().map(|(_, f)| f.connections).sum();
        assert_eq!(flows, 2 * 4, "one TCP and three UDP flows per client");
        running.stop(Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn a_udp_service_relays_datagrams_both_ways() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = echo.recv_from(&mut buf).await.unwrap();
            echo.send_to(&buf[..n], from).await.unwrap();
        });
        let svc = service("udp", &[echo_addr]).await;
        let running = L4Running::start(Arc::clone(&svc), ServiceKind::Udp, 10, &[], None)
            .await
            .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"ping", running.bound[0]).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, running.bound[0]);
        running.stop(Duration::from_millis(100)).await;
    }
}
