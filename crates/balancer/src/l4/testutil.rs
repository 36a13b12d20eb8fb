//! Back ends and pickers for the L4 services' tests: real sockets on loopback.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

use crate::backend::{BackendId, BackendView};
use crate::l4::{Picker, SchedPicker};
use crate::sched::{Algorithm, Scheduler};

pub(crate) fn view(id: u32, addr: SocketAddr) -> BackendView {
    BackendView {
        id: BackendId(id),
        addr,
        weight: 1,
        up: true,
        sessions: 0,
        bandwidth_bps: 0,
    }
}

/// Round robin over `addrs` (ids 1, 2, ...), recording failed connects.
pub(crate) fn round_robin(addrs: &[SocketAddr]) -> (Arc<SchedPicker>, Arc<Mutex<Vec<BackendId>>>) {
    let failed = Arc::new(Mutex::new(Vec::new()));
    let f = failed.clone();
    let views = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| view(i as u32 + 1, *a))
        .collect();
    let picker = SchedPicker::new(Scheduler::new(Algorithm::RoundRobin), views)
        .on_failure(move |id| f.lock().unwrap().push(id));
    (Arc::new(picker), failed)
}

/// A picker that always answers the same back end, counting ended flows.
pub(crate) struct Fixed(pub BackendId, pub SocketAddr, pub AtomicUsize);

impl Picker for Fixed {
    fn pick(&self, _: IpAddr, _: Option<BackendId>) -> Option<(BackendId, SocketAddr)> {
        Some((self.0, self.1))
    }
    fn resolve(&self, _: BackendId) -> Option<SocketAddr> {
        Some(self.1)
    }
    fn flow_ended(&self, _: IpAddr, _: BackendId) {
        self.2.fetch_add(1, Relaxed);
    }
}

/// A TCP back end that writes `greeting` on connect, then echoes until the client's
/// end of stream, then closes its side.
pub(crate) async fn tcp_echo(addr: SocketAddr, greeting: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind(addr).await.unwrap();
    let local = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if s.write_all(greeting).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    local
}

/// A UDP back end answering each datagram with `tag` then the datagram.
pub(crate) async fn udp_echo(addr: SocketAddr, tag: &'static [u8]) -> SocketAddr {
    let s = UdpSocket::bind(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                return;
            };
            let mut out = tag.to_vec();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from).await;
        }
    });
    local
}

/// Connects and reads the back end's greeting of `len` bytes.
pub(crate) async fn connect_greeted(addr: SocketAddr, len: usize) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut g = vec![0u8; len];
    s.read_exact(&mut g).await.unwrap();
    (s, g)
}

/// An address on which nothing listens (bound, then closed).
pub(crate) async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub(crate) fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// A TCP port and two consecutive UDP ports free on 127.0.0.1.
pub(crate) async fn free_ports() -> (u16, u16) {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up = u.local_addr().unwrap().port();
        if up == u16::MAX || UdpSocket::bind(at("127.0.0.1", up + 1)).await.is_err() {
            continue;
        }
        return (t.local_addr().unwrap().port(), up);
    }
}

pub(crate) async fn tcp_from(source: &str, to: SocketAddr) -> (TcpStream, Vec<u8>) {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(at(source, 0)).unwrap();
    let mut s = s.connect(to).await.unwrap();
    let mut tag = vec![0u8; 2];
    s.read_exact(&mut tag).await.unwrap();
    (s, tag)
}

pub(crate) async fn udp_tag(c: &UdpSocket, to: SocketAddr) -> Vec<u8> {
    c.send_to(b"m", to).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), c.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(from, to);
    assert_eq!(&buf[2..n], b"m");
    buf[..2].to_vec()
}
