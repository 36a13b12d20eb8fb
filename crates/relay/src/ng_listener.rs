//! `ng` listeners, UDP (one datagram per message) and TCP (messages back to back,
//! bencode or JSON), generic over what runs the commands: the relay's own registry, or
//! the dispatcher, which passes them on to a relay.
//!
//! What it does: decodes with [`mediagate_ng::framing`], hands each message to an
//! [`NgService`] and sends the framed reply it returns. A UDP reply leaves from the
//! address the request reached: a listener bound to a specific address has only that
//! one; on a wildcard (`0.0.0.0`, `::`) the listener reads each datagram's local
//! destination (`IP_PKTINFO` / `IPV6_PKTINFO`, [`mediagate_udp`]) and sends the reply
//! from it, because a multi-homed host would otherwise answer from whichever address
//! routing picks and Kamailio drops a reply from an unexpected address. A TCP
//! connection that sends something whose end cannot be found is sent the error reply
//! and closed, since the stream cannot be resynchronised. TCP replies keep their
//! requests' order.
//!
//! What it does not: interpret commands or answer retransmissions (the service does,
//! with its cookie cache), or limit who may send them: `ng` has no authentication, so
//! listeners belong on loopback or a signalling network.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use mediagate_udp::LocalDest;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use mediagate_ng::bencode::{Limits, Value};
use mediagate_ng::framing::{self, Encoding, StreamFramer, StreamItem, MAX_COOKIE_LEN};
use mediagate_ng::reply;

/// What runs the commands an `ng` listener receives.
pub trait NgService: Send + Sync + 'static {
    /// Whether each UDP request runs in its own task once it has to wait. A service
    /// that answers at once (the relay) runs inline in the receive loop; one that
    /// waits on other hosts (the dispatcher) must not hold up the requests behind it.
    /// Either way a request runs in the receive loop until it first waits.
    const CONCURRENT: bool = false;

    /// Runs one decoded message (`body` is the decoder's refusal reason when it could
    /// not be read) and returns the framed reply; `None` sends nothing (a
    /// retransmission whose first copy is still running).
    fn process(
        self: Arc<Self>,
        cookie: Vec<u8>,
        encoding: Encoding,
        body: Result<Value, &'static str>,
    ) -> impl Future<Output = Option<Vec<u8>>> + Send + 'static;
}

/// Serves `ng` over one UDP socket until `shutdown` turns true. `pktinfo` comes from
/// [`wildcard_pktinfo`], called right after the bind: set later, datagrams already
/// queued would carry no local address and their replies could leave from another one.
pub async fn serve_udp<S: NgService>(
    service: Arc<S>,
    socket: UdpSocket,
    pktinfo: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = Limits::default();
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, peer, local) = tokio::select! {
            _ = shutdown.changed() => return,
            r = recv_request(&socket, &mut buf, pktinfo) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        let Some(msg) = framing::parse_datagram(datagram, &limits) else {
            continue;
        };
        let body = msg.body.map_err(|e| e.reason());
        let work = Arc::clone(&service).process(msg.cookie.to_vec(), msg.encoding, body);
        if S::CONCURRENT {
            // Run here until the request first waits: one that never does (a relay
            // in the dispatcher's process, a cached reply) costs no task, and one for
            // a linked relay has its command on the wire before a task is spawned to
            // wait for the answer.
            let mut work = Box::pin(work);
            let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(Some(reply)) => send_reply(&socket, &reply, peer, local).await,
                Poll::Ready(None) => {}
                Poll::Pending => {
                    let socket = Arc::clone(&socket);
                    tokio::spawn(async move {
                        if let Some(reply) = work.await {
                            send_reply(&socket, &reply, peer, local).await;
                        }
                    });
                }
            }
        } else if let Some(reply) = work.await {
            send_reply(&socket, &reply, peer, local).await;
        }
    }
}

/// Whether replies need an explicit source: only on a wildcard bind, where the
/// kernel is asked for each datagram's local destination. If it refuses, the listener
/// still works, answering from whatever address routing picks. `role` names the
/// listener's owner in the warning.
pub fn wildcard_pktinfo(socket: &UdpSocket, role: &str) -> bool {
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    if !local.ip().is_unspecified() {
        return false;
    }
    match mediagate_udp::enable_pktinfo(socket) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "{role}: ng listener on {local}: cannot learn request addresses \
                 ({e}); replies may leave from another address: bind ng to a specific one"
            );
            false
        }
    }
}

/// The next datagram: its length, sender, and (with `pktinfo`) the local address it
/// reached.
async fn recv_request(
    socket: &UdpSocket,
    buf: &mut [u8],
    pktinfo: bool,
) -> std::io::Result<(usize, SocketAddr, Option<LocalDest>)> {
    if !pktinfo {
        let (len, peer) = socket.recv_from(buf).await?;
        return Ok((len, peer, None));
    }
    let got = socket
        .async_io(Interest::READABLE, || {
            mediagate_udp::recv_pktinfo(socket, buf)
        })
        .await?;
    Ok((got.len, got.source, got.local))
}

/// Sends a reply from `local` when known. Should that address have gone away since the
/// request came in, the reply still goes out, from whatever address routing picks.
async fn send_reply(socket: &UdpSocket, reply: &[u8], peer: SocketAddr, local: Option<LocalDest>) {
    if local.is_some() {
        let sent = socket
            .async_io(Interest::WRITABLE, || {
                mediagate_udp::send_pktinfo(socket, reply, peer, local)
            })
            .await;
        if sent.is_ok() {
            return;
        }
    }
    let _ = socket.send_to(reply, peer).await;
}

/// Accepts TCP-ng connections until `shutdown` turns true.
pub async fn serve_tcp<S: NgService>(
    service: Arc<S>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        tokio::spawn(serve_connection(
            Arc::clone(&service),
            stream,
            shutdown.clone(),
        ));
    }
}

async fn serve_connection<S: NgService>(
    service: Arc<S>,
    mut stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = Limits::default();
    let mut framer = StreamFramer::new(&limits);
    // The framer refuses a dictionary over the size limit; this bounds what a client
    // can make us hold before that (a cookie, whitespace between messages).
    let max_buffered = limits.max_len.saturating_add(MAX_COOKIE_LEN + 1);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        loop {
            match framer.next(&buf) {
                StreamItem::Incomplete => break,
                StreamItem::Message {
                    len,
                    cookie,
                    encoding,
                    body,
                } => {
                    let body = body.map_err(|e| e.reason());
                    let reply = Arc::clone(&service)
                        .process(cookie.to_vec(), encoding, body)
                        .await;
                    if let Some(reply) = reply {
                        if stream.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                    buf.drain(..len.min(buf.len()));
                }
                StreamItem::Broken {
                    cookie,
                    encoding,
                    reason,
                    ..
                } => {
                    if let Some(cookie) = cookie {
                        let reply = framing::frame_reply(&cookie, encoding, &reply::error(reason));
                        let _ = stream.write_all(&reply).await;
                    }
                    return;
                }
            }
        }
        if buf.len() > max_buffered {
            return;
        }
        let n = tokio::select! {
            _ = shutdown.changed() => return,
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Answers cookie `slow` after 300 ms and anything else at once.
    struct Mixed;

    impl NgService for Mixed {
        const CONCURRENT: bool = true;

        async fn process(
            self: Arc<Self>,
            cookie: Vec<u8>,
            encoding: Encoding,
            _body: Result<Value, &'static str>,
        ) -> Option<Vec<u8>> {
            if cookie == b"slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Some(framing::frame_reply(&cookie, encoding, &reply::pong()))
        }
    }

    #[tokio::test]
    async fn a_concurrent_service_answers_at_once_what_does_not_wait_and_later_what_does() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(serve_udp(Arc::new(Mixed), server, false, shutdown));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(b"slow d7:command4:pinge", addr)
            .await
            .unwrap();
        client
            .send_to(b"fast d7:command4:pinge", addr)
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        for _ in 0..2 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .expect("a reply")
                .unwrap();
            got.push(buf[..n].to_vec());
        }
        // The slow request does not hold up the one behind it.
        assert!(got[0].starts_with(b"fast "), "{got:?}");
        assert!(got[1].starts_with(b"slow "), "{got:?}");
    }
}
