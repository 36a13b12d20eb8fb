//! `kind = "tcp"` and `kind = "udp"` services: the L4 slice's TCP proxy and UDP flows
//! ([`crate::l4`]) started from `[[balancer.service]]`, picking through the same
//! [`Service`] as RTSP services (its scheduler, client-IP persistence and health),
//! with running flow counts from the L4 counters.
//!
//! A back end that goes down loses its flows at once: UDP flows are dropped (the
//! client's next datagram is re-picked) and TCP connections are closed.
//!
//! What it does not: port groups (no config for them yet), reload.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mediagate_config::ServiceKind;
use tokio::net::{TcpListener, UdpSocket};

use crate::backend::BackendId;
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
    kind: ServiceKind,
    pub(crate) bound: Vec<SocketAddr>,
}

impl L4Running {
    /// Binds `svc`'s listeners as its kind says and starts serving.
    pub(crate) async fn start(
        svc: Arc<Service>,
        kind: ServiceKind,
        max_connections: usize,
    ) -> Result<L4Running, String> {
        let counters = Arc::new(ServiceCounters::default());
        let picker: Arc<dyn Picker> = Arc::new(ServicePicker {
            svc: Arc::clone(&svc),
            counters: Arc::clone(&counters),
        });
        let mut handles = Vec::new();
        let mut udp_flows = Vec::new();
        let mut bound = Vec::new();
        for addr in &svc.listen {
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
                ServiceKind::Rtsp => return Err("an RTSP service is not an L4 one".into()),
            }
        }
        for addr in &bound {
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
            kind,
            bound,
        })
    }

    /// A back end went down: its UDP flows are dropped and its TCP connections
    /// closed, at once; returns how many.
    pub(crate) fn backend_down(&self, id: BackendId) -> usize {
        if self.kind == ServiceKind::Tcp {
            let closed = self.counters.backend(id).close_connections();
            return usize::try_from(closed).unwrap_or(usize::MAX);
        }
        self.udp_flows.iter().map(|f| f.remove_backend(id)).sum()
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
        let running = L4Running::start(Arc::clone(&svc), ServiceKind::Tcp, 10)
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
            L4Running::start(Arc::clone(&svc), ServiceKind::Tcp, 10)
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
        let running = L4Running::start(Arc::clone(&svc), ServiceKind::Udp, 10)
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
