//! The `ng` control listeners: UDP (one datagram per message) and TCP (messages back to
//! back), both running commands against the shared relay state.
//!
//! What it does: decodes with [`crate::ng::framing`], answers retransmissions from the
//! cookie cache (the command does not run twice), runs the command in the registry
//! under the state lock, caches and sends the reply. A UDP reply leaves from the socket
//! the request arrived on, so from the address the client sent to when the listener is
//! bound to a specific address (bind `ng` listeners to specific addresses: on a wildcard
//! a multi-homed host may answer from another one). A TCP connection that sends
//! something undecodable gets the error reply and is closed, since the stream cannot be
//! resynchronised.
//!
//! What it does not: interpret commands (the registry does) or limit who may send
//! them: `ng` has no authentication, so listeners belong on loopback or a signalling
//! network.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::State;
use crate::ng::bencode::{Limits, Value};
use crate::ng::framing::{self, Encoding, StreamItem};
use crate::ng::reply;
use crate::ng::request::Request;

/// Runs one decoded message and returns the framed reply, using the cookie cache.
pub(super) fn process(
    state: &State,
    cookie: &[u8],
    encoding: Encoding,
    body: Result<Value, &'static str>,
) -> Vec<u8> {
    let now = state.now();
    let mut control = state.lock();
    if let Some(cached) = control.cookies.get(cookie, now.at) {
        return cached.to_vec();
    }
    let reply = match body.and_then(|v| Request::from_value(&v).map_err(|e| e.reason())) {
        Ok(req) => {
            let control = &mut *control;
            let reply = control.registry.handle(&req, now, &mut control.env);
            if reply::result_of(&reply) == Some("error") {
                let reason = reply
                    .get("error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                eprintln!(
                    "mediagate relay: {} for call {:?} failed: {reason}",
                    req.command.name(),
                    req.call_id.as_deref().unwrap_or("-")
                );
            }
            reply
        }
        Err(reason) => reply::error(reason),
    };
    let framed = framing::frame_reply(cookie, encoding, &reply);
    control.cookies.insert(cookie, framed.clone(), now.at);
    let ended = control.registry.take_ended();
    drop(control);
    state.finish(ended);
    framed
}

/// Serves `ng` over one UDP socket until the state shuts down.
pub(super) async fn serve_udp(state: Arc<State>, socket: UdpSocket) {
    let limits = Limits::default();
    let mut buf = vec![0u8; 65_536];
    let mut shutdown = state.shutdown_signal();
    loop {
        let (len, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            r = socket.recv_from(&mut buf) => match r {
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
        let reply = process(&state, msg.cookie, msg.encoding, body);
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// Accepts TCP-ng connections until the state shuts down.
pub(super) async fn serve_tcp(state: Arc<State>, listener: TcpListener) {
    let mut shutdown = state.shutdown_signal();
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        tokio::spawn(serve_connection(Arc::clone(&state), stream));
    }
}

async fn serve_connection(state: Arc<State>, mut stream: TcpStream) {
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut shutdown = state.shutdown_signal();
    loop {
        loop {
            match framing::next_stream_message(&buf, &limits) {
                StreamItem::Incomplete => break,
                StreamItem::Message { len, cookie, body } => {
                    let reply = process(&state, &cookie, Encoding::Bencode, Ok(body));
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                    buf.drain(..len.min(buf.len()));
                }
                StreamItem::Broken { cookie, reason, .. } => {
                    if let Some(cookie) = cookie {
                        let reply =
                            framing::frame_reply(&cookie, Encoding::Bencode, &reply::error(reason));
                        let _ = stream.write_all(&reply).await;
                    }
                    return;
                }
            }
        }
        if buf.len() > limits.max_len {
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

/// A monotonic and wall-clock reading for the registry.
pub(super) fn read_clock() -> crate::calls::Now {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    crate::calls::Now {
        at: Instant::now(),
        unix_ms,
    }
}
