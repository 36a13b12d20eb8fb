//! A relay engine on loopback and two phones, for the eBPF fast path's tests: `ng`
//! over UDP, an offer and an answer with `received-from` the phones' loopback address
//! (127.0.0.1 or ::1), RTP helpers.
#![allow(dead_code)]

pub mod netns;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use mediagate_ng::bencode::{decode_exact, Limits, Value};
use mediagate_relay::engine::{EngineConfig, ForwardIo, Relay, RelayOptions};
use tokio::net::UdpSocket;
use tokio::time::timeout;

pub fn config(ports: (u16, u16), io: ForwardIo) -> EngineConfig {
    config_on(ports, io, [127, 0, 0, 1].into())
}

/// As [`config`], with the media ports on `media` (`ng` stays on 127.0.0.1).
pub fn config_on(ports: (u16, u16), io: ForwardIo, media: IpAddr) -> EngineConfig {
    EngineConfig {
        ng_udp: vec!["127.0.0.1:0".parse().unwrap()],
        ng_tcp: vec![],
        media: vec![(media, media)],
        ports,
        port_quarantine: Duration::from_secs(10),
        options: RelayOptions::default(),
        records: None,
        notify_url: None,
        tick: Duration::from_millis(50),
        forward_threads: 1,
        forward_coalesce: Duration::ZERO,
        forward_io: io,
        forward_scheduling: Default::default(),
    }
}

pub struct Ng {
    socket: UdpSocket,
    relay: SocketAddr,
    n: u32,
}

impl Ng {
    pub async fn new(relay: SocketAddr) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            relay,
            n: 0,
        }
    }

    /// A client of `relay`'s first `ng` UDP address.
    pub async fn of(relay: &Relay) -> Self {
        Self::new(relay.ng_udp_addrs()[0]).await
    }

    pub async fn call(&mut self, dict: &Value) -> Value {
        self.n += 1;
        let cookie = format!("e_{} ", self.n);
        let mut dg = cookie.clone().into_bytes();
        dg.extend_from_slice(&dict.encode());
        self.socket.send_to(&dg, self.relay).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, _) = timeout(Duration::from_secs(3), self.socket.recv_from(&mut buf))
            .await
            .expect("an ng reply")
            .unwrap();
        assert!(buf[..n].starts_with(cookie.as_bytes()));
        decode_exact(&buf[cookie.len()..n], &Limits::default()).unwrap()
    }
}

pub fn d(pairs: &[(&str, Value)]) -> Value {
    Value::Dict(
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    )
}

pub fn s(x: &str) -> Value {
    Value::str(x)
}

/// `IP4` or `IP6`, as SDP and `ng` name `ip`'s family.
pub fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "IP6"
    } else {
        "IP4"
    }
}

pub fn sdp_for(phone: SocketAddr) -> String {
    let (ip, port, f) = (phone.ip(), phone.port(), family(phone.ip()));
    format!("v=0\r\no=- 1 1 IN {f} {ip}\r\ns=-\r\nc=IN {f} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
}

/// The relay's media port in an `ng` offer or answer reply (which must be "ok").
pub fn media_port(v: &Value) -> u16 {
    assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"), "{v:?}");
    let sdp = String::from_utf8(v.get("sdp").unwrap().as_bytes().unwrap().to_vec()).unwrap();
    let line = sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

pub fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    // Not all one byte: a rewrite that touched the payload would show.
    p.extend((0..160u16).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// The datagrams RTP packets `seqs` of `ssrc` arrive as from relay port `from`.
pub fn expected(
    ssrc: u32,
    seqs: RangeInclusive<u16>,
    from: SocketAddr,
) -> Vec<(Vec<u8>, SocketAddr)> {
    seqs.map(|seq| (rtp(ssrc, seq), from)).collect()
}

pub async fn recv_all(sock: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok((n, from))) = timeout(wait, sock.recv_from(&mut buf)).await {
        got.push((buf[..n].to_vec(), from));
    }
    got
}

pub struct Phones {
    pub caller: UdpSocket,
    pub callee: UdpSocket,
    pub caller_relay: SocketAddr,
    pub callee_relay: SocketAddr,
}

impl Phones {
    /// RTP packets `seqs` from each phone to its relay port, the caller's and the
    /// callee's in turn.
    pub async fn send_both_ways(&self, seqs: RangeInclusive<u16>) {
        for seq in seqs {
            self.caller
                .send_to(&rtp(CALLER_SSRC, seq), self.caller_relay)
                .await
                .unwrap();
            self.callee
                .send_to(&rtp(CALLEE_SSRC, seq), self.callee_relay)
                .await
                .unwrap();
        }
    }

    /// RTP packets `seqs` from the caller to its relay port.
    pub async fn send_from_caller(&self, seqs: RangeInclusive<u16>) {
        for seq in seqs {
            self.caller
                .send_to(&rtp(CALLER_SSRC, seq), self.caller_relay)
                .await
                .unwrap();
        }
    }

    /// RTP packets `seqs` from the caller to its relay port, `gap` apart.
    pub async fn send_from_caller_paced(&self, seqs: RangeInclusive<u16>, gap: Duration) {
        for seq in seqs {
            self.send_from_caller(seq..=seq).await;
            tokio::time::sleep(gap).await;
        }
    }

    /// Each phone received exactly the other's packets `seqs`, byte-exact and in
    /// order, from the relay port it sends to.
    pub async fn assert_received_both_ways(&self, seqs: RangeInclusive<u16>) {
        let at_callee = recv_all(&self.callee, Duration::from_millis(300)).await;
        let at_caller = recv_all(&self.caller, Duration::from_millis(300)).await;
        assert_eq!(
            at_callee,
            expected(CALLER_SSRC, seqs.clone(), self.callee_relay),
            "at the callee"
        );
        assert_eq!(
            at_caller,
            expected(CALLEE_SSRC, seqs, self.caller_relay),
            "at the caller"
        );
    }
}

/// A tokio socket from a blocking one (made in another namespace).
pub fn tokio_socket(s: std::net::UdpSocket) -> UdpSocket {
    s.set_nonblocking(true).unwrap();
    UdpSocket::from_std(s).unwrap()
}

pub const CALLER_SSRC: u32 = 0xca11;
pub const CALLEE_SSRC: u32 = 0xca1e;

/// Offer and answer for `call_id` between two phones on loopback, then one RTP packet
/// each way so that both sides latch (the fast path takes over from there).
pub async fn establish(ng: &mut Ng, call_id: &str) -> Phones {
    establish_on(ng, call_id, [127, 0, 0, 1].into()).await
}

/// As [`establish`], for phones and a relay on loopback address `ip` (127.0.0.1 or
/// ::1); fails saying so where `ip` cannot be bound.
pub async fn establish_on(ng: &mut Ng, call_id: &str, ip: IpAddr) -> Phones {
    let bind = || async move {
        UdpSocket::bind((ip, 0)).await.unwrap_or_else(|e| {
            panic!(
                "cannot bind on {ip} ({e}): the IPv6 cases need ::1 on lo (`ip -6 addr show lo`)"
            )
        })
    };
    let caller = bind().await;
    let callee = bind().await;
    establish_with(ng, call_id, caller, callee, ip).await
}

/// As [`establish`], for phones bound anywhere and a relay on `relay_ip`.
pub async fn establish_with(
    ng: &mut Ng,
    call_id: &str,
    caller: UdpSocket,
    callee: UdpSocket,
    relay_ip: std::net::IpAddr,
) -> Phones {
    let seen_from = |s_: &UdpSocket| {
        let ip = s_.local_addr().unwrap().ip();
        Value::List(vec![s(family(ip)), s(&ip.to_string())])
    };
    let offer = ng
        .call(&d(&[
            ("command", s("offer")),
            ("call-id", s(call_id)),
            ("from-tag", s("ft")),
            ("sdp", s(&sdp_for(caller.local_addr().unwrap()))),
            ("received-from", seen_from(&caller)),
        ]))
        .await;
    let callee_relay = SocketAddr::new(relay_ip, media_port(&offer));
    let answer = ng
        .call(&d(&[
            ("command", s("answer")),
            ("call-id", s(call_id)),
            ("from-tag", s("ft")),
            ("to-tag", s("tt")),
            ("sdp", s(&sdp_for(callee.local_addr().unwrap()))),
            ("received-from", seen_from(&callee)),
        ]))
        .await;
    let caller_relay = SocketAddr::new(relay_ip, media_port(&answer));
    let p = Phones {
        caller,
        callee,
        caller_relay,
        callee_relay,
    };
    p.caller
        .send_to(&rtp(CALLER_SSRC, 0), p.caller_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&p.callee, Duration::from_millis(300)).await.len(),
        1
    );
    p.callee
        .send_to(&rtp(CALLEE_SSRC, 0), p.callee_relay)
        .await
        .unwrap();
    assert_eq!(
        recv_all(&p.caller, Duration::from_millis(300)).await.len(),
        1
    );
    p
}

/// `ng` query of `call_id`; the reply.
pub async fn query(ng: &mut Ng, call_id: &str) -> Value {
    ng.call(&d(&[("command", s("query")), ("call-id", s(call_id))]))
        .await
}

/// `ng` delete of `call_id` at once (no delete delay), so that its record is written.
pub async fn delete(ng: &mut Ng, call_id: &str) -> Value {
    ng.call(&d(&[
        ("command", s("delete")),
        ("call-id", s(call_id)),
        ("delete delay", Value::Int(0)),
    ]))
    .await
}

/// Starts a relay and checks what forwards its media.
pub async fn start(cfg: EngineConfig) -> Relay {
    Relay::start(cfg).await.expect("the relay starts")
}

/// Polls until `done` holds of the relay's (user space, kernel) forwarded counts (up to
/// 3 s: the engine reads the kernel's counters every tick); then returns them.
pub async fn until_counts(relay: &Relay, done: impl Fn(u64, u64) -> bool) -> (u64, u64) {
    let counts = || (relay.forwarded_packets(), relay.kernel_forwarded_packets());
    for _ in 0..60 {
        let (user, kernel) = counts();
        if done(user, kernel) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    counts()
}
