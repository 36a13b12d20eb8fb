//! The load generator's `ng` client over UDP: one socket, a cookie per request and
//! Kamailio's retransmission (3 tries at 1 s), around [`mediagate_ng::client`], which
//! builds the requests and reads the replies.
//!
//! What it does not: pipeline requests, or use TCP-ng.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mediagate_ng::bencode::{Limits, Value};
use mediagate_ng::client;
use mediagate_ng::framing::Encoding;

/// Numbers the clients of this process, for their cookies.
static NEXT_CLIENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A UDP `ng` client.
#[derive(Debug)]
pub(super) struct NgClient {
    socket: UdpSocket,
    relay: SocketAddr,
    next: u64,
    tag: u32,
    limits: Limits,
}

impl NgClient {
    pub(super) fn new(relay: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if relay.is_ipv4() {
            "0.0.0.0:0".parse().map_err(io::Error::other)?
        } else {
            "[::]:0".parse().map_err(io::Error::other)?
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(relay)?;
        Ok(Self {
            socket,
            relay,
            next: 0,
            // Unique per client in this process: servers cache replies by cookie
            // alone (as rtpengine does), so two clients counting from one tag would
            // be answered with each other's replies.
            tag: NEXT_CLIENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            limits: Limits::default(),
        })
    }

    /// Sends one request (retrying 3 times at 1 s, as Kamailio does) and returns the
    /// decoded reply and the round-trip time of the attempt that was answered.
    pub(super) fn request(&mut self, request: &Value) -> io::Result<(Value, Duration)> {
        self.next += 1;
        let cookie = format!("{}_{}_{}", self.tag, std::process::id(), self.next);
        let datagram = client::frame_request(cookie.as_bytes(), Encoding::Bencode, request);
        let mut buf = vec![0u8; 65_536];
        for _ in 0..3 {
            let sent = Instant::now();
            self.socket.send(&datagram)?;
            self.socket.set_read_timeout(Some(Duration::from_secs(1)))?;
            loop {
                match self.socket.recv(&mut buf) {
                    Ok(n) => {
                        let datagram = buf.get(..n).unwrap_or_default();
                        // `None`: a late reply to an earlier retransmission.
                        let Some(reply) =
                            client::reply_to(cookie.as_bytes(), datagram, &self.limits)
                        else {
                            continue;
                        };
                        let v = reply.map_err(|e| {
                            io::Error::other(format!(
                                "undecodable ng reply from {}: {}",
                                self.relay,
                                e.reason()
                            ))
                        })?;
                        return Ok((v, sent.elapsed()));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no ng reply from {} after 3 tries", self.relay),
        ))
    }
}
